"""Adam on flat latent parameters (Numba, in place), the binarisation of weights and the
running average of the latent parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .errors import BstdgError


@numba.njit(cache=True, parallel=True)
def adam_step(param, grad, m, v, lr, beta1, beta2, eps, step, lo, hi):
    """One Adam update of ``param`` in place, then clip to ``[lo, hi]``."""
    c1 = 1.0 - beta1 ** step
    c2 = 1.0 - beta2 ** step
    for k in numba.prange(len(param)):
        g = grad[k]
        m[k] = beta1 * m[k] + (1.0 - beta1) * g
        v[k] = beta2 * v[k] + (1.0 - beta2) * g * g
        p = param[k] - lr * (m[k] / c1) / (np.sqrt(v[k] / c2) + eps)
        param[k] = min(max(p, lo), hi)


@numba.njit(cache=True, parallel=True)
def binarize(latent, out):
    """``out = +1 where latent >= 0 else -1`` (int8), in place."""
    for k in numba.prange(len(latent)):
        out[k] = 1 if latent[k] >= 0 else -1


@numba.njit(cache=True, parallel=True)
def moving_average(avg, x, beta):
    """``avg = beta * avg + (1 - beta) * x``, in place (Polyak/EMA averaging)."""
    for k in numba.prange(len(avg)):
        avg[k] = beta * avg[k] + (1.0 - beta) * x[k]


AVERAGE_EVERY = 4  # the running average takes in every 4th update (with the decay to the
# 4th power) and the last one of each epoch: the same average over hundreds of updates at a
# quarter of its memory traffic, which was ~12 % of a training step when done after every update


def average_decay(average: float, step: int) -> float:
    """Per-update decay of the running average at update ``step`` (1, 2, ...): ``average``,
    capped by ``(1 + step) / (10 + step)`` so that short runs (small datasets: a few hundred
    updates in all) average over their recent updates instead of staying near the initial
    network."""
    return min(average, (1.0 + step) / (10.0 + step))


@dataclass
class Adam:
    """Adam state for one flat float32 parameter vector, clipped to ``[lo, hi]``."""

    size: int
    lr: float
    lo: float = -np.inf
    hi: float = np.inf
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        self.m = np.zeros(self.size, np.float32)
        self.v = np.zeros(self.size, np.float32)
        self.step_count = 0

    def step(self, param: np.ndarray, grad: np.ndarray, lr=None, offsets=None) -> None:
        """One update. ``lr``: a number, or one per segment ``offsets[k]:offsets[k+1]``
        of the vector (e.g. one per layer); None: ``self.lr``."""
        self.step_count += 1
        lr = self.lr if lr is None else lr
        if offsets is None:
            adam_step(param, grad, self.m, self.v, float(lr), self.beta1, self.beta2, self.eps,
                      self.step_count, self.lo, self.hi)
            return
        for k, rate in enumerate(np.broadcast_to(lr, (len(offsets) - 1,))):
            seg = slice(offsets[k], offsets[k + 1])
            adam_step(param[seg], grad[seg], self.m[seg], self.v[seg], float(rate), self.beta1,
                      self.beta2, self.eps, self.step_count, self.lo, self.hi)


def restore_arrays(state: dict, targets) -> None:
    """Copy each checkpoint array ``state[name]`` into ``target`` in place, for the
    ``(name, target)`` pairs of ``targets`` (the trainers' ``restore``); BstdgError when a
    shape differs from the network's."""
    for name, target in targets:
        value = np.asarray(state[name])
        if value.shape != target.shape:
            raise BstdgError(f"checkpoint: {name} has shape {value.shape}, the network {target.shape}")
        target[:] = value

