"""``BinarySNN``: latent real weights and thresholds behind a binary fire-once IF network."""

from __future__ import annotations

import json

import numpy as np

from .encoding import SpikeEvents, times_to_events
from .engine import BinaryNet
from .engine.event import if_network_forward
from .errors import BstdgError
from .files import save_npz

FORMAT = "bstdg-model"
FORMAT_VERSION = 1


class BinarySNN:
    """A multi-layer binary single-spike network with trainable latent state.

    ``w`` holds every layer's latent weights in one flat float32 vector (layer ``l`` is
    ``w[w_off[l]:w_off[l+1]]`` reshaped to ``(n_in, n_out)``), clipped to ``[-1, 1]``; the
    forward pass uses ``sign(w)`` (0 counts as +1). ``theta`` holds the latent thresholds
    (>= 1); the forward pass uses ``ceil(theta)``, the smallest integer potential that fires.
    """

    def __init__(self, sizes, t_max: int, w: np.ndarray, theta: np.ndarray, meta: dict | None = None):
        self.sizes = tuple(int(s) for s in sizes)
        self.t_max = int(t_max)
        self.w_off = np.zeros(len(self.sizes), np.int64)
        np.cumsum([a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])], out=self.w_off[1:])
        self.n_off = np.zeros(len(self.sizes), np.int64)
        np.cumsum(self.sizes[1:], out=self.n_off[1:])
        if w.shape != (self.w_off[-1],) or theta.shape != (self.n_off[-1],):
            raise ValueError("flat weights/thresholds do not match the layer sizes")
        self.w = np.ascontiguousarray(w, np.float32)
        self.theta = np.ascontiguousarray(theta, np.float32)
        self.meta = dict(meta or {})

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def weight(self, l: int) -> np.ndarray:
        """Latent weights of layer ``l`` as a ``(n_in, n_out)`` view."""
        return self.w[self.w_off[l]:self.w_off[l + 1]].reshape(self.sizes[l], self.sizes[l + 1])

    def threshold(self, l: int) -> np.ndarray:
        return self.theta[self.n_off[l]:self.n_off[l + 1]]

    def copy(self) -> "BinarySNN":
        return BinarySNN(self.sizes, self.t_max, self.w.copy(), self.theta.copy(), self.meta)

    def with_thresholds(self, hidden_offset: float = 0, theta_out: float | None = None) -> "BinarySNN":
        """A copy with every hidden threshold raised by ``hidden_offset`` and, unless
        ``theta_out`` is None, every output threshold set to it (the hidden margin and the
        output threshold of docs/learning.md)."""
        net = self.copy()
        net.theta[:self.n_off[-2]] += hidden_offset
        if theta_out is not None:
            net.threshold(self.n_layers - 1)[:] = theta_out
        return net

    def integer_thresholds(self) -> np.ndarray:
        return np.maximum(np.ceil(self.theta - 1e-4), 1).astype(np.int32)

    def binary(self) -> BinaryNet:
        """The inference view: int8 ±1 weights and int32 thresholds."""
        th = self.integer_thresholds()
        return BinaryNet(
            tuple(np.where(self.weight(l) >= 0, 1, -1).astype(np.int8) for l in range(self.n_layers)),
            tuple(th[self.n_off[l]:self.n_off[l + 1]] for l in range(self.n_layers)),
            self.t_max)

    # ------------------------------------------------------------------ creation
    @classmethod
    def initialise(cls, sizes, t_max: int, events: SpikeEvents, rng: np.random.Generator,
                   fire_quantiles=None, w_init=(-0.1, 0.1), meta: dict | None = None) -> "BinarySNN":
        """Mixed-sign random latent weights, thresholds fitted to data.

        Latent weights are uniform in ``w_init`` (default ``[-0.1, 0.1]``: balanced ±1
        weights whose sign flips happen independently). Layer by layer, each neuron's threshold is set to
        the ``q``-quantile of its peak potential over the sample ``events``, so it fires on
        about ``1 - q`` of the samples; ``fire_quantiles`` gives ``q`` per layer (default 0.5
        for hidden layers, 0.2 for the output layer).
        """
        sizes = tuple(int(s) for s in sizes)
        n_layers = len(sizes) - 1
        if fire_quantiles is None:
            fire_quantiles = [0.5] * (n_layers - 1) + [0.2]
        n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        w = rng.uniform(w_init[0], w_init[1], n_w).astype(np.float32)
        net = cls(sizes, t_max, w, np.ones(sum(sizes[1:]), np.float32), meta)
        layer_in = events
        for l in range(n_layers):
            b = net.binary().weights[l]
            peak = peak_potential(layer_in, b)
            net.threshold(l)[:] = np.maximum(np.quantile(peak, fire_quantiles[l], axis=0), 1.0)
            if l < n_layers - 1:
                layer = BinaryNet((b,), (net.binary().thresholds[l],), t_max)
                layer_in = times_to_events(if_network_forward(layer, layer_in).times, t_max)
        return net

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict:
        """The arrays of a model file (readable with ``allow_pickle=False``)."""
        return dict(format=np.array(FORMAT), format_version=np.array(FORMAT_VERSION),
                    sizes=np.array(self.sizes, np.int64), t_max=np.array(self.t_max),
                    w=self.w, theta=self.theta, meta=np.array(json.dumps(self.meta)))

    def save(self, path) -> None:
        """Write an ``.npz`` readable with ``allow_pickle=False``, atomically
        (:func:`bstdg.files.atomic_write`)."""
        save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path) -> "BinarySNN":
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != FORMAT:
                    raise BstdgError(f"{path}: not a bstdg model file")
                if int(z["format_version"]) > FORMAT_VERSION:
                    raise BstdgError(f"{path}: model format v{int(z['format_version'])} is newer than this bstdg")
                return cls(z["sizes"], int(z["t_max"]), z["w"], z["theta"], json.loads(str(z["meta"])))
        except (OSError, KeyError, ValueError) as exc:
            raise BstdgError(f"cannot read model {path}: {exc}") from None


def peak_potential(events: SpikeEvents, b: np.ndarray) -> np.ndarray:
    """Largest potential each neuron reaches per sample, ``(B, n_out)``, when nothing fires
    (potential evaluated at the end of every time step)."""
    peaks = np.zeros((len(events), b.shape[1]), np.int32)
    for s in range(len(events)):
        lo, hi = events.ptr[s], events.ptr[s + 1]
        if hi == lo:
            continue
        v = np.cumsum(b[events.units[lo:hi]], axis=0, dtype=np.int32)
        step_end = np.r_[events.times[lo + 1:hi] != events.times[lo:hi - 1], True]
        peaks[s] = np.maximum(v[step_end].max(axis=0), 0)
    return peaks
