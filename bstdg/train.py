"""Training: :class:`Trainer` (one epoch of per-sample SGD or mini-batch Adam, its state
for checkpoints) and :func:`fit`, the one epoch loop that ``bstdg train``, ``bstdg compare``,
the estimator and the benchmarks share (hooks for timing, checkpoints and logging).

Networks with conv or pool layers (``TrainConfig.arch``) train through the same loop with
:class:`bstdg.conv_train.LayeredTrainer`, which has the trainer interface ``fit`` and the run
folder use (``config``, ``epoch``, ``train_epoch``, ``model``, ``state``/``restore``);
:func:`initial_model` and :func:`make_trainer` choose the kind from the config."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Callable

import numba
import numpy as np

from . import metrics
from .evaluation import evaluate
from .encoding import SpikeEvents, shift_events
from .errors import BstdgError
from .engine import PackedFc
from .engine.event import if_network_batch
from .learning import (SampleOutputs, backprop_timing_error, drop_futile, normalise_rows, output_error,
                       output_loss, probe_times, timing_factor, weight_gradient)
from .conv_train import LayeredTrainer, initial_layered
from .convnet import LayeredSNN
from .network import BinarySNN
from .online import AnytimeParams, FcState, SgdParams, anytime_samples, sgd_samples
from .optim import AVERAGE_EVERY, Adam, average_decay, binarize, moving_average, restore_arrays  # noqa: F401
from .progress import Progress
from .limits import available_memory
from .recipe import TrainConfig


class Trainer:
    """Holds the network, the optimiser state and the timing tables; ``train_epoch`` does one
    pass over the data (per-sample SGD or mini-batch Adam, ``config.optimizer``).

    ``net`` holds the live latent parameters the updates act on. With ``config.average > 0``
    the trainer also keeps their exponential moving average over updates (Polyak
    averaging); :meth:`averaged` returns that network, which is the one to evaluate and
    save: updates flip many signs, so the live network's test accuracy swings by several
    points from one epoch to the next while the average's does not (docs/experiments.md,
    session 4). An *update* is one mini-batch (``adam``) or ``batch_size`` samples (``sgd``).
    """

    def __init__(self, net: BinarySNN, config: TrainConfig):
        if config.layered or not isinstance(net, BinarySNN):
            raise BstdgError(f"Trainer trains fc networks; arch {config.arch_spec} trains with "
                             f"bstdg.conv_train.LayeredTrainer (make_trainer chooses)")
        self.net = net
        self.config = config
        self.rng = np.random.default_rng(config.seed + 1)
        # (H, W) or (C, H, W) of the inputs, for config.shift; image datasets record it
        self.input_shape = (net.meta.get("encoder") or {}).get("input_shape")
        if config.shift and not (self.input_shape and len(self.input_shape) in (2, 3)):
            raise BstdgError(f"shift {config.shift}: shifting needs image inputs, and "
                             f"{net.meta.get('dataset', 'this dataset')} records no image input shape "
                             f"(set shift = 0)")
        hidden_layers = net.n_layers - 1
        self.lr_w = np.array([config.learning_rate("lr_w")] * hidden_layers
                             + [config.learning_rate("lr_w_out")])
        self.lr_theta = config.learning_rate("lr_theta")
        # Thresholds that learn: the hidden layers' if the rule says so; the output layer's
        # except with the anytime loss (its cross-entropy is blind to a common shift of the
        # output potentials, and learning them moved every decision to the first steps).
        self.learn_theta = np.array([config.rule.learn_hidden_thresholds] * hidden_layers
                                    + [config.recipe != "anytime"])
        self.probes = probe_times(net.t_max, config.rule.probes)
        if config.optimizer == "adam":
            self.opt_w = Adam(net.w.size, self.lr_w[0], lo=-1.0, hi=1.0)
            self.opt_theta = Adam(net.theta.size, self.lr_theta, lo=1.0)
            self.grad_w = np.zeros(net.w.size, np.float32)
        self.g = timing_factor(config.rule.tau_w, net.t_max)
        self.h = timing_factor(config.rule.tau_t, net.t_max)
        self.h_anti = config.rule.anti * timing_factor(config.rule.tau_anti, net.t_max)
        self.w_bin = np.empty(net.w.size, np.int8)
        binarize(net.w, self.w_bin)
        self.avg_w = net.w.copy()
        self.avg_theta = net.theta.copy()
        self.updates = 0
        self.updates_since_average = 0
        self.epoch = 0

    def model(self) -> BinarySNN:
        """The network to evaluate, save and export: :meth:`averaged`, with every hidden
        threshold raised by the hidden margin (``TrainConfig.margin``)."""
        net, margin = self.averaged(), self.config.margin()
        return net.with_thresholds(margin) if margin else net

    def shifted(self, events: SpikeEvents) -> SpikeEvents:
        """``events`` with every sample moved by its own random shift (``config.shift``)."""
        s = self.config.shift
        dy, dx = self.rng.integers(-s, s + 1, (2, len(events)))
        return shift_events(events, self.input_shape, dy, dx)

    def averaged(self) -> BinarySNN:
        """The network to evaluate and save: a copy of the running average of the latent
        weights and thresholds (``net`` itself when averaging is off)."""
        if not self.config.average:
            return self.net
        return BinarySNN(self.net.sizes, self.net.t_max, self.avg_w.copy(), self.avg_theta.copy(),
                         self.net.meta)

    def step(self, batch: SpikeEvents, labels: np.ndarray):
        """One mini-batch update (optimizer ``adam``). Returns the batch's output spike times
        and decision potentials as they were before the update (for the running accuracy)."""
        if self.config.optimizer != "adam":
            raise ValueError("Trainer.step is the mini-batch (adam) update; sgd trains with sgd_chunk")
        net, rule, t_max = self.net, self.config.rule, self.net.t_max
        packed = PackedFc(self.w_bin, net.w_off, np.asarray(net.sizes, np.int64), net.integer_thresholds(),
                          net.n_off)
        times, potential = if_network_batch(batch.arrays(), packed, t_max, False)
        n = len(batch)
        grad_theta = np.empty(net.theta.size, np.float32)
        out_times = times[:, net.n_off[-2]:]
        delta = output_error(out_times, labels, t_max, rule)
        for l in reversed(range(net.n_layers)):
            post = times[:, net.n_off[l]:net.n_off[l + 1]]
            if l == 0:
                pre = batch
            else:
                pre_times = times[:, net.n_off[l - 1]:net.n_off[l]]
                pre = hidden_events(pre_times, t_max)
            if rule.no_futile:
                first_pre = first_event_times(batch, t_max) if l == 0 else pre_times.min(axis=1)
                delta = drop_futile(delta, post, first_pre)
            if rule.normalise:
                delta = normalise_rows(delta)
            grad = weight_gradient(pre.times, pre.units, pre.ptr, post, delta, net.sizes[l], self.g,
                                   numba.get_num_threads())
            hidden = l < net.n_layers - 1
            if hidden and rule.center_hidden:
                grad -= grad.mean(axis=0, keepdims=True)
            self.grad_w[net.w_off[l]:net.w_off[l + 1]] = grad.ravel() / n
            grad_theta[net.n_off[l]:net.n_off[l + 1]] = delta.sum(axis=0) / n if self.learn_theta[l] else 0.0
            if l > 0:
                delta = backprop_timing_error(pre_times, post, delta, self.w_bin, net.w_off[l],
                                              net.sizes[l + 1], t_max, self.h, self.h_anti,
                                              rule.silent_fire_later)
        decay = self.config.lr_decay ** self.epoch
        self.opt_w.step(net.w, self.grad_w, self.lr_w * decay, net.w_off)
        self.opt_theta.step(net.theta, grad_theta, self.lr_theta * decay)
        binarize(net.w, self.w_bin)
        self.count_update()
        return out_times, potential

    def sgd_chunk(self, events: SpikeEvents, order: np.ndarray, labels: np.ndarray):
        """Per-sample SGD over the samples ``order`` of ``events`` (:mod:`bstdg.online`),
        counted as one update. Returns their output spike times and decision potentials,
        each as it was before that sample's update, and their summed loss."""
        net, rule = self.net, self.config.rule
        n_out = net.sizes[-1]
        out_times = np.empty((len(order), n_out), np.int32)
        potential = np.empty((len(order), n_out), np.int32)
        theta_int = net.integer_thresholds()
        decay = self.config.lr_decay ** self.epoch
        sizes = np.asarray(net.sizes, np.int64)
        state = FcState(net.w, self.w_bin, net.w_off, sizes, net.theta, theta_int, net.n_off)
        outputs = SampleOutputs(out_times, potential)
        if self.config.loss == "anytime":
            params = AnytimeParams(net.t_max, self.probes, self.lr_w * decay, self.lr_theta * decay,
                                   self.learn_theta, float(rule.beta), float(rule.window))
            loss = anytime_samples(events.arrays(), order, labels, state, params, outputs)
        else:
            params = SgdParams(net.t_max, self.lr_w * decay, np.float32(self.lr_theta * decay), self.learn_theta,
                               float(rule.margin), rule.normalise, self.g, self.h, self.h_anti,
                               rule.silent_fire_later)
            sgd_samples(events.arrays(), order, labels, state, params, outputs)
            loss = output_loss(out_times, labels[order], net.t_max, rule).sum()
        self.count_update()
        return out_times, potential, loss

    def state(self) -> dict:
        """Everything :meth:`restore` needs to continue bit-identically after the epochs done
        so far: the live and averaged parameters, the counters, the random generator's state
        and the Adam moments (arrays and plain JSON values)."""
        state = {"w": self.net.w.copy(), "theta": self.net.theta.copy(), "avg_w": self.avg_w.copy(),
                 "avg_theta": self.avg_theta.copy(), "epoch": self.epoch, "updates": self.updates,
                 "updates_since_average": self.updates_since_average,
                 "rng": json.dumps(self.rng.bit_generator.state)}
        if self.config.optimizer == "adam":
            for name, opt in (("opt_w", self.opt_w), ("opt_theta", self.opt_theta)):
                state.update({f"{name}_m": opt.m.copy(), f"{name}_v": opt.v.copy(),
                              f"{name}_steps": opt.step_count})
        return state

    def restore(self, state: dict) -> "Trainer":
        """Continue from :meth:`state` (of a trainer with the same network sizes and config)."""
        restore_arrays(state, (("w", self.net.w), ("theta", self.net.theta), ("avg_w", self.avg_w),
                               ("avg_theta", self.avg_theta)))
        binarize(self.net.w, self.w_bin)
        self.epoch, self.updates = int(state["epoch"]), int(state["updates"])
        self.updates_since_average = int(state["updates_since_average"])
        self.rng.bit_generator.state = json.loads(str(state["rng"]))
        if self.config.optimizer == "adam":
            for name, opt in (("opt_w", self.opt_w), ("opt_theta", self.opt_theta)):
                opt.m[:], opt.v[:] = state[f"{name}_m"], state[f"{name}_v"]
                opt.step_count = int(state[f"{name}_steps"])
        return self

    def count_update(self) -> None:
        self.updates += 1
        self.updates_since_average += 1
        if self.updates_since_average == AVERAGE_EVERY:
            self.update_average()

    def update_average(self) -> None:
        """Take the live parameters into the running average, with the per-update decay to
        the power of the number of updates since the last time (see :func:`average_decay`).
        Called every ``AVERAGE_EVERY`` updates and at the end of every epoch."""
        if self.config.average and self.updates_since_average:
            beta = average_decay(self.config.average, self.updates) ** self.updates_since_average
            moving_average(self.avg_w, self.net.w, beta)
            moving_average(self.avg_theta, self.net.theta, beta)
        self.updates_since_average = 0

    def train_epoch(self, events: SpikeEvents, labels: np.ndarray, progress: bool | None = None) -> dict:
        """One pass over ``events`` in a random order. With ``config.shift`` > 0, each
        sample's input spikes are first moved by a random ``(dy, dx)`` in ``-shift..shift``
        pixels on the input grid of ``net.meta["encoder"]["input_shape"]`` (new shifts every
        epoch; spikes moved off the image are dropped)."""
        if self.config.shift:
            events = self.shifted(events)
        order = self.rng.permutation(len(events))
        bs = self.config.batch_size
        correct, loss = 0, 0.0
        start = time.perf_counter()
        with Progress(len(order), f"epoch {self.epoch + 1}", enabled=progress, unit="samples") as bar:
            for k in range(0, len(order), bs):
                idx = order[k:k + bs]
                if self.config.optimizer == "sgd":
                    out_times, potential, chunk_loss = self.sgd_chunk(events, idx, labels)
                else:
                    out_times, potential = self.step(events.take(idx), labels[idx])
                    chunk_loss = output_loss(out_times, labels[idx], self.net.t_max, self.config.rule).sum()
                d = metrics.decide(out_times, potential, self.net.t_max)
                correct += metrics.correct(d, labels[idx]).sum()
                loss += chunk_loss
                bar.update(len(idx), postfix=f"acc {correct / (k + len(idx)):.3f}")
        self.update_average()
        elapsed = time.perf_counter() - start
        self.epoch += 1
        # The running accuracy is that of the live parameters, before each batch's update.
        return {"epoch": self.epoch, "train_accuracy_running": correct / len(order),
                "loss": loss / len(order),  # mean output loss, before each batch's update
                "train_seconds": elapsed, "train_samples_per_s": len(order) / elapsed}


def first_event_times(events: SpikeEvents, t_max: int) -> np.ndarray:
    """Time of each sample's first input spike (``t_max`` for a sample without spikes)."""
    first = np.full(len(events), t_max, np.int32)
    has = np.diff(events.ptr) > 0
    first[has] = events.times[events.ptr[:-1][has]]
    return first


def hidden_events(times: np.ndarray, t_max: int) -> SpikeEvents:
    """Spikes of a hidden layer ``(B, n)`` as a CSR list (sample-major, not time-sorted:
    enough for the gradient kernels, which do not depend on event order)."""
    b, i = np.nonzero(times < t_max)
    ptr = np.zeros(len(times) + 1, np.int64)
    np.cumsum(np.bincount(b, minlength=len(times)), out=ptr[1:])
    return SpikeEvents(times[b, i].astype(np.int32), i.astype(np.int32), ptr, times.shape[1])


EpochHook = Callable[["Trainer | LayeredTrainer", "BinarySNN | LayeredSNN", dict], None]


def fit(trainer: Trainer | LayeredTrainer, train, test=None, *, hooks: tuple = (), timer=None,
        progress: bool | None = None, log: Callable | None = print) -> list[dict]:
    """Train ``trainer`` from its current epoch up to ``trainer.config.epochs`` on ``train``
    (an :class:`~bstdg.data.EncodedSplit`), evaluating the saved network
    (:meth:`Trainer.model`) on ``test`` after every epoch. Returns one dict per epoch done
    here (``epoch``, ``train_accuracy_running``, ``loss``, ``train_seconds``,
    ``train_samples_per_s`` and, with ``test``, the keys of
    :meth:`~bstdg.evaluation.Evaluation.test_metrics`). ``trainer``: a :class:`Trainer` or
    a :class:`~bstdg.conv_train.LayeredTrainer` (:func:`make_trainer`).

    ``timer``: a context-manager factory wrapped around each training epoch and nothing else
    (``bstdg compare``'s time and memory meter); ``hooks``: functions
    ``hook(trainer, model, info)`` called after each epoch (checkpoints, early stopping by
    raising :class:`StopTraining`); ``log``: one line per epoch (None: silent).
    """
    config = trainer.config
    history = []
    while trainer.epoch < config.epochs:
        with (timer() if timer is not None else contextlib.nullcontext()):
            info = trainer.train_epoch(train.events, train.labels, progress)
        model = trainer.model()
        if test is not None:
            ev = evaluate(model, test.events, test.labels)
            info.update(ev.test_metrics())
        history.append(info)
        if log is not None:
            tested = (f"test accuracy {ev.accuracy:.4f} (ties {ev.ties}, silent {ev.silent}), "
                      f"decision {ev.mean_decision_time:.1f} steps, "
                      f"{ev.hidden_spikes_per_sample:.1f} hidden spikes/sample, ") if test is not None else ""
            log(f"epoch {info['epoch']}/{config.epochs}: {tested}"
                f"{info['train_samples_per_s']:,.0f} train samples/s")
        try:
            for hook in hooks:
                hook(trainer, model, info)
        except StopTraining:
            break
    return history


class StopTraining(Exception):
    """Raised by a :func:`fit` hook to end training after the current epoch."""


def check_memory(sizes, n_samples: int, optimizer: str = "sgd") -> None:
    """BstdgError, before anything is allocated, when a network of ``sizes`` trained with
    ``optimizer`` and evaluated on batches of ``n_samples`` cannot fit in the memory
    available now. Counted: latent weights, their running average, the Adam moments
    (float32 each), the binary weights (int8), and one spike time per neuron per sample
    of the evaluation (int32, twice: times and a copy)."""
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    per_weight = 4 + 4 + 1 + (12 if optimizer == "adam" else 0)
    need = n_w * per_weight + 8 * n_samples * sum(sizes[1:])
    available = available_memory()
    if available is not None and need > available:
        raise BstdgError(f"a {'-'.join(map(str, sizes))} network needs about {need / 2**30:.1f} GiB "
                         f"to train and evaluate {n_samples:,} samples, and {available / 2**30:.1f} GiB "
                         f"is available: use smaller layers (--hidden) or fewer samples (--limit-*)")


def initial_model(config: TrainConfig, train_events: SpikeEvents, n_classes: int,
                  meta: dict | None = None) -> BinarySNN | LayeredSNN:
    """The network a run starts from: :func:`initial_network` for fc layers, or, for an
    ``arch`` with conv or pool layers, :func:`~bstdg.conv_train.initial_layered` on the input
    shape the encoder recorded (``meta["encoder"]["input_shape"]``)."""
    if config.layered:
        shape = ((meta or {}).get("encoder") or {}).get("input_shape")
        return initial_layered(config, train_events, shape, n_classes, meta)
    return initial_network(config, train_events, n_classes, meta)


def make_trainer(net: BinarySNN | LayeredSNN, config: TrainConfig) -> Trainer | LayeredTrainer:
    """The trainer of ``net``'s kind: :class:`Trainer` or :class:`~bstdg.conv_train.LayeredTrainer`."""
    return LayeredTrainer(net, config) if isinstance(net, LayeredSNN) else Trainer(net, config)


def initial_network(config: TrainConfig, train_events: SpikeEvents, n_classes: int,
                    meta: dict | None = None) -> BinarySNN:
    """The network a run starts from, sizes from the data and ``config.hidden``.

    Recipe ``sgd``: every latent weight uniform in ``[0, 1]`` (all binary weights +1, their
    magnitudes random, so signs flip one at a time), every threshold ``config.theta_init``.
    ``adam`` and ``anytime``: mixed-sign weights, thresholds fitted to up to 512 training
    samples drawn with ``config.seed`` (:meth:`BinarySNN.initialise`); ``anytime`` then sets
    every output threshold to ``config.theta_out``."""
    if config.layered:
        raise BstdgError(f"initial_network builds fc networks; arch {config.arch} starts with initial_model")
    rng = np.random.default_rng(config.seed)
    sizes = (train_events.n_units, *config.hidden, n_classes)
    if config.recipe == "sgd":
        n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        return BinarySNN(sizes, config.t_max, rng.uniform(0.0, 1.0, n_w).astype(np.float32),
                         np.full(sum(sizes[1:]), config.theta_init, np.float32), meta)
    init_idx = np.sort(rng.choice(len(train_events), min(512, len(train_events)), replace=False))
    net = BinarySNN.initialise(sizes, config.t_max, train_events.take(init_idx), rng, meta=meta)
    if config.recipe == "anytime":
        net.threshold(net.n_layers - 1)[:] = config.theta_out
    return net
