"""Command line: ``bstdg train | eval | bench | export | compare | report | data | sweep``.

The work is done by plain ``*_command`` functions (keyword arguments named like the options,
printing as they go and returning what they computed), which tests and scripts call
directly; :func:`main_cli` only parses the arguments, calls one of them, and turns a user
error (:class:`~bstdg.errors.BstdgError`, a missing or unwritable file, a bad option) into
one ``bstdg: error: ...`` line on stderr and a non-zero exit status. Rooms: the argument
types (:mod:`.args`), the commands (:mod:`.commands`, :mod:`.data_commands`), parsing and
the exit statuses (here).
"""

from __future__ import annotations

import signal
import sys

from ..errors import BstdgError, Interrupted, Terminated, interrupt_in
from ..learning import LearningRule
from ..recipe import TrainConfig
from .args import (Parser, UsageError, add_dataclass_options, existing_data_dir, hidden_sizes,  # noqa: F401
                   number, number_list, positive, writable_dir)
from .commands import (add_bench_arguments, add_sweep_parser, bench_command, compare_command,  # noqa: F401
                       eval_command, export_command, report_command, sweep_command, train_command)
from .data_commands import (data_build_command, data_fetch_command, data_list_command,  # noqa: F401
                            data_verify_command)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def build_parser() -> Parser:
    parser = Parser(prog="bstdg", description="Binarized single-spike SNNs trained with "
                                              "spike-timing-dependent gradients.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = commands.add_parser("train", help="train a network and write model.npz + metrics.json")
    p.add_argument("--dataset", help="mnist, fashion-mnist, caltech-face-motor, shd, fsdd-spikes, "
                                     "or your own: arrays:PATH.npz, images:DIR, events:DIR, tonic:NAME "
                                     "(default: the --config file's, else mnist)")
    p.add_argument("--config", help="TOML file (or packaged config name) of settings and dataset "
                                    "options; explicit options override it (see README)")
    p.add_argument("--out", help="run folder, e.g. runs/mnist (required unless --resume)")
    p.add_argument("--force", action="store_true", help="replace the run already in --out")
    p.add_argument("--resume", metavar="RUN", help="continue the interrupted run RUN from its "
                                                   "last complete epoch (its recorded settings)")
    p.add_argument("--limit-train", type=positive(int), help="use the first N training samples")
    p.add_argument("--limit-test", type=positive(int), help="use the first N test samples")
    p.add_argument("--data-dir", help="folder holding the dataset (else $BSTDG_DATA, ./datasets)")
    add_dataclass_options(p, TrainConfig)
    add_dataclass_options(p, LearningRule)
    p.set_defaults(func=train_command)

    p = commands.add_parser("eval", help="evaluate a trained model on its test split")
    p.add_argument("run", help="run folder (holding model.npz), a model .npz file, or an "
                              "exported file (export .npz, .nir, .h, hex folder)")
    p.add_argument("--engine", choices=("event", "dense"), default="event",
                   help="event-driven engine (default) or the time-stepped reference")
    p.add_argument("--limit-test", type=positive(int), help="use the first N test samples")
    p.add_argument("--data-dir", help="folder holding the dataset (else $BSTDG_DATA, ./datasets)")
    p.add_argument("--json", dest="as_json", action="store_true",
                   help="print one JSON object instead of text")
    p.set_defaults(func=eval_command)

    p = commands.add_parser("bench", help="inference (event vs dense) and training throughput")
    add_bench_arguments(p)
    p.add_argument("--out", help="also write the JSON to this file")
    p.set_defaults(func=bench_command)

    p = commands.add_parser("export", help="export a trained model (npz, nir, c, hex) for hardware")
    p.add_argument("run", help="run folder (holding model.npz) or a model .npz file")
    p.add_argument("--format", required=True, choices=("npz", "nir", "c", "hex"),
                   help="npz (canonical), nir, c (header for examples/c), hex ($readmemh folder)")
    p.add_argument("--out", required=True, help="file to write (a folder for hex; for the "
                                                "others an existing folder gets a default name)")
    p.add_argument("--verify", action="store_true", help="re-read the file independently and "
                   "require predictions identical to the model's on its test split")
    p.add_argument("--limit-test", type=positive(int), help="verify on the first N test samples")
    p.add_argument("--random-inputs", type=positive(int), metavar="N",
                   help="verify on N random latency-coded inputs instead (no dataset needed)")
    p.add_argument("--verify-hdl", action="store_true", help="hex: also run the Verilog core "
                   "(hardware/) in Icarus Verilog or Verilator and require identical results; "
                   "prints cycles per inference")
    p.add_argument("--data-dir", help="folder holding the dataset (else $BSTDG_DATA, ./datasets)")
    p.set_defaults(func=export_command)

    p = commands.add_parser("compare", help="train BSTDG, the S4NN-rule ablation and BPTT "
                                            "baselines at several T; table and plots")
    p.add_argument("--out", required=True, help="comparison folder, e.g. runs/compare-mnist")
    p.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist (default mnist)")
    p.add_argument("--methods", default="bstdg,s4nn-rule,bptt,bptt-binary",
                   help="comma-separated, from bstdg, s4nn-rule, bstdg-s4nn, bstdg-adam, bptt, bptt-binary, "
                        "snntorch, quant-threshold, ann-convert (default bstdg,s4nn-rule,bptt,bptt-binary)")
    p.add_argument("--time-steps", default="16,64,256", help="values of T (default 16,64,256)")
    p.add_argument("--epochs", type=positive(int), default=1)
    p.add_argument("--limit-train", type=positive(int), help="use the first N training samples")
    p.add_argument("--limit-test", type=positive(int), help="use the first N test samples")
    p.add_argument("--limit-train-for", metavar="METHOD[@T]=N,...",
                   help="fewer training samples for some runs, e.g. bptt@256=2000 (their time "
                        "per epoch is extrapolated per sample)")
    p.add_argument("--hidden", type=hidden_sizes, help="hidden layer sizes (default 600)")
    p.add_argument("--arch", metavar="SPEC",
                   help="hidden layers as convCkK[sS][pP], poolN, fcN (e.g. conv16k5,pool2,fc128); with "
                        "conv or pool layers only bstdg, bptt and bptt-binary run (docs/baselines.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="folder holding the dataset (else $BSTDG_DATA, ./datasets)")
    p.add_argument("--until-converged", action="store_true",
                   help="train each run on the training set minus a held-out split until its held-out "
                        "accuracy stops improving (--patience), --max-epochs or --budget-s; report the "
                        "held-out-selected epoch (docs/baselines.md)")
    p.add_argument("--max-epochs", type=positive(int), help="with --until-converged: at most N epochs (50)")
    p.add_argument("--patience", type=positive(int),
                   help="with --until-converged: stop after N epochs without a better held-out accuracy (3)")
    p.add_argument("--budget-s", type=positive(float), metavar="S",
                   help="stop a run once its training wall time reaches S seconds (marked budgeted)")
    p.add_argument("--val", type=int, metavar="N",
                   help="held-out training samples, a fixed split (seed 0) shared by every method "
                        "(default with --until-converged: 5000 or a tenth of the training set; else 0)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where the torch methods train (default cpu; cuda needs a GPU torch can see)")
    p.add_argument("--bptt-settings", metavar="FILE",
                   help="hyper-parameters per method and T, as written by benchmarks/bptt_lr_sweep.py")
    p.set_defaults(func=compare_command)

    p = commands.add_parser("report", help="regenerate the plots and report.md / compare.md of a run")
    p.add_argument("run", help="run folder (metrics.json) or comparison folder (compare.json)")
    p.add_argument("--data-dir", help="folder holding the dataset, for a run without saved test "
                                      "outputs (else $BSTDG_DATA, ./datasets)")
    p.set_defaults(func=report_command)

    data = commands.add_parser("data", help="list, fetch, verify or build datasets")
    actions = data.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    p = actions.add_parser("list", help="known datasets, where they are looked for and found")
    p.add_argument("--data-dir", help="extra folder to search first")
    p.set_defaults(func=data_list_command)
    p = actions.add_parser("fetch", help="download and verify a dataset (unless present)")
    p.add_argument("name")
    p.add_argument("--data-dir", help="extra folder to search first")
    p.add_argument("--dest", default="datasets", help="where to download to (default datasets/)")
    p.set_defaults(func=data_fetch_command)
    p = actions.add_parser("verify", help="check the checksums of a dataset where it is found")
    p.add_argument("name")
    p.add_argument("--data-dir", help="extra folder to search first")
    p.set_defaults(func=data_verify_command)
    p = actions.add_parser("build", help="build fsdd-spikes from Free Spoken Digit recordings "
                                         "(needs the audio extra: lauscher)")
    p.add_argument("name", choices=("fsdd-spikes",))
    p.add_argument("--source", help="folder of {digit}_{speaker}_{index}.wav files (default: "
                                    "fsdd/recordings under --data-dir, $BSTDG_DATA, ./datasets)")
    p.add_argument("--dest", default="datasets", help="writes DEST/fsdd-spikes/ (default datasets/)")
    p.add_argument("--channels", type=positive(int), default=70,
                   help="cochlea channels (default 70; SHD uses 700)")
    p.add_argument("--jobs", type=positive(int), help="worker processes (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cochlea model's randomness")
    p.add_argument("--limit", type=positive(int), help="convert only the first N recordings")
    p.add_argument("--data-dir", help="extra folder to search first for the recordings")
    p.set_defaults(func=data_build_command)
    add_sweep_parser(commands)
    return parser


def run_guarded(func, /, **kwargs) -> int:
    """Call ``func(**kwargs)``; a user error becomes one line on stderr and exit status 1."""
    try:
        func(**kwargs)
    except Interrupted as exc:
        return fail(str(exc), exc.status)
    except BstdgError as exc:
        return fail(str(exc), EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR)
    except OSError as exc:  # missing or unwritable file not caught closer to its source
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}", EXIT_ERROR)
    except (KeyboardInterrupt, SystemError) as exc:  # SystemError: a signal during a Numba call
        interrupt = interrupt_in(exc)
        if interrupt is None:
            raise
        if isinstance(interrupt, Terminated):
            return fail("terminated (SIGTERM)", EXIT_TERMINATED)
        return fail("interrupted", EXIT_INTERRUPTED)
    return 0


def _terminate(signum, frame):
    raise Terminated()


def fail(message: str, status: int) -> int:
    print(f"bstdg: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def main_cli(argv=None) -> int:
    """Entry point of the ``bstdg`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = vars(parser.parse_args(argv))
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func = args.pop("func", None)
    if func is None:
        if args.get("command") == "data":
            return fail("missing ACTION: list, fetch, verify or build (see `bstdg data --help`)",
                        EXIT_USAGE)
        return fail("missing COMMAND: train, eval, bench, export, compare, report, data or sweep "
                    "(see `bstdg --help`)", EXIT_USAGE)
    args.pop("command", None)
    args.pop("action", None)
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM ends work as Ctrl-C does
    try:
        return run_guarded(func, **args)
    finally:
        signal.signal(signal.SIGTERM, previous)
