"""Accuracy on every dataset, each trained with its packaged config (bstdg/configs/*.toml).

    python benchmarks/dataset_accuracy.py --data-dir /path/to/datasets
    python benchmarks/dataset_accuracy.py --datasets caltech-face-motor,fsdd-spikes --epochs 5
    python benchmarks/dataset_accuracy.py --datasets fashion-mnist --epochs 2 --limit-train 10000

Runs ``bstdg train --dataset NAME`` (the same code: :func:`bstdg.cli.train_command`) for each
dataset, with ``--epochs`` / ``--limit-train`` / ``--limit-test`` / ``--seed`` overriding the
config when given, and prints and writes (``--out``, default ``runs/dataset-accuracy.json``)
test accuracy, epochs, wall time, hidden spikes per sample and mean decision time. Each
run's own folder (``model.npz``, ``metrics.json``) is ``runs/dataset-accuracy/<dataset>``.
A dataset that is not found is reported as skipped, not as a failure. ``fsdd-spikes`` is
the FSDD recordings through the lauscher cochlea: not SHD, report it under its own name.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from bstdg.cli import train_command
from bstdg.data import DATASET_NAMES
from bstdg.files import write_json
from bstdg.errors import BstdgError

DEFAULT_DATASETS = ("mnist", "fashion-mnist", "caltech-face-motor", "shd", "fsdd-spikes")


def main(datasets=DEFAULT_DATASETS, epochs=None, limit_train=None, limit_test=None, seed=None,
         data_dir=None, out="runs/dataset-accuracy.json", runs="runs/dataset-accuracy") -> dict:
    results, skipped = {}, {}
    for name in datasets:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            m = train_command(out=Path(runs) / name, dataset=name, epochs=epochs, seed=seed,
                              limit_train=limit_train, limit_test=limit_test, data_dir=data_dir,
                              force=True, progress=False)
        except BstdgError as exc:
            print(f"skipped {name}: {exc}", flush=True)
            skipped[name] = str(exc)
            continue
        results[name] = {
            "test_accuracy": m["test_accuracy"], "train_accuracy": m["train_accuracy"],
            "test_ties": m["test_ties"], "test_silent": m["test_silent"], "epochs": m["epochs"],
            "train_wall_s": m["train_wall_s"], "total_wall_s": time.perf_counter() - start,
            "hidden_spikes_per_sample": m["hidden_spikes_per_sample"],
            "mean_decision_time": m["mean_decision_time"], "t_max": m["config"]["t_max"],
            "sizes": m["sizes"], "train_samples_per_s": m["train_samples_per_s"],
            "eval_samples_per_s": m["eval_samples_per_s"], "config": m["config"],
        }
    summary = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
               "cpu_count": os.cpu_count(), "command": " ".join(sys.argv),
               "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
               "results": results, "skipped": skipped}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_json(out, summary)
    print(f"\n{'dataset':<20}{'sizes':>16}{'test acc':>9}{'epochs':>7}{'wall s':>8}"
          f"{'hidden sp.':>11}{'decision':>12}")
    for name, r in results.items():
        sizes = "-".join(str(s) for s in r["sizes"])
        print(f"{name:<20}{sizes:>16}{r['test_accuracy']:9.4f}{r['epochs']:7d}"
              f"{r['total_wall_s']:8.1f}{r['hidden_spikes_per_sample']:11.1f}"
              f"{r['mean_decision_time']:7.1f}/{r['t_max']:<4d}")
    for name in skipped:
        print(f"{name:<20}skipped (not found)")
    if out:
        print(f"wrote {out}")
    return summary


def main_cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help=f"comma-separated, from {', '.join(DATASET_NAMES)} (default: all)")
    p.add_argument("--epochs", type=int, help="override every config's epochs")
    p.add_argument("--limit-train", type=int, help="first N training samples of each dataset")
    p.add_argument("--limit-test", type=int, help="first N test samples of each dataset")
    p.add_argument("--seed", type=int)
    p.add_argument("--data-dir", help="where the datasets are (else $BSTDG_DATA, ./datasets)")
    p.add_argument("--out", default="runs/dataset-accuracy.json", help="summary JSON")
    p.add_argument("--runs", default="runs/dataset-accuracy", help="folder of the run folders")
    args = p.parse_args(argv)
    names = [n for n in args.datasets.split(",") if n]
    unknown = [n for n in names if n not in DATASET_NAMES]
    if unknown:
        p.error(f"unknown dataset(s) {', '.join(unknown)}")
    main(names, args.epochs, args.limit_train, args.limit_test, args.seed, args.data_dir,
         args.out, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
