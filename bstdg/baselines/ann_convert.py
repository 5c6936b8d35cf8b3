"""``ann-convert``: train a ReLU ANN of the same shape, convert it to a rate-coded IF network
(reset by subtraction), and tune the thresholds to the data to cut the conversion error at
few time steps (in the spirit of the error analysis of "Training much deeper spiking neural
networks with a small number of time-steps", Neural Networks 2022: conversion error =
quantization error + deviation error, both depending on the threshold).

* **ANN**: ``n_in``-hidden-``n_out`` with biases and ReLU, cross-entropy, Adam;
* **conversion** (no tuning, the reference): the same weights and biases; the threshold of
  hidden layer ``l`` is the ``norm_percentile`` (99.99) percentile of its ANN activations on
  calibration samples of the training set (robust data-based normalisation). Spikes carry the
  amplitude ``theta_l`` (:mod:`bstdg.baselines.ratecode`), which is the usual weight
  normalisation ``W_l theta_{l-1} / theta_l`` with thresholds 1;
* **threshold tuning** (per ``T``): layer by layer, first to last, ``theta_l`` is chosen on a
  grid ``g * theta_l^norm`` (``g`` in ``(0, 1]``, ``g = 1`` included) to minimise the measured
  mean squared error between the IF layer's rate and the ANN activation on the calibration
  samples, simulating the IF network (earlier layers already tuned) for ``T`` steps. The
  measured error holds all three parts: clipping (``theta`` too low), quantization (step
  ``theta / T`` too coarse) and deviation (uneven currents from earlier spiking layers).

Both converted networks are evaluated at every ``T``; the input is the analog pixel as a
constant current. Weights are real (not binary). Equations: ``docs/baselines-quant-convert.md``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import ratecode
from .ratecode import RateNet, _torch

NAME = "ann-convert"


@dataclass(frozen=True)
class ANNConvertConfig:
    hidden: tuple = (600,)
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3  # Adam
    v0: float = 0.5  # initial potential, fraction of the threshold, of the converted IF neurons
    norm_percentile: float = 99.99  # untuned threshold: this percentile of the ANN activations
    calib_samples: int = 1000  # training samples used for normalisation and tuning
    grid: int = 50  # tuning candidates g = 1/grid, 2/grid, ..., 1
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.v0 < 1.0:
            raise ValueError(f"v0 must be in [0, 1), got {self.v0}")
        if self.grid < 1 or self.calib_samples < 1:
            raise ValueError("grid and calib_samples must be at least 1")


def train_ann(config: ANNConvertConfig, x: np.ndarray, labels: np.ndarray, log=None,
              n_classes: int = 10, epoch_context=None, on_epoch=None) -> tuple[RateNet, list]:
    """The ReLU ANN (thresholds not set yet: ``thetas`` is filled with ``inf``).
    ``epoch_context``, ``on_epoch``: as for :func:`bstdg.baselines.quant_threshold.train`."""
    t = _torch()
    sizes = (x.shape[1], *config.hidden, n_classes)
    weights, biases = ratecode.init_layers(sizes, config.seed)
    opt = t.optim.Adam(weights + biases, lr=config.lr)
    rng = np.random.default_rng(config.seed + 1)
    xt, yt = t.as_tensor(x), t.as_tensor(labels)
    history = []
    epoch_context = epoch_context or contextlib.nullcontext
    snapshot = lambda: RateNet([w.detach().numpy().copy() for w in weights],  # noqa: E731
                               [b.detach().numpy().copy() for b in biases],
                               [float("inf")] * (len(weights) - 1), config.v0)
    def logits_of(h):
        for l, (w, b) in enumerate(zip(weights, biases)):
            h = h @ w + b
            if l < len(weights) - 1:
                h = t.relu(h)
        return h

    for epoch in range(config.epochs):
        with epoch_context():
            stats = ratecode.train_epoch(opt, logits_of, xt, yt, rng, config.batch_size)
        history.append({"epoch": epoch + 1, **stats, **(on_epoch(snapshot()) if on_epoch else {})})
        if log:
            extra = (f", ANN test accuracy {history[-1]['ann_test_accuracy']:.4f}"
                     if "ann_test_accuracy" in history[-1] else "")
            log(f"  ann epoch {epoch + 1}: loss {stats['loss']:.4f}, running accuracy "
                f"{stats['train_accuracy_running']:.4f}{extra}, {stats['train_seconds']:.1f} s")
    return snapshot(), history


def normalised_thresholds(net: RateNet, x_cal: np.ndarray, percentile: float = 99.99) -> list:
    """Per hidden layer, ``percentile`` of the ANN's ReLU activations on ``x_cal``."""
    _, acts = ratecode.ann_forward(net, x_cal)
    return [max(float(np.percentile(a, percentile)), 1e-6) for a in acts]


def tune_thresholds(net: RateNet, x_cal: np.ndarray, n_steps: int, grid: int = 50,
                    dtype=None) -> tuple[list, list]:
    """Greedy layer-by-layer threshold search at ``n_steps`` (see the module docstring).

    ``net.thetas`` are the reference (normalised) thresholds; candidates are
    ``k / grid * theta_l`` for ``k = 1..grid``. Returns the tuned thresholds and, per layer,
    ``{"theta", "scale", "mse", "mse_reference"}`` (calibration MSE against the ANN, tuned
    and with the reference threshold, both given the tuned earlier layers).
    """
    t = _torch()
    dtype = dtype or t.float32
    _, acts = ratecode.ann_forward(net, x_cal, dtype=dtype)
    scales = np.arange(1, grid + 1) / grid
    thetas, report = [], []
    with t.no_grad():
        x = t.as_tensor(np.asarray(x_cal), dtype=dtype)
        spikes = None
        for l in range(len(net.thetas)):
            w = t.as_tensor(np.asarray(net.weights[l]), dtype=dtype)
            b = t.as_tensor(np.asarray(net.biases[l]), dtype=dtype)
            cur = x @ w + b if l == 0 else thetas[l - 1] * (spikes @ w) + b
            target = t.as_tensor(acts[l], dtype=dtype)
            errors = []
            for g in scales:
                theta = float(g * net.thetas[l])
                s = ratecode.if_spikes(cur, theta, n_steps, net.v0)
                errors.append(float(((theta * s.mean(0) - target) ** 2).mean()))
            k = int(np.argmin(errors))
            theta = float(scales[k] * net.thetas[l])
            thetas.append(theta)
            spikes = ratecode.if_spikes(cur, theta, n_steps, net.v0)
            report.append({"layer": l + 1, "theta": theta, "scale": float(scales[k]),
                           "mse": errors[k], "mse_reference": errors[-1]})
    return thetas, report


def evaluate(net: RateNet, x: np.ndarray, labels: np.ndarray, n_steps: int, ann=None) -> dict:
    """Accuracy of the converted network at ``n_steps``, its per-layer errors (including the
    conversion error against the ANN ``ann = (logits, activations)``), synaptic operations."""
    start = time.perf_counter()
    run = ratecode.snn_forward(net, x, n_steps)
    elapsed = time.perf_counter() - start
    acc, ties = ratecode.accuracy(run.logits, labels)
    ann_logits, ann_acts = ann if ann is not None else ratecode.ann_forward(net, x)
    return {"test_accuracy": acc, "test_ties": ties,
            "output_conversion_mse": float(((run.logits - ann_logits) ** 2).mean()),
            "layers": ratecode.layer_errors(net, run, n_steps, ann_acts),
            **ratecode.rate_synops(x, run, net.sizes, n_steps),
            "eval_samples_per_s": len(x) / elapsed if elapsed > 0 else float("inf")}


def run(steps=(2, 4, 8, 16, 32), *, x_train, y_train, x_test, y_test, config=None,
        log=None, threads: int | None = None) -> dict:
    """Train the ANN once, convert it, evaluate with the normalised and the tuned thresholds
    at every ``T``; one row per ``T``."""
    ratecode.init_threads(threads)
    config = config or ANNConvertConfig()
    start = time.perf_counter()
    ann, history = train_ann(config, x_train, y_train, log)
    wall = time.perf_counter() - start
    rng = np.random.default_rng(config.seed + 2)
    x_cal = x_train[np.sort(rng.permutation(len(x_train))[:config.calib_samples])]
    reference = ann.with_thetas(normalised_thresholds(ann, x_cal, config.norm_percentile))
    ann_test = ratecode.ann_forward(ann, x_test)
    ann_acc, _ = ratecode.accuracy(ann_test[0], y_test)
    if log:
        log(f"ann-convert: ANN test accuracy {ann_acc:.4f}; normalised thresholds "
            f"{', '.join(f'{th:.3f}' for th in reference.thetas)}")
    rows = []
    for n_steps in steps:
        n_steps = int(n_steps)
        plain = evaluate(reference, x_test, y_test, n_steps, ann_test)
        t0 = time.perf_counter()
        thetas, tuning = tune_thresholds(reference, x_cal, n_steps, config.grid)
        tune_s = time.perf_counter() - t0
        tuned = evaluate(reference.with_thetas(thetas), x_test, y_test, n_steps, ann_test)
        rows.append({"t_steps": n_steps, **tuned, "tuning": tuning, "tuning_seconds": tune_s,
                     "untuned": plain})
        if log:
            log(f"ann-convert T={n_steps}: test accuracy {plain['test_accuracy']:.4f} (normalised), "
                f"{tuned['test_accuracy']:.4f} (tuned, thetas "
                f"{', '.join(f'{th:.3f}' for th in thetas)}), synops/sample "
                f"{tuned['synops_per_sample']:.0f}")
    cfg = asdict(config)
    cfg["hidden"] = list(config.hidden)
    return {"method": NAME, "binary_weights": False,
            "input": "analog pixel (uint8/255) as a constant input current at every step",
            "sizes": [int(x_train.shape[1]), *config.hidden, 10], "config": cfg,
            "n_train": int(len(x_train)), "n_test": int(len(x_test)),
            "ann_test_accuracy": ann_acc, "ann_history": history, "ann_train_wall_s": wall,
            "normalised_thetas": reference.thetas, "rows": rows}


def run_method(run) -> dict:
    """``ann-convert`` for :mod:`bstdg.compare` (``run`` is a ``MethodRun``): the ANN trained
    (each epoch timed by ``run.meter``), converted for ``T = run.t_max`` time steps; the main
    figures are those of the tuned thresholds, ``untuned`` holds the normalised ones. After
    each epoch the ANN is converted and tuned to give that epoch's test accuracy."""
    threads = ratecode.init_threads()
    _torch().manual_seed(run.seed)
    x_train, y_train, x_test, y_test = ratecode.compare_data(run)
    cfg = ANNConvertConfig(hidden=tuple(run.hidden), epochs=run.epochs, seed=run.seed)
    n_steps = run.t_max
    rng = np.random.default_rng(cfg.seed + 2)
    x_cal = x_train[np.sort(rng.permutation(len(x_train))[:cfg.calib_samples])]

    def convert(ann):
        reference = ann.with_thetas(normalised_thresholds(ann, x_cal, cfg.norm_percentile))
        start = time.perf_counter()
        thetas, tuning = tune_thresholds(reference, x_cal, n_steps, cfg.grid)
        return reference, reference.with_thetas(thetas), tuning, time.perf_counter() - start

    def on_epoch(ann):
        _, tuned, _, _ = convert(ann)
        ann_acc = ratecode.accuracy(ratecode.ann_forward(ann, x_test)[0], y_test)[0]
        return {**ratecode.test_figures(tuned, x_test, y_test, n_steps)[0], "ann_test_accuracy": ann_acc}

    train_ann(replace(cfg, epochs=1), x_train[:16], y_train[:16])  # warm-up, outside the meter
    ann, history = train_ann(cfg, x_train, y_train, print, epoch_context=run.meter.training,
                             on_epoch=on_epoch)
    reference, tuned, tuning, tune_s = convert(ann)
    ann_test = ratecode.ann_forward(ann, x_test)
    figures, snn = ratecode.test_figures(tuned, x_test, y_test, n_steps)
    plain_figures, plain_snn = ratecode.test_figures(reference, x_test, y_test, n_steps)
    out = Path(run.out)
    ratecode.save_rate_model(out / "model_rate.npz", tuned, n_steps, method=NAME,
                             dataset=run.dataset, normalised_thetas=reference.thetas)
    synops = lambda s, net: {k: v for k, v in ratecode.rate_synops(  # noqa: E731
        x_test, s, net.sizes, n_steps).items() if k != "hidden_spikes_per_sample"}
    cfg_dict = asdict(cfg)
    cfg_dict["hidden"] = list(cfg.hidden)
    return {"dataset": run.dataset, **figures,
            "train_accuracy_running": history[-1]["train_accuracy_running"],
            "epochs": cfg.epochs, "n_train": len(y_train), "n_test": len(y_test),
            "sizes": list(tuned.sizes), "config": cfg_dict, "history": history,
            "ann_test_accuracy": ratecode.accuracy(ann_test[0], y_test)[0],
            "test_accuracy_untuned": plain_figures["test_accuracy"],
            "thetas": tuned.thetas, "normalised_thetas": reference.thetas, "tuning": tuning,
            "tuning_seconds": tune_s,
            "output_conversion_mse": float(((snn.logits - ann_test[0]) ** 2).mean()),
            "layers": ratecode.layer_errors(tuned, snn, n_steps, ann_test[1]),
            **synops(snn, tuned),
            "untuned": {**plain_figures, **synops(plain_snn, reference),
                        "output_conversion_mse": float(((plain_snn.logits - ann_test[0]) ** 2).mean()),
                        "layers": ratecode.layer_errors(reference, plain_snn, n_steps, ann_test[1])},
            "binary_weights": False, "threads": threads,
            "input": "analog pixel (uint8/255) as a constant current at each of the T steps",
            "inference": f"converted IF, reset by subtraction, time-stepped (torch) over all "
                         f"T={n_steps} steps; output = largest integrated potential"}
