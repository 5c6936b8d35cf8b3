"""Command line: ``bstdg train | eval | bench | export | compare | report | data | sweep``.

The work is done by plain ``*_command`` functions (keyword arguments named like the options,
printing as they go and returning what they computed), which tests and scripts call
directly; :func:`main_cli` only parses the arguments, calls one of them, and turns a user
error (:class:`~bstdg.errors.BstdgError`, a missing or unwritable file, a bad option) into
one ``bstdg: error: ...`` line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .errors import BstdgError, Interrupted, Terminated, interrupt_in
from .learning import LearningRule
from .recipe import TrainConfig

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


# --- helpers ---------------------------------------------------------------------------


def writable_dir(path, option: str = "--out") -> Path:
    """Create folder ``path`` if needed and check a file can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise BstdgError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def existing_data_dir(data_dir):
    """``data_dir`` unchanged; BstdgError when it is given but is not a folder (rather than
    silently falling back to $BSTDG_DATA or ./datasets)."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise BstdgError(f"--data-dir {data_dir}: no such folder")
    return data_dir


def to_json(obj) -> str:
    """JSON text of ``obj``; numpy scalars and arrays become plain numbers and lists."""
    return json.dumps(obj, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def add_dataclass_options(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    """One option ``--field-name`` per field of dataclass ``cls`` whose metadata has a
    ``help`` text: its type from the field's annotation (``int``, ``float``, ``str`` with
    ``choices``, ``tuple``: layer sizes like ``600,300``), default None (not given). The
    values are checked by the dataclass itself, in one place."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata or f.name in skip:
            continue
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kind = args[0]
        flag = "--" + f.name.replace("_", "-")
        if kind is tuple:
            parser.add_argument(flag, dest=f.name, type=hidden_sizes, help=f.metadata["help"])
        elif "choices" in f.metadata:
            parser.add_argument(flag, dest=f.name, choices=f.metadata["choices"], help=f.metadata["help"])
        else:
            parser.add_argument(flag, dest=f.name, type=number(kind), help=f.metadata["help"])


def number(kind):
    """An argparse type: an ``int`` or a ``float`` (range checks are the dataclass's)."""
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


# --- train -------------------------------------------------------------------------------


def train_command(out=None, dataset: str | None = None, config=None, data_dir=None,
                  limit_train=None, limit_test=None, force: bool = False, resume=None,
                  progress: bool | None = None, **settings) -> dict:
    """Train a network from scratch (or continue one with ``resume=RUN``). Settings,
    lowest precedence first: :class:`~bstdg.recipe.TrainConfig` defaults, the dataset's
    packaged config (``bstdg/configs/<dataset>.toml``), the ``config`` file, explicit
    ``settings`` (``TrainConfig`` and ``LearningRule`` field names; ``None``: not given).
    Writes ``out/model.npz`` and ``out/checkpoint.npz`` after every epoch and
    ``out/metrics.json`` at the end; returns the metrics."""
    from .config import RULE_FIELDS, TRAIN_FIELDS, train_settings
    from .runs import RunInputs, train_run

    unknown = sorted(set(settings) - TRAIN_FIELDS - RULE_FIELDS)
    if unknown:
        raise BstdgError(f"unknown setting(s) {', '.join(unknown)}")
    data_dir = existing_data_dir(data_dir)
    start = time.perf_counter()
    if resume is not None:
        given = [k for k, v in {"out": out, "dataset": dataset, "config": config, "limit_train": limit_train,
                                "limit_test": limit_test, **settings}.items() if v is not None]
        if force or given:
            raise BstdgError(f"--resume continues the run as it was recorded: drop "
                             f"{', '.join('--' + k.replace('_', '-') for k in given) or '--force'}")
        print(f"resuming {resume}")
        result = train_run(None, resume, resume=True, progress=progress, data_dir=data_dir)
        out = resume
    else:
        if out is None:
            raise UsageError("--out RUN is required (or --resume RUN) (see `bstdg train --help`)")
        train = {k: v for k, v in settings.items() if k in TRAIN_FIELDS}
        rule = {k: v for k, v in settings.items() if k in RULE_FIELDS and k not in TRAIN_FIELDS}
        dataset, cfg, options = train_settings(dataset, config, train, rule)
        inputs = RunInputs(dataset, cfg, options, None if data_dir is None else str(data_dir),
                           limit_train, limit_test)
        layers = ",".join(str(n) for n in cfg.hidden)
        batches = f", batch {cfg.batch_size}" if cfg.optimizer == "adam" else ""
        print(f"training on {dataset}: hidden {layers}, {cfg.epochs} epochs, t_max {cfg.t_max}, "
              f"{cfg.optimizer}{batches}, {cfg.loss} loss, seed {cfg.seed} -> {out}")
        if options:
            print("dataset options: " + ", ".join(f"{k}={v}" for k, v in options.items()))
        result = train_run(inputs, out, force=force, progress=progress)
    total = time.perf_counter() - start
    cfg = result["config"]
    sizes = "-".join(str(s) for s in result["sizes"])
    print(f"\n{sizes} on {result['dataset']}, {cfg['epochs']} epochs")
    print(f"  test accuracy      {result['test_accuracy']:.4f}  (ties {result['test_ties']}, "
          f"silent {result['test_silent']}; a tie never counts as correct)")
    print(f"  train accuracy     {result['train_accuracy']:.4f}")
    print(f"  decision time      {result['mean_decision_time']:.1f} of {cfg['t_max']} steps")
    print(f"  hidden spikes      {result['hidden_spikes_per_sample']:.1f} per sample "
          f"(up to the decision)")
    print(f"  training           {result['train_samples_per_s']:,.0f} samples/s")
    print(f"  inference          {result['eval_samples_per_s']:,.0f} samples/s (event, early exit)")
    print(f"  wall time          {result['train_wall_s']:.1f} s training, {total:.1f} s in all")
    print(f"  saved              {Path(out) / 'model.npz'}, {Path(out) / 'metrics.json'}")
    return result


def hidden_sizes(text: str) -> tuple:
    """``600`` -> (600,), ``600,300`` -> (600, 300)."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected layer sizes like 600 or 600,300, got {text!r}")
    return sizes


def number_list(kind):
    """An argparse type: comma-separated numbers of ``kind`` (``2,3,4``) as a tuple."""
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values like 2,3,4, got {text!r}") from None
    return parse


def positive(kind, minimum=None):
    """An argparse type: a number of ``kind`` above 0 (at least ``minimum`` when given)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (value > 0 if minimum is None else value >= minimum):
            wanted = f"a positive {kind.__name__}" if minimum is None else f"an {kind.__name__} >= {minimum}"
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return parse


# --- eval --------------------------------------------------------------------------------


def eval_command(run, engine: str = "event", limit_test=None, data_dir=None,
                 as_json: bool = False) -> dict:
    """Evaluate the model of ``run`` (a run folder or its model.npz, or an exported file:
    export npz, nir, C header or hex folder, read by its format's reader) on the test split
    of the dataset it was trained on, with the event engine or the dense reference."""
    from .bench import warm_up
    from .runs import check_inputs, load_model
    from .data import load_events, trained_options
    from .evaluation import evaluate
    from .export import detect_format, exported_model

    fmt = detect_format(run)  # an exported file (issue 18): evaluated as it was written
    net, dataset = exported_model(fmt, run) if fmt else load_model(run)
    test = load_events(dataset, "test", net.t_max, existing_data_dir(data_dir), limit_test,
                       options=trained_options(dataset, net.meta))
    check_inputs(net, test.events, dataset)
    if engine == "event":
        warm_up(net, test.events)  # load/compile the kernel outside the timed evaluation
    ev = evaluate(net, test.events, test.labels, engine)
    result = {**ev.test_metrics(), "engine": engine, "export_format": fmt,
              "n_samples": len(test.labels), "dataset": dataset, "sizes": list(net.sizes),
              "t_max": net.t_max}
    if as_json:
        print(json.dumps(result))
    else:
        sizes = "-".join(str(s) for s in net.sizes)
        print(f"{sizes} (t_max {net.t_max}) on {len(test.labels)} {dataset} test samples, "
              f"{engine} engine" + (f", {fmt} export read by its reader" if fmt else ""))
        print(f"  test accuracy      {ev.accuracy:.4f}  (ties {ev.ties}, silent {ev.silent})")
        print(f"  decision time      {ev.mean_decision_time:.1f} steps")
        print(f"  hidden spikes      {ev.hidden_spikes_per_sample:.1f} per sample")
        print(f"  speed              {ev.samples_per_s:,.0f} samples/s")
    return result


# --- bench -------------------------------------------------------------------------------


def bench_command(model=None, samples: int = 10000, dense_samples: int = 256, repeats: int = 5,
                  data_dir=None, as_json: bool = False, out=None) -> dict:
    """Measure inference and training throughput (see :mod:`bstdg.bench`); print the figures
    (or one JSON object) and, with ``out``, write the JSON there too."""
    from .bench import format_report, run_benchmark

    from .files import write_json
    from .runs import refuse_run_file

    data_dir = existing_data_dir(data_dir)
    if out is not None:
        writable_dir(Path(out).parent)
        refuse_run_file(out)
    result = run_benchmark(model, samples, dense_samples, repeats, data_dir)
    print(to_json(result) if as_json else format_report(result))
    if out is not None:
        write_json(out, result)
        if not as_json:
            print(f"wrote {out}")
    return result


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bstdg bench`` (shared with ``benchmarks/bench_inference.py``)."""
    p.add_argument("--model", help="run folder or model.npz (default: a fresh 784-600-10 "
                                   "network, seed 0)")
    p.add_argument("--samples", type=positive(int), default=10000,
                   help="test samples for event inference, and training samples (default 10000)")
    p.add_argument("--dense-samples", type=positive(int), default=256,
                   help="test samples for the slow dense reference (default 256)")
    p.add_argument("--repeats", type=positive(int), default=5,
                   help="timed runs per figure; the median is reported (default 5)")
    p.add_argument("--data-dir", help="folder holding the dataset (else $BSTDG_DATA, ./datasets)")
    p.add_argument("--json", dest="as_json", action="store_true",
                   help="print one JSON object instead of text")


# --- export ------------------------------------------------------------------------------


def export_command(run, format: str, out, verify: bool = False, data_dir=None, limit_test=None,
                   random_inputs=None, verify_hdl: bool = False) -> dict:
    """Write the model of ``run`` in ``format`` (``npz``, ``nir``, ``c``, ``hex``; see
    :mod:`bstdg.export` and docs/export.md) to ``out`` and print its memory footprint. With
    ``verify`` (or ``random_inputs``), read the written file back through the independent
    path and require predictions identical to the model's on the test split of its dataset
    (first ``limit_test`` samples), or on ``random_inputs`` random latency-coded inputs."""
    from . import export as export_mod
    from .runs import check_inputs, load_model, model_path, refuse_run_file

    spec = export_mod.get_format(format)
    if format == "nir":
        export_mod.nir_format.require_nir()
    if verify_hdl and format != "hex":  # --verify-hdl (issue 18)
        raise BstdgError("--verify-hdl runs the Verilog core on a hex export; use --format hex")
    net, dataset = load_model(run)
    target = export_mod.output_path(format, out)
    if target.resolve() == model_path(run).resolve():
        raise BstdgError(f"--out {target} would overwrite the model itself; choose another name")
    refuse_run_file(target)
    bn = net.binary()
    exported = export_mod.from_binary_net(bn, export_mod.encoder_for_model(net))
    events, where = None, None
    if random_inputs:
        events = export_mod.random_events(random_inputs, net.sizes[0], net.t_max)
        where = f"{random_inputs:,} random latency-coded inputs"
    elif verify or verify_hdl:  # data first: a missing dataset fails before anything is written
        from .data import load_events, trained_options

        test = load_events(dataset, "test", net.t_max, existing_data_dir(data_dir), limit_test,
                           options=trained_options(dataset, net.meta))
        check_inputs(net, test.events, dataset)
        events, where = test.events, f"{len(test.labels):,} {dataset} test samples"
    path = export_mod.write(format, exported, out)
    fp = export_mod.footprint(exported)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    on_disk = sum(f.stat().st_size for f in files if f.is_file())
    print(f"wrote {path} ({spec.description})")
    print(f"  network            {'-'.join(map(str, net.sizes))}, t_max {net.t_max}, "
          f"trained on {dataset}")
    print(f"  weights            {fp['weight_bytes']:,} B ({fp['n_weights']:,} weights, "
          f"1 bit each, rows padded to whole bytes)")
    print(f"  thresholds         {fp['threshold_bytes']:,} B ({fp['n_neurons']:,} x int16)")
    print(f"  together           {fp['total_bytes']:,} B; as float32 {fp['float32_bytes']:,} B "
          f"({fp['ratio']:.1f}x larger)")
    print(f"  on disk            {on_disk:,} B in {len(files)} file{'s' if len(files) > 1 else ''}")
    result = {"format": format, "path": str(path), "dataset": dataset, "t_max": net.t_max,
              "file_bytes": on_disk, **fp}
    if events is not None:
        check = export_mod.verify_file(format, path, bn, events)
        print(f"  verified           identical predictions, ties and decision times on {where} "
              f"(file re-read by the {format} reader, re-run by the independent numpy "
              f"simulator{' and the NIR-spec interpreter' if format == 'nir' else ''}; "
              f"ties {check['ties']}, silent {check['silent']})")
        if format == "c":
            print("  C reference        " + (
                "compiled and run: identical predictions, ties and decision times"
                if check["c_reference"] else
                "not run (no C compiler, or examples/c/bstdg_infer.c not found)"))
        result["verify"] = check
    if verify_hdl:  # --verify-hdl: the Verilog core in an HDL simulator (bstdg.export.hdl)
        from .export import hdl

        check = hdl.verify_hdl(path, bn, events)
        print(f"  HDL simulation     identical predictions, ties and decision times on {where} "
              f"(hardware/ core in {check['simulator']}); cycles per inference mean "
              f"{check['cycles_mean']:,.1f}, max {check['cycles_max']:,} "
              f"({check['events_per_pass']} input spikes per pass)")
        result["verify_hdl"] = check
    return result


# --- compare / report ----------------------------------------------------------------------


def compare_command(out, dataset: str = "mnist", methods="bstdg,s4nn-rule,bptt,bptt-binary",
                    time_steps="16,64,256", epochs: int = 1, limit_train=None, limit_test=None,
                    hidden=(600,), data_dir=None, seed: int = 0, limit_train_for=None,
                    until_converged: bool = False, max_epochs=None, patience=None, budget_s=None,
                    val=None, device: str = "cpu", bptt_settings=None) -> dict:
    """Train every method at every T (one fresh process each) and write ``out/compare.json``,
    ``out/compare.md`` and the plots (see :mod:`bstdg.compare`)."""
    from .compare import compare, parse_overrides

    methods = methods.split(",") if isinstance(methods, str) else list(methods)
    if isinstance(time_steps, str):
        try:
            time_steps = [int(t) for t in time_steps.split(",")]
        except ValueError:
            raise BstdgError(f"--time-steps: expected numbers like 16,64,256, got {time_steps!r}") from None
    writable_dir(out)
    summary = compare(dataset, methods, time_steps, epochs, limit_train, limit_test, tuple(hidden),
                      out, existing_data_dir(data_dir), seed, parse_overrides(limit_train_for),
                      until_converged=until_converged, max_epochs=max_epochs, patience=patience,
                      budget_s=budget_s, val=val, device=device, bptt_settings=bptt_settings)
    from .report import compare_table, key_figure_lines

    print()
    print("\n".join(compare_table(summary)))
    for line in key_figure_lines(summary):
        print(line)
    print(f"wrote {Path(out) / 'compare.json'} and {Path(out) / 'compare.md'}")
    return summary


def report_command(run, data_dir=None) -> dict:
    """Regenerate the figures and the Markdown report of a run or comparison folder."""
    from .report import report

    return report(run, existing_data_dir(data_dir))


# --- data --------------------------------------------------------------------------------


def data_list_command(data_dir=None) -> list:
    """Print each built-in dataset: whether it is present and where it was looked for."""
    from .data import data_list

    rows = data_list(existing_data_dir(data_dir))
    width = max(len(row.name) for row in rows) + 2
    print(f"{'name':<{width}}present  where")
    for row in rows:
        where = str(row.found) if row.present else "looked in " + ", ".join(map(str, row.searched))
        print(f"{row.name:<{width}}{'yes' if row.present else 'no':<7}  {where}")
        print(f"{'':<{width}}size: {row.size}; files: {', '.join(row.files)}")
        for problem in row.problems:
            print(f"{'':<{width}}incomplete: {problem}")
    return rows


def builtin_dataset(name: str):
    from .data import BUILTIN, get_dataset

    if name not in BUILTIN:
        raise BstdgError(f"unknown dataset {name!r}; built-in: {', '.join(BUILTIN)}")
    return get_dataset(name)


def data_verify_command(name: str, data_dir=None) -> dict:
    """Check dataset ``name`` where it is found (checksums for MNIST/Fashion-MNIST, structure
    and counts for the others); BstdgError if any check fails."""
    from .data.mnist import IdxDataset

    ds = builtin_dataset(name)
    folder = ds.locate(existing_data_dir(data_dir))
    checks = ds.checks(folder)
    for file, ok in checks.items():
        print(f"{'ok' if ok else 'BAD':<4}{file}")
    bad = [file for file, ok in checks.items() if not ok]
    if not isinstance(ds, IdxDataset):
        if bad:
            raise BstdgError(f"{name} in {folder}: {len(bad)} of {len(checks)} checks fail "
                             f"({'; '.join(bad)})")
        print(f"{name}: all {len(checks)} checks passed in {folder} (structure and counts; "
              f"no published checksums)")
        return checks
    if bad:
        raise BstdgError(f"{name} in {folder}: {len(bad)} of {len(checks)} files fail "
                         f"verification ({', '.join(bad)}); delete them and run "
                         f"`bstdg data fetch {name}`")
    print(f"{name}: all {len(checks)} files verified in {folder}")
    return checks


def data_fetch_command(name: str, data_dir=None, dest="datasets") -> Path:
    """Make verified files of ``name`` available: nothing to do when a verified copy is
    already found in the search order, else download into ``dest/<name>``."""
    from .errors import DataError

    ds = builtin_dataset(name)
    data_dir = existing_data_dir(data_dir)
    try:
        folder = ds.locate(data_dir)
    except DataError:
        folder = None
    if folder is not None:
        if all(ds.checks(folder).values()):
            print(f"{name}: already present and verified in {folder}; nothing to do")
            return folder
        print(f"{name}: {folder} holds files that fail verification; fetching into "
              f"{Path(dest) / name}")
    writable_dir(dest, "--dest")
    fetched = ds.fetch(Path(dest))
    print(f"{name}: fetched and verified into {fetched}")
    try:
        used = ds.locate(data_dir)
    except DataError:
        used = None
    if used is None or used.resolve() != fetched.resolve():
        print(f"note: bstdg will read {name} from {used or 'elsewhere'}, not {fetched}: the "
              f"search order is --data-dir, $BSTDG_DATA, ./datasets (pass --data-dir {dest})")
    return fetched


def data_build_command(name: str, source=None, dest="datasets", channels: int = 70, jobs=None,
                       seed: int = 0, limit=None, data_dir=None) -> dict:
    """Build a derived dataset; only ``fsdd-spikes`` (FSDD recordings -> lauscher spikes)."""
    from .data.fsdd import build_fsdd_spikes

    if name != "fsdd-spikes":
        raise BstdgError(f"`bstdg data build` makes only fsdd-spikes, not {name!r}")
    writable_dir(dest, "--dest")
    written = build_fsdd_spikes(source, dest, channels, jobs, seed, limit,
                                existing_data_dir(data_dir))
    if channels != 70:
        print(f"train on it with a --config file holding: dataset = \"fsdd-spikes\", "
              f"input_channels = {channels}, channels = {channels}")
    return written


# --- sweep (bstdg.harness.sweep; Ray is imported only when the command runs) -----------------


def sweep_command(config=None, out=None, address=None, workers=None, resume: bool = False,
                  force: bool = False, data_dir=None) -> dict:
    """Train every point of the space of ``config`` (a sweep.toml) on every seed as Ray
    Tune trials scored on held-out training samples; writes ``out/sweep.json``,
    ``sweep.md``, ``sweep.png`` and ``best.toml`` and returns the ``sweep.json`` object."""
    from .harness.sweep import run_sweep

    if out is None or (config is None and not resume):
        raise UsageError(f"{'--out SWEEP' if out is None else '--config sweep.toml (unless --resume)'} is "
                         f"required (see `bstdg sweep --help`)")
    return run_sweep(config, out, address, workers, resume, force, existing_data_dir(data_dir))


def add_sweep_parser(commands) -> None:
    p = commands.add_parser("sweep", help="many trainings (a space x seeds) on Ray Tune, chosen on "
                                          "held-out training samples (needs the sweep extra)")
    p.add_argument("--config", help="sweep.toml: training settings, n_val, seeds, search, [space] "
                                     "(README, `bstdg sweep`); optional with --resume")
    p.add_argument("--out", help="sweep folder, e.g. runs/sweep")
    p.add_argument("--address", help="join a running Ray cluster: auto, ray://HOST:PORT or HOST:PORT "
                                      "(default: start a local Ray)")
    p.add_argument("--workers", type=positive(int), help="trials at once, one CPU each (default: all "
                                                         "CPUs of this machine; on a cluster: no cap)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    p.add_argument("--force", action="store_true", help="replace the sweep already in --out")
    p.add_argument("--data-dir", help="folder holding the dataset (else $BSTDG_DATA, ./datasets)")
    p.set_defaults(func=sweep_command)


# --- parsing -----------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bstdg: error: <what> (see <prog> --help)``."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class UsageError(BstdgError):
    pass


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
    p.add_argument("--hidden", type=hidden_sizes, default=(600,), help="hidden layer sizes (default 600)")
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
    import signal

    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM ends work as Ctrl-C does
    try:
        return run_guarded(func, **args)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main_cli())
