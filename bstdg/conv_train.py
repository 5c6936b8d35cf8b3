"""Training and evaluation of :class:`~bstdg.convnet.LayeredSNN` networks with the anytime rule.

:class:`ConvRecipe` holds the hyper-parameters (names as in ``bstdg.train.TrainConfig`` where
they mean the same), :func:`initial_layered` builds the start, :class:`LayeredTrainer` runs
epochs of per-sample SGD (:func:`bstdg.online_conv.anytime_layered_samples`) with the running
average and the hidden margin of the fc recipe, and :func:`evaluate_layered` scores a network
with early exit and the prediction rule of :mod:`bstdg.metrics`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import metrics
from .arch import Architecture
from .convnet import LayeredSNN
from .encoding import SpikeEvents, shift_events
from .engine.conv import layered_forward, routes
from .errors import BstdgError
from .learning import LearningRule, probe_times
from .online_conv import anytime_layered_samples
from .optim import moving_average

AVERAGE_EVERY = 4  # as bstdg.train: the running average takes in every 4th update


@dataclass(frozen=True)
class ConvRecipe:
    """Hyper-parameters of a layered run (learning rates in latent units per sample). The
    defaults of ``fire_conv``, ``lr_w_conv`` and ``theta_out`` are the MNIST choices made on
    held-out training images (BENCHMARKS.md, "Convolutional networks")."""

    arch: str = "conv16k5,pool2,fc128"
    t_max: int = 256
    epochs: int = 3
    threshold_mode: str = "channel"  # conv thresholds: one per output channel, or per neuron
    lr_w_conv: float = 0.01  # conv kernels (a shared weight sums the steps of every position)
    lr_w: float = 0.01  # hidden fc weights
    lr_w_out: float = 0.002  # output weights
    lr_theta: float = 0.01  # hidden thresholds (conv channel thresholds: summed over positions)
    lr_decay: float = 0.9
    theta_out: float = 32.0  # fixed threshold of every output neuron (does not enter training)
    hidden_margin: float = 3.0  # added to hidden fc thresholds of the saved network
    conv_margin: float = 0.0  # added to conv thresholds of the saved network
    window_conv: float = 4.0  # half-width of the potential window of conv neurons (their
    # potentials span a few units; rule.window applies to fc neurons)
    fire_conv: float = 0.8  # initial conv thresholds: quantile of the peak potentials
    fire_fc: float = 0.5  # initial hidden fc thresholds: same
    average: float = 0.999  # running average of the latent parameters (0: off)
    batch_size: int = 64  # samples per update of the running average
    shift: int = 0  # random -shift..shift pixel shifts of the training images, every epoch
    seed: int = 0
    rule: LearningRule = field(default_factory=lambda: LearningRule(loss="anytime"))

    def __post_init__(self):
        if self.threshold_mode not in ("channel", "neuron"):
            raise BstdgError(f"threshold_mode {self.threshold_mode!r}: expected channel or neuron")
        if self.rule.loss not in (None, "anytime"):
            raise BstdgError(f"layered networks train with the anytime loss only, not {self.rule.loss!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def margins(self, arch: Architecture) -> list:
        """Hidden-threshold offsets of the saved network, one per hidden layer."""
        return [self.conv_margin if layer.kind == "conv" else self.hidden_margin if layer.kind == "fc" else 0.0
                for layer in arch.layers]


def initial_layered(recipe: ConvRecipe, train_events: SpikeEvents, input_shape, n_classes: int,
                    meta: dict | None = None) -> LayeredSNN:
    """The start: mixed-sign latent weights, hidden thresholds fitted on up to 512 training
    samples drawn with ``recipe.seed``, every output threshold ``theta_out``."""
    rng = np.random.default_rng(recipe.seed)
    arch = Architecture.parse(recipe.arch, input_shape, n_classes)
    idx = np.sort(rng.choice(len(train_events), min(512, len(train_events)), replace=False))
    q = [recipe.fire_conv if layer.kind == "conv" else recipe.fire_fc for layer in arch.layers] + [0.2]
    return LayeredSNN.initialise(arch, recipe.t_max, train_events.take(idx), rng, recipe.threshold_mode, q,
                                 theta_out=recipe.theta_out, meta=meta)


class LayeredTrainer:
    """Per-sample SGD with the anytime rule on ``net`` (live parameters) and their running
    average; :meth:`model` is the network to evaluate and save."""

    def __init__(self, net: LayeredSNN, recipe: ConvRecipe):
        self.net, self.recipe = net, recipe
        self.rng = np.random.default_rng(recipe.seed + 1)
        kinds = [layer.kind for layer in net.arch.layers_all]
        self.lr_w = np.array([recipe.lr_w_conv if k == "conv" else recipe.lr_w if k == "fc" else 0.0
                              for k in kinds[:-1]] + [recipe.lr_w_out])
        self.learn_theta = np.array([k != "pool" and recipe.rule.learn_hidden_thresholds for k in kinds[:-1]]
                                    + [False])
        self.probes = probe_times(net.t_max, recipe.rule.probes)
        self.window = np.array([recipe.window_conv if k == "conv" else recipe.rule.window for k in kinds])
        self.perm = routes(net.arch)  # input reordering and pool lookups
        self.w_bin = np.where(net.w >= 0, 1, -1).astype(np.int8)
        self.avg_w, self.avg_theta = net.w.copy(), net.theta.copy()
        self.updates = self.since_average = self.epoch = 0
        if recipe.shift and len(net.arch.input_shape) != 3:
            raise BstdgError(f"shift {recipe.shift}: needs an image input shape")

    def averaged(self) -> LayeredSNN:
        if not self.recipe.average:
            return self.net
        return LayeredSNN(self.net.arch, self.net.t_max, self.avg_w.copy(), self.avg_theta.copy(),
                          self.net.threshold_mode, self.net.meta)

    def model(self) -> LayeredSNN:
        """The running average with the hidden margins (``ConvRecipe.margins``) added."""
        return self.averaged().with_thresholds(self.recipe.margins(self.net.arch))

    def _average(self) -> None:
        if self.recipe.average and self.since_average:
            beta = min(self.recipe.average, (1.0 + self.updates) / (10.0 + self.updates)) ** self.since_average
            moving_average(self.avg_w, self.net.w, beta)
            moving_average(self.avg_theta, self.net.theta, beta)
        self.since_average = 0

    def train_epoch(self, events: SpikeEvents, labels: np.ndarray) -> dict:
        """One pass over ``events`` in a random order; returns the epoch's figures."""
        net, rule, r = self.net, self.recipe.rule, self.recipe
        if r.shift:
            dy, dx = self.rng.integers(-r.shift, r.shift + 1, (2, len(events)))
            events = shift_events(events, net.arch.input_shape, dy, dx)
        order = self.rng.permutation(len(events))
        decay = r.lr_decay ** self.epoch
        theta_int, theta_neuron = net.integer_thresholds(), net.neuron_thresholds()
        n_out = net.arch.n_classes
        correct, loss = 0, 0.0
        start, start_cpu = time.perf_counter(), time.process_time()
        for k in range(0, len(order), r.batch_size):
            idx = order[k:k + r.batch_size]
            out_times = np.empty((len(idx), n_out), np.int32)
            potential = np.empty((len(idx), n_out), np.int32)
            loss += anytime_layered_samples(events.times, events.units, events.ptr, idx, labels, self.perm, net.w,
                                            self.w_bin, net.geom, net.n_off, net.theta, theta_int, theta_neuron,
                                            net.theta_map, net.t_max, self.probes, self.lr_w * decay,
                                            r.lr_theta * decay, self.learn_theta, float(rule.beta),
                                            self.window, out_times, potential)
            d = metrics.decide(out_times, potential, net.t_max)
            correct += int(metrics.correct(d, labels[idx]).sum())
            self.updates += 1
            self.since_average += 1
            if self.since_average == AVERAGE_EVERY:
                self._average()
        self._average()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        self.epoch += 1
        return {"epoch": self.epoch, "train_accuracy_running": correct / len(order), "loss": loss / len(order),
                "train_seconds": elapsed, "train_cpu_seconds": cpu, "train_samples_per_s": len(order) / elapsed}


def evaluate_layered(net: LayeredSNN, events: SpikeEvents, labels: np.ndarray, chunk: int = 4096) -> dict:
    """Early-exit inference, scored with :mod:`bstdg.metrics` (``metrics.json`` names), plus
    spikes per sample per layer (all computed spikes, i.e. up to the decision) and
    ``hidden_spikes_per_sample`` (conv and fc layers; pool outputs relay spikes and are
    counted in ``spikes_per_layer`` only)."""
    bn = net.binary()
    start = time.perf_counter()
    parts = [layered_forward(bn, events.take(np.arange(s, min(s + chunk, len(events)))), True, False)
             for s in range(0, len(events), chunk)]
    elapsed = time.perf_counter() - start
    out_times = np.concatenate([p.output_times for p in parts])
    potential = np.concatenate([p.decision_potential for p in parts])
    spikes = np.concatenate([p.spikes for p in parts])
    d = metrics.decide(out_times, potential, net.t_max)
    n = max(len(labels), 1)
    neuron_layers = [l for l, layer in enumerate(net.arch.layers) if layer.kind != "pool"]
    return {"test_accuracy": float(metrics.correct(d, labels).sum() / n), "test_ties": int(d.tie.sum()),
            "test_silent": int((d.time >= net.t_max).sum()), "mean_decision_time": float(d.time.sum() / n),
            "hidden_spikes_per_sample": float(spikes[:, neuron_layers].sum() / n),
            "spikes_per_layer": {f"{l}:{layer}": float(spikes[:, l].mean())
                                 for l, layer in enumerate(net.arch.layers_all)},
            "eval_samples_per_s": n / elapsed if elapsed > 0 else float("inf"), "n_samples": len(labels)}
