"""Choose a conv config's output threshold and margins on held-out training images.

    BSTDG_DATA=/path/to/datasets python benchmarks/conv_heldout_thresholds.py \
        --config caltech-face-motor-conv --heldout 80 --draws 4 --out runs/caltech-conv-heldout.json

For each of ``--draws`` random draws (seeds 0, 1, ...; ``bstdg.harness.sweep_trial.heldout_split``)
of ``--heldout`` training samples, trains the config (``bstdg train``'s loop and trainer) on
the other training samples, then scores the running-average network on the held-out samples
at every output threshold (``--theta-outs``), fc margin (``--fc-margins``) and conv margin
(``--conv-margins``): none of them enters training (docs/learning.md), so one training per
draw serves the whole grid. Prints the held-out accuracy and decision time per grid point,
averaged over the draws, best first. The test split is never read. ``--set FIELD=VALUE``
overrides a TrainConfig field of the config (JSON values; ``arch`` as a plain string).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from bstdg.config import train_settings
from bstdg.data import get_dataset
from bstdg.evaluation import evaluate
from bstdg.harness.sweep_trial import heldout_split, subset
from bstdg.train import fit, initial_model, make_trainer


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="a packaged config name or a TOML file")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--heldout", type=int, default=80)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--theta-outs", default="4,8,12,16")
    p.add_argument("--fc-margins", default="0,1,2,3")
    p.add_argument("--conv-margins", default="0,1")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = value if key in ("arch", "threshold_mode") else json.loads(value)
    dataset, config, options = train_settings(None, args.config, overrides)
    train = get_dataset(dataset, options).load("train", config.t_max, args.data_dir)
    grid = list(itertools.product(*[[float(x) for x in a.split(",")]
                                    for a in (args.theta_outs, args.fc_margins, args.conv_margins)]))
    scores = {g: [] for g in grid}
    for draw in range(args.draws):
        fit_idx, val_idx = heldout_split(len(train.labels), args.heldout, draw)
        fit_split, val = subset(train, fit_idx), subset(train, val_idx)
        meta = {"dataset": dataset, "encoder": fit_split.encoder.to_dict()}
        trainer = make_trainer(initial_model(config, fit_split.events, fit_split.n_classes, meta), config)
        fit(trainer, fit_split, None, progress=False, log=None)
        base = trainer.averaged()
        kinds = [layer.kind for layer in base.arch.layers]
        for theta_out, fm, cm in grid:
            offsets = [cm if k == "conv" else fm if k == "fc" else 0.0 for k in kinds]
            ev = evaluate(base.with_thresholds(offsets, theta_out), val.events, val.labels)
            scores[(theta_out, fm, cm)].append((ev.accuracy, ev.mean_decision_time))
        print(f"draw {draw}: trained on {len(fit_idx)}, held out {len(val_idx)}", flush=True)
    rows = [{"theta_out": g[0], "hidden_margin": g[1], "conv_margin": g[2],
             "heldout_accuracy": float(np.mean([a for a, _ in s])),
             "heldout_decision": float(np.mean([d for _, d in s])), "per_draw": [a for a, _ in s]}
            for g, s in scores.items()]
    rows.sort(key=lambda r: (-r["heldout_accuracy"], r["heldout_decision"]))
    for r in rows:
        print(f"theta_out {r['theta_out']:g}, fc margin {r['hidden_margin']:g}, conv margin {r['conv_margin']:g}: "
              f"held-out {r['heldout_accuracy']:.4f} (draws {', '.join(f'{a:.3f}' for a in r['per_draw'])}), "
              f"decision {r['heldout_decision']:.1f}")
    result = {"config": args.config, "overrides": overrides, "train_config": config.to_dict(), "dataset": dataset,
              "heldout": args.heldout, "draws": args.draws, "grid": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
