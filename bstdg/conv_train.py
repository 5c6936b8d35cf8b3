"""Training of :class:`~bstdg.convnet.LayeredSNN` networks (conv, pool and fc layers) with the
anytime rule, from the same :class:`~bstdg.recipe.TrainConfig` as fc networks.

:func:`initial_layered` builds the start, :class:`LayeredTrainer` runs epochs of per-sample
SGD (:func:`bstdg.online_conv.anytime_layered_samples`) with the running average and the
hidden margins of the fc recipe. It has the interface of :class:`bstdg.train.Trainer` that
:func:`bstdg.train.fit` and the run folder use (``config``, ``epoch``, :meth:`train_epoch`,
:meth:`model`, :meth:`state` / :meth:`restore`); :func:`bstdg.evaluation.evaluate` scores
either model kind.
"""

from __future__ import annotations

import json
import time

import numpy as np

from . import metrics
from .arch import Architecture
from .convnet import LayeredSNN
from .encoding import SpikeEvents, shift_events
from .engine.conv import routes, weight_shape
from .errors import BstdgError
from .learning import SampleOutputs, probe_times
from .limits import available_memory
from .online_conv import LayeredAnytimeParams, LayeredState, anytime_layered_samples
from .optim import AVERAGE_EVERY, average_decay, moving_average, restore_arrays
from .progress import Progress
from .recipe import TrainConfig


def layered_arch(config: TrainConfig, input_shape, n_classes: int) -> Architecture:
    """``config.arch`` resolved on the data's ``input_shape`` (one-line BstdgError when a
    layer does not fit it, e.g. a conv layer on inputs without an image shape)."""
    if not input_shape:
        raise BstdgError(f"arch {config.arch}: conv and pool layers need image inputs, and this dataset "
                         f"records no image shape (use fc layers: --hidden)")
    return Architecture.parse(config.arch, tuple(input_shape), n_classes)


def initial_layered(config: TrainConfig, train_events: SpikeEvents, input_shape, n_classes: int,
                    meta: dict | None = None) -> LayeredSNN:
    """The start: mixed-sign latent weights, hidden thresholds fitted on up to 512 training
    samples drawn with ``config.seed`` (quantiles ``fire_conv`` and ``fire_fc`` of the peak
    potentials), every output threshold ``theta_out``."""
    rng = np.random.default_rng(config.seed)
    arch = layered_arch(config, input_shape, n_classes)
    idx = np.sort(rng.choice(len(train_events), min(512, len(train_events)), replace=False))
    q = [config.conv_setting("fire_conv") if layer.kind == "conv" else config.conv_setting("fire_fc")
         for layer in arch.layers] + [0.2]
    return LayeredSNN.initialise(arch, config.t_max, train_events.take(idx), rng,
                                 config.conv_setting("threshold_mode"), q, theta_out=config.theta_out, meta=meta)


class LayeredTrainer:
    """Per-sample SGD with the anytime rule on ``net`` (live parameters) and their running
    average; :meth:`model` is the network to evaluate and save. Learning rates: ``lr_w_conv``
    for conv kernels, ``lr_w`` for hidden fc layers, ``lr_w_out`` for the output layer,
    ``lr_theta`` for hidden thresholds (a conv channel's threshold sums the steps of its
    positions), each times ``lr_decay`` per epoch; output thresholds stay ``theta_out``."""

    def __init__(self, net: LayeredSNN, config: TrainConfig):
        if not config.layered or config.recipe != "anytime":
            raise BstdgError("LayeredTrainer trains networks with conv or pool layers (config.arch) with the "
                             "anytime loss")
        self.net, self.config = net, config
        self.rng = np.random.default_rng(config.seed + 1)
        kinds = [layer.kind for layer in net.arch.layers_all]
        lr = {"conv": config.conv_setting("lr_w_conv"), "fc": config.learning_rate("lr_w"), "pool": 0.0}
        self.lr_w = np.array([lr[k] for k in kinds[:-1]] + [config.learning_rate("lr_w_out")])
        self.lr_theta = config.learning_rate("lr_theta")
        self.learn_theta = np.array([k != "pool" and config.rule.learn_hidden_thresholds for k in kinds[:-1]]
                                    + [False])
        self.probes = probe_times(net.t_max, config.rule.probes)
        self.window = np.array([config.conv_setting("window_conv") if k == "conv" else config.rule.window
                                for k in kinds])
        self.perm = routes(net.arch)  # input reordering and pool lookups
        self.w_bin = np.where(net.w >= 0, 1, -1).astype(np.int8)
        self.avg_w, self.avg_theta = net.w.copy(), net.theta.copy()
        self.updates = self.updates_since_average = self.epoch = 0
        if config.shift and len(net.arch.input_shape) != 3:
            raise BstdgError(f"shift {config.shift}: needs an image input shape")

    def averaged(self) -> LayeredSNN:
        """A copy of the running average of the latent parameters (``net`` itself when
        averaging is off)."""
        if not self.config.average:
            return self.net
        return LayeredSNN(self.net.arch, self.net.t_max, self.avg_w.copy(), self.avg_theta.copy(),
                          self.net.threshold_mode, self.net.meta)

    def model(self) -> LayeredSNN:
        """The running average with the hidden margins (``TrainConfig.margins``) added."""
        return self.averaged().with_thresholds(self.config.margins(self.net.arch.layers))

    def update_average(self) -> None:
        if self.config.average and self.updates_since_average:
            beta = average_decay(self.config.average, self.updates) ** self.updates_since_average
            moving_average(self.avg_w, self.net.w, beta)
            moving_average(self.avg_theta, self.net.theta, beta)
        self.updates_since_average = 0

    def train_epoch(self, events: SpikeEvents, labels: np.ndarray, progress: bool | None = None) -> dict:
        """One pass over ``events`` in a random order (each sample first moved by a random
        shift with ``config.shift``); returns the epoch's figures (:meth:`bstdg.train.Trainer.train_epoch`)."""
        net, rule, c = self.net, self.config.rule, self.config
        if c.shift:
            dy, dx = self.rng.integers(-c.shift, c.shift + 1, (2, len(events)))
            events = shift_events(events, net.arch.input_shape, dy, dx)
        order = self.rng.permutation(len(events))
        decay = c.lr_decay ** self.epoch
        theta_int, theta_neuron = net.integer_thresholds(), net.neuron_thresholds()
        n_out = net.arch.n_classes
        state = LayeredState(self.perm, net.w, self.w_bin, net.geom, net.n_off, net.theta, theta_int, theta_neuron,
                             net.theta_map)
        params = LayeredAnytimeParams(net.t_max, self.probes, self.lr_w * decay, self.lr_theta * decay,
                                      self.learn_theta, float(rule.beta), self.window)
        event_arrays = events.arrays()
        correct, loss = 0, 0.0
        start = time.perf_counter()
        with Progress(len(order), f"epoch {self.epoch + 1}", enabled=progress, unit="samples") as bar:
            for k in range(0, len(order), c.batch_size):
                idx = order[k:k + c.batch_size]
                out_times = np.empty((len(idx), n_out), np.int32)
                potential = np.empty((len(idx), n_out), np.int32)
                loss += anytime_layered_samples(event_arrays, idx, labels, state, params,
                                                SampleOutputs(out_times, potential))
                d = metrics.decide(out_times, potential, net.t_max)
                correct += int(metrics.correct(d, labels[idx]).sum())
                self.updates += 1
                self.updates_since_average += 1
                if self.updates_since_average == AVERAGE_EVERY:
                    self.update_average()
                bar.update(len(idx), postfix=f"acc {correct / (k + len(idx)):.3f}")
        self.update_average()
        elapsed = time.perf_counter() - start
        self.epoch += 1
        return {"epoch": self.epoch, "train_accuracy_running": correct / len(order), "loss": loss / len(order),
                "train_seconds": elapsed, "train_samples_per_s": len(order) / elapsed}

    def state(self) -> dict:
        """Everything :meth:`restore` needs to continue bit-identically (as
        :meth:`bstdg.train.Trainer.state`)."""
        return {"w": self.net.w.copy(), "theta": self.net.theta.copy(), "avg_w": self.avg_w.copy(),
                "avg_theta": self.avg_theta.copy(), "epoch": self.epoch, "updates": self.updates,
                "updates_since_average": self.updates_since_average,
                "rng": json.dumps(self.rng.bit_generator.state)}

    def restore(self, state: dict) -> "LayeredTrainer":
        """Continue from :meth:`state` (of a trainer with the same architecture and config)."""
        restore_arrays(state, (("w", self.net.w), ("theta", self.net.theta), ("avg_w", self.avg_w),
                               ("avg_theta", self.avg_theta)))
        self.w_bin[:] = np.where(self.net.w >= 0, 1, -1)
        self.epoch, self.updates = int(state["epoch"]), int(state["updates"])
        self.updates_since_average = int(state["updates_since_average"])
        self.rng.bit_generator.state = json.loads(str(state["rng"]))
        return self


def check_memory_layered(arch: Architecture, n_init: int = 512) -> None:
    """BstdgError, before anything is allocated, when a layered network of ``arch`` cannot be
    trained in the memory available now. Counted: latent weights, their running average and
    signs (9 bytes per weight), the spike times of every neuron of the ``n_init`` samples
    the start is fitted on and the probe potentials and errors of one sample (int32 and
    float64, a few per neuron)."""
    n_w = sum(int(np.prod(weight_shape(arch, l))) for l in range(len(arch.layers_all)))
    n_neurons = sum(arch.sizes[1:])
    need = 9 * n_w + 4 * n_init * n_neurons * 2 + 64 * n_neurons
    available = available_memory()
    if available is not None and need > available:
        raise BstdgError(f"arch {arch} on {'x'.join(map(str, arch.input_shape))} inputs needs about "
                         f"{need / 2**30:.1f} GiB to train, and {available / 2**30:.1f} GiB is available: "
                         f"use fewer channels or a smaller image")
