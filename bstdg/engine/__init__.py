"""Simulators for binary fire-once integrate-and-fire networks.

* :mod:`bstdg.engine.event` — the Numba event-driven engine (the product);
* :mod:`bstdg.engine.dense` — a time-stepped numpy reference (test oracle, speed baseline).

Both take a :class:`BinaryNet` and :class:`~bstdg.encoding.SpikeEvents` and return a
:class:`ForwardResult`; they must agree spike for spike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class PackedFc(NamedTuple):
    """A :class:`BinaryNet` as flat arrays, one Numba kernel argument (:meth:`BinaryNet.packed`)."""

    W: np.ndarray  # int8 (W,), +-1 weights, layer l the row-major (sizes[l], sizes[l+1]) block W[w_off[l]:w_off[l+1]]
    w_off: np.ndarray  # int64 (L+1,), start of each layer's block in W
    sizes: np.ndarray  # int64 (L+1,), input width then the neurons of each layer
    theta: np.ndarray  # int32 (N,), integer thresholds (>= 1), layer l at n_off[l]:n_off[l+1]
    n_off: np.ndarray  # int64 (L+1,), start of each layer's neurons in per-sample arrays


@dataclass(frozen=True)
class BinaryNet:
    """The inference view of a network: ±1 weights and integer thresholds.

    ``weights[l]`` is an int8 array ``(n_in, n_out)`` with entries in {-1, +1} (input-major,
    so one input spike adds one contiguous row); ``thresholds[l]`` an int32 array ``(n_out,)``
    of the smallest integer potential that fires (>= 1). Spike times are in time steps,
    ``0..t_max-1``; ``t_max`` means "no spike".
    """

    weights: tuple
    thresholds: tuple
    t_max: int

    def __post_init__(self):
        if len(self.weights) != len(self.thresholds) or not self.weights:
            raise ValueError("need one threshold vector per weight matrix")
        for l, (w, th) in enumerate(zip(self.weights, self.thresholds)):
            if w.ndim != 2 or th.shape != (w.shape[1],):
                raise ValueError(f"layer {l}: weights {w.shape} do not match thresholds {th.shape}")
            if l and w.shape[0] != self.weights[l - 1].shape[1]:
                raise ValueError(f"layer {l}: {w.shape[0]} inputs, previous layer has "
                                 f"{self.weights[l - 1].shape[1]} neurons")

    @property
    def sizes(self) -> tuple:
        """``(n_in, n_1, ..., n_out)``."""
        return (self.weights[0].shape[0],) + tuple(w.shape[1] for w in self.weights)

    def packed(self) -> PackedFc:
        """Flat arrays for the Numba kernels.

        Returns a :class:`PackedFc` ``(W, w_off, sizes, theta, n_off)``: all weight matrices concatenated
        (row-major each, layer ``l`` at ``W[w_off[l]:w_off[l+1]]``), the layer sizes, all
        thresholds concatenated, and neuron offsets (layer ``l`` neurons are
        ``n_off[l]..n_off[l+1]-1`` in per-sample arrays of length ``n_off[-1]``).
        """
        W = np.concatenate([np.ascontiguousarray(w, dtype=np.int8).ravel() for w in self.weights])
        w_off = np.zeros(len(self.weights) + 1, dtype=np.int64)
        np.cumsum([w.size for w in self.weights], out=w_off[1:])
        sizes = np.asarray(self.sizes, dtype=np.int64)
        theta = np.concatenate([np.asarray(t, dtype=np.int32) for t in self.thresholds])
        n_off = np.zeros(len(self.weights) + 1, dtype=np.int64)
        np.cumsum(sizes[1:], out=n_off[1:])
        return PackedFc(W, w_off, sizes, theta, n_off)


@dataclass(frozen=True)
class ForwardResult:
    """Spike times of every non-input neuron, plus what the prediction rule needs.

    ``times`` is int32 ``(B, n_neurons)`` with layer ``l`` in columns ``n_off[l]:n_off[l+1]``
    (``t_max`` = no spike; after an early stop, neurons not reached also read ``t_max``).
    ``decision_potential`` is int32 ``(B, n_out)``: the output potentials at the time of the
    first output spike, or at ``t_max`` when no output fired.
    """

    times: np.ndarray
    decision_potential: np.ndarray
    n_off: np.ndarray

    def layer_times(self, l: int) -> np.ndarray:
        return self.times[:, self.n_off[l]:self.n_off[l + 1]]

    @property
    def output_times(self) -> np.ndarray:
        return self.layer_times(len(self.n_off) - 2)
