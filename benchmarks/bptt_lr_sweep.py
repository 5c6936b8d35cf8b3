"""Choose the learning rate and the surrogate slope of every BPTT-trained method per T on the
held-out split, and write them as a ``bstdg compare --bptt-settings`` file.

    BSTDG_DATA=/work/shared/datasets python benchmarks/bptt_lr_sweep.py --out runs/bptt-sweep
    python benchmarks/bptt_lr_sweep.py --methods bptt-binary --time-steps 256 --out runs/bptt-sweep-256
    # what fits a 3-hour session on one core (BENCHMARKS.md): fewer samples at the long T, and
    # at T = 256 only the rates, at the slope chosen at T = 64
    python benchmarks/bptt_lr_sweep.py --limit-train 5000,3000,2000 --epochs 2,1,1 \
        --inherit-slope-at 256 --out runs/bptt-sweep
    python benchmarks/bptt_lr_sweep.py --methods bptt --time-steps 16 --lr 1e-3,1e-2 --slope 5 \
        --limit-train 1000 --epochs 1 --out runs/sweep-smoke            # a minute: the pipeline
    # the second stage: a local search around the first stage's choices, on more samples
    python benchmarks/bptt_lr_sweep.py --around benchmarks/bptt_settings_stage1.json \
        --time-steps 64 --limit-train 10000 --epochs 2 --out runs/bptt-refine-64

Every (method, T, grid point) is one ``bstdg compare`` run (:func:`bstdg.compare_run.run_isolated`:
a fresh process, the same data, code, meter and held-out split as ``bstdg compare
--until-converged``): it trains ``--epochs`` epochs on the first ``--limit-train`` samples of
the training set minus the held-out split (``--val``, 5,000 of MNIST's 60,000, drawn with a
fixed seed: the split ``--until-converged`` holds out) and is scored by its best held-out
accuracy over those epochs. Per (method, T) the grid point with the best held-out accuracy is
chosen (the first in grid order on a tie); the test split chooses nothing (it is evaluated on
``--limit-test`` samples only because every compare run reports it).

The grid (docs/baselines.md, "Hyper-parameters"; ``--lr`` / ``--slope`` replace it):

* ``bptt``: Adam lr 1e-3, 3e-3, 1e-2 × fast-sigmoid slope 2, 5, 10 (``u = (V - θ)/θ``);
* ``bptt-binary``: latent-weight lr 3e-3, 1e-2, 3e-2 (latent thresholds 10× that) × slope
  2, 5, 10;
* ``snntorch``: Adam lr 5e-4 (the tutorials'), 2e-3, 5e-3 × ``fast_sigmoid`` slope 5, 25
  (the tutorials'); beta stays 1.

``--around FILE`` (a settings file of an earlier sweep) replaces the grid by a local search
around that file's choice for each (method, T), :func:`refine`: the rate line (the chosen
rate ÷ 3, × 1, × 3 at the chosen slope, one more step of 3 past an end that wins), then the
slope line (the best rate at the slope ÷ 2 and × 2); the earlier choice is tried first, so
it stays chosen on a tie.

Writes ``--out/bptt_settings.json``: ``settings`` (what ``--bptt-settings`` reads),
``results`` (every grid point: held-out accuracy, selected epoch, time per epoch), the
grid, the command, date and machine; prints one row per grid point.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from bstdg.cli import existing_data_dir, number_list
from bstdg.compare import read_settings
from bstdg.compare_methods import METHODS
from bstdg.compare_run import run_isolated, run_one
from bstdg.compare_summary import machine
from bstdg.files import write_json
from bstdg.methods import MethodRun

GRID = {
    "bptt": {"lr": (1e-3, 3e-3, 1e-2), "slope": (2.0, 5.0, 10.0)},
    "bptt-binary": {"lr": (3e-3, 1e-2, 3e-2), "slope": (2.0, 5.0, 10.0)},
    "snntorch": {"lr": (5e-4, 2e-3, 5e-3), "slope": (5.0, 25.0)},
}
# bptt-binary trains its latent thresholds at this multiple of the latent-weight rate (the
# defaults: 1e-2 and 0.1).
THETA_LR_RATIO = 10.0


def grid_points(method: str, lrs=None, slopes=None) -> list[dict]:
    """The settings tried for ``method``: every (lr, slope) of its grid (or of ``lrs`` /
    ``slopes``), ``lr_theta`` tied to ``lr`` for ``bptt-binary``."""
    grid = GRID[method]
    return [with_lr(method, {"slope": float(slope)}, lr)
            for lr in lrs or grid["lr"] for slope in slopes or grid["slope"]]


def with_lr(method: str, point: dict, lr: float) -> dict:
    """``point`` at learning rate ``lr`` (``lr_theta`` kept tied for ``bptt-binary``)."""
    moved = {"lr": float(lr), **{k: v for k, v in point.items() if k != "lr"}}
    if method == "bptt-binary":
        moved["lr_theta"] = float(lr) * THETA_LR_RATIO
    return moved


def refine(method: str, centre: dict, score, lr_step: float = 3.0, slope_step: float = 2.0) -> list[dict]:
    """A local search around ``centre`` (an earlier sweep's choice): ``score(point)`` (a result
    row with ``val_accuracy``) of the centre, of its rate ÷ and × ``lr_step`` (one more step
    past an end that beats everything so far), then of the best rate's slope ÷ and ×
    ``slope_step``. Returns the rows in the order tried (the centre first: ties keep it)."""
    rows = [score(dict(centre))]
    for direction in (1.0 / lr_step, lr_step):
        for steps in (1, 2):
            row = score(with_lr(method, centre, centre["lr"] * direction ** steps))
            improved = row["val_accuracy"] > max(r["val_accuracy"] for r in rows)
            rows.append(row)
            if not improved:
                break
    best = choose(rows)
    for factor in (1.0 / slope_step, slope_step):
        rows.append(score({**best, "slope": best["slope"] * factor}))
    return rows


def choose(results: list[dict]) -> dict:
    """The settings with the best held-out accuracy (the first on a tie)."""
    best = max(results, key=lambda r: r["val_accuracy"])  # max keeps the first of equals
    return best["settings"]


def tag(point: dict) -> str:
    return "-".join(f"{k}{v:g}" for k, v in point.items())


def per_t(values, time_steps, name: str) -> dict:
    """``values`` (one number for every T, or one per T in ``time_steps``' order) as {T: value}."""
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if len(values) == 1:
        values = values * len(time_steps)
    if len(values) != len(time_steps):
        raise SystemExit(f"--{name}: give one value, or one per time step ({len(time_steps)}), "
                         f"got {len(values)}")
    return dict(zip(time_steps, values))


def main(methods=("bptt", "bptt-binary", "snntorch"), time_steps=(16, 64, 256), dataset="mnist",
         hidden=(600,), epochs=2, limit_train=10000, limit_test=1000, val=5000, lrs=None, slopes=None,
         budget_s=None, device="cpu", seed=0, out="runs/bptt-sweep", data_dir=None, isolate=True,
         inherit_slope_at=(), around=None, log=print) -> dict:
    """Sweep ``methods`` x ``time_steps`` (ascending) and write ``out/bptt_settings.json``.

    ``epochs`` and ``limit_train`` are one value or one per T. At every T in
    ``inherit_slope_at`` only the learning rates are tried, at the slope chosen for the same
    method at the largest smaller T (the long time steps cost the most per sample). With
    ``around`` (the ``settings`` of an earlier sweep) every (method, T) is a local search
    around that sweep's choice instead (:func:`refine`)."""
    time_steps = tuple(int(t) for t in time_steps)
    epochs_at = per_t(epochs, time_steps, "epochs")
    limit_at = per_t(limit_train, time_steps, "limit-train")
    time_steps = tuple(sorted(time_steps))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in methods if m not in GRID]
    if unknown:
        raise SystemExit(f"--methods: no grid for {', '.join(unknown)} (known: {', '.join(GRID)})")
    results, settings = [], {}
    started = time.perf_counter()
    for method in methods:
        for t_max in time_steps:
            slopes_here = slopes
            earlier = [t for t in settings.get(method, {}) if int(t) < t_max]
            if t_max in inherit_slope_at and earlier:
                slopes_here = (settings[method][max(earlier, key=int)]["slope"],)
            def score(point, method=method, t_max=t_max):
                run = MethodRun(method, dataset, int(t_max), str(out / f"{method}-T{t_max}-{tag(point)}"),
                                tuple(hidden), epochs_at[t_max], seed, limit_at[t_max], limit_test,
                                str(data_dir) if data_dir else None, val=val, budget_s=budget_s,
                                device=device, settings=point)
                log(f"== {method}, T={t_max}, {point}")
                r = (run_isolated if isolate else run_one)(run)
                row = {"method": method, "t_max": int(t_max), "settings": point,
                       "val_accuracy": r["selected_val_accuracy"], "selected_epoch": r["selected_epoch"],
                       "epochs_trained": r["epochs_trained"], "stopped_by": r["stopped_by"],
                       "test_accuracy": r["test_accuracy"], "train_s_per_epoch": r["train_s_per_epoch"],
                       "n_train": r["n_train"], "n_val": r["n_val"],
                       "history": [{k: h.get(k) for k in ("epoch", "wall_s", "val_accuracy", "test_accuracy")}
                                   for h in r["history"]]}
                log(f"   held-out {row['val_accuracy']:.4f} (epoch {row['selected_epoch']}), "
                    f"{row['train_s_per_epoch']:.1f} s/epoch")
                shutil.rmtree(run.out, ignore_errors=True)  # the models are not needed
                return row

            if around is not None:
                centre = (around.get(method) or {}).get(str(t_max))
                if centre is None:
                    raise SystemExit(f"--around: no settings for {method} at T={t_max}")
                here = refine(method, centre, score)
            else:
                here = [score(point) for point in grid_points(method, lrs, slopes_here)]
            chosen = choose(here)
            settings.setdefault(method, {})[str(t_max)] = chosen
            results += here
            log(f"-> {method}, T={t_max}: {chosen}")
    doc = {"settings": settings, "results": results,
           "grid": ({"around": around, "search": "refine: rate x/÷ 3, then slope x/÷ 2"} if around is not None
                    else {m: {"points": grid_points(m, lrs, slopes)} for m in methods}),
           "protocol": {"dataset": dataset, "hidden": list(hidden),
                        "epochs": {str(t): e for t, e in epochs_at.items()},
                        "limit_train": {str(t): n for t, n in limit_at.items()}, "limit_test": limit_test,
                        "val": val, "inherit_slope_at": sorted(inherit_slope_at),
                        "budget_s": budget_s, "device": device, "seed": seed,
                        "choice": "best held-out accuracy over the epochs; first in grid order on a tie"},
           "date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": " ".join(sys.argv),
           "total_wall_s": time.perf_counter() - started}
    path = out / "bptt_settings.json"
    write_json(path, doc)
    log(f"wrote {path}  (use: bstdg compare --bptt-settings {path} ...)")
    return doc


def cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", type=lambda s: tuple(s.split(",")), default=("bptt", "bptt-binary", "snntorch"))
    p.add_argument("--time-steps", type=number_list(int), default=(16, 64, 256))
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--hidden", type=number_list(int), default=(600,))
    p.add_argument("--epochs", type=number_list(int), default=(2,),
                   help="epochs per grid point: one value, or one per time step (2)")
    p.add_argument("--limit-train", type=number_list(int), default=(10000,),
                   help="train on the first N samples of the training set minus the held-out split: one "
                        "value, or one per time step (10000)")
    p.add_argument("--inherit-slope-at", type=number_list(int), default=(),
                   help="time steps at which only the learning rates are tried, at the slope chosen at "
                        "the next smaller time step")
    p.add_argument("--limit-test", type=int, default=1000, help="test samples evaluated (1000; chooses nothing)")
    p.add_argument("--val", type=int, default=5000, help="held-out samples (5000, the split of --until-converged)")
    p.add_argument("--lr", type=number_list(float), help="replace the grid's learning rates")
    p.add_argument("--slope", type=number_list(float), help="replace the grid's surrogate slopes")
    p.add_argument("--budget-s", type=float, help="training wall-time budget per grid point")
    p.add_argument("--around", metavar="FILE",
                   help="a settings file of an earlier sweep: search locally around its choices instead of the grid")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bptt-sweep")
    p.add_argument("--data-dir")
    a = p.parse_args(argv)
    unknown = [m for m in a.methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method {', '.join(unknown)}")
    main(a.methods, a.time_steps, a.dataset, a.hidden, a.epochs, a.limit_train, a.limit_test, a.val,
         a.lr, a.slope, a.budget_s, a.device, a.seed, a.out, existing_data_dir(a.data_dir),
         inherit_slope_at=set(a.inherit_slope_at),
         around=read_settings(a.around) if a.around else None)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
