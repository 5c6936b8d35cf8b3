"""Decision time against accuracy for a trained model: re-evaluate it with other output
thresholds and with its hidden thresholds offset, without retraining.

    python benchmarks/threshold_sweep.py --model runs/bench-accuracy/bstdg --theta-out 28,32,36,40
    python benchmarks/threshold_sweep.py --model runs/mnist --hidden-offset -3,0,2 --theta-out 36 \
        --split train --limit 10000

With the anytime rule every output shares one threshold, which does not enter training
(docs/learning.md), so ``--theta-out`` is a pure speed/accuracy setting of the trained
network; ``--hidden-offset`` moves the hidden margin (the saved model already carries its
``hidden_margin``; -3 undoes the default one). Prints one row per setting and writes
``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bstdg.runs import load_model
from bstdg.cli import number_list
from bstdg.data import load_events
from bstdg.evaluation import evaluate


def main(model, theta_out=(None,), hidden_offset=(0,), split="test", limit=None, data_dir=None) -> list[dict]:
    """One row per (hidden offset, output threshold): accuracy, ties, silent samples, mean
    decision time and hidden spikes per sample on ``split`` of the model's dataset."""
    net, dataset = load_model(model)
    options = (net.meta.get("encoder") or {}).get("options")  # as the model was trained
    data = load_events(dataset, split, net.t_max, data_dir, limit, options=options)
    rows = []
    for offset in hidden_offset:
        for theta in theta_out:
            candidate = net.with_thresholds(offset, theta)
            ev = evaluate(candidate, data.events, data.labels)
            rows.append({"hidden_offset": offset, "theta_out": theta, **ev.test_metrics()})
            print(f"hidden {offset:+d}  theta_out {theta if theta is not None else 'saved':>5}  "
                  f"accuracy {ev.accuracy:.4f}  ties {ev.ties:4d}  silent {ev.silent:5d}  "
                  f"decision {ev.mean_decision_time:6.1f} steps  hidden spikes {ev.hidden_spikes_per_sample:6.1f}",
                  flush=True)
    return rows


def main_cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="run folder or model .npz")
    p.add_argument("--theta-out", type=number_list(int), default=(None,),
                   help="output thresholds to try, comma-separated (default: the saved ones)")
    p.add_argument("--hidden-offset", type=number_list(int), default=(0,),
                   help="offsets added to every hidden threshold, comma-separated (default 0)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--limit", type=int, help="first N samples of the split")
    p.add_argument("--data-dir")
    p.add_argument("--out", default="runs/bench/threshold_sweep.json")
    a = p.parse_args(argv)
    rows = main(a.model, a.theta_out, a.hidden_offset, a.split, a.limit, a.data_dir)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(sys.argv),
                               "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
