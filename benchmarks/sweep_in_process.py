"""Run a ``bstdg sweep`` file's grid one trial after another in this process, without Ray.

    BSTDG_DATA=/path/to/datasets python benchmarks/sweep_in_process.py benchmarks/sweeps/mnist-conv-arch.toml \
        --out runs/sweep-mnist-conv-arch

For a machine that already runs one ``bstdg sweep``: a second local Ray beside it is not
something to rely on, and a screen pinned to one core gains nothing from Ray. Every trial is
:func:`bstdg.harness.sweep_trial.run_trial`, the function Ray runs, and the outputs are
``bstdg sweep``'s (``sweep.json``, ``sweep.md``, ``sweep.png``, ``best.toml``), written again
after every trial so an interrupted screen keeps what it finished. Grid and random search
only (Optuna proposes its points through Ray); no ``--resume``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bstdg.errors import BstdgError
from bstdg.harness.sweep import absolute_dataset, count_training_samples, read_sweep
from bstdg.harness.sweep_output import write_outputs
from bstdg.harness.sweep_spec import point_label
from bstdg.harness.sweep_trial import TrialSetup, check_n_val, run_trial


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a sweep.toml (bstdg sweep --config)")
    ap.add_argument("--out", required=True, help="folder for sweep.json, sweep.md, sweep.png, best.toml")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    spec, _ = read_sweep(args.config)
    spec.check_points()
    dataset = absolute_dataset(spec.dataset)
    n_train = count_training_samples(spec, dataset, args.data_dir)
    check_n_val(spec.n_val, n_train, spec.source)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setup, trials, start = TrialSetup(spec, dataset, args.data_dir), [], time.perf_counter()
    jobs = [(p, s) for p in spec.points() for s in spec.seeds]
    print(f"{spec.source}: {len(jobs)} trials in this process, {n_train - spec.n_val:,} training samples, "
          f"{spec.n_val:,} held out -> {out}", flush=True)
    for k, (point, seed) in enumerate(jobs, 1):
        def report(m, point=point, seed=seed):
            print(f"  {point_label(point)}, seed {seed}: epoch {m['epoch']} held-out {m['val_accuracy']:.4f} "
                  f"(decision {m['val_decision_time']:.1f})", flush=True)
        m = run_trial(setup, point, seed, report)
        trials.append({"params": {k: list(v) if isinstance(v, tuple) else v for k, v in point.items()},
                       "seed": seed, "val_accuracy": m["val_accuracy"], "test_accuracy": m["test_accuracy"],
                       "epochs": m["epoch"], "wall_s": m["wall_s"], "val_decision_time": m["val_decision_time"],
                       "val_history": m["val_history"], "status": "finished", "trial_id": f"serial_{k:05d}"})
        print(f"trial {k}/{len(jobs)}: {point_label(point)}, seed {seed}: held-out {m['val_accuracy']:.4f}, "
              f"{m['wall_s']:.0f} s", flush=True)
        write_outputs(out, spec, trials, n_train, {"address": None, "workers": 0,
                                                   "wall_s": time.perf_counter() - start, "resumed": False})


if __name__ == "__main__":
    try:
        main()
    except BstdgError as exc:
        raise SystemExit(f"sweep_in_process: error: {exc}") from None
