"""Event-driven simulation of layered binary fire-once networks: conv, pool and fc (Numba).

Neurons are the non-leaky integer IF neurons of :mod:`bstdg.engine.event` (``V_j(t) =
sum_{pre spikes i, t_i <= t} b_ji``, fire once at the first step with ``V_j >= theta_j``, no
synaptic delay). Layer kinds (:mod:`bstdg.arch`; image layers numbered channel-last):

* conv: ``b`` is a ±1 kernel ``(C_in, K, K, C_out)`` shared over positions; output
  ``(oy, ox, co)`` sums input ``(oy*S - P + ky, ox*S - P + kx, ci)`` times
  ``b[ci, ky, kx, co]``; thresholds per neuron (a per-channel threshold is the same value
  repeated);
* pool: output ``(py, px, c)`` spikes at the earliest spike of its ``N x N`` window of
  channel ``c`` (the time-to-first-spike max-pool), at most once;
* fc: ``b`` is ``(n_in, n_out)``.

Same-step semantics as the fc engine: at each distinct input time all events of that step
are added to layer 0, the neurons at or above threshold fire, and their spikes reach layer 1
in the same step, and so on up. An input spike touches only the ``K x K x C_out`` conv
outputs whose receptive field holds it, and only touched positions are checked for a
crossing; a pool spike is one lookup. Work is proportional to the number of spikes times
the fan-out, independent of ``t_max`` and of the image size; with ``stop_at_decision`` a
sample ends at its first output spike. Inference keeps the potentials in int16 when no
neuron sums more than ``INT16_FAN_IN`` inputs (:func:`potential_dtype`), else in int32;
the spikes are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
from numba.extending import overload

from ..arch import Architecture, input_order
from . import ForwardResult

FC, CONV, POOL = 0, 1, 2
KINDS = {"fc": FC, "conv": CONV, "pool": POOL}
# columns of the per-layer geometry table the kernels read
G_KIND, G_CIN, G_HIN, G_WIN, G_COUT, G_HOUT, G_WOUT, G_K, G_S, G_P, G_WOFF = range(11)
FIRED = np.int32(-(2 ** 30))  # a fired neuron's potential: never reaches a threshold again
# Potentials in int16 when every neuron's fan-in is at most INT16_FAN_IN: before firing
# |V| <= fan-in <= 8191, after firing V = FIRED16 +- fan-in lies in [-24575, -8193], below
# every threshold (>= 1) and inside int16. Half the potential memory of int32 and twice the
# lanes per vector add (about 1.06x faster MNIST conv inference; layered_batch).
FIRED16 = np.int16(-(2 ** 14))
INT16_FAN_IN = 2 ** 13 - 1


def fired_value(V):
    """The fired marker for potentials of ``V``'s dtype (FIRED16 for int16, else FIRED)."""
    return FIRED16 if V.dtype == np.int16 else FIRED


@overload(fired_value, inline="always")
def _fired_value(V):
    if V.dtype == numba.types.int16:
        return lambda V: FIRED16
    return lambda V: FIRED


class PackedLayered(NamedTuple):
    """A :class:`LayeredNet` as flat arrays, one Numba kernel argument (:meth:`LayeredNet.packed`)."""

    W: np.ndarray  # int8, all +-1 weights concatenated, layer l from geom[l, G_WOFF]
    geom: np.ndarray  # int64 (L, 11), kinds, shapes and weight offsets (columns G_*, geometry)
    theta: np.ndarray  # int32 (N,), integer thresholds per neuron (>= 1), layer l at n_off[l]:n_off[l+1]
    n_off: np.ndarray  # int64 (L+1,), start of each layer's neurons (channel-last per image layer)
    perm: np.ndarray  # int32, the index table of routes (input reordering and pool lookups)


@dataclass(frozen=True)
class LayeredNet:
    """The inference view of a layered network: ±1 weights, integer thresholds.

    ``weights[l]``: int8 ``(C_in, K, K, C_out)`` for conv, ``(n_in, n_out)`` for fc, empty
    for pool; ``thresholds[l]``: int32 ``(n_l,)`` per neuron (>= 1; ones for pool layers,
    unused). Spike times in steps ``0..t_max-1``, ``t_max`` = no spike.
    """

    arch: Architecture
    weights: tuple
    thresholds: tuple
    t_max: int

    def __post_init__(self):
        layers = self.arch.layers_all
        if len(self.weights) != len(layers) or len(self.thresholds) != len(layers):
            raise ValueError(f"need one weight and threshold array per layer ({len(layers)})")
        for l, (layer, w, th, n) in enumerate(zip(layers, self.weights, self.thresholds, self.arch.sizes[1:])):
            if w.shape != weight_shape(self.arch, l) or th.shape != (n,):
                raise ValueError(f"layer {l} ({layer}): weights {w.shape}, thresholds {th.shape} do not "
                                 f"match {weight_shape(self.arch, l)} and ({n},)")

    @property
    def sizes(self) -> tuple:
        return self.arch.sizes

    def packed(self) -> PackedLayered:
        """Flat arrays for the kernels, a :class:`PackedLayered` ``(W, geom, theta, n_off, perm)`` — all weights
        concatenated (int8), the geometry table ``(n_layers, 11)`` (columns ``G_*``), all
        thresholds concatenated, neuron offsets per layer, and the index table of
        :func:`routes`."""
        W = np.concatenate([np.ascontiguousarray(w, np.int8).ravel() for w in self.weights])
        theta = np.concatenate([np.asarray(t, np.int32) for t in self.thresholds])
        return PackedLayered(W, geometry(self.arch), theta, neuron_offsets(self.arch), routes(self.arch))


def weight_shape(arch: Architecture, l: int) -> tuple:
    layer, shape_in = arch.layers_all[l], arch.in_shapes[l]
    if layer.kind == "conv":
        return (shape_in[0], layer.kernel, layer.kernel, layer.channels)
    if layer.kind == "fc":
        return (int(np.prod(shape_in)), layer.units)
    return (0,)


def neuron_offsets(arch: Architecture) -> np.ndarray:
    n_off = np.zeros(len(arch.layers_all) + 1, np.int64)
    np.cumsum(arch.sizes[1:], out=n_off[1:])
    return n_off


def geometry(arch: Architecture) -> np.ndarray:
    """The ``(n_layers, 11)`` int64 table of kinds, shapes and weight offsets (``G_*``)."""
    rows, w_off = [], 0
    for l, (layer, si, so) in enumerate(zip(arch.layers_all, arch.in_shapes, arch.shapes)):
        ci, hi, wi = si if len(si) == 3 else (si[0], 1, 1)
        co, ho, wo = so if len(so) == 3 else (so[0], 1, 1)
        k = {"conv": getattr(layer, "kernel", 0), "pool": getattr(layer, "size", 0)}.get(layer.kind, 0)
        s = {"conv": getattr(layer, "stride", 0), "pool": getattr(layer, "size", 0)}.get(layer.kind, 0)
        p = getattr(layer, "padding", 0)
        rows.append([KINDS[layer.kind], ci, hi, wi, co, ho, wo, k, s, p, w_off])
        w_off += int(np.prod(weight_shape(arch, l)))
    return np.asarray(rows, np.int64)


def routes(arch: Architecture) -> np.ndarray:
    """The kernels' index table, int32: ``route[:n_in]`` is the input reordering
    (:func:`bstdg.arch.input_order`); for a pool layer ``l``, ``route[route_base(l) + i]`` is
    the pool output that pre unit ``i`` (engine order) feeds, -1 if its window is cut off,
    with ``route_base(0) = n_in`` and ``route_base(l) = 2 n_in + n_off[l-1]`` (a lookup
    instead of four integer divisions per spike)."""
    n_in, n_off = arch.sizes[0], neuron_offsets(arch)
    route = np.full(2 * n_in + n_off[-1], -1, np.int32)
    route[:n_in] = input_order(arch)
    for l, layer in enumerate(arch.layers_all):
        if layer.kind != "pool":
            continue
        c, h, w = arch.in_shapes[l]
        size, (_, hp, wp) = layer.size, arch.shapes[l]
        y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
        py, px = y // size, x // size
        out = np.where((py < hp) & (px < wp), (py * wp + px) * c + ch, -1)
        base = n_in if l == 0 else 2 * n_in + n_off[l - 1]
        route[base:base + out.size] = out.ravel()
    return route


# --------------------------------------------------------------------------- kernels


@numba.njit(cache=True, nogil=True, inline="always")
def _fc_step(src, s_lo, s_hi, W, woff, Vl, n_post, theta_l, t, times_l, keep, fired, f0):
    """fc layer: add the weight rows of the pre spikes ``src[s_lo:s_hi]``, fire the crossers.
    Returns how many fired (their indices in ``fired[f0:]``)."""
    for s in range(s_lo, s_hi):
        row = woff + src[s] * n_post
        Wr = W[row:row + n_post]
        for j in range(n_post):  # plain range over views: vectorises
            Vl[j] += Wr[j]
    hit = False
    for j in range(n_post):  # a branch-free OR first (vectorises): most steps have none
        hit |= Vl[j] >= theta_l[j]
    if not hit:
        return 0
    n_new = 0
    for j in range(n_post):
        if Vl[j] >= theta_l[j]:
            fired[f0 + n_new] = j
            n_new += 1
    for q in range(n_new):
        j = fired[f0 + q]
        Vl[j] = fired_value(Vl)
        if keep:
            times_l[j] = t
    return n_new


@numba.njit(cache=True, nogil=True, inline="always")
def _conv_step(src, s_lo, s_hi, W, g, Vl, theta_l, t, times_l, keep, fired, f0, stamp, mark, touched):
    """conv layer: scatter each pre spike into the ``K x K`` output positions whose field
    holds it (a contiguous ``C_out`` add each), then check only the touched positions."""
    cin, win, cout, hout, wout = g[G_CIN], g[G_WIN], g[G_COUT], g[G_HOUT], g[G_WOUT]
    k, st, pad, woff = g[G_K], g[G_S], g[G_P], g[G_WOFF]
    n_touch = 0
    for s in range(s_lo, s_hi):
        u = src[s]
        pos = u // cin
        ci = u - pos * cin
        y = pos // win
        x = pos - y * win
        if st == 1:  # output (y + pad - ky, x + pad - kx): no division, no test in the loop
            for ky in range(max(0, y + pad - hout + 1), min(k, y + pad + 1)):
                prow = (y + pad - ky) * wout + x + pad
                for kx in range(max(0, x + pad - wout + 1), min(k, x + pad + 1)):
                    p = prow - kx
                    Vp = Vl[p * cout:(p + 1) * cout]
                    wr = woff + ((ci * k + ky) * k + kx) * cout
                    Wp = W[wr:wr + cout]
                    for c in range(cout):
                        Vp[c] += Wp[c]
                    if stamp[p] != mark:
                        stamp[p] = mark
                        touched[n_touch] = p
                        n_touch += 1
            continue
        for ky in range(k):
            a = y + pad - ky
            if a < 0:
                break
            oy = a // st
            if oy * st != a or oy >= hout:
                continue
            for kx in range(k):
                b = x + pad - kx
                if b < 0:
                    break
                ox = b // st
                if ox * st != b or ox >= wout:
                    continue
                p = oy * wout + ox
                Vp = Vl[p * cout:(p + 1) * cout]
                wr = woff + ((ci * k + ky) * k + kx) * cout
                Wp = W[wr:wr + cout]
                for c in range(cout):
                    Vp[c] += Wp[c]
                if stamp[p] != mark:
                    stamp[p] = mark
                    touched[n_touch] = p
                    n_touch += 1
    n_new = 0
    for q in range(n_touch):
        p = touched[q]
        Vp = Vl[p * cout:(p + 1) * cout]
        Tp = theta_l[p * cout:(p + 1) * cout]
        hit = False
        for c in range(cout):  # a branch-free OR first (vectorises): most positions have none
            hit |= Vp[c] >= Tp[c]
        if not hit:
            continue
        for c in range(cout):
            j = p * cout + c
            if Vl[j] >= theta_l[j]:
                Vl[j] = fired_value(Vl)
                fired[f0 + n_new] = j
                n_new += 1
                if keep:
                    times_l[j] = t
    return n_new


@numba.njit(cache=True, nogil=True, inline="always")
def _pool_step(src, s_lo, s_hi, route, rbase, Vl, t, times_l, keep, fired, f0):
    """pool layer: each pre spike fires its window's output (``route[rbase + u]``, see
    :func:`routes`) unless that already fired (``Vl`` marks fired outputs)."""
    n_new = 0
    for s in range(s_lo, s_hi):
        j = route[rbase + src[s]]
        if j >= 0 and Vl[j] == 0:
            Vl[j] = 1
            fired[f0 + n_new] = j
            n_new += 1
            if keep:
                times_l[j] = t
    return n_new


@numba.njit(cache=True, nogil=True)
def layered_sample(ev_times, ev_units, lo, hi, perm, W, geom, theta, n_off, t_max, stop_at_decision,
                   V, fired, stamp, touched, src, times, out_times, decision_potential, spikes):
    """Run one sample's events ``[lo, hi)`` through every layer; ``perm`` is the index table
    of :func:`routes` (input reordering and pool lookups).

    Scratch (any contents, reset here): ``V``, ``fired`` ``(n_neurons,)`` int32; ``stamp``
    int64 and ``touched`` int32 of the largest conv layer's positions (:func:`max_positions`);
    ``src`` int32 of at least ``hi - lo``.
    Output: ``times`` ``(n_neurons,)`` (every spike time; pass an empty array to skip),
    ``out_times`` and ``decision_potential`` ``(n_out,)``, ``spikes`` ``(n_layers,)`` (spikes
    per layer computed). Returns the index one past the last input event consumed."""
    n_layers = geom.shape[0]
    top = n_layers - 1
    n_in = geom[0, G_CIN] * geom[0, G_HIN] * geom[0, G_WIN]
    o_out = n_off[top]
    n_out = n_off[n_layers] - o_out
    keep = len(times) > 0
    V[:n_off[n_layers]] = 0
    stamp[:] = -1
    if keep:
        times[:] = t_max
    out_times[:] = t_max
    spikes[:] = 0
    decided = False
    mark = 0
    e = lo
    while e < hi:
        t = ev_times[e]
        ns = 0
        while e < hi and ev_times[e] == t:
            src[ns] = perm[ev_units[e]]
            ns += 1
            e += 1
        s_arr, s_lo, s_hi = src, 0, ns
        for l in range(n_layers):
            o, n_post = n_off[l], n_off[l + 1] - n_off[l]
            g = geom[l]
            kind = g[G_KIND]
            Vl = V[o:o + n_post]
            tl = times[o:o + n_post] if keep else times
            if kind == CONV:
                mark += 1
                n_new = _conv_step(s_arr, s_lo, s_hi, W, g, Vl, theta[o:o + n_post], t, tl, keep, fired, o,
                                   stamp, mark, touched)
            elif kind == POOL:
                rbase = n_in if l == 0 else 2 * n_in + n_off[l - 1]
                n_new = _pool_step(s_arr, s_lo, s_hi, perm, rbase, Vl, t, tl, keep, fired, o)
            else:
                if l == top and not decided:
                    # the output layer: record the potentials of the decision step before
                    # the fired outputs are marked
                    n_new = _fc_decide(s_arr, s_lo, s_hi, W, g[G_WOFF], Vl, n_post, theta[o:o + n_post], t,
                                       decision_potential, out_times)
                    if n_new:
                        decided = True
                        n_new = 0
                        for q in range(n_post):
                            if out_times[q] == t:
                                fired[o + n_new] = q
                                n_new += 1
                                Vl[q] = fired_value(Vl)
                                if keep:
                                    tl[q] = t
                else:
                    n_new = _fc_step(s_arr, s_lo, s_hi, W, g[G_WOFF], Vl, n_post, theta[o:o + n_post], t, tl,
                                     keep, fired, o)
                    if l == top:
                        for q in range(n_new):
                            out_times[fired[o + q]] = t
            spikes[l] += n_new
            if n_new == 0:
                break
            s_arr, s_lo, s_hi = fired, o, o + n_new
        if decided and stop_at_decision:
            break
        if spikes[0] == n_off[1]:
            break  # layer 0 is spent: nothing downstream can change any more
    if not decided:
        for q in range(n_out):
            decision_potential[q] = V[o_out + q]
    return e


@numba.njit(cache=True, nogil=True, inline="always")
def _fc_decide(src, s_lo, s_hi, W, woff, Vl, n_post, theta_l, t, decision_potential, out_times):
    """The output layer before its first spike: add the rows; if any output crosses, record
    every output's potential (the decision potentials) and the crossers' times."""
    for s in range(s_lo, s_hi):
        row = woff + src[s] * n_post
        Wr = W[row:row + n_post]
        for j in range(n_post):
            Vl[j] += Wr[j]
    n_new = 0
    for j in range(n_post):
        if Vl[j] >= theta_l[j]:
            n_new += 1
    if n_new:
        for j in range(n_post):
            decision_potential[j] = Vl[j]
            if Vl[j] >= theta_l[j]:
                out_times[j] = t
    return n_new


@numba.njit(cache=True, nogil=True)
def max_positions(geom):
    """Scratch size for ``stamp``/``touched``: the most output positions of a conv layer."""
    m = 1
    for l in range(geom.shape[0]):
        if geom[l, G_KIND] == CONV:
            m = max(m, geom[l, G_HOUT] * geom[l, G_WOUT])
    return m


def max_fan_in(geom: np.ndarray) -> int:
    """The most inputs any conv or fc neuron of the geometry table sums (``K * K * C_in``
    for conv, every input for fc; pool layers sum nothing)."""
    fan = [int(g[G_K] * g[G_K] * g[G_CIN]) if g[G_KIND] == CONV else int(g[G_CIN] * g[G_HIN] * g[G_WIN])
           for g in geom if g[G_KIND] != POOL]
    return max(fan, default=0)


def potential_dtype(geom: np.ndarray):
    """int16 when no neuron sums more than ``INT16_FAN_IN`` inputs (see ``FIRED16``), else int32."""
    return np.int16 if max_fan_in(geom) <= INT16_FAN_IN else np.int32


@numba.njit(cache=True, parallel=True)
def layered_batch(events, net, t_max, stop_at_decision, keep_times, n_chunks, potential_kind):
    """:func:`layered_sample` for every sample of ``events`` (:class:`bstdg.encoding.EventArrays`)
    through ``net`` (:class:`PackedLayered`), in parallel (one scratch
    set per each of ``n_chunks`` chunks of samples; the potentials in the dtype of the array
    ``potential_kind``, :func:`potential_dtype`). Returns ``times`` ``(B, n_neurons)`` (``(B, 0)`` unless
    ``keep_times``), ``out_times``, ``decision_potential`` ``(B, n_out)`` and ``spikes``
    ``(B, n_layers)``."""
    ev_times, ev_units, ev_ptr = events
    W, geom, theta, n_off, perm = net
    n_samples = len(ev_ptr) - 1
    n_layers = geom.shape[0]
    n_neurons = n_off[n_layers]
    n_out = n_neurons - n_off[n_layers - 1]
    times = np.empty((n_samples, n_neurons if keep_times else 0), np.int32)
    out_times = np.empty((n_samples, n_out), np.int32)
    potential = np.empty((n_samples, n_out), np.int32)
    spikes = np.empty((n_samples, n_layers), np.int64)
    max_ev = 1
    for b in range(n_samples):
        max_ev = max(max_ev, ev_ptr[b + 1] - ev_ptr[b])
    n_pos = max_positions(geom)
    n_chunks = max(1, min(n_samples, n_chunks))
    for c in numba.prange(n_chunks):
        V = np.empty(n_neurons, potential_kind.dtype)
        fired = np.empty(n_neurons, np.int32)
        stamp = np.empty(n_pos, np.int64)
        touched = np.empty(n_pos, np.int32)
        src = np.empty(max_ev, np.int32)
        for b in range(c * n_samples // n_chunks, (c + 1) * n_samples // n_chunks):
            layered_sample(ev_times, ev_units, ev_ptr[b], ev_ptr[b + 1], perm, W, geom, theta, n_off, t_max,
                           stop_at_decision, V, fired, stamp, touched, src, times[b], out_times[b],
                           potential[b], spikes[b])
    return times, out_times, potential, spikes


@dataclass(frozen=True)
class LayeredResult:
    """Output spike times, decision potentials and spikes per layer of a batch (what the
    prediction rule and the per-layer spike counts need); ``times`` holds every neuron's
    spike time (channel-last per image layer) when asked for, else ``None``."""

    output_times: np.ndarray
    decision_potential: np.ndarray
    spikes: np.ndarray  # int64 (B, n_layers): spikes computed per layer
    n_off: np.ndarray
    times: np.ndarray | None = None

    def forward_result(self) -> ForwardResult:
        """As the fc engine's :class:`~bstdg.engine.ForwardResult` (needs ``times``)."""
        return ForwardResult(self.times, self.decision_potential, self.n_off)


def layered_forward(net: LayeredNet, events, stop_at_decision: bool = False, keep_times: bool = True
                    ) -> LayeredResult:
    """Event-driven forward pass of ``events`` (:class:`~bstdg.encoding.SpikeEvents`, the
    encoder's channel-first unit order). ``keep_times=False`` skips the per-neuron spike
    times (inference: far less memory for conv layers)."""
    if events.n_units != net.sizes[0]:
        raise ValueError(f"events have {events.n_units} input units, network expects {net.sizes[0]}")
    packed = net.packed()
    times, out_times, potential, spikes = layered_batch(events.arrays(), packed, net.t_max, stop_at_decision,
                                                        keep_times, 8 * numba.get_num_threads(),
                                                        np.empty(0, potential_dtype(packed.geom)))
    return LayeredResult(out_times, potential, spikes, packed.n_off, times if keep_times else None)
