"""BPTT baselines: the fire-once IF network of :mod:`bstdg.baselines.bptt_net`, unrolled over
``T`` time steps in torch and trained with a surrogate gradient and a first-spike loss; this
module holds their settings, the loss, the training loop and the evaluation.

Set-up (see ``docs/baselines.md`` for the reasons; the neurons, the fire-once rule, the
surrogate and the unrollings are in :mod:`bstdg.baselines.bptt_net`, the input raster and the
decisions in :mod:`bstdg.baselines.bptt_readout`):

* **loss**: cross-entropy of ``softmax(-t_out / (tau * T))`` on the first-spike times of the
  outputs, computed differentiably from the spike train as ``t = T - sum_t (T - t) s_t``,
  plus a cross-entropy on the output potentials (over thresholds) at the decision step,
  which is what the prediction rule compares when outputs spike at the same step;
* **variants**: ``bptt`` (real weights, thresholds fixed) and ``bptt-binary`` (forward
  with ``sign(w)`` and ``ceil(theta)``, straight-through to latent ``w`` clipped to [-1, 1]
  and latent ``theta >= 1``, BinaryConnect-style);
* **start**: binary: the initial network of the BSTDG trainer's ``adam`` path
  (``bstdg.train.initial_network``: latent weights uniform in [-0.1, 0.1], thresholds fitted
  to the data; the all-excitatory start of per-sample SGD gives BPTT no gradient to
  break its symmetry); real: weights ``N(0, 1/n_in)``, thresholds 1;
* **optimiser**: Adam, mini-batches of 64, one ``numpy`` permutation per epoch as the trainer;
* **evaluation**: the network run over all ``T`` steps, scored with the prediction rule
  (:func:`bstdg.baselines.bptt_readout.forward_result`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from .. import metrics
from ..encoding import SpikeEvents
from ..engine import ForwardResult
from ..evaluation import Evaluation, score
from ..network import BinarySNN
from . import require_torch
from .bptt_net import Net
from .bptt_readout import decision_potentials, dense_input, forward_result, soft_first_times, spike_times

_torch = require_torch  # torch is imported on first use, never at module import


@dataclass(frozen=True)
class BPTTConfig:
    """Everything that defines a BPTT baseline run (saved into ``metrics.json``)."""

    hidden: tuple = (600,)
    t_max: int = 64  # T, the number of unrolled time steps
    epochs: int = 1
    batch_size: int = 64
    binary: bool = False  # sign(w) / ceil(theta) forward with a straight-through estimator
    lr: float = 1e-3  # Adam, weights (real) or latent weights (binary)
    lr_theta: float = 0.0  # Adam, latent thresholds (binary only; 0: fixed)
    lr_decay: float = 1.0  # factor per epoch
    slope: float = 5.0  # fast-sigmoid surrogate: 1 / (1 + slope |u|)^2, u = (V - theta) / theta
    loss: str = "ce"  # "ce" (softmax of -t) or "s4nn" (relative target times, as BSTDG's)
    tau: float = 1 / 16  # softmax temperature of the "ce" loss, as a fraction of T
    margin: float = 0.02  # "s4nn": how far the correct output must lead, as a fraction of T
    potential: float = 0.0  # weight of the cross-entropy on the potentials at the decision step
    seed: int = 0
    unroll: str = "scan"  # "scan" or "loop" (same spikes, same gradients)

    def __post_init__(self):
        if self.loss not in ("ce", "s4nn"):
            raise ValueError(f"unknown loss {self.loss!r} (use 'ce' or 's4nn')")
        if self.unroll not in ("scan", "loop"):
            raise ValueError(f"unknown unroll {self.unroll!r} (use 'scan' or 'loop')")


def threads() -> int:
    """The machine's cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- loss, training and evaluation ---------------------------------------------------------


def loss_function(s_out, labels, config: BPTTConfig, v_out=None, theta=None):
    """The first-spike loss on the differentiable output spike times ``t`` (B, n_out).

    * ``ce``: cross-entropy of ``softmax(-t / (tau * T))``;
    * ``s4nn``: ``1/2 sum_j (t_j - T_j)^2 / T`` with the relative targets of BSTDG's default
      loss (:func:`bstdg.learning.output_error`): ``T_c = min(t_min, T - m)`` for the correct
      output, ``T_j = t_min + m`` for wrong outputs firing before that (others: no error),
      ``m = max(1, margin * T)`` steps.
    """
    t = _torch()
    n_steps = s_out.shape[0]
    times = soft_first_times(s_out)
    labels = t.from_numpy(np.asarray(labels, np.int64)).to(s_out.device)
    extra = 0.0
    if config.potential:
        with t.no_grad():
            step = t.clamp(times.min(1).values.round().long(), max=n_steps - 1)
        v_dec = v_out[step, t.arange(len(labels), device=v_out.device)]
        extra = config.potential * t.nn.functional.cross_entropy(v_dec / theta.detach(), labels)
    if config.loss == "ce":
        return t.nn.functional.cross_entropy(-times / (config.tau * n_steps), labels) + extra
    with t.no_grad():
        m = max(1.0, config.margin * n_steps)
        rows = t.arange(len(labels), device=times.device)
        wrong = t.ones_like(times, dtype=t.bool)
        wrong[rows, labels] = False
        t_min = times.min(1, keepdim=True).values
        target = t.where(wrong & (times < t_min + m), t_min + m, times)
        target[rows, labels] = t.clamp(t_min[:, 0], max=n_steps - m)
        target = t.where(wrong & (times >= n_steps), times, target)
    return 0.5 * ((times - target) ** 2).sum(1).mean() / n_steps + extra



class Trainer:
    """Adam on a :class:`Net`; ``train_epoch`` does one pass in mini-batches."""

    def __init__(self, net: Net, config: BPTTConfig):
        t = _torch()
        self.net, self.config = net, config
        self.rng = np.random.default_rng(config.seed + 1)
        groups = [{"params": net.weights, "lr": config.lr}]
        theta = [th for th in net.thresholds if th.requires_grad]
        if theta:
            groups.append({"params": theta, "lr": config.lr_theta})
        self.opt = t.optim.Adam(groups)
        self.base_lr = [g["lr"] for g in groups]
        self.epoch = 0

    def step(self, batch: SpikeEvents, labels: np.ndarray) -> tuple[float, int]:
        """One mini-batch update; returns (loss, correct decisions before the update)."""
        cfg = self.config
        x = dense_input(batch, cfg.t_max, self.net.device)
        spikes, v_out = self.net.forward(x, cfg.unroll)
        loss = loss_function(spikes[-1], labels, cfg, v_out, self.net.effective()[-1][1])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.net.clip_()
        out_times = spike_times(spikes[-1].detach())
        d = metrics.decide(out_times, decision_potentials(v_out, out_times, self.net.binary), cfg.t_max)
        return float(loss.detach()), int(metrics.correct(d, labels).sum())

    def train_epoch(self, events: SpikeEvents, labels: np.ndarray, log_every: int = 0,
                    log=print) -> dict:
        for g, lr in zip(self.opt.param_groups, self.base_lr):
            g["lr"] = lr * self.config.lr_decay ** self.epoch
        order = self.rng.permutation(len(events))
        bs = self.config.batch_size
        losses, correct, curve = [], 0, []
        start = time.perf_counter()
        for k in range(0, len(order), bs):
            idx = order[k:k + bs]
            loss, c = self.step(events.take(idx), labels[idx])
            losses.append(loss * len(idx))
            correct += c
            seen = k + len(idx)
            curve.append([self.epoch + seen / len(order), loss, c / len(idx)])
            if log_every and (k // bs + 1) % log_every == 0:
                log(f"  {seen}/{len(order)} samples, loss {sum(losses) / seen:.4f}, "
                    f"running accuracy {correct / seen:.4f}, {seen / (time.perf_counter() - start):.0f} samples/s")
        elapsed = time.perf_counter() - start
        self.epoch += 1
        return {"epoch": self.epoch, "loss": sum(losses) / len(order),
                "train_accuracy_running": correct / len(order), "train_seconds": elapsed,
                "train_samples_per_s": len(order) / elapsed, "batches": curve}


def eval_batch_size(t_max: int) -> int:
    """Evaluation batch: about 32k (step, sample) rows of input per forward pass."""
    return max(16, 32768 // t_max)


def evaluate(net: Net, events: SpikeEvents, labels: np.ndarray, t_max: int,
             batch_size: int | None = None) -> tuple[Evaluation, ForwardResult, metrics.Decision]:
    """Time-stepped inference over all ``t_max`` steps (no gradient), scored with the
    prediction rule. Returns the figures, the spike times and the decisions."""
    t = _torch()
    batch_size = batch_size or eval_batch_size(t_max)
    results, decisions = [], []
    start = time.perf_counter()
    with t.no_grad():
        for k in range(0, len(events), batch_size):
            batch = events.take(np.arange(k, min(k + batch_size, len(events))))
            spikes, v_out = net.forward(dense_input(batch, t_max, net.device))
            r, d = forward_result(spikes, v_out, net.binary, t_max)
            results.append(r)
            decisions.append(d)
    elapsed = time.perf_counter() - start
    result = ForwardResult(np.concatenate([r.times for r in results]),
                           np.concatenate([r.decision_potential for r in results]), results[0].n_off)
    decision = metrics.Decision(*(np.concatenate([getattr(d, f) for d in decisions])
                                  for f in ("prediction", "tie", "time")))
    return score(result, decision, labels, t_max, elapsed), result, decision


def config_dict(config: BPTTConfig) -> dict:
    d = asdict(config)
    d["hidden"] = list(config.hidden)
    return d


def default_config(binary: bool, **overrides) -> BPTTConfig:
    """The settings ``bstdg compare`` uses for ``bptt`` (real) and ``bptt-binary``."""
    if binary:
        base = BPTTConfig(binary=True, lr=1e-2, lr_theta=0.1, potential=1.0)
    else:
        base = BPTTConfig(binary=False, lr=3e-3, potential=1.0)
    return replace(base, **overrides)


def init_threads() -> int:
    t = _torch()
    n = threads()
    t.set_num_threads(n)
    return n



# --- export (the ``bstdg compare`` method: :mod:`bstdg.baselines.bptt_method`) ------------------


def to_snn(net: Net, t_max: int, meta: dict):
    """The binary variant as a :class:`~bstdg.network.BinarySNN` (its latent values), so
    that ``bstdg eval`` and the event engine run it."""
    state = net.state()
    return BinarySNN(net.sizes, t_max, np.concatenate([w.ravel() for w in state["weights"]]),
                     np.concatenate(state["thresholds"]), meta)


# What ``--bptt-settings`` may not set: the run decides them.
FIXED = ("hidden", "t_max", "epochs", "seed", "binary")
