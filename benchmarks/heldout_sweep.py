"""Choose the hidden margin and the output threshold on held-out training samples.

    python benchmarks/heldout_sweep.py --dataset fashion-mnist --n-val 5000 --hidden-offset 0,2,3,4,6 --theta-out 1001
    python benchmarks/heldout_sweep.py --dataset fsdd-spikes --n-val 300 --hidden-offset 8,16,24 --theta-out 64,1025
    python benchmarks/heldout_sweep.py --config my.toml --epochs 5 --n-val 2000 --theta-out 28,36,44

Trains the dataset's packaged config (``--config`` over it, then ``--epochs`` / ``--seed``)
with **no hidden margin** on the training split minus ``--n-val`` samples drawn at random
(``--split-seed``), then evaluates every (hidden offset, output threshold) pair on those
held-out samples, and, for information only, on the test split. The choice is the best
held-out accuracy; among the pairs within ``--within`` of it, the one that decides
earliest. The test figure of the chosen pair is not a test-set choice; the other test
figures are shown so a reader can see how far the held-out choice is from the best one.
Prints one row per pair and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from bstdg.cli import existing_data_dir, number_list
from bstdg.config import train_settings
from bstdg.data import load_events
from bstdg.evaluation import evaluate
from bstdg.train import Trainer, initial_network


def main(dataset=None, config=None, n_val=5000, split_seed=0, hidden_offset=(0,),
         theta_out=(None,), epochs=None, seed=None, within=0.001, data_dir=None) -> dict:
    """Held-out and test accuracy of every (hidden offset, output threshold) pair, and the
    pair chosen on the held-out samples (see the module docstring)."""
    dataset, cfg, options = train_settings(dataset, config, dict(epochs=epochs, seed=seed))
    cfg = dataclasses.replace(cfg, hidden_margin=0)
    data_dir = existing_data_dir(data_dir)
    train = load_events(dataset, "train", cfg.t_max, data_dir, options=options)
    test = load_events(dataset, "test", cfg.t_max, data_dir, options=options)
    if not 0 < n_val < len(train.labels):
        raise SystemExit(f"--n-val must be 1..{len(train.labels) - 1}, got {n_val}")
    order = np.random.default_rng(split_seed).permutation(len(train.labels))
    fit_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
    fit, val = train.events.take(fit_idx), train.events.take(val_idx)
    print(f"{dataset}: training on {len(fit_idx)} samples, {n_val} held out; "
          f"{cfg.epochs} epochs, {cfg.loss} loss, seed {cfg.seed}", flush=True)
    meta = {"dataset": dataset, "encoder": train.encoder}  # its input shape: TrainConfig.shift
    trainer = Trainer(initial_network(cfg, fit, train.n_classes, meta), cfg)
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        info = trainer.train_epoch(fit, train.labels[fit_idx], progress=False)
        print(f"epoch {info['epoch']}/{cfg.epochs}: running train accuracy "
              f"{info['train_accuracy_running']:.4f}", flush=True)
    wall = time.perf_counter() - start
    net = trainer.model()
    rows = []
    for offset in hidden_offset:
        for theta in theta_out:
            candidate = net.with_thresholds(offset, theta)
            ev = evaluate(candidate, val, train.labels[val_idx])
            et = evaluate(candidate, test.events, test.labels)
            rows.append({"hidden_offset": offset, "theta_out": theta, "heldout_accuracy": ev.accuracy,
                         "heldout_decision_time": ev.mean_decision_time,
                         "test_accuracy": et.accuracy, "test_decision_time": et.mean_decision_time,
                         "test_hidden_spikes_per_sample": et.hidden_spikes_per_sample})
            print(f"hidden {offset:+d}  theta_out {theta if theta is not None else 'saved':>6}  "
                  f"held-out {ev.accuracy:.4f} at {ev.mean_decision_time:6.1f} steps   "
                  f"test {et.accuracy:.4f} at {et.mean_decision_time:6.1f} steps, "
                  f"{et.hidden_spikes_per_sample:.1f} hidden spikes", flush=True)
    best = max(r["heldout_accuracy"] for r in rows)
    chosen = min((r for r in rows if r["heldout_accuracy"] >= best - within),
                 key=lambda r: (r["heldout_decision_time"], -r["heldout_accuracy"]))
    print(f"chosen: hidden offset {chosen['hidden_offset']}, theta_out {chosen['theta_out']} "
          f"(held-out {chosen['heldout_accuracy']:.4f}; test {chosen['test_accuracy']:.4f})")
    return {"dataset": dataset, "config": config, "data_options": options,
            "epochs": cfg.epochs, "seed": cfg.seed, "n_fit": len(fit_idx), "n_val": n_val,
            "split_seed": split_seed, "train_wall_s": wall, "rows": rows, "chosen": chosen}


def main_cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", help="a dataset with a packaged config (or take it from --config)")
    p.add_argument("--config", help="a config file over the packaged one")
    p.add_argument("--n-val", type=int, default=5000, help="training samples held out (5000)")
    p.add_argument("--split-seed", type=int, default=0, help="which samples are held out (0)")
    p.add_argument("--hidden-offset", type=number_list(int), default=(0,),
                   help="offsets added to every hidden threshold, comma-separated (default 0)")
    p.add_argument("--theta-out", type=number_list(float), default=(None,),
                   help="output thresholds to try, comma-separated (default: as trained)")
    p.add_argument("--within", type=float, default=0.001,
                   help="accuracy below the best held-out one that still counts as best (0.001)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--out", default="runs/bench/heldout_sweep.json")
    a = p.parse_args(argv)
    result = main(a.dataset, a.config, a.n_val, a.split_seed, a.hidden_offset, a.theta_out,
                  a.epochs, a.seed, a.within, a.data_dir)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"),
                               "command": " ".join(sys.argv), **result}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
