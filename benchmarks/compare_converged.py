"""The comparison of issue 17: every method trained to convergence (or to its wall-time
budget) on MNIST 784-600-10 at T = 16 / 64 / 256, accuracy against training wall time.

    # the converged comparison on the committed held-out choices of the BPTT rates and slopes
    # (benchmarks/bptt_settings.json, from benchmarks/bptt_lr_sweep.py; hours: docs/baselines.md)
    BSTDG_DATA=/work/shared/datasets python benchmarks/compare_converged.py --out runs/compare-converged
    # where a GPU is lent: the torch methods again on it (GPU wall time beside bstdg's CPU time)
    BSTDG_DATA=/work/shared/datasets python benchmarks/compare_converged.py --device cuda \
        --methods bptt,bptt-binary,snntorch --out runs/compare-converged-gpu
    # the pipeline end to end in minutes (2,000 training images, T = 16, 3 epochs at most)
    BSTDG_DATA=/work/shared/datasets python benchmarks/compare_converged.py --smoke --out runs/compare-smoke

It runs ``bstdg compare --until-converged`` with the protocol of docs/baselines.md (held-out
split of 5,000 training images drawn with a fixed seed; stop after ``--patience`` 3 epochs
without a better held-out accuracy, at ``--max-epochs`` 30, or once a run's training wall
time reaches ``--budget-s`` 7,200 s, then marked budgeted; figures of the held-out-selected
epoch) and prints the command it ran and the two tables to paste into BENCHMARKS.md:
accuracy / time per epoch / peak training memory, and accuracy against training time
(time to 90 / 95 / 97 %). Everything lands in ``--out`` (``compare.json``, ``compare.md``,
``accuracy_vs_time.png``, one folder per run).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bstdg.cli import main_cli
from bstdg.report_tables import convergence_table

METHODS = "bstdg,s4nn-rule,bptt,bptt-binary,snntorch"
# the learning rates and surrogate slopes chosen on the held-out split (docs/baselines.md)
SETTINGS = Path(__file__).with_name("bptt_settings.json")


def argv_for(a) -> list[str]:
    """The ``bstdg compare`` command line of the options ``a``."""
    argv = ["compare", "--out", a.out, "--methods", a.methods, "--hidden", "600", "--until-converged",
            "--patience", str(a.patience), "--val", str(a.val), "--device", a.device]
    if a.smoke:
        argv += ["--time-steps", "16", "--max-epochs", "3", "--limit-train", "2000", "--limit-test", "2000"]
    else:
        argv += ["--time-steps", a.time_steps, "--max-epochs", str(a.max_epochs)]
    if a.budget_s:
        argv += ["--budget-s", str(a.budget_s)]
    if a.settings:
        argv += ["--bptt-settings", a.settings]
    if a.data_dir:
        argv += ["--data-dir", a.data_dir]
    return argv


def cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/compare-converged")
    p.add_argument("--methods", default=METHODS, help=f"({METHODS})")
    p.add_argument("--time-steps", default="16,64,256")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=7200.0,
                   help="training wall-time budget per run, seconds (7200; 0: none)")
    p.add_argument("--val", type=int, default=5000)
    p.add_argument("--settings", default=str(SETTINGS),
                   help="--bptt-settings file from benchmarks/bptt_lr_sweep.py (benchmarks/bptt_settings.json)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--data-dir")
    p.add_argument("--smoke", action="store_true",
                   help="minutes, not hours: 2,000 training and 2,000 test images, T = 16, at most 3 epochs")
    a = p.parse_args(argv)
    args = argv_for(a)
    print("bstdg " + " ".join(shlex.quote(x) for x in args), flush=True)
    status = main_cli(args)
    if status == 0:
        summary = json.loads((Path(a.out) / "compare.json").read_text())
        print("\n".join(["", "Accuracy against training time:", ""] + convergence_table(summary)))
    return status


if __name__ == "__main__":
    sys.exit(cli())
