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
from .methods import Meter, MethodRun, load_splits, maxrss_kib, model_meta  # noqa: F401 (what a method uses)
from .runs import RunFolder, save_test_outputs
from .train import Trainer, fit, initial_network

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


METHODS: dict[str, Method] = {}


def register(name: str, description: str, needs_torch: bool = False):
    """Decorator: ``@register("name", "what it is")`` on a ``(MethodRun) -> dict`` function."""
    def add(fn):
        METHODS[name] = Method(name, fn, description, needs_torch)
        return fn
    return add


def run_trainer(config: MethodRun, train_config: TrainConfig) -> dict:
    """A BSTDG-family method: :func:`bstdg.train.fit` with ``train_config``'s rule, each
    training epoch inside the run's meter."""
    from .baselines.ratecode import bstdg_synops  # synaptic operations, counted as for the baselines
    from .bench import first, warm_up

    tc = replace(train_config, hidden=tuple(config.hidden), t_max=config.t_max,
                 epochs=config.epochs, seed=config.seed)
    train, test = load_splits(config)
    net = initial_network(tc, train.events, train.n_classes, model_meta(config.dataset, train))
    # Load the Numba kernels on a throwaway copy and a few samples, outside the measured epochs.
    Trainer(net.copy(), tc).train_epoch(first(train.events, 8), train.labels[:8], progress=False)
    warm_up(net, first(test.events, 8))
    trainer = Trainer(net, tc)
    history = fit(trainer, train, test, timer=config.meter.training, progress=False,
                  log=lambda line: print("  " + line, flush=True))
    net = trainer.model()
    ev = evaluate(net, test.events, test.labels)
    RunFolder(config.out).save_model(net)
    result, decision = forward_decisions(net.binary(), test.events, "event")
    synops = bstdg_synops(result, decision, test.events, tc.t_max)
    full = if_network_forward(net.binary(), first(test.events, 1))
    save_test_outputs(config.out, replace_times(result, full.times[0]), decision, test.labels,
                      test.events.first_times(0, tc.t_max), tc.t_max, net.sizes)
    return {
        "dataset": config.dataset, **ev.test_metrics(),
        "train_accuracy_running": history[-1]["train_accuracy_running"],
        "epochs": tc.epochs, "n_train": len(train.labels), "n_test": len(test.labels),
        "sizes": list(net.sizes), "config": tc.to_dict(), "history": history,
        "inference": "event-driven engine (Numba), early exit at the first output spike",
        **{k: v for k, v in synops.items() if k != "hidden_spikes_per_sample"},
    }


def replace_times(result, times0):
    """``result`` with sample 0's spike times replaced (by those of a run without early
    exit, for the raster); the histograms use the early-exit figures of the others."""
    times = result.times.copy()
    times[0] = times0
    return ForwardResult(times, result.decision_potential, result.n_off)


@register("bstdg", "BSTDG rule (bstdg.train defaults), event-driven engine")
def run_bstdg(config: MethodRun) -> dict:
    return run_trainer(config, TRAIN_CONFIGS["bstdg"])


@register("s4nn-rule", "ablation: S4NN-style rule (indicator, no anti-causal error, no "
                       "threshold training), same engine")
def run_s4nn_rule(config: MethodRun) -> dict:
    return run_trainer(config, TRAIN_CONFIGS["s4nn-rule"])


@register("bstdg-s4nn", "per-sample SGD with the s4nn loss from an all-excitatory start (the "
                        "default of 2026-12-01), same engine")
def run_bstdg_s4nn(config: MethodRun) -> dict:
    return run_trainer(config, TRAIN_CONFIGS["bstdg-s4nn"])


@register("bstdg-adam", "BSTDG rule with mini-batch Adam from a mixed-sign start (the default "
                        "until 2026-12-01), same engine")
def run_bstdg_adam(config: MethodRun) -> dict:
    return run_trainer(config, TRAIN_CONFIGS["bstdg-adam"])


@register("bptt", "BPTT (torch), real weights, surrogate gradient, first-spike loss", needs_torch=True)
def run_bptt(config: MethodRun) -> dict:
    from .baselines.bptt import run_method
    return run_method(config, binary=False)


@register("bptt-binary", "BPTT (torch), binary weights through a straight-through estimator",
          needs_torch=True)
def run_bptt_binary(config: MethodRun) -> dict:
    from .baselines.bptt import run_method
    return run_method(config, binary=True)


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
        train_cpu_s_per_epoch=float(np.mean(meter.cpu_seconds)),
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


def compare(dataset: str = "mnist", methods=("bstdg", "s4nn-rule", "bptt", "bptt-binary"),
            time_steps=(16, 64, 256), epochs: int = 1, limit_train=None, limit_test=None,
            hidden=(600,), out="runs/compare", data_dir=None, seed: int = 0,
            limit_train_for=None, isolate: bool = True, log=print) -> dict:
    """Train every method at every T, write ``out/compare.json``, ``out/compare.md`` and the
    plots, and return the summary. ``limit_train_for`` ({(method, T or None): N}) gives
    some runs fewer training samples (their time per epoch is then extrapolated per sample
    to the others' count, and flagged)."""
    methods, time_steps = list(methods), [int(t) for t in time_steps]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BstdgError(f"unknown method {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if any(METHODS[m].needs_torch for m in methods):
        from .baselines import require_torch
        require_torch()
    if min(time_steps) < 2:
        raise BstdgError("--time-steps: every T must be at least 2")
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
                               n, limit_test, str(data_dir) if data_dir else None)
            log(f"== {m}, T={t_max}: {epochs} epoch(s), {n or 'all'} training samples -> {config.out}")
            result = run_isolated(config) if isolate else run_one(config)
            rows.append(result)
            log(f"   test accuracy {result['test_accuracy']:.4f}, {result['train_s_per_epoch']:.2f} s/epoch "
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
        "hidden": list(hidden), "seed": seed, "limit_train": limit_train, "limit_test": limit_test,
        "epoch_samples": n_epoch, "memory_method": rows[0]["memory_method"],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY) if isolate else
        os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "total_wall_s": time.perf_counter() - started,
        "descriptions": {m: METHODS[m].description for m in methods},
        "runs": [{k: v for k, v in r.items() if k not in ("history", "config", "run_config")}
                 for r in rows],
    }
    summary["key_figures"] = key_figures(summary["runs"])
    write_json(out / "compare.json", summary)
    from .report import compare_report
    compare_report(out, log=log)
    return summary


def key_figures(runs: list) -> dict:
    """The ratios the issue asks for, per T: BPTT time / BSTDG time, BPTT memory / BSTDG
    memory, and BSTDG accuracy minus the best BPTT variant's."""
    figures = {}
    by = {(r["method"], r["t_max"]): r for r in runs}
    for t_max in sorted({r["t_max"] for r in runs}):
        ref = by.get(("bstdg", t_max))
        bptt = [r for r in runs if r["t_max"] == t_max and r["method"].startswith("bptt")]
        if ref is None or not bptt:
            continue
        best = max(bptt, key=lambda r: r["test_accuracy"])
        figures[str(t_max)] = {
            "time_ratio": {r["method"]: r["epoch_s"] / ref["epoch_s"] for r in bptt},
            "cpu_time_ratio": {r["method"]: r["epoch_cpu_s"] / ref["epoch_cpu_s"] for r in bptt},
            # None: BSTDG's training did not raise the RSS by one page
            "memory_ratio": {r["method"]: r["peak_train_mib"] / ref["peak_train_mib"]
                             if ref["peak_train_mib"] > 0 else None for r in bptt},
            "best_bptt": best["method"],
            "accuracy_gap_points": 100 * (ref["test_accuracy"] - best["test_accuracy"]),
        }
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
