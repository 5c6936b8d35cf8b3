"""``quant-threshold``: a multi-step IF network trained directly, whose per-layer threshold is
trainable and acts as the quantization step of its activation (after Castagnetti, Pegatoquet
& Miramond, "Trainable quantization for Speedy Spiking Neural Networks", Front. Neurosci. 2023).

Over ``T`` steps an IF neuron with reset by subtraction, driven by a constant current ``m``,
emits ``clip(floor(T m / theta + v0), 0, T)`` spikes, so its rate ``theta * n / T`` is a
quantized, clipped ReLU with step ``theta / T`` and ceiling ``theta``
(:func:`~bstdg.baselines.ratecode.quantized_relu`). Training therefore:

* runs the real IF network for ``T`` steps (:func:`~bstdg.baselines.ratecode.if_spikes`,
  the spike trains of layer ``l`` drive layer ``l + 1`` step by step) for the forward values;
* back-propagates through the quantized ReLU of each layer's mean current with a
  straight-through ``floor`` (gradient 1 in range for the current; ``n/T - m/theta`` in
  range, 1 above it for the threshold), so ``theta`` moves to balance clipping error
  (too low) against quantization error (too high) at this ``T``;
* minimises the cross-entropy of the output integrators' logits with Adam.

One network is trained per ``T`` (the threshold is tuned for the latency it will run at).
The input is the analog pixel as a constant current (see :mod:`bstdg.baselines.ratecode`).
Weights are real (not binary). Equations: ``docs/baselines-quant-convert.md``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import ratecode
from .ratecode import RateNet, _torch

NAME = "quant-threshold"


@dataclass(frozen=True)
class QuantThresholdConfig:
    hidden: tuple = (600,)
    steps: int = 8  # T, time steps of the rate code
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3  # Adam, weights and biases
    lr_theta: float = 1e-2  # Adam, thresholds
    v0: float = 0.5  # initial potential, fraction of the threshold (0.5: rounding, 0: floor)
    init_percentile: float = 99.0  # theta starts at this percentile of the positive currents
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 0.0 <= self.v0 < 1.0:
            raise ValueError(f"v0 must be in [0, 1), got {self.v0}")


def forward_train(x, weights, biases, thetas, n_steps: int, v0: float):
    """Training forward pass on a batch ``x`` (torch ``(B, n_in)``): the IF network's values,
    the quantized-ReLU straight-through gradients. Returns the logits ``(B, n_out)``."""
    t = _torch()
    rate, spikes = None, None
    for l, (w, b) in enumerate(zip(weights, biases)):
        if l == 0:
            m = x @ w + b
            cur = m.detach()
        else:
            m = rate @ w + b  # the mean of the per-step currents (they are linear in the spikes)
            with t.no_grad():
                cur = thetas[l - 1].detach() * (spikes @ w) + b
        if l == len(weights) - 1:
            return m
        theta = thetas[l]
        spikes = ratecode.if_spikes(cur, float(theta.detach()), n_steps, v0)
        measured = theta.detach() * spikes.mean(0)
        q = ratecode.quantized_relu_ste(m, theta, n_steps, v0)
        rate = q + (measured - q).detach()  # forward: the IF rate; backward: the quantizer's
    raise AssertionError("unreachable")


def initial_thetas(x, weights, biases, percentile: float) -> list:
    """Data-based start: per hidden layer, ``percentile`` of the positive ReLU-network
    currents on ``x`` (a first batch)."""
    t = _torch()
    out = []
    with t.no_grad():
        h = x
        for w, b in zip(weights[:-1], biases[:-1]):
            z = h @ w + b
            pos = z[z > 0]
            out.append(float(t.quantile(pos.float(), percentile / 100)) if pos.numel() else 1.0)
            h = t.relu(z)
    return out


def train(config: QuantThresholdConfig, x: np.ndarray, labels: np.ndarray, log=None,
          n_classes: int = 10, epoch_context=None, on_epoch=None) -> tuple[RateNet, list]:
    """Train on analog inputs ``x`` ``(N, n_in)``; returns the network and per-epoch history.

    ``epoch_context()``: a context manager wrapped around each epoch and nothing else (the
    compare harness's timer); ``on_epoch(net)``: a dict of extra figures (test accuracy) for
    that epoch's history entry, computed outside the context.
    """
    t = _torch()
    sizes = (x.shape[1], *config.hidden, n_classes)
    weights, biases = ratecode.init_layers(sizes, config.seed)
    rng = np.random.default_rng(config.seed + 1)
    first = t.as_tensor(x[rng.permutation(len(x))[:256]])
    thetas = [t.tensor(th, requires_grad=True)
              for th in initial_thetas(first, weights, biases, config.init_percentile)]
    opt = t.optim.Adam([{"params": weights + biases, "lr": config.lr},
                        {"params": thetas, "lr": config.lr_theta}])
    xt, yt = t.as_tensor(x), t.as_tensor(labels)
    history = []
    epoch_context = epoch_context or contextlib.nullcontext
    def clamp_thetas():
        with t.no_grad():
            for th in thetas:
                th.clamp_(min=1e-3)

    for epoch in range(config.epochs):
        with epoch_context():
            stats = ratecode.train_epoch(
                opt, lambda h: forward_train(h, weights, biases, thetas, config.steps, config.v0),
                xt, yt, rng, config.batch_size, after_step=clamp_thetas)
        net = snapshot(weights, biases, thetas, config.v0)
        history.append({"epoch": epoch + 1, **stats, "thetas": list(net.thetas),
                        **(on_epoch(net) if on_epoch else {})})
        if log:
            extra = (f", test accuracy {history[-1]['test_accuracy']:.4f}"
                     if "test_accuracy" in history[-1] else "")
            log(f"  quant-threshold T={config.steps} epoch {epoch + 1}: loss {stats['loss']:.4f}, "
                f"running accuracy {stats['train_accuracy_running']:.4f}{extra}, thetas "
                f"{', '.join(f'{th:.3f}' for th in net.thetas)}, {stats['train_seconds']:.1f} s")
    return snapshot(weights, biases, thetas, config.v0), history


def snapshot(weights, biases, thetas, v0: float) -> RateNet:
    return RateNet([w.detach().numpy().copy() for w in weights],
                   [b.detach().numpy().copy() for b in biases],
                   [float(th.detach()) for th in thetas], v0)


def evaluate(net: RateNet, x: np.ndarray, labels: np.ndarray, n_steps: int) -> dict:
    """Accuracy of the IF network at ``n_steps`` (and of the quantized ANN it was trained as),
    per-layer errors, synaptic operations per sample."""
    start = time.perf_counter()
    run = ratecode.snn_forward(net, x, n_steps)
    elapsed = time.perf_counter() - start
    acc, ties = ratecode.accuracy(run.logits, labels)
    q_logits = quantized_ann_logits(net, x, n_steps)
    q_acc, _ = ratecode.accuracy(q_logits, labels)
    return {"test_accuracy": acc, "test_ties": ties, "quantized_ann_accuracy": q_acc,
            "layers": ratecode.layer_errors(net, run, n_steps),
            **ratecode.rate_synops(x, run, net.sizes, n_steps),
            "eval_samples_per_s": len(x) / elapsed if elapsed > 0 else float("inf")}


def quantized_ann_logits(net: RateNet, x: np.ndarray, n_steps: int) -> np.ndarray:
    """The network evaluated as the quantized ANN (closed form, no time steps)."""
    h = np.asarray(x, np.float64)
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        z = h @ w.astype(np.float64) + b
        if l == len(net.weights) - 1:
            return z
        h = ratecode.quantized_relu(z, net.thetas[l], n_steps, net.v0)


def run(steps=(2, 4, 8, 16, 32), *, x_train, y_train, x_test, y_test, config=None,
        log=None, threads: int | None = None) -> dict:
    """Train and evaluate one network per ``T`` in ``steps``; one row per ``T``."""
    ratecode.init_threads(threads)
    config = config or QuantThresholdConfig()
    rows = []
    for n_steps in steps:
        cfg = replace(config, steps=int(n_steps))
        start = time.perf_counter()
        net, history = train(cfg, x_train, y_train, log)
        wall = time.perf_counter() - start
        rows.append({"t_steps": int(n_steps), "train_wall_s": wall,
                     "train_samples_per_s": len(x_train) * cfg.epochs / wall,
                     **evaluate(net, x_test, y_test, n_steps), "history": history})
        if log:
            r = rows[-1]
            log(f"quant-threshold T={n_steps}: test accuracy {r['test_accuracy']:.4f}, "
                f"synops/sample {r['synops_per_sample']:.0f}")
    cfg = asdict(config)
    cfg.pop("steps")
    cfg["hidden"] = list(config.hidden)
    return {"method": NAME, "binary_weights": False,
            "input": "analog pixel (uint8/255) as a constant input current at every step",
            "sizes": [int(x_train.shape[1]), *config.hidden, 10], "config": cfg,
            "n_train": int(len(x_train)), "n_test": int(len(x_test)), "rows": rows}


def run_method(run) -> dict:
    """``quant-threshold`` for :mod:`bstdg.compare` (``run`` is a ``MethodRun``): one network
    trained for ``T = run.t_max`` time steps of the rate code, each epoch timed by
    ``run.meter``, the IF network evaluated on the test split after each epoch."""
    threads = ratecode.init_threads()
    _torch().manual_seed(run.seed)
    x_train, y_train, x_test, y_test = ratecode.compare_data(run)
    cfg = QuantThresholdConfig(hidden=tuple(run.hidden), steps=run.t_max, epochs=run.epochs,
                               seed=run.seed)
    # One epoch on 16 samples first: torch's first allocations stay out of the measured epochs.
    train(replace(cfg, epochs=1), x_train[:16], y_train[:16])
    on_epoch = lambda net: ratecode.test_figures(net, x_test, y_test, run.t_max)[0]  # noqa: E731
    net, history = train(cfg, x_train, y_train, print, epoch_context=run.meter.training,
                         on_epoch=on_epoch)
    figures, snn = ratecode.test_figures(net, x_test, y_test, run.t_max)
    out = Path(run.out)
    ratecode.save_rate_model(out / "model_rate.npz", net, run.t_max, method=NAME,
                             dataset=run.dataset)
    cfg_dict = asdict(cfg)
    cfg_dict["hidden"] = list(cfg.hidden)
    return {"dataset": run.dataset, **figures,
            "train_accuracy_running": history[-1]["train_accuracy_running"],
            "epochs": cfg.epochs, "n_train": len(y_train), "n_test": len(y_test),
            "sizes": list(net.sizes), "config": cfg_dict, "history": history,
            "quantized_ann_accuracy": ratecode.accuracy(quantized_ann_logits(net, x_test, run.t_max),
                                                        y_test)[0],
            "layers": ratecode.layer_errors(net, snn, run.t_max),
            **{k: v for k, v in ratecode.rate_synops(x_test, snn, net.sizes, run.t_max).items()
               if k != "hidden_spikes_per_sample"},
            "binary_weights": False, "threads": threads,
            "input": "analog pixel (uint8/255) as a constant current at each of the T steps",
            "inference": f"IF with trainable threshold, reset by subtraction, time-stepped (torch) "
                         f"over all T={run.t_max} steps; output = largest integrated potential"}
