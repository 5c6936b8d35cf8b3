"""The anytime rule through conv, pool and fc layers: per-sample SGD in one fused Numba loop.

The layered counterpart of :func:`bstdg.online.anytime_samples` (derivation:
``docs/learning.md``, "Convolutional networks"). For each sample:

1. forward pass, every spike (:func:`bstdg.engine.conv.layered_sample`, no early exit);
2. every conv/fc neuron's potential at the probe times ``T_j``, summed from the spike times of
   its pre layer (fire-once ignored), and the output error ``e_k(T_j) = y_k - p_k(T_j)``
   (:func:`bstdg.learning.anytime_output_error`);
3. from the top, layer ``l`` (conv or fc) with errors ``e_h(T_j)`` (window included):

   * error sent down through the signs the forward pass used, ``s_i(T_j) = sum_h e_h(T_j) b_hi``
     (for conv, over the outputs whose receptive field holds ``i``); a conv/fc pre neuron
     ``i`` gets ``e_i(T_j) = phi_i(T_j) s_i(T_j)`` with the window ``phi`` of its potential gap
     at ``T_j`` (:func:`bstdg.learning.potential_window`); a pool output ``p`` passes
     ``s_p(T_j)`` to one neuron of its window, the *winner* — the neuron whose spike it passed
     on (earliest; first in the window on a tie) if it fired by ``T_j``, else the neuron
     with the largest gap ``V - theta`` at ``T_j`` (the one closest to firing) — which gets
     ``e(T_j) = phi(T_j) s_p(T_j)``;
   * weights: ``Delta w = lr_l sum_{pre spike i, post h} sum_{j: T_j >= t_i} e_h(T_j) [t_i <= t_h]``
     over the pairs the weight connects (``[t_i <= t_h]`` for hidden post neurons only; a conv
     weight sums over every position it is shared by), clipped to ``[-1, 1]``, signs refreshed;
     fc rows are stepped per pre spike, as :mod:`bstdg.online` does;
   * thresholds (``learn_theta[l]``): ``Delta theta = -lr_theta sum_j e_h(T_j)``, summed over
     the neurons sharing a latent threshold (a conv channel), clipped to ``>= 1``.

Nothing is kept that grows with ``t_max``: per sample, ``len(probes)`` potentials and errors
per neuron.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .engine.conv import (CONV, G_CIN, G_COUT, G_HOUT, G_K, G_KIND, G_P, G_S, G_WIN, G_WOFF, G_WOUT, POOL,
                          layered_sample, max_positions)
from .learning import anytime_output_error, potential_window, probe_bucket


class LayeredState(NamedTuple):
    """The arrays of a layered (conv/pool/fc) network that :func:`anytime_layered_samples` reads
    and updates in place (one Numba kernel argument). Neurons of layer ``l`` are
    ``n_off[l]:n_off[l+1]`` (engine order, channel-last); layer ``l``'s weights start at
    ``geom[l, G_WOFF]`` in ``w``."""

    perm: np.ndarray  # int32, the engine's index table (bstdg.engine.conv.routes)
    w: np.ndarray  # float32 (W,), latent weights in [-1, 1] (updated)
    w_bin: np.ndarray  # int8 (W,), their signs +-1, used by the forward pass (updated)
    geom: np.ndarray  # int64 (L, 11), kinds, shapes and weight offsets (bstdg.engine.conv.geometry)
    n_off: np.ndarray  # int64 (L+1,), start of each layer's neurons
    theta: np.ndarray  # float32 (T,), latent thresholds (per neuron, or per conv channel) (updated)
    theta_int: np.ndarray  # int32 (T,), their integer copy ceil(theta - 1e-4) >= 1 (updated)
    theta_neuron: np.ndarray  # int32 (N,), each neuron's integer threshold via tmap (updated)
    tmap: np.ndarray  # int64 (N,), each neuron's index into theta (-1: pool output)


class LayeredAnytimeParams(NamedTuple):
    """The settings of :func:`anytime_layered_samples` (one Numba kernel argument)."""

    t_max: int  # time steps of a sample
    probes: np.ndarray  # int64 (m,), probe times T_j in steps (bstdg.learning.probe_times)
    lr_w: np.ndarray  # float64 (L,), weight learning rate per layer (decay applied)
    lr_theta: float  # hidden threshold learning rate (decay applied)
    learn_theta: np.ndarray  # bool (L,), whether layer l learns its thresholds
    beta: float  # softmax inverse temperature, per unit of potential
    window: np.ndarray  # float64 (L,), half-width of phi for the neurons of layer l, in units of potential


@numba.njit(cache=True, nogil=True, inline="always")
def _fanout(u, g, pos, wro):
    """The conv outputs pre unit ``u`` (channel-last) reaches: output positions in ``pos``,
    the offsets of the matching ``C_out`` weight rows in ``wro``. Returns their number."""
    cin, win, cout, hout, wout = g[G_CIN], g[G_WIN], g[G_COUT], g[G_HOUT], g[G_WOUT]
    k, st, pad, woff = g[G_K], g[G_S], g[G_P], g[G_WOFF]
    pp = u // cin
    ci = u - pp * cin
    y = pp // win
    x = pp - y * win
    n = 0
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
            pos[n] = oy * wout + ox
            wro[n] = woff + ((ci * k + ky) * k + kx) * cout
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _probe_potentials(pt, pu, l, geom, n_off, W, probes, Vp, pos, wro):
    """``Vp[j, o_l + h]``: potential of neuron ``h`` of layer ``l`` at probe ``j`` from its
    pre spikes ``(pt, pu)``: the sum of the binary weights of those arrived by ``T_j``."""
    m = len(probes)
    g = geom[l]
    o, n = n_off[l], n_off[l + 1] - n_off[l]
    Vp[:, o:o + n] = 0
    cout = g[G_COUT]
    for e in range(len(pt)):
        c = probe_bucket(pt[e], probes)
        if c >= m:
            continue
        Vc = Vp[c, o:o + n]
        if g[G_KIND] == CONV:
            nf = _fanout(pu[e], g, pos, wro)
            for f in range(nf):
                Vq = Vc[pos[f] * cout:(pos[f] + 1) * cout]
                Wq = W[wro[f]:wro[f] + cout]
                for q in range(cout):
                    Vq[q] += Wq[q]
        else:
            row = g[G_WOFF] + pu[e] * n
            Wr = W[row:row + n]
            for h in range(n):
                Vc[h] += Wr[h]
    for j in range(1, m):
        for h in range(o, o + n):
            Vp[j, h] += Vp[j - 1, h]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _fc_sent(l, geom, n_off, Wf, E):
    """``S[j, i] = sum_h E[j, o_l + h] b_hi`` for every pre unit ``i`` of fc layer ``l`` at once
    (``Wf``: the signs as float64; contiguous dot products, vectorised under fastmath)."""
    o, n = n_off[l], n_off[l + 1] - n_off[l]
    m = E.shape[0]
    woff = geom[l, G_WOFF]
    n_pre = ((geom[l + 1, G_WOFF] if l + 1 < geom.shape[0] else len(Wf)) - woff) // n
    Ec = np.ascontiguousarray(E[:, o:o + n])
    S = np.empty((m, n_pre))
    for i in range(n_pre):
        B = Wf[woff + i * n:woff + (i + 1) * n]
        for j in range(m):
            Ej = Ec[j]
            acc = 0.0
            for h in range(n):
                acc += Ej[h] * B[h]
            S[j, i] = acc
    return S


@numba.njit(cache=True, nogil=True, fastmath=True)
def _conv_sent(o, cout, j, W, E, pos, wro, nf):
    """``s_i(T_j)`` through a conv layer at neuron offset ``o``: the sum over the ``nf`` outputs
    in ``pos``/``wro`` that pre unit ``i`` reaches (:func:`_fanout`), ``cout`` channels each."""
    acc = 0.0
    for f in range(nf):
        base = o + pos[f] * cout
        for q in range(cout):
            acc += E[j, base + q] * W[wro[f] + q]
    return acc


@numba.njit(cache=True, nogil=True, fastmath=True)
def _direct_down(l, lp, geom, n_off, times, Vp, theta_neuron, probes, window, W, E, S, pos, wro, fw):
    """``E[j, i] = phi_i(T_j) s_i(T_j)`` for every neuron ``i`` of conv/fc layer ``lp = l - 1``."""
    ob, m = n_off[lp], len(probes)
    conv, o, cout = geom[l, G_KIND] == CONV, n_off[l], geom[l, G_COUT]
    for i in range(n_off[lp + 1] - ob):
        any_f = False
        for j in range(m):
            fw[j] = potential_window(Vp[j, ob + i], theta_neuron[ob + i], times[ob + i] <= probes[j], window)
            any_f = any_f or fw[j] != 0.0
        nf = _fanout(i, geom[l], pos, wro) if conv and any_f else 0
        for j in range(m):
            if fw[j] == 0.0:
                E[j, ob + i] = 0.0
            else:
                E[j, ob + i] = fw[j] * (_conv_sent(o, cout, j, W, E, pos, wro, nf) if conv else S[j, i])


@numba.njit(cache=True, nogil=True, fastmath=True)
def _route_pool(l, lc, geom, n_off, times, Vp, theta_neuron, probes, window, W, E, S, pos, wro, hw, fw):
    """Layer ``l`` reads pool layer ``lc + 1``, which pools layer ``lc``: each pool output's
    sent-down error goes to its window's winner at each probe (module docstring), times the
    winner's window factor; every other neuron of layer ``lc`` gets no error."""
    gp = geom[lc + 1]
    c_n, win, hout, wout, size = gp[G_CIN], gp[G_WIN], gp[G_HOUT], gp[G_WOUT], gp[G_K]
    oc, op, m = n_off[lc], n_off[lc + 1], len(probes)
    conv, o, cout = geom[l, G_KIND] == CONV, n_off[l], geom[l, G_COUT]
    E[:, oc:op] = 0.0
    for py in range(hout):
        for px in range(wout):
            for c in range(c_n):
                p = (py * wout + px) * c_n + c
                tp = times[op + p]
                first = -1  # the window's earliest spike (first in scan order)
                if tp <= probes[m - 1]:  # it fired by some probe
                    for dy in range(size):
                        for dx in range(size):
                            h = ((py * size + dy) * win + px * size + dx) * c_n + c
                            if first < 0 and times[oc + h] == tp:
                                first = h
                any_f = False
                for j in range(m):
                    if first >= 0 and tp <= probes[j]:
                        best = first
                    else:  # nobody fired by T_j: the neuron closest to its threshold
                        best, best_gap = -1, 0
                        for dy in range(size):
                            for dx in range(size):
                                h = ((py * size + dy) * win + px * size + dx) * c_n + c
                                gap = Vp[j, oc + h] - theta_neuron[oc + h]
                                if best < 0 or gap > best_gap:
                                    best, best_gap = h, gap
                    hw[j] = best
                    fw[j] = potential_window(Vp[j, oc + best], theta_neuron[oc + best],
                                             times[oc + best] <= probes[j], window)
                    any_f = any_f or fw[j] != 0.0
                if not any_f:
                    continue
                nf = _fanout(p, geom[l], pos, wro) if conv else 0
                for j in range(m):
                    if fw[j] != 0.0:
                        E[j, oc + hw[j]] = fw[j] * (_conv_sent(o, cout, j, W, E, pos, wro, nf) if conv else S[j, p])


@numba.njit(cache=True, nogil=True)
def anytime_layered_samples(events, order, labels, state, params, outputs):
    """Train with the anytime rule on samples ``order`` (indices into ``events``, an
    :class:`bstdg.encoding.EventArrays`, and ``labels``) one after the other (module
    docstring), updating the ``w``, ``w_bin`` (int8 signs), ``theta`` (latent), ``theta_int``
    (its ceiling) and ``theta_neuron`` (per-neuron integer thresholds, via ``tmap``) of
    ``state`` (:class:`LayeredState`) in place, with the settings ``params``
    (:class:`LayeredAnytimeParams`). ``outputs`` (:class:`bstdg.learning.SampleOutputs`,
    ``(len(order), n_out)``) gets each sample's outputs before its update. Returns the summed
    loss (before the updates)."""
    ev_times, ev_units, ev_ptr = events
    perm, w, w_bin, geom, n_off, theta, theta_int, theta_neuron, tmap = state
    t_max, probes, lr_w, lr_theta, learn_theta, beta, window = params
    out_times, decision_potential = outputs
    n_layers = geom.shape[0]
    top = n_layers - 1
    N = n_off[n_layers]
    m = len(probes)
    # forward scratch
    V = np.empty(N, np.int32)
    fired = np.empty(N, np.int32)
    n_pos = max_positions(geom)
    stamp = np.empty(n_pos, np.int64)
    touched = np.empty(n_pos, np.int32)
    max_ev = 1
    for b in range(len(ev_ptr) - 1):
        max_ev = max(max_ev, ev_ptr[b + 1] - ev_ptr[b])
    src = np.empty(max_ev, np.int32)
    times = np.empty(N, np.int32)
    spikes = np.empty(n_layers, np.int64)
    potential = np.empty(n_off[n_layers] - n_off[top], np.int32)
    # learning scratch
    Vp = np.zeros((m, N), np.int32)
    E = np.zeros((m, N))
    pt = np.empty(max(N, max_ev), np.int32)  # pre spikes of one layer
    pu = np.empty(max(N, max_ev), np.int32)
    pos = np.empty(64 * 64, np.int64)
    wro = np.empty(64 * 64, np.int64)
    gbuf = np.zeros(len(w))  # conv weight gradients (shared weights: summed, then one step)
    gth = np.zeros(len(theta))
    a = np.empty(N, np.float32)
    Wf = w_bin.astype(np.float64)  # the signs as floats, for the fc error products
    S0 = np.zeros((m, 1))
    hw = np.empty(m, np.int64)  # per probe: a pool window's winner, and its window factor
    fw = np.empty(m)
    total = 0.0
    for q in range(len(order)):
        s = order[q]
        lo, hi = ev_ptr[s], ev_ptr[s + 1]
        layered_sample(ev_times, ev_units, lo, hi, perm, w_bin, geom, theta_neuron, n_off, t_max, False, V, fired,
                       stamp, touched, src, times, out_times[q], potential, spikes)
        decision_potential[q] = potential
        # probe potentials of every conv/fc layer
        for l in range(n_layers):
            if geom[l, G_KIND] == POOL:
                continue
            n_pre = _pre_spikes(l, ev_times, ev_units, lo, hi, perm, times, n_off, t_max, pt, pu)
            _probe_potentials(pt[:n_pre], pu[:n_pre], l, geom, n_off, w_bin, probes, Vp, pos, wro)
        o_top = n_off[top]
        E[:, o_top:] = 0.0
        total += anytime_output_error(Vp[:, o_top:], theta_neuron[o_top:], labels[s], beta, E[:, o_top:])
        l = top
        while l >= 0:
            g = geom[l]
            o, n = n_off[l], n_off[l + 1] - n_off[l]
            nz = False
            for j in range(m):
                for h in range(o, o + n):
                    if E[j, h] != 0.0:
                        nz = True
                        break
                if nz:
                    break
            if not nz:
                break  # nothing to learn here, nor below
            # (a) error for the layer below, through the forward signs, times the window
            below = -1
            if l > 0:
                S = _fc_sent(l, geom, n_off, Wf, E) if g[G_KIND] != CONV else S0
                lp = l - 1
                if geom[lp, G_KIND] == POOL:
                    below = lp - 1
                    if below >= 0:
                        _route_pool(l, below, geom, n_off, times, Vp, theta_neuron, probes, window[below], w_bin,
                                    E, S, pos, wro, hw, fw)
                else:
                    below = lp
                    _direct_down(l, lp, geom, n_off, times, Vp, theta_neuron, probes, window[lp], w_bin, E, S,
                                 pos, wro, fw)
            # (b) a pre spike in probe bucket c counts at probes c..m-1: suffix sums
            for j in range(m - 2, -1, -1):
                for h in range(o, o + n):
                    E[j, h] += E[j + 1, h]
            # (c) weights
            n_pre = _pre_spikes(l, ev_times, ev_units, lo, hi, perm, times, n_off, t_max, pt, pu)
            causal = l < top
            lr = np.float32(lr_w[l])
            if g[G_KIND] == CONV:
                cout, woff = g[G_COUT], g[G_WOFF]
                nw = g[G_CIN] * g[G_K] * g[G_K] * cout
                gbuf[:nw] = 0.0
                for e in range(n_pre):
                    c = probe_bucket(pt[e], probes)
                    if c >= m:
                        continue
                    nf = _fanout(pu[e], g, pos, wro)
                    for f in range(nf):
                        base = o + pos[f] * cout
                        r = wro[f] - woff
                        for k in range(cout):
                            if pt[e] <= times[base + k]:
                                gbuf[r + k] += E[c, base + k]
                for r in range(nw):
                    if gbuf[r] != 0.0:
                        v = min(max(w[woff + r] + lr * np.float32(gbuf[r]), np.float32(-1.0)), np.float32(1.0))
                        w[woff + r] = v
                        w_bin[woff + r] = 1 if v >= 0 else -1
                        Wf[woff + r] = 1.0 if v >= 0 else -1.0
            else:
                c_prev = -1
                for e in range(n_pre):
                    c = probe_bucket(pt[e], probes)
                    if c >= m:
                        continue
                    if c != c_prev:
                        c_prev = c
                        for h in range(n):
                            a[h] = lr_w[l] * E[c, o + h]
                    row = g[G_WOFF] + pu[e] * n
                    for h in range(n):
                        if a[h] != 0.0 and (not causal or pt[e] <= times[o + h]):
                            v = min(max(w[row + h] + a[h], np.float32(-1.0)), np.float32(1.0))
                            w[row + h] = v
                            w_bin[row + h] = 1 if v >= 0 else -1
                            Wf[row + h] = 1.0 if v >= 0 else -1.0
            # (d) thresholds: the sum over all probes, summed per latent threshold
            if learn_theta[l]:
                t0, t1 = tmap[o], tmap[o + n - 1] + 1  # the layer's latent thresholds
                for u in range(t0, t1):
                    gth[u] = 0.0
                for h in range(n):
                    gth[tmap[o + h]] += E[0, o + h]
                for u in range(t0, t1):
                    if gth[u] != 0.0:
                        theta[u] = max(theta[u] - lr_theta * gth[u], 1.0)
                        theta_int[u] = max(np.int32(np.ceil(theta[u] - np.float32(1e-4))), 1)
                for h in range(n):
                    theta_neuron[o + h] = theta_int[tmap[o + h]]
            l = below
    return total


@numba.njit(cache=True, nogil=True)
def _pre_spikes(l, ev_times, ev_units, lo, hi, perm, times, n_off, t_max, pt, pu):
    """The pre spikes of layer ``l`` into ``pt``/``pu`` (times, engine unit indices): the
    sample's input events for ``l == 0``, else layer ``l - 1``'s spikes. Returns their number."""
    n = 0
    if l == 0:
        for e in range(lo, hi):
            pt[n] = ev_times[e]
            pu[n] = perm[ev_units[e]]
            n += 1
        return n
    o = n_off[l - 1]
    for i in range(n_off[l] - o):
        if times[o + i] < t_max:
            pt[n] = times[o + i]
            pu[n] = i
            n += 1
    return n
