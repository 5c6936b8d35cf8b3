"""The training loop: mini-batches of timing gradients, Adam on latent weights and
thresholds, evaluation with the prediction rule, checkpoints and ``metrics.json``."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numba
import numpy as np

from . import metrics
from .evaluation import evaluate
from .encoding import SpikeEvents, shift_events
from .errors import BstdgError
from .engine.event import if_network_batch
from .learning import (LearningRule, backprop_timing_error, drop_futile, normalise_rows, output_error,
                       output_loss, probe_times, timing_factor, weight_gradient)
from .network import BinarySNN
from .online import anytime_samples, sgd_samples
from .optim import Adam, binarize, moving_average
from .progress import Progress


OPTIMIZERS = ("sgd", "adam")
DEFAULT_LOSS = {"sgd": "anytime", "adam": "s4nn"}  # when the rule names none


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved into ``metrics.json``).

    ``optimizer``: ``sgd`` (default) updates after every sample with plain SGD
    (:mod:`bstdg.online`); ``adam`` sums the rule over mini-batches of ``batch_size`` and
    steps Adam (:meth:`Trainer.step`). With ``sgd``, ``batch_size`` is only how many samples
    pass between two takes of the running average. The start (:func:`initial_network`)
    and the default learning rates (``DEFAULT_LR``) depend on the recipe: ``anytime``
    (sgd with the anytime loss, the default), ``sgd`` (sgd with the s4nn loss) or ``adam``.
    """

    hidden: tuple = (600,)
    t_max: int = 256
    epochs: int = 10
    optimizer: str = "sgd"
    batch_size: int = 64
    lr_w: float | None = None  # hidden-layer weights (None: the optimizer's DEFAULT_LR)
    lr_w_out: float | None = None  # output-layer weights (None: the optimizer's default)
    lr_theta: float | None = None  # thresholds (None: the optimizer's default; 0: fixed)
    lr_decay: float = 0.9  # multiplied into the learning rates after every epoch
    theta_init: float = 20.0  # recipe sgd: the threshold every neuron starts from
    theta_out: float = 36.0  # recipe anytime: the fixed threshold of every output neuron (how
    # much evidence a decision needs; sets the decision time)
    hidden_margin: int | None = None  # added to every hidden threshold of the network that is
    # evaluated and saved (None: the recipe's default, HIDDEN_MARGIN); see Trainer.model
    average: float = 0.999  # decay of the running average of latent weights and thresholds
    # that is evaluated and saved (0: use the live parameters); see Trainer.averaged and
    # average_decay
    shift: int = 0  # training augmentation: each epoch moves every training image's spikes
    # by a random (dy, dx) in -shift..shift pixels (image datasets; see Trainer.train_epoch)
    seed: int = 0
    rule: LearningRule = field(default_factory=LearningRule)

    def __post_init__(self):
        if self.shift < 0:
            raise ValueError(f"shift must be 0 (off) or a positive number of pixels, got {self.shift}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r} (use {' or '.join(OPTIMIZERS)})")
        if self.optimizer == "sgd" and (self.loss not in ("anytime", "s4nn") or self.rule.no_futile):
            raise ValueError("optimizer sgd supports the anytime and s4nn losses without no_futile "
                             "only (use optimizer adam for the hinge and ce losses)")
        if self.optimizer == "adam" and self.loss == "anytime":
            raise ValueError("the anytime loss trains with optimizer sgd only (use loss s4nn, "
                             "hinge or ce with adam)")

    @property
    def loss(self) -> str:
        """The output loss: ``rule.loss``, or the optimizer's default when the rule names none."""
        return DEFAULT_LOSS[self.optimizer] if self.rule.loss is None else self.rule.loss

    @property
    def recipe(self) -> str:
        """``anytime`` (sgd + anytime loss), ``sgd`` (sgd + s4nn loss) or ``adam``."""
        return "anytime" if self.loss == "anytime" else self.optimizer

    def learning_rate(self, name: str) -> float:
        """``lr_w``, ``lr_w_out`` or ``lr_theta``, the recipe's default where unset."""
        value = getattr(self, name)
        return DEFAULT_LR[self.recipe][name] if value is None else float(value)

    def margin(self) -> int:
        """``hidden_margin``, the recipe's default where unset."""
        return HIDDEN_MARGIN[self.recipe] if self.hidden_margin is None else int(self.hidden_margin)


# Learning rates per recipe, in latent units (weights live in [-1, 1]). anytime: the error
# of a hidden neuron carries the window's 1/window, the output layer's does not. sgd (s4nn):
# a hidden neuron's error is one of ~600 entries of a unit vector, an output's one of ~2, so
# the output layer's rate is ~16x smaller for steps of the same size (docs/learning.md).
DEFAULT_LR = {"anytime": {"lr_w": 0.01, "lr_w_out": 0.002, "lr_theta": 0.01},
              "sgd": {"lr_w": 0.4, "lr_w_out": 0.025, "lr_theta": 0.03},
              "adam": {"lr_w": 0.01, "lr_w_out": 0.01, "lr_theta": 0.01}}


# Hidden margin per recipe, in potential units: the trained hidden thresholds are raised by
# this much in the network that is evaluated and saved, so a hidden neuron fires only with
# that much more evidence than during training. anytime: 3, chosen with theta_out on 5,000
# MNIST training images held out from training (docs/learning.md, "Hidden margin"); the
# other recipes keep the figures they were measured with.
HIDDEN_MARGIN = {"anytime": 3, "sgd": 0, "adam": 0}


AVERAGE_EVERY = 4  # the running average takes in every 4th update (with the decay to the
# 4th power) and the last one of each epoch: the same average over hundreds of updates at a
# quarter of its memory traffic, which was ~12 % of a training step when done after every update


def average_decay(average: float, step: int) -> float:
    """Per-update decay of the running average at update ``step`` (1, 2, ...): ``average``,
    capped by ``(1 + step) / (10 + step)`` so that short runs (small datasets: a few hundred
    updates in all) average over their recent updates instead of staying near the initial
    network."""
    return min(average, (1.0 + step) / (10.0 + step))


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
        self.net = net
        self.config = config
        self.rng = np.random.default_rng(config.seed + 1)
        # (H, W) or (C, H, W) of the inputs, for config.shift; image datasets record it
        self.input_shape = (net.meta.get("encoder") or {}).get("input_shape")
        if config.shift and not self.input_shape:
            raise BstdgError(f"shift {config.shift}: shifting needs image inputs, and "
                             f"{net.meta.get('dataset', 'this dataset')} records no input shape "
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
        times, potential = if_network_batch(batch.times, batch.units, batch.ptr, self.w_bin, net.w_off,
                                            np.asarray(net.sizes, np.int64), net.integer_thresholds(),
                                            net.n_off, t_max, False)
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
        if self.config.loss == "anytime":
            loss = anytime_samples(events.times, events.units, events.ptr, order, labels, net.w, self.w_bin,
                                   net.w_off, sizes, net.theta, theta_int, net.n_off, net.t_max, self.probes,
                                   self.lr_w * decay, self.lr_theta * decay, self.learn_theta,
                                   float(rule.beta), float(rule.window), out_times, potential)
        else:
            sgd_samples(events.times, events.units, events.ptr, order, labels, net.w, self.w_bin, net.w_off,
                        sizes, net.theta, theta_int, net.n_off, net.t_max, self.lr_w * decay,
                        np.float32(self.lr_theta * decay), self.learn_theta, float(rule.margin),
                        rule.normalise, self.g, self.h, self.h_anti, out_times, potential,
                        rule.silent_fire_later)
            loss = output_loss(out_times, labels[order], net.t_max, rule).sum()
        self.count_update()
        return out_times, potential, loss

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


def run_training(config: TrainConfig, dataset: str, out_dir, data_dir=None, limit_train=None,
                 limit_test=None, progress: bool | None = None, log=print,
                 data_options: dict | None = None) -> dict:
    """Train on ``dataset`` (encoded with ``data_options`` over the packaged defaults) from
    scratch, evaluate after every epoch, and write ``out_dir/model.npz`` and
    ``out_dir/metrics.json``. Returns the metrics dict."""
    from .data import load_events

    train = load_events(dataset, "train", config.t_max, data_dir, limit_train, options=data_options)
    test = load_events(dataset, "test", config.t_max, data_dir, limit_test, options=data_options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": dataset, "encoder": train.encoder}  # how to re-encode: eval, export
    net = initial_network(config, train.events, train.n_classes, meta)
    trainer = Trainer(net, config)
    history = []
    wall = 0.0
    test_eval = None if config.epochs else evaluate(net, test.events, test.labels)
    for _ in range(config.epochs):
        info = trainer.train_epoch(train.events, train.labels, progress)
        wall += info["train_seconds"]
        net = trainer.model()
        ev = test_eval = evaluate(net, test.events, test.labels)
        info.update(ev.test_metrics())
        history.append(info)
        log(f"epoch {info['epoch']}/{config.epochs}: test accuracy {ev.accuracy:.4f} "
            f"(ties {ev.ties}, silent {ev.silent}), decision {ev.mean_decision_time:.1f} steps, "
            f"{ev.hidden_spikes_per_sample:.1f} hidden spikes/sample, "
            f"{info['train_samples_per_s']:,.0f} train samples/s")
        net.save(out_dir / "model.npz")
    train_eval = evaluate(net, train.events, train.labels)
    result = {
        "dataset": dataset,
        **test_eval.test_metrics(),
        "train_accuracy": train_eval.accuracy,
        "epochs": config.epochs,
        "train_wall_s": wall,
        "train_samples_per_s": float(np.median([h["train_samples_per_s"] for h in history]))
        if history else 0.0,
        "sizes": list(net.sizes),
        "config": config_dict(config),
        "history": history,
    }
    with open(out_dir / "metrics.json", "w") as f:
        json.dump(result, f, indent=2, default=float)
    return result


def initial_network(config: TrainConfig, train_events: SpikeEvents, n_classes: int,
                    meta: dict | None = None) -> BinarySNN:
    """The network a run starts from, sizes from the data and ``config.hidden``.

    Recipe ``sgd``: every latent weight uniform in ``[0, 1]`` (all binary weights +1, their
    magnitudes random, so signs flip one at a time), every threshold ``config.theta_init``.
    ``adam`` and ``anytime``: mixed-sign weights, thresholds fitted to up to 512 training
    samples drawn with ``config.seed`` (:meth:`BinarySNN.initialise`); ``anytime`` then sets
    every output threshold to ``config.theta_out``."""
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


def config_dict(config: TrainConfig) -> dict:
    """``config`` as plain JSON values, unset learning rates filled in."""
    d = asdict(config)
    d["hidden"] = list(config.hidden)
    for name in DEFAULT_LR[config.recipe]:
        d[name] = config.learning_rate(name)
    d["hidden_margin"] = config.margin()
    d["rule"]["loss"] = config.loss
    return d
