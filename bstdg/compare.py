"""``bstdg compare``: train several methods at several T on the same data, side by side.

A *method* is a function ``(MethodRun) -> dict`` registered in :data:`METHODS` with
:func:`register`. It loads its data (same loader, same latency code at ``t_max = T``),
trains, wraps **every training epoch** (and nothing else) in ``config.meter.training()``,
evaluates on the test split with the prediction rule of :mod:`bstdg.metrics`, writes its
folder (``metrics.json``, ``test_outputs.npz`` via :func:`save_test_outputs`, a model) and
returns a dict with at least the keys of :data:`RESULT_KEYS`. The harness adds the timing
and memory figures measured by the meter, so they are measured the same way for all.

Each (method, T) runs in a fresh Python process (``python -m bstdg.compare CONFIG.json``):
peak memory is then that run's own, and no method inherits another's allocator state or
thread pools.

**Peak training memory** is the growth of the process's resident set (RSS) during the
training epochs: the kernel's high-water mark (``VmHWM``) is reset through
``/proc/self/clear_refs`` right before each epoch, read right after it, and the RSS just
before the epoch is subtracted. It counts everything training touches (numpy, Numba, torch's
CPU allocator, the per-batch input tensors) and nothing it does not (interpreter, libraries,
the encoded dataset, compiled kernels, which are loaded by a warm-up on a throwaway copy
and 8 samples before); freed heap memory is handed back (``malloc_trim``) before the RSS is
read, so memory an epoch reuses counts too. Where ``clear_refs`` is unavailable the growth of
``ru_maxrss`` is used (a lower
bound); ``memory_method`` in ``compare.json`` says which.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .data import get_dataset
from .errors import BstdgError
from .evaluation import evaluate, forward_decisions
from .engine import ForwardResult
from .engine.event import if_network_forward
from .files import write_json
from .learning import LearningRule
from .recipe import TrainConfig
from .methods import (EarlyStopping, Meter, MethodRun, load_fit_val_test, load_splits,  # noqa: F401
                      maxrss_kib, model_meta, time_to_accuracy)  # (what a method uses)
from .runs import RunFolder, save_test_outputs
from .train import StopTraining, fit, initial_model, make_trainer

# The BSTDG-family methods: one engine and trainer, different rules
# (benchmarks/mnist_accuracy.py uses the same table).
TRAIN_CONFIGS = {
    "bstdg": TrainConfig(),
    "s4nn-rule": replace(TrainConfig(), lr_theta=0.0,
                         rule=LearningRule(loss="s4nn", anti=0.0, tau_anti=0.0, center_hidden=False,
                                           learn_hidden_thresholds=False)),
    # The default of session 6: per-sample SGD with the s4nn loss from an all-excitatory start.
    "bstdg-s4nn": replace(TrainConfig(), rule=LearningRule(loss="s4nn")),
    # The default of sessions 3-5: mini-batch Adam, mixed-sign start, anti-causal error.
    "bstdg-adam": replace(TrainConfig(), optimizer="adam",
                          rule=LearningRule(loss="s4nn", margin=5.0, anti=1.0,
                                            learn_hidden_thresholds=False, silent_fire_later=True)),
}

# What every method returns (the harness adds the RUN_KEYS).
RESULT_KEYS = ("test_accuracy", "test_ties", "test_silent", "mean_decision_time",
               "hidden_spikes_per_sample", "eval_samples_per_s", "train_accuracy_running",
               "n_train", "n_test", "history")
RUN_KEYS = ("method", "t_max", "train_s_per_epoch", "train_samples_per_s", "peak_train_mib",
            "process_peak_mib", "memory_method", "run_wall_s", "run_dir")


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[MethodRun], dict]
    description: str
    needs_torch: bool = False
    selects: bool = False  # applies the run's EarlyStopping (held-out split, --until-converged)
    conv: bool = False  # trains networks with conv and pool layers (``--arch``)


METHODS: dict[str, Method] = {}


def register(name: str, description: str, needs_torch: bool = False, selects: bool = False,
             conv: bool = False):
    """Decorator: ``@register("name", "what it is")`` on a ``(MethodRun) -> dict`` function.
    ``selects``: the method trains on ``load_fit_val_test`` and applies ``config.stopping()``
    after every epoch (it can run ``--until-converged``); ``conv``: it trains the network of
    ``config.arch`` when that has conv or pool layers."""
    def add(fn):
        METHODS[name] = Method(name, fn, description, needs_torch, selects, conv)
        return fn
    return add


def run_trainer(config: MethodRun, train_config: TrainConfig) -> dict:
    """A BSTDG-family method: :func:`bstdg.train.fit` with ``train_config``'s rule, each
    training epoch inside the run's meter. After each epoch a ``fit`` hook applies the run's
    :class:`~bstdg.methods.EarlyStopping` (held-out accuracy, patience, budget) and keeps the
    selected epoch's network, which is the one evaluated and saved."""
    from .baselines.ratecode import bstdg_synops  # synaptic operations, counted as for the baselines
    from .bench import first, warm_up

    tc = replace(train_config, hidden=tuple(config.hidden), arch=config.arch, t_max=config.t_max,
                 epochs=config.epochs, seed=config.seed)
    train, val, test = load_fit_val_test(config)
    net = initial_model(tc, train.events, train.n_classes, model_meta(config.dataset, train))
    # Load the Numba kernels on a throwaway copy and a few samples, outside the measured epochs.
    make_trainer(net.copy(), tc).train_epoch(first(train.events, 8), train.labels[:8], progress=False)
    warm_up(net, first(test.events, 8))
    trainer = make_trainer(net, tc)
    stopping = config.stopping()
    selected = {}

    def select(trainer, model, info):
        v = evaluate(model, val.events, val.labels).accuracy if val is not None else None
        wall = float(sum(config.meter.seconds))
        info.update(wall_s=wall, val_accuracy=v)
        if v is not None:
            print(f"  held-out accuracy {v:.4f}", flush=True)
        if stopping.update(info["epoch"], wall, v, info["test_accuracy"]):
            selected["net"] = model.copy()
        if stopping.stop:
            raise StopTraining(stopping.stopped_by)

    history = fit(trainer, train, test, hooks=(select,), timer=config.meter.training, progress=False,
                  log=lambda line: print("  " + line, flush=True))
    net = selected["net"]
    ev = evaluate(net, test.events, test.labels)
    RunFolder(config.out).save_model(net)
    if tc.layered:  # spike times kept for the histograms; synaptic operations counted for fc only
        result, decision = forward_decisions(net.binary(), test.events, "event", keep_times=True)
        full = forward_decisions(net.binary(), first(test.events, 1), "event", False, keep_times=True)[0]
        synops = {}
    else:
        result, decision = forward_decisions(net.binary(), test.events, "event")
        synops = bstdg_synops(result, decision, test.events, tc.t_max)
        full = if_network_forward(net.binary(), first(test.events, 1))
    save_test_outputs(config.out, replace_times(result, full.times[0]), decision, test.labels,
                      test.events.first_times(0, tc.t_max), tc.t_max, net.sizes)
    return {
        "dataset": config.dataset, **ev.test_metrics(),
        "train_accuracy_running": history[-1]["train_accuracy_running"],
        "epochs": tc.epochs, "n_train": len(train.labels), "n_test": len(test.labels),
        "n_val": len(val.labels) if val is not None else 0,
        "sizes": list(net.sizes), "arch": tc.arch, "config": tc.to_dict(), "history": history,
        **stopping.summary(), "inference": "event-driven engine (Numba), early exit at the first output spike",
        **{k: v for k, v in synops.items() if k != "hidden_spikes_per_sample"},
    }


def replace_times(result, times0):
    """``result`` with sample 0's spike times replaced (by those of a run without early
    exit, for the raster); the histograms use the early-exit figures of the others."""
    times = result.times.copy()
    times[0] = times0
    return ForwardResult(times, result.decision_potential, result.n_off)


@register("bstdg", "BSTDG rule (bstdg.train defaults), event-driven engine", selects=True, conv=True)
def run_bstdg(config: MethodRun) -> dict:
    return run_trainer(config, TRAIN_CONFIGS["bstdg"])


@register("s4nn-rule", "ablation: S4NN-style rule (indicator, no anti-causal error, no "
                       "threshold training), same engine", selects=True)
def run_s4nn_rule(config: MethodRun) -> dict:
    return run_trainer(config, TRAIN_CONFIGS["s4nn-rule"])


@register("bstdg-s4nn", "per-sample SGD with the s4nn loss from an all-excitatory start (the "
                        "default of 2026-12-01), same engine", selects=True)
def run_bstdg_s4nn(config: MethodRun) -> dict:
    return run_trainer(config, TRAIN_CONFIGS["bstdg-s4nn"])


@register("bstdg-adam", "BSTDG rule with mini-batch Adam from a mixed-sign start (the default "
                        "until 2026-12-01), same engine", selects=True)
def run_bstdg_adam(config: MethodRun) -> dict:
    return run_trainer(config, TRAIN_CONFIGS["bstdg-adam"])


@register("bptt", "BPTT (torch), real weights, surrogate gradient, first-spike loss", needs_torch=True,
          selects=True, conv=True)
def run_bptt(config: MethodRun) -> dict:
    from .baselines.bptt_method import run_method
    return run_method(config, binary=False)


@register("bptt-binary", "BPTT (torch), binary weights through a straight-through estimator",
          needs_torch=True, selects=True, conv=True)
def run_bptt_binary(config: MethodRun) -> dict:
    from .baselines.bptt_method import run_method
    return run_method(config, binary=True)


@register("snntorch", "snnTorch's standard recipe (Leaky neurons, beta=1, ce_rate_loss, Adam, batch 128), "
                      "real weights, same latency code; accuracy by snnTorch's spike-count readout",
          needs_torch=True, selects=True)
def run_snntorch(config: MethodRun) -> dict:
    from .baselines.snntorch_baseline import run_method
    return run_method(config)


# Rate-coded baselines: T is the number of time steps of the rate code (analog pixel as a
# constant input current at each step), not the t_max of a latency code; real weights.
@register("quant-threshold", "rate-coded IF network trained directly with a trainable threshold "
                             "(the quantization step); T = time steps of the rate code; real weights",
          needs_torch=True)
def run_quant_threshold(config: MethodRun) -> dict:
    from .baselines.quant_threshold import run_method
    return run_method(config)


@register("ann-convert", "ReLU ANN converted to IF (reset by subtraction), thresholds tuned per T "
                         "(untuned: test_accuracy_untuned); T = time steps of the rate code; real weights",
          needs_torch=True)
def run_ann_convert(config: MethodRun) -> dict:
    from .baselines.ann_convert import run_method
    return run_method(config)


# --- one run, in this process or a fresh one -----------------------------------------------


def run_one(config: MethodRun) -> dict:
    """Run one (method, T) in this process; returns the method's dict plus the RUN_KEYS."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = METHODS[config.method].run(config)
    meter = config.meter
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        raise BstdgError(f"method {config.method} did not return {', '.join(missing)}")
    if not meter.seconds:
        raise BstdgError(f"method {config.method} did not time its training (config.meter.training())")
    per_epoch = float(np.mean(meter.seconds))
    result.update(
        method=config.method, t_max=config.t_max, train_s_per_epoch=per_epoch,
        train_cpu_s_per_epoch=float(np.mean(meter.cpu_seconds)), train_wall_s=float(sum(meter.seconds)),
        train_samples_per_s=result["n_train"] / per_epoch if per_epoch > 0 else float("inf"),
        peak_train_mib=meter.peak_growth_kib / 1024,
        process_peak_mib=maxrss_kib() / 1024, memory_method=meter.method,
        run_wall_s=time.perf_counter() - start, run_dir=str(out), run_config=config.to_dict())
    RunFolder(out).write_metrics(result)
    return result


# Numba's and torch's OpenMP threads sleep instead of spinning at barriers: on a shared,
# loaded machine spinning threads made both 5-10x slower (measured); with nothing else
# running the difference is small. Every run gets the same setting.
OMP_WAIT_POLICY = "PASSIVE"


def run_isolated(config: MethodRun) -> dict:
    """:func:`run_one` in a fresh Python process (its output passes through), with
    ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "run_config.json"
    write_json(spec, config.to_dict())
    (out / "metrics.json").unlink(missing_ok=True)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY)}
    status = subprocess.run([sys.executable, "-m", "bstdg.compare", str(spec)], env=env).returncode
    if status != 0 or not (out / "metrics.json").exists():
        raise BstdgError(f"{config.method} at T={config.t_max} failed (exit status {status}); "
                         f"its output is above")
    return RunFolder(out).read_metrics()


# --- the comparison -----------------------------------------------------------------------


def parse_overrides(text) -> dict:
    """``bptt@256=2000,bptt-binary=5000`` -> {("bptt", 256): 2000, ("bptt-binary", None): 5000}."""
    overrides = {}
    for part in filter(None, (text or "").split(",")):
        try:
            key, n = part.split("=")
            method, _, t = key.partition("@")
            overrides[(method.strip(), int(t) if t else None)] = int(n)
        except ValueError:
            raise BstdgError(f"--limit-train-for: expected METHOD[@T]=N, got {part!r}") from None
    return overrides


def read_settings(path) -> dict:
    """The hyper-parameters of ``--bptt-settings FILE`` (written by
    ``benchmarks/bptt_lr_sweep.py``): ``{"settings": {METHOD: {T: {name: value}}}}``, T a
    number as text or ``"*"`` (any T). BstdgError (one line) when it is not such a file or
    names an unknown method."""
    from .report_inputs import read_json

    path = Path(path)
    doc = read_json(path)
    settings = doc.get("settings")
    ok = isinstance(settings, dict) and all(
        isinstance(per_t, dict) and all(isinstance(v, dict) and (k == "*" or k.isdigit()) for k, v in per_t.items())
        for per_t in settings.values())
    if not ok:
        raise BstdgError(f"{path}: expected {{\"settings\": {{METHOD: {{T: {{NAME: VALUE}}}}}}}} "
                         f"(see benchmarks/bptt_lr_sweep.py)")
    unknown = [m for m in settings if m not in METHODS]
    if unknown:
        raise BstdgError(f"{path}: unknown method {', '.join(unknown)}; known: {', '.join(METHODS)}")
    return settings


def settings_for(settings: dict | None, method: str, t_max: int) -> dict | None:
    per_t = (settings or {}).get(method) or {}
    return per_t.get(str(t_max), per_t.get("*"))


# --until-converged defaults: at most MAX_EPOCHS epochs, stop after PATIENCE epochs without
# a better held-out accuracy.
MAX_EPOCHS, PATIENCE = 50, 3


def compare(dataset: str = "mnist", methods=("bstdg", "s4nn-rule", "bptt", "bptt-binary"),
            time_steps=(16, 64, 256), epochs: int = 1, limit_train=None, limit_test=None,
            hidden=(600,), out="runs/compare", data_dir=None, seed: int = 0,
            limit_train_for=None, isolate: bool = True, log=print, *, until_converged: bool = False,
            max_epochs: int | None = None, patience: int | None = None, budget_s: float | None = None,
            val: int | None = None, device: str = "cpu", bptt_settings=None, arch=None) -> dict:
    """Train every method at every T, write ``out/compare.json``, ``out/compare.md`` and the
    plots, and return the summary. ``limit_train_for`` ({(method, T or None): N}) gives
    some runs fewer training samples (their time per epoch is then extrapolated per sample
    to the others' count, and flagged).

    ``until_converged``: every run trains on the training set minus a fixed held-out split
    of ``val`` samples (None: :func:`bstdg.methods.default_val_size`) until its held-out
    accuracy has not improved for ``patience`` epochs (default 3), or ``max_epochs``
    (default 50), or its training wall time reaches ``budget_s`` (then it is marked
    ``budgeted``); the reported figures are those of the epoch with the best held-out
    accuracy. Without it ``epochs`` epochs are trained; ``val`` > 0 then still selects the
    epoch on the held-out split (default 0: none, the last epoch). ``device``: where the
    torch methods train (``cpu`` or ``cuda``). ``bptt_settings``: a ``--bptt-settings``
    file (:func:`read_settings`). ``arch``: the hidden layers as a spec (:mod:`bstdg.arch`)
    instead of ``hidden``; fc layers only are the same as ``hidden``; with conv or pool
    layers only the methods registered with ``conv=True`` run (:func:`resolve_arch`)."""
    methods, time_steps = list(methods), [int(t) for t in time_steps]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BstdgError(f"unknown method {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if arch is not None:
        hidden, arch = resolve_arch(arch, methods)
    if until_converged:
        epochs = max_epochs or MAX_EPOCHS
        patience = patience or PATIENCE
    elif max_epochs is not None or patience is not None:
        raise BstdgError("--max-epochs and --patience need --until-converged (else --epochs is trained)")
    else:
        val = val or 0
    if val is not None and val < 0:
        raise BstdgError(f"--val must be 0 or more, got {val}")
    selecting = val != 0 or budget_s is not None
    cannot = [m for m in methods if selecting and not METHODS[m].selects]
    if cannot:
        raise BstdgError(f"{', '.join(cannot)} cannot select on a held-out split or stop early "
                         f"(--until-converged, --val, --budget-s); selecting methods: "
                         f"{', '.join(m for m in METHODS if METHODS[m].selects)}")
    torch_methods = [m for m in methods if METHODS[m].needs_torch]
    if torch_methods:
        from .baselines import require_torch
        require_torch()
        if "snntorch" in torch_methods:
            from .baselines.snntorch_baseline import require_snntorch
            require_snntorch()
    if device != "cpu":
        from .baselines import torch_device
        torch_device(device)  # cuda without a GPU: fail before any work
    if min(time_steps) < 2:
        raise BstdgError("--time-steps: every T must be at least 2")
    settings = read_settings(bptt_settings) if bptt_settings else None
    get_dataset(dataset).locate(data_dir)  # missing data: fail before any work
    overrides = limit_train_for or {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    started = time.perf_counter()
    for t_max in time_steps:
        for m in methods:
            n = overrides.get((m, t_max), overrides.get((m, None), limit_train))
            config = MethodRun(m, dataset, t_max, str(out / f"{m}-T{t_max}"), tuple(hidden), epochs, seed,
                               n, limit_test, str(data_dir) if data_dir else None, val=val,
                               patience=patience, budget_s=budget_s,
                               device=device if METHODS[m].needs_torch else "cpu",
                               settings=settings_for(settings, m, t_max), arch=arch)
            what = (f"until converged (patience {patience}, at most {epochs} epochs"
                    + (f", budget {budget_s:,.0f} s" if budget_s else "") + ")"
                    if until_converged else f"{epochs} epoch(s)")
            log(f"== {m}, T={t_max}: {what}, {n or 'all'} training samples"
                + (f", held out {val if val is not None else 'default'}" if val != 0 else "")
                + (f", settings {config.settings}" if config.settings else "") + f" -> {config.out}")
            result = run_isolated(config) if isolate else run_one(config)
            rows.append(result)
            log(f"   test accuracy {result['test_accuracy']:.4f}"
                + (f" (epoch {result['selected_epoch']} of {result['epochs_trained']}, "
                   f"stopped by {result['stopped_by']})" if result.get("selected_epoch") else "")
                + f", {result['train_s_per_epoch']:.2f} s/epoch "
                f"({result['train_samples_per_s']:,.0f} samples/s), peak training memory "
                f"{result['peak_train_mib']:.1f} MiB")
    n_epoch = max(r["n_train"] for r in rows)
    for r in rows:
        r["epoch_s"] = n_epoch / r["train_samples_per_s"]
        r["epoch_cpu_s"] = r["train_cpu_s_per_epoch"] * n_epoch / r["n_train"]
        r["epoch_extrapolated"] = r["n_train"] != n_epoch
    summary = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": " ".join(sys.argv),
        "dataset": dataset, "methods": methods, "time_steps": time_steps, "epochs": epochs,
        "hidden": list(hidden), "arch": arch, "seed": seed, "limit_train": limit_train, "limit_test": limit_test,
        "until_converged": until_converged, "patience": patience, "budget_s": budget_s,
        "val": val, "device": device, "bptt_settings": str(bptt_settings) if bptt_settings else None,
        "n_val": max(r.get("n_val", 0) for r in rows),
        "epoch_samples": n_epoch, "memory_method": rows[0]["memory_method"],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY) if isolate else
        os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "total_wall_s": time.perf_counter() - started,
        "descriptions": {m: METHODS[m].description for m in methods},
        "runs": [{**{k: v for k, v in r.items() if k not in ("history", "config", "run_config", "batches")},
                  "history": [{k: h.get(k) for k in HISTORY_KEYS} for h in r.get("history", [])]}
                 for r in rows],
    }
    summary["key_figures"] = key_figures(summary["runs"])
    write_json(out / "compare.json", summary)
    from .report import compare_report
    compare_report(out, log=log)
    return summary


def resolve_arch(spec: str, methods) -> tuple[tuple, str | None]:
    """``(hidden, arch)`` of ``--arch spec``: the fc sizes and the spec when it has conv or
    pool layers, else ``(fc sizes, None)`` (the ``--hidden`` networks). One-line BstdgError
    for a bad spec, or when a method cannot train conv layers (listing those that can)."""
    from .arch import parse_layers

    try:
        layers = parse_layers(spec)
    except BstdgError as exc:
        raise BstdgError(f"--arch: {exc}") from None
    hidden = tuple(layer.units for layer in layers if layer.kind == "fc")
    if all(layer.kind == "fc" for layer in layers):
        return hidden, None
    spec = ",".join(str(layer) for layer in layers)
    cannot = [m for m in methods if not METHODS[m].conv]
    if cannot:
        raise BstdgError(f"--arch {spec}: {', '.join(cannot)} cannot train conv or pool layers; methods "
                         f"that can: {', '.join(m for m in METHODS if METHODS[m].conv)}")
    return hidden, spec


# What compare.json keeps of each run's history (the time-to-accuracy curves).
HISTORY_KEYS = ("epoch", "wall_s", "val_accuracy", "test_accuracy")
# The methods trained by backpropagation through time (the "BPTT" side of the ratios).
BPTT_METHODS = ("bptt", "bptt-binary", "snntorch")
ACCURACY_LEVELS = (0.90, 0.95, 0.97)


def key_figures(runs: list) -> dict:
    """Per T: ``time_to_accuracy`` of every method (:func:`bstdg.methods.time_to_accuracy`
    on its history: training wall time to the first epoch with a test accuracy of 90 / 95 /
    97 %, and the held-out-selected accuracy) and, when ``bstdg`` and a BPTT-trained method
    ran, the ratios: BPTT time / BSTDG time, BPTT memory / BSTDG memory, and BSTDG accuracy
    minus the best BPTT-trained method's."""
    figures = {}
    by = {(r["method"], r["t_max"]): r for r in runs}
    for t_max in sorted({r["t_max"] for r in runs}):
        here = [r for r in runs if r["t_max"] == t_max]
        entry = figures[str(t_max)] = {"time_to_accuracy": {
            r["method"]: {**time_to_accuracy(r.get("history") or [], ACCURACY_LEVELS),
                          "best_accuracy": r["test_accuracy"], "selected_epoch": r.get("selected_epoch"),
                          "stopped_by": r.get("stopped_by"), "budgeted": bool(r.get("budgeted"))}
            for r in here}}
        ref = by.get(("bstdg", t_max))
        bptt = [r for r in here if r["method"] in BPTT_METHODS]
        if ref is None or not bptt:
            continue
        best = max(bptt, key=lambda r: r["test_accuracy"])
        entry.update({
            "time_ratio": {r["method"]: r["epoch_s"] / ref["epoch_s"] for r in bptt},
            "cpu_time_ratio": {r["method"]: r["epoch_cpu_s"] / ref["epoch_cpu_s"] for r in bptt},
            # None: BSTDG's training did not raise the RSS by one page
            "memory_ratio": {r["method"]: r["peak_train_mib"] / ref["peak_train_mib"]
                             if ref["peak_train_mib"] > 0 else None for r in bptt},
            "best_bptt": best["method"],
            "accuracy_gap_points": 100 * (ref["test_accuracy"] - best["test_accuracy"]),
        })
    return figures


def machine() -> str:
    cpu = ""
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else ""
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{cores}-core {cpu or platform.processor() or platform.machine()}, {platform.platform()}"


def main(argv=None) -> int:
    """Child process entry: ``python -m bstdg.compare RUN_CONFIG.json``."""
    argv = sys.argv[1:] if argv is None else argv
    config = MethodRun.from_dict(json.loads(Path(argv[0]).read_text()))
    try:
        run_one(config)
    except BstdgError as exc:
        print(f"bstdg: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
