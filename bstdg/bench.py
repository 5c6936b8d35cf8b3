"""Throughput measurements: event-driven vs time-stepped inference, and training.

Plain functions on arrays and networks; ``bstdg bench`` and ``benchmarks/bench_inference.py``
only parse options and print. Every inference figure times the same work: a forward pass of
a batch plus the prediction rule (:func:`bstdg.metrics.decide`), reported as samples/s.

* ``event``: the Numba event-driven engine with early exit (stops at the first output spike);
* ``event_full``: the same engine without early exit (every spike computed);
* ``dense``: the time-stepped numpy reference (``t_max`` clock steps, dense matmuls; for
  a conv model :mod:`bstdg.engine.dense_conv`, one im2col product per conv layer per step);
* ``train``: one epoch of the model's trainer (:func:`bstdg.train.make_trainer`: per-sample
  SGD, or one :meth:`~bstdg.train.Trainer.step` per mini-batch with Adam) over the
  benchmark's training samples.

Fc models (:class:`~bstdg.network.BinarySNN`) and layered conv models
(:class:`~bstdg.convnet.LayeredSNN`) are measured the same way; a layered model's figures
add ``arch`` and ``spikes_per_layer``.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import replace

import numba
import numpy as np

from .convnet import LayeredSNN
from .data import load_events, trained_options
from .evaluation import forward_decisions, score
from .network import BinarySNN
from .recipe import TrainConfig
from .runs import check_inputs, load_model, model_path
from .train import initial_network, make_trainer

BENCH_HIDDEN = (600,)  # the untrained benchmark network is 784-600-10
WARMUP_SAMPLES = 64  # the warm-up call (Numba compilation) runs on this many samples


def warm_up(net: BinarySNN | LayeredSNN, events) -> None:
    """Run the event engine once on a few samples, so that Numba's compilation (or loading
    from its cache) is not timed."""
    forward_decisions(net.binary(), first(events, WARMUP_SAMPLES), "event")


def median_rate(fn, n_samples: int, repeats: int) -> tuple[float, list[float], object]:
    """Call ``fn()`` ``repeats`` times; return (samples/s of the median run, all run times in
    s, what the last call returned)."""
    seconds = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        value = fn()
        seconds.append(time.perf_counter() - start)
    return n_samples / statistics.median(seconds), seconds, value


def first(events, n: int):
    """The first ``n`` samples of ``events``."""
    return events.take(np.arange(min(n, len(events))))


def bench_inference(net: BinarySNN | LayeredSNN, events, labels: np.ndarray, dense_samples: int,
                    repeats: int) -> dict:
    """Samples/s of early-exit event, full event and dense inference on ``events`` (dense on
    the first ``dense_samples`` only), and whether the engines agree on those samples."""
    bn = net.binary()
    n = len(events)
    warm_up(net, events)
    event_rate, event_s, (res, dec) = median_rate(
        lambda: forward_decisions(bn, events, "event", True), n, repeats)
    full_rate, full_s, _ = median_rate(lambda: forward_decisions(bn, events, "event", False),
                                    n, repeats)
    dense_events = first(events, dense_samples)
    n_dense = len(dense_events)
    dense_rate, dense_s, (dense_res, dense_dec) = median_rate(
        lambda: forward_decisions(bn, dense_events, "dense"), n_dense, repeats)

    # Agreement on the dense samples: the decisions (class, tie, decision time) of the
    # early-exit run, and every spike time of the full run.
    _, early_dec = forward_decisions(bn, dense_events, "event", True)
    full_res, _ = forward_decisions(bn, dense_events, "event", False, keep_times=True)
    agree = bool(np.array_equal(early_dec.prediction, dense_dec.prediction)
                 and np.array_equal(early_dec.tie, dense_dec.tie)
                 and np.array_equal(early_dec.time, dense_dec.time))
    ev = score(res, dec, labels, net.t_max, statistics.median(event_s), bn)
    layered = {"arch": str(net.arch), "spikes_per_layer": ev.spikes_per_layer} if isinstance(net, LayeredSNN) else {}
    return {
        "samples": n,
        "dense_samples": n_dense,
        "event_samples_per_s": event_rate,
        "event_full_samples_per_s": full_rate,
        "dense_samples_per_s": dense_rate,
        "event_vs_dense_ratio": event_rate / dense_rate,
        "event_full_vs_dense_ratio": full_rate / dense_rate,
        "agree": agree,
        "spikes_agree": bool(np.array_equal(full_res.times, dense_res.times)),
        "accuracy": ev.accuracy,
        "ties": ev.ties,
        "mean_decision_time": ev.mean_decision_time,
        "hidden_spikes_per_sample": ev.hidden_spikes_per_sample,
        "seconds": {"event": event_s, "event_full": full_s, "dense": dense_s},
        **layered,
    }


def bench_training(net: BinarySNN | LayeredSNN, events, labels: np.ndarray, repeats: int,
                   config: TrainConfig | None = None) -> dict:
    """Training samples/s of one epoch over ``events`` (median of ``repeats`` epochs, after a
    one-batch warm-up that compiles the kernels). Trains a copy: ``net`` is left as it is.
    Default ``config``: the default recipe on ``net``'s layers (and threshold mode)."""
    if config is None and isinstance(net, LayeredSNN):
        config = TrainConfig(arch=str(net.arch), t_max=net.t_max, threshold_mode=net.threshold_mode)
    elif config is None:
        config = replace(TrainConfig(), hidden=tuple(net.sizes[1:-1]), t_max=net.t_max)
    trainer = make_trainer(net.copy(), config)
    warm = min(len(events), config.batch_size)
    trainer.train_epoch(first(events, warm), labels[:warm], progress=False)
    rates = [trainer.train_epoch(events, labels, progress=False)["train_samples_per_s"]
             for _ in range(max(repeats, 1))]
    return {"train_samples": len(events), "train_optimizer": config.optimizer,
            "train_batch_size": config.batch_size,
            "train_samples_per_s": float(statistics.median(rates)), "train_rates": rates}


def machine_info() -> dict:
    """What the figures were measured on."""
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f
                              if line.startswith("model name")), "")
    except OSError:
        pass
    return {"processor": platform.processor(), "cpu_model": cpu_model,
            "cpu_count": os.cpu_count(), "threads": numba.get_num_threads(),
            "platform": platform.platform(), "python": sys.version.split()[0],
            "numpy": np.__version__, "numba": numba.__version__}


def fresh_network(train_events, n_classes: int) -> BinarySNN:
    """A freshly initialised 784-600-10 MNIST network, seed 0 (as ``bstdg train`` starts)."""
    config = replace(TrainConfig(), hidden=BENCH_HIDDEN, seed=0)
    return initial_network(config, train_events, n_classes, meta={"dataset": "mnist"})


def run_benchmark(model=None, samples: int = 10000, dense_samples: int = 256, repeats: int = 5,
                  data_dir=None) -> dict:
    """All figures in one run, on the first ``samples`` test (inference) and training
    (training throughput) samples of the model's dataset (MNIST for the fresh network)."""
    if model is None:
        net, dataset, t_max = None, "mnist", TrainConfig().t_max
    else:
        net, dataset = load_model(model)
        t_max = net.t_max
    options = trained_options(dataset, net.meta) if net is not None else None
    train = load_events(dataset, "train", t_max, data_dir, samples, options=options)
    test = load_events(dataset, "test", t_max, data_dir, samples, options=options)
    if net is None:
        net = fresh_network(train.events, test.n_classes)
    check_inputs(net, test.events, dataset)
    result = {"model": None if model is None else str(model_path(model)), "dataset": dataset,
              "sizes": list(net.sizes), "t_max": net.t_max, "repeats": repeats,
              "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    result.update(bench_inference(net, test.events, test.labels, dense_samples, repeats))
    result.update(bench_training(net, train.events, train.labels, repeats))
    result.update(machine_info())
    return result


def format_report(r: dict) -> str:
    """The benchmark figures as a few human-readable lines."""
    net = "-".join(str(s) for s in r["sizes"])
    model = r["model"] or "fresh network, seed 0"
    cpu = r["cpu_model"] or r["processor"] or "unknown CPU"
    load = "n/a" if r["load_average"] is None else f"{r['load_average']:.2f}"
    arch = f" ({r['arch']})" if r.get("arch") else ""
    lines = [
        f"network     {net}{arch}, t_max {r['t_max']} ({model}), {r['dataset']}",
        f"machine     {cpu}, {r['cpu_count']} CPUs, {r['threads']} Numba threads, "
        f"load average {load} at start (other work skews the figures)",
        f"samples     {r['samples']} test ({r['dense_samples']} for dense), "
        f"{r['train_samples']} train; median of {r['repeats']}",
        f"event       {r['event_samples_per_s']:12,.0f} samples/s  (early exit)",
        f"event full  {r['event_full_samples_per_s']:12,.0f} samples/s  (no early exit)",
        f"dense       {r['dense_samples_per_s']:12,.0f} samples/s  (time-stepped reference)",
        f"ratio       {r['event_vs_dense_ratio']:12,.1f} x      (event early exit / dense)",
        f"train       {r['train_samples_per_s']:12,.0f} samples/s  ("
        + ("per-sample SGD)" if r["train_optimizer"] == "sgd" else f"Adam, batch {r['train_batch_size']})"),
        f"agree       {'yes' if r['agree'] else 'NO'} (decisions), "
        f"{'yes' if r['spikes_agree'] else 'NO'} (spike times) on {r['dense_samples']} samples",
        f"accuracy    {r['accuracy']:.4f} (ties {r['ties']}), decision at "
        f"{r['mean_decision_time']:.1f} steps, {r['hidden_spikes_per_sample']:.1f} hidden "
        f"spikes/sample",
    ]
    if r.get("spikes_per_layer"):
        lines.append("per layer   " + ", ".join(f"{k.split(':', 1)[-1]} {v:,.1f}"
                                                for k, v in r["spikes_per_layer"].items()) + " spikes/sample")
    return "\n".join(lines)
