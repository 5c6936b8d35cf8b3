"""``LayeredSNN``: latent weights and thresholds behind a binary fire-once conv/pool/fc network.

The layered counterpart of :class:`bstdg.network.BinarySNN` (which stays the fc-only model):
any :class:`~bstdg.arch.Architecture`, fc-only ones included. ``w`` holds every layer's
latent weights in one flat float32 vector in the engine's layouts (conv ``(C_in, K, K,
C_out)``, fc ``(n_in, n_out)``, pool none), clipped to ``[-1, 1]``; the forward pass uses
``sign(w)`` (0 counts as +1). ``theta`` holds the latent thresholds (>= 1): one per output
channel of a conv layer (``threshold_mode = "channel"``, the default) or one per neuron
(``"neuron"``), one per neuron of an fc layer, none for pool; the forward pass uses
``ceil(theta)``.
"""

from __future__ import annotations

import json

import numba
import numpy as np

from .arch import Architecture
from .encoding import SpikeEvents, times_to_events
from .engine.conv import (CONV, FC, G_KIND, LayeredNet, PackedLayered, _conv_step, _fc_step, geometry,
                          layered_batch, max_positions, neuron_offsets, weight_shape)
from .errors import BstdgError, first_line
from .files import save_npz
from .npzio import read_arrays

FORMAT = "bstdg-layered-model"
FORMAT_VERSION = 1
THRESHOLD_MODES = ("channel", "neuron")


class LayeredSNN:
    """A layered binary single-spike network with trainable latent state (module docstring).
    ``meta`` is free JSON (``dataset``, ``encoder``: how the inputs were made), as in
    :class:`~bstdg.network.BinarySNN`."""

    def __init__(self, arch: Architecture, t_max: int, w: np.ndarray, theta: np.ndarray,
                 threshold_mode: str = "channel", meta: dict | None = None):
        if threshold_mode not in THRESHOLD_MODES:
            raise BstdgError(f"threshold mode {threshold_mode!r}: expected channel or neuron")
        self.arch, self.t_max, self.threshold_mode = arch, int(t_max), threshold_mode
        self.geom = geometry(arch)
        self.n_off = neuron_offsets(arch)
        n_layers = len(arch.layers_all)
        self.w_off = np.zeros(n_layers + 1, np.int64)
        np.cumsum([int(np.prod(weight_shape(arch, l))) for l in range(n_layers)], out=self.w_off[1:])
        self.t_off = np.zeros(n_layers + 1, np.int64)
        np.cumsum([self._n_thresholds(l) for l in range(n_layers)], out=self.t_off[1:])
        if w.shape != (self.w_off[-1],) or theta.shape != (self.t_off[-1],):
            raise ValueError(f"flat weights {w.shape} / thresholds {theta.shape} do not match {arch} "
                             f"({self.w_off[-1]}, {self.t_off[-1]})")
        self.w = np.ascontiguousarray(w, np.float32)
        self.theta = np.ascontiguousarray(theta, np.float32)
        self.meta = dict(meta or {})
        self.theta_map = self._theta_map()

    def _n_thresholds(self, l: int) -> int:
        layer = self.arch.layers_all[l]
        if layer.kind == "pool":
            return 0
        if layer.kind == "conv" and self.threshold_mode == "channel":
            return layer.channels
        return self.arch.sizes[l + 1]

    def _theta_map(self) -> np.ndarray:
        """int64 ``(n_neurons,)``: the latent threshold of each neuron (-1 for pool outputs)."""
        tmap = np.full(self.n_off[-1], -1, np.int64)
        for l, layer in enumerate(self.arch.layers_all):
            seg = slice(self.n_off[l], self.n_off[l + 1])
            n = self.n_off[l + 1] - self.n_off[l]
            if layer.kind == "conv" and self.threshold_mode == "channel":
                tmap[seg] = self.t_off[l] + np.arange(n) % layer.channels  # channel-last
            elif layer.kind != "pool":
                tmap[seg] = self.t_off[l] + np.arange(n)
        return tmap

    @property
    def n_layers(self) -> int:
        return len(self.arch.layers_all)

    @property
    def sizes(self) -> tuple:
        return self.arch.sizes

    def weight(self, l: int) -> np.ndarray:
        """Latent weights of layer ``l`` as a view in the engine layout."""
        return self.w[self.w_off[l]:self.w_off[l + 1]].reshape(weight_shape(self.arch, l))

    def threshold(self, l: int) -> np.ndarray:
        return self.theta[self.t_off[l]:self.t_off[l + 1]]

    def copy(self) -> "LayeredSNN":
        return LayeredSNN(self.arch, self.t_max, self.w.copy(), self.theta.copy(), self.threshold_mode, self.meta)

    def with_thresholds(self, hidden_offset=0, theta_out: float | None = None) -> "LayeredSNN":
        """A copy with every hidden threshold raised by ``hidden_offset`` (a number, or one per
        hidden layer, pool layers included and ignored) and, unless ``theta_out`` is None,
        every output threshold set to it."""
        net = self.copy()
        offsets = np.broadcast_to(np.asarray(hidden_offset, np.float32), (self.n_layers - 1,))
        for l in range(self.n_layers - 1):
            net.threshold(l)[:] += offsets[l]
        if theta_out is not None:
            net.threshold(self.n_layers - 1)[:] = theta_out
        return net

    def integer_thresholds(self) -> np.ndarray:
        """The latent thresholds rounded as the forward pass uses them (one per entry of ``theta``)."""
        return np.maximum(np.ceil(self.theta - 1e-4), 1).astype(np.int32)

    def neuron_thresholds(self) -> np.ndarray:
        """int32 ``(n_neurons,)``: every neuron's integer threshold (1 for pool outputs)."""
        return np.where(self.theta_map >= 0, self.integer_thresholds()[np.maximum(self.theta_map, 0)],
                        1).astype(np.int32)

    def binary(self) -> LayeredNet:
        """The inference view: int8 ±1 weights and per-neuron int32 thresholds."""
        th = self.neuron_thresholds()
        return LayeredNet(self.arch,
                          tuple(np.where(self.weight(l) >= 0, 1, -1).astype(np.int8) for l in range(self.n_layers)),
                          tuple(th[self.n_off[l]:self.n_off[l + 1]] for l in range(self.n_layers)), self.t_max)

    # ------------------------------------------------------------------ creation
    @classmethod
    def initialise(cls, arch: Architecture, t_max: int, events: SpikeEvents, rng: np.random.Generator,
                   threshold_mode: str = "channel", fire_quantiles=None, w_init=(-0.1, 0.1),
                   theta_out: float | None = None, meta: dict | None = None) -> "LayeredSNN":
        """Mixed-sign random latent weights (uniform in ``w_init``), thresholds fitted to data.

        Layer by layer, each threshold is the ``q``-quantile of the peak potential (the largest
        potential at the end of a step when nothing fires) over the samples ``events`` and,
        for a per-channel conv threshold, over the positions of that channel; positions whose
        receptive field got no spike in a sample do not count. ``fire_quantiles``: ``q`` per
        layer (pool layers ignored; default 0.5 for hidden layers, 0.2 for the output).
        ``theta_out`` then sets every output threshold."""
        n_layers = len(arch.layers_all)
        if fire_quantiles is None:
            fire_quantiles = [0.5] * (n_layers - 1) + [0.2]
        sizes = [int(np.prod(weight_shape(arch, l))) for l in range(n_layers)]
        w = rng.uniform(w_init[0], w_init[1], sum(sizes)).astype(np.float32)
        n_theta = [0 if layer.kind == "pool" else layer.channels if layer.kind == "conv" and
                   threshold_mode == "channel" else arch.sizes[l + 1] for l, layer in enumerate(arch.layers_all)]
        net = cls(arch, t_max, w, np.ones(sum(n_theta), np.float32), threshold_mode, meta)
        net.theta[:] = 1e6  # nothing fires until its layer is fitted
        for l, layer in enumerate(arch.layers_all):
            if layer.kind == "pool":
                continue
            bn = net.binary()
            W, geom, theta, n_off, perm = bn.packed()
            if l == 0:
                pre = events
            else:  # the spikes of layer l-1 as events, from the layers fitted so far
                times = layered_batch(events.arrays(), PackedLayered(W, geom[:l], theta, n_off[:l + 1], perm),
                                      t_max, False, True, 8 * numba.get_num_threads(),
                                      np.empty(0, np.int32))[0]
                pre = times_to_events(times[:, n_off[l - 1]:n_off[l]], t_max)
                perm = np.arange(arch.sizes[l], dtype=np.int32)
            peaks = layer_peaks(pre.times, pre.units, pre.ptr, perm, W, geom[l], arch.sizes[l + 1])
            q = fire_quantiles[l]
            if layer.kind == "conv":
                per = peaks.reshape(len(peaks), -1, layer.channels)  # (B, positions, C)
                chan = np.array([_quantile(per[..., c], q) for c in range(layer.channels)])
                if threshold_mode == "channel":
                    net.threshold(l)[:] = chan
                else:
                    neuron = np.array([_quantile(peaks[:, j], q, default=chan[j % layer.channels])
                                       for j in range(peaks.shape[1])])
                    net.threshold(l)[:] = neuron
            else:
                net.threshold(l)[:] = [_quantile(peaks[:, j], q) for j in range(peaks.shape[1])]
        if theta_out is not None:
            net.threshold(n_layers - 1)[:] = theta_out
        return net

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write an ``.npz`` readable with ``allow_pickle=False`` (architecture included),
        atomically (:func:`bstdg.files.atomic_write`)."""
        save_npz(path, format=np.array(FORMAT), format_version=np.array(FORMAT_VERSION),
                 arch=np.array(json.dumps(self.arch.to_dict())), t_max=np.array(self.t_max),
                 threshold_mode=np.array(self.threshold_mode), w=self.w, theta=self.theta,
                 meta=np.array(json.dumps(self.meta)))

    @classmethod
    def load(cls, path) -> "LayeredSNN":
        """A model written by :meth:`save`, read through :func:`bstdg.npzio.read_arrays` (no
        pickles; every read error is one BstdgError line)."""
        z = read_arrays(path, "layered model")
        try:
            if str(z["format"]) != FORMAT:
                raise BstdgError(f"{path}: not a bstdg layered model file")
            if int(z["format_version"]) > FORMAT_VERSION:
                raise BstdgError(f"{path}: model format v{int(z['format_version'])} is newer than this bstdg")
            arch = Architecture.from_dict(json.loads(str(z["arch"])))
            return cls(arch, int(z["t_max"]), z["w"], z["theta"], str(z["threshold_mode"]),
                       json.loads(str(z["meta"])))
        except (KeyError, ValueError, TypeError) as exc:
            raise BstdgError(f"cannot read model {path}: {first_line(exc)}") from None


def _quantile(values: np.ndarray, q: float, default: float = 1.0) -> float:
    """``q``-quantile of the peaks that were reached (>= 0; -1 marks "no input"), at least 1."""
    v = values[values >= 0]
    return max(float(np.quantile(v, q)), 1.0) if len(v) else max(default, 1.0)


@numba.njit(cache=True)
def layer_peaks(ev_times, ev_units, ev_ptr, perm, W, g, n_post):
    """Peak potential of every neuron of one conv or fc layer per sample, int32 ``(B, n_post)``,
    when nothing fires (potential at the end of every step, at least 0); -1 for a conv neuron
    whose receptive field got no spike."""
    n_samples = len(ev_ptr) - 1
    peaks = np.full((n_samples, n_post), -1, np.int32)
    V = np.empty(n_post, np.int32)
    never = np.full(n_post, np.int32(2147483647))
    fired = np.empty(n_post, np.int32)
    n_pos = max_positions(g.reshape(1, -1))
    stamp = np.empty(n_pos, np.int64)
    touched = np.empty(n_pos, np.int32)
    src = np.empty(n_post + len(ev_times), np.int32)
    dummy = np.empty(0, np.int32)
    cout = g[4]
    for b in range(n_samples):
        V[:] = 0
        stamp[:] = -1
        mark = 0
        e, hi = ev_ptr[b], ev_ptr[b + 1]
        if g[G_KIND] == FC and hi > e:
            peaks[b] = 0
        while e < hi:
            t = ev_times[e]
            ns = 0
            while e < hi and ev_times[e] == t:
                src[ns] = perm[ev_units[e]]
                ns += 1
                e += 1
            if g[G_KIND] == CONV:
                mark += 1
                _conv_step(src, 0, ns, W, g, V, never, t, dummy, False, fired, 0, stamp, mark, touched)
                for q in range(n_pos):
                    if stamp[q] == mark:
                        for c in range(cout):
                            j = q * cout + c
                            peaks[b, j] = max(peaks[b, j], max(V[j], 0))
            else:
                _fc_step(src, 0, ns, W, g[10], V, n_post, never, t, dummy, False, fired, 0)
                for j in range(n_post):
                    peaks[b, j] = max(peaks[b, j], V[j])
    return peaks


__all__ = ["LayeredSNN", "layer_peaks"]
