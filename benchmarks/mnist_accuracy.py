"""MNIST 784-600-10 accuracy benchmark: the default BSTDG rule (anytime loss) against the
S4NN-style ablation (no threshold training) and the two earlier defaults (per-sample SGD
and mini-batch Adam with the s4nn loss), same engine, same data, same seed, in one run.

    python benchmarks/mnist_accuracy.py --epochs 10 --out runs/bench-accuracy
    BSTDG_DATA=/path/to/datasets python benchmarks/mnist_accuracy.py --epochs 2 --limit-train 10000

Writes ``OUT/accuracy.json`` (every run's metrics.json contents) and each run's folder.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from bstdg.compare import TRAIN_CONFIGS as METHODS  # the registry `bstdg compare` uses
from bstdg.runs import RunInputs, train_run


def main(out, epochs: int, hidden=(600,), seed: int = 0, data_dir=None, limit_train=None,
         limit_test=None, methods=tuple(METHODS)) -> dict:
    """Train every method in ``methods`` and return ``{method: metrics}``."""
    out = Path(out)
    results = {}
    for name in methods:
        config = replace(METHODS[name], epochs=epochs, hidden=tuple(hidden), seed=seed)
        print(f"== {name}: {json.dumps(config.to_dict())}", flush=True)
        start = time.perf_counter()
        inputs = RunInputs("mnist", config, {}, data_dir, limit_train, limit_test)
        results[name] = train_run(inputs, out / name, force=True, progress=False)
        results[name]["total_wall_s"] = time.perf_counter() - start
    summary = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
               "command": " ".join(sys.argv), "results": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"\n{'method':<10} {'test acc':>8} {'ties':>5} {'silent':>6} {'decision':>8} "
          f"{'hidden sp.':>10} {'train s':>8} {'train/s':>8}")
    for name, r in results.items():
        print(f"{name:<10} {r['test_accuracy']:8.4f} {r['test_ties']:5d} {r['test_silent']:6d} "
              f"{r['mean_decision_time']:8.1f} {r['hidden_spikes_per_sample']:10.1f} "
              f"{r['train_wall_s']:8.1f} {r['train_samples_per_s']:8.0f}")
    return summary


def main_cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--limit-train", type=int)
    p.add_argument("--limit-test", type=int)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated: " + ", ".join(METHODS))
    p.add_argument("--out", default="runs/bench-accuracy")
    a = p.parse_args(argv)
    main(a.out, a.epochs, seed=a.seed, data_dir=a.data_dir, limit_train=a.limit_train,
         limit_test=a.limit_test, methods=tuple(a.methods.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
