"""The ``bstdg`` commands as plain functions: keyword arguments named like the options,
printing as they go and returning what they computed (tests and scripts call them directly)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .. import export as export_mod
from ..errors import BstdgError
from ..export import detect_format, exported_model, hdl
from ..files import to_json, write_json
from ..report import report
from ..report_tables import compare_table, key_figure_lines
from .args import UsageError, existing_data_dir, positive, writable_dir


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
    # heavy (engine, data/tqdm): loads when the command runs
    from ..config import RULE_FIELDS, TRAIN_FIELDS, train_settings
    from ..runs import RunInputs, train_run

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
        layers = cfg.arch if cfg.layered else ",".join(str(n) for n in cfg.hidden)
        batches = f", batch {cfg.batch_size}" if cfg.optimizer == "adam" else ""
        print(f"training on {dataset}: {'arch' if cfg.layered else 'hidden'} {layers}, {cfg.epochs} epochs, "
              f"t_max {cfg.t_max}, "
              f"{cfg.optimizer}{batches}, {cfg.loss} loss, seed {cfg.seed} -> {out}")
        if options:
            print("dataset options: " + ", ".join(f"{k}={v}" for k, v in options.items()))
        result = train_run(inputs, out, force=force, progress=progress)
    total = time.perf_counter() - start
    cfg = result["config"]
    sizes = "-".join(str(s) for s in result["sizes"])
    arch = f" ({result['arch']})" if cfg.get("arch") else ""
    print(f"\n{sizes}{arch} on {result['dataset']}, {cfg['epochs']} epochs")
    print(f"  test accuracy      {result['test_accuracy']:.4f}  (ties {result['test_ties']}, "
          f"silent {result['test_silent']}; a tie never counts as correct)")
    print(f"  train accuracy     {result['train_accuracy']:.4f}")
    print(f"  decision time      {result['mean_decision_time']:.1f} of {cfg['t_max']} steps")
    print(f"  hidden spikes      {result['hidden_spikes_per_sample']:.1f} per sample "
          f"(up to the decision)")
    if result.get("spikes_per_layer"):
        print(f"  spikes per layer   {layer_spikes_line(result['spikes_per_layer'])}")
    print(f"  training           {result['train_samples_per_s']:,.0f} samples/s")
    print(f"  inference          {result['eval_samples_per_s']:,.0f} samples/s (event, early exit)")
    print(f"  wall time          {result['train_wall_s']:.1f} s training, {total:.1f} s in all")
    print(f"  saved              {Path(out) / 'model.npz'}, {Path(out) / 'metrics.json'}")
    return result


def layer_spikes_line(per_layer: dict) -> str:
    """``conv16k5 540.1, pool2 250.3, fc128 30.2, fc10 1.0`` (per sample, up to the decision)."""
    return ", ".join(f"{name.split(':', 1)[-1]} {value:,.1f}" for name, value in per_layer.items())


# --- eval --------------------------------------------------------------------------------


def eval_command(run, engine: str = "event", limit_test=None, data_dir=None,
                 as_json: bool = False) -> dict:
    """Evaluate the model of ``run`` (a run folder or its model.npz, or an exported file:
    export npz, nir, C header or hex folder, read by its format's reader) on the test split
    of the dataset it was trained on, with the event engine or the dense reference."""
    # heavy (engine, data/tqdm): loads when the command runs
    from ..bench import warm_up
    from ..runs import check_inputs, load_model
    from ..data import load_events, trained_options
    from ..evaluation import evaluate, layer_spike_times

    fmt = detect_format(run)  # an exported file (issue 18): evaluated as it was written
    net, dataset = exported_model(fmt, run) if fmt else load_model(run)
    test = load_events(dataset, "test", net.t_max, existing_data_dir(data_dir), limit_test,
                       options=trained_options(dataset, net.meta))
    check_inputs(net, test.events, dataset)
    if engine == "event":
        warm_up(net, test.events)  # load/compile the kernel outside the timed evaluation
    ev = evaluate(net, test.events, test.labels, engine)
    arch = getattr(net, "arch", None)  # a layered (conv) model
    result = {**ev.test_metrics(), "engine": engine, "export_format": fmt,
              "n_samples": len(test.labels), "dataset": dataset, "sizes": list(net.sizes),
              "t_max": net.t_max, **({"arch": str(arch)} if arch is not None else {})}
    if arch is not None:  # when each layer works: a second, untimed pass keeping spike times
        result["spike_time_per_layer"] = layer_spike_times(net.binary(), test.events)
    if as_json:
        print(json.dumps(result))
    else:
        sizes = "-".join(str(s) for s in net.sizes) + (f" ({arch})" if arch is not None else "")
        print(f"{sizes} (t_max {net.t_max}) on {len(test.labels)} {dataset} test samples, "
              f"{engine} engine" + (f", {fmt} export read by its reader" if fmt else ""))
        print(f"  test accuracy      {ev.accuracy:.4f}  (ties {ev.ties}, silent {ev.silent})")
        print(f"  decision time      {ev.mean_decision_time:.1f} steps")
        print(f"  hidden spikes      {ev.hidden_spikes_per_sample:.1f} per sample")
        if ev.spikes_per_layer is not None:
            print(f"  spikes per layer   {layer_spikes_line(ev.spikes_per_layer)}")
        if "spike_time_per_layer" in result:
            print("  spike time / layer " + ", ".join(
                f"{key.split(':', 1)[1]} {t['mean']:.1f}" if t["mean"] is not None else f"{key.split(':', 1)[1]} -"
                for key, t in result["spike_time_per_layer"].items())
                + " (mean step of the spikes up to the decision)")
        print(f"  speed              {ev.samples_per_s:,.0f} samples/s")
    return result


# --- bench -------------------------------------------------------------------------------


def bench_command(model=None, samples: int = 10000, dense_samples: int = 256, repeats: int = 5,
                  data_dir=None, as_json: bool = False, out=None) -> dict:
    """Measure inference and training throughput (see :mod:`bstdg.bench`); print the figures
    (or one JSON object) and, with ``out``, write the JSON there too."""
    # heavy (engine, data/tqdm): loads when the command runs
    from ..bench import format_report, run_benchmark
    from ..runs import refuse_run_file

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
    # heavy (engine, data/tqdm): loads when the command runs
    from ..runs import check_inputs, load_model, model_path, refuse_run_file

    spec = export_mod.get_format(format)
    if format == "nir":
        export_mod.nir_format.require_nir()
    if verify_hdl and format != "hex":  # --verify-hdl (issue 18)
        raise BstdgError("--verify-hdl runs the Verilog core on a hex export; use --format hex")
    net, dataset = load_model(run)
    layered = export_mod.is_layered(net)
    if verify_hdl and layered:
        raise BstdgError(f"--verify-hdl: the Verilog core in hardware/ runs fc networks only; this model has "
                         f"conv/pool layers ({net.arch}); verify its hex export with --verify instead")
    target = export_mod.output_path(format, out)
    if target.resolve() == model_path(run).resolve():
        raise BstdgError(f"--out {target} would overwrite the model itself; choose another name")
    refuse_run_file(target)
    bn = net.binary()
    exported = export_mod.exported(bn, export_mod.encoder_for_model(net))
    events, where = None, None
    if random_inputs:
        events = export_mod.random_events(random_inputs, net.sizes[0], net.t_max)
        where = f"{random_inputs:,} random latency-coded inputs"
    elif verify or verify_hdl:  # data first: a missing dataset fails before anything is written
        # heavy (engine, data/tqdm): loads when the command runs
        from ..data import load_events, trained_options

        test = load_events(dataset, "test", net.t_max, existing_data_dir(data_dir), limit_test,
                           options=trained_options(dataset, net.meta))
        check_inputs(net, test.events, dataset)
        events, where = test.events, f"{len(test.labels):,} {dataset} test samples"
    path = export_mod.write(format, exported, out)
    fp = export_mod.export_footprint(exported)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    on_disk = sum(f.stat().st_size for f in files if f.is_file())
    print(f"wrote {path} ({spec.description})")
    print(f"  network            {(str(net.arch) + ' -> ') if layered else ''}"
          f"{'-'.join(map(str, net.sizes))}, t_max {net.t_max}, trained on {dataset}")
    print(f"  weights            {fp['weight_bytes']:,} B ({fp['n_weights']:,} weights, "
          f"1 bit each, rows padded to whole bytes)")
    print(f"  thresholds         {fp['threshold_bytes']:,} B ({fp['n_neurons']:,} x int16"
          f"{', one per neuron' if layered else ''})")
    print(f"  together           {fp['total_bytes']:,} B; as float32 {fp['float32_bytes']:,} B "
          f"({fp['ratio']:.1f}x larger)")
    print(f"  on disk            {on_disk:,} B in {len(files)} file{'s' if len(files) > 1 else ''}")
    result = {"format": format, "path": str(path), "dataset": dataset, "t_max": net.t_max,
              "file_bytes": on_disk, **fp}
    if events is not None:
        check = export_mod.verify_file(format, path, bn, events)
        print(f"  verified           identical predictions, ties and decision times on {where} "
              f"(file re-read by the {format} reader, re-run by the independent numpy "
              f"{'layered ' if layered else ''}simulator"
              f"{' and the NIR-spec interpreter' if format == 'nir' else ''}; "
              f"ties {check['ties']}, silent {check['silent']})")
        if format == "c":
            print("  C reference        " + (
                "compiled and run: identical predictions, ties and decision times"
                if check["c_reference"] else
                "not run (no C compiler, or examples/c/bstdg_infer.c not found)"))
        result["verify"] = check
    if verify_hdl:  # --verify-hdl: the Verilog core in an HDL simulator (bstdg.export.hdl)
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
                    val=None, device: str = "cpu", bptt_settings=None, arch=None) -> dict:
    """Train every method at every T (one fresh process each) and write ``out/compare.json``,
    ``out/compare.md`` and the plots (see :mod:`bstdg.compare`). ``arch``: the hidden layers
    as a spec (``--arch``), instead of ``hidden``."""
    # heavy (engine, data/tqdm): loads when the command runs
    from ..compare import compare, parse_overrides

    methods = methods.split(",") if isinstance(methods, str) else list(methods)
    if isinstance(time_steps, str):
        try:
            time_steps = [int(t) for t in time_steps.split(",")]
        except ValueError:
            raise BstdgError(f"--time-steps: expected numbers like 16,64,256, got {time_steps!r}") from None
    if arch is not None and hidden is not None:
        raise BstdgError("--hidden and --arch both name the hidden layers: give one of them "
                         "(--hidden N is the shorthand of --arch fcN)")
    writable_dir(out)
    hidden = (600,) if hidden is None else hidden
    summary = compare(dataset, methods, time_steps, epochs, limit_train, limit_test, tuple(hidden),
                      out, existing_data_dir(data_dir), seed, parse_overrides(limit_train_for),
                      until_converged=until_converged, max_epochs=max_epochs, patience=patience,
                      budget_s=budget_s, val=val, device=device, bptt_settings=bptt_settings, arch=arch)
    print()
    print("\n".join(compare_table(summary)))
    for line in key_figure_lines(summary):
        print(line)
    print(f"wrote {Path(out) / 'compare.json'} and {Path(out) / 'compare.md'}")
    return summary


def report_command(run, data_dir=None) -> dict:
    """Regenerate the figures and the Markdown report of a run or comparison folder."""
    return report(run, existing_data_dir(data_dir))


# --- sweep (bstdg.harness.sweep; Ray is imported only when the command runs) -----------------


def sweep_command(config=None, out=None, address=None, workers=None, resume: bool = False,
                  force: bool = False, data_dir=None) -> dict:
    """Train every point of the space of ``config`` (a sweep.toml) on every seed as Ray
    Tune trials scored on held-out training samples; writes ``out/sweep.json``,
    ``sweep.md``, ``sweep.png`` and ``best.toml`` and returns the ``sweep.json`` object."""
    # heavy (engine, data/tqdm): loads when the command runs
    from ..harness.sweep import run_sweep

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
