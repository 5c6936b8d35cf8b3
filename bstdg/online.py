"""Online training: the learning rules applied one sample at a time (plain SGD).

Two fused Numba loops, one per output loss; each sample sees the network as the previous
sample left it (no mini-batch, no optimiser state), the loop is sequential, so the same
seed gives bit-identical models, and neither keeps anything that grows with ``t_max``.

:func:`anytime_samples` (``loss = "anytime"``, the default; ``docs/learning.md``), for each
sample:

1. forward pass (:func:`bstdg.engine.event.if_network_sample`, no early exit);
2. the potentials of every layer at the probe times ``T_j``, summed from the spike times
   (:func:`bstdg.learning.probe_potentials`), and the output error
   ``err_jk = y_k - softmax(beta * (U_j - theta))_k`` (:func:`bstdg.learning.anytime_output_error`);
3. layer by layer from the top: a hidden neuron's error is ``sum_k err_jk * b_kh`` times the
   window of its potential gap at ``T_j`` (:func:`bstdg.learning.potential_window`); weights
   ``w_ih += lr_l * sum_{j: T_j >= t_i} err_jh`` for pre spikes ``t_i`` (hidden layers:
   causal ones, ``t_i <= t_h``), clipped to ``[-1, 1]``; hidden thresholds
   ``theta_h -= lr_theta * sum_j err_jh``; output thresholds stay fixed.

:func:`sgd_samples` (``loss = "s4nn"``), for each sample:

1. forward pass of the current binary network (:func:`bstdg.engine.event.if_network_sample`,
   every spike computed, no early exit);
2. output error ``delta = dL/dt`` of the ``s4nn`` loss
   (:func:`bstdg.learning.relative_target_error`);
3. layer by layer from the top, with ``delta`` scaled to unit L2 norm (``rule.normalise``):

   * error sent down (before this layer's update), :func:`bstdg.learning.pre_timing_error`
     (shared with the mini-batch kernel):
     ``delta_i = sum_j delta_j * b_ji * k(t_j - t_i)``, of which a silent neuron keeps
     only a "fire earlier" (positive) error unless ``silent_fire_later``;
   * weights, causal pairs ``t_i <= t_j`` only: ``w_ji += lr_l * delta_j * g(t_j - t_i)``
     (gradient descent on ``dL/dw_ji = -delta_j g``), clipped to ``[-1, 1]``, and the
     sign ``b_ji`` refreshed at once;
   * thresholds (layers with ``learn_theta``): ``theta_j -= lr_theta * delta_j``, at least 1.

The next sample sees the updated network: no mini-batch, no optimiser state. The loop is
sequential, so the same seed gives bit-identical models; it keeps one spike time per
neuron per sample and nothing that grows with ``t_max``. The derivation is in
``docs/learning.md``; why this beats mini-batch Adam on MNIST is in ``docs/experiments.md``
(session 6).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .engine.event import if_network_sample, no_probes
from .learning import (anytime_output_error, potential_window, pre_timing_error, probe_bucket,
                       probe_potentials, relative_target_error)


class FcState(NamedTuple):
    """The arrays of a fully connected network that the training kernels read and update in
    place (one Numba kernel argument). Layer
    ``l`` has ``sizes[l]`` inputs and ``sizes[l+1]`` neurons; its weights are the row-major
    ``(sizes[l], sizes[l+1])`` block ``w[w_off[l]:w_off[l+1]]``, its neurons
    ``n_off[l]:n_off[l+1]`` of the threshold vectors."""

    w: np.ndarray  # float32 (W,), latent weights in [-1, 1] (updated)
    w_bin: np.ndarray  # int8 (W,), their signs +-1, the weights the forward pass uses (updated)
    w_off: np.ndarray  # int64 (L+1,), start of each layer's block in w
    sizes: np.ndarray  # int64 (L+1,), input width then the neurons of each layer
    theta: np.ndarray  # float32 (N,), latent thresholds (updated)
    theta_int: np.ndarray  # int32 (N,), their integer copy ceil(theta - 1e-4) >= 1 (updated)
    n_off: np.ndarray  # int64 (L+1,), start of each layer's neurons in theta


class AnytimeParams(NamedTuple):
    """The settings of :func:`anytime_samples` (one Numba kernel argument)."""

    t_max: int  # time steps of a sample
    probes: np.ndarray  # int64 (m,), probe times T_j in steps (bstdg.learning.probe_times)
    lr_w: np.ndarray  # float64 (L,), weight learning rate per layer (decay applied)
    lr_theta: float  # hidden threshold learning rate (decay applied)
    learn_theta: np.ndarray  # bool (L,), whether layer l learns its thresholds
    beta: float  # softmax inverse temperature, per unit of potential
    window: float  # half-width of the surrogate window phi, in units of potential


class SgdParams(NamedTuple):
    """The settings of :func:`sgd_samples` (one Numba kernel argument)."""

    t_max: int  # time steps of a sample
    lr_w: np.ndarray  # float64 (L,), weight learning rate per layer (decay applied)
    lr_theta: float  # threshold learning rate (decay applied)
    learn_theta: np.ndarray  # bool (L,), whether layer l learns its thresholds
    margin: float  # the s4nn loss's target margin, in steps
    normalise: bool  # scale each layer's error to unit L2 norm
    g: np.ndarray  # float32 (t_max+1,), weight timing factor g(t_j - t_i)
    h: np.ndarray  # float32 (t_max+1,), causal error-sending factor
    h_anti: np.ndarray  # float32 (t_max+1,), anti-causal error-sending factor
    silent_fire_later: bool = False  # silent neurons keep their "fire later" errors


@numba.njit(cache=True, nogil=True)
def sgd_samples(events, order, labels, state, params, outputs):
    """Train on samples ``order`` (indices into ``events``, an :class:`bstdg.encoding.EventArrays`,
    and ``labels``), one after the other, updating the ``w``, ``w_bin``, ``theta`` and
    ``theta_int`` of ``state`` (:class:`FcState`) in place, with the settings ``params``
    (:class:`SgdParams`).

    ``outputs`` (:class:`bstdg.learning.SampleOutputs`, ``(len(order), n_out)``) receives each
    sample's output spike times and decision potentials *before* its update (for the running
    accuracy)."""
    ev_times, ev_units, ev_ptr = events
    w, w_bin, w_off, sizes, theta, theta_int, n_off = state
    t_max, lr_w, lr_theta, learn_theta, margin, normalise, g, h, h_anti, silent_fire_later = params
    out_times, decision_potential = outputs
    n_layers = len(sizes) - 1
    n_neurons = n_off[n_layers]
    out0 = n_off[n_layers - 1]
    times = np.empty(n_neurons, np.int32)
    potential = np.empty(sizes[n_layers], np.int32)
    max_width = 0
    for l in range(n_layers):
        max_width = max(max_width, sizes[l + 1], sizes[l])
    delta = np.empty(max_width, np.float64)
    delta_pre = np.empty(max_width, np.float64)
    probes, snap = no_probes()
    for q in range(len(order)):
        s = order[q]
        lo, hi = ev_ptr[s], ev_ptr[s + 1]
        if_network_sample(ev_times, ev_units, lo, hi, w_bin, w_off, sizes, theta_int, n_off, t_max,
                          False, times, potential, probes, snap)
        out_times[q] = times[out0:]
        decision_potential[q] = potential
        n_post = sizes[n_layers]
        relative_target_error(times[out0:], labels[s], t_max, margin, delta[:n_post])
        for l in range(n_layers - 1, -1, -1):
            n_post = sizes[l + 1]
            n_pre = sizes[l]
            post = times[n_off[l]:n_off[l] + n_post]
            norm = 0.0
            for j in range(n_post):
                norm += delta[j] * delta[j]
            if norm == 0.0:
                break  # nothing to learn here, nor below
            if normalise:
                scale = 1.0 / np.sqrt(norm)
                for j in range(n_post):
                    delta[j] *= scale
            if l > 0:  # error for the layer below, through the signs the forward pass used
                pre = times[n_off[l - 1]:n_off[l - 1] + n_pre]
                for i in range(n_pre):
                    delta_pre[i] = pre_timing_error(pre[i], post, delta[:n_post], w_bin,
                                                    w_off[l] + i * n_post, t_max, h, h_anti,
                                                    silent_fire_later)
            # Weights: every causal (pre spike, post neuron) pair.
            if l == 0:
                for e in range(lo, hi):
                    _update_row(w, w_bin, w_off[0] + ev_units[e] * n_post, ev_times[e], post, delta,
                                lr_w[0], g)
            else:
                pre = times[n_off[l - 1]:n_off[l - 1] + n_pre]
                for i in range(n_pre):
                    if pre[i] < t_max:
                        _update_row(w, w_bin, w_off[l] + i * n_post, pre[i], post, delta, lr_w[l], g)
            if learn_theta[l]:
                for j in range(n_post):
                    _step_threshold(theta, theta_int, n_off[l] + j, lr_theta * delta[j])
            if l > 0:
                for i in range(n_pre):
                    delta[i] = delta_pre[i]


@numba.njit(cache=True, nogil=True, inline="always")
def _update_row(w, w_bin, row, ti, post, delta, lr, g):
    """``w[row + j] += lr * delta_j * g[t_j - ti]`` for the post neurons ``j`` with
    ``ti <= t_j`` and an error, clipped to ``[-1, 1]``, signs refreshed."""
    for j in range(len(post)):
        tj = post[j]
        if ti <= tj and delta[j] != 0.0:
            v = w[row + j] + lr * delta[j] * g[tj - ti]
            v = min(max(v, -1.0), 1.0)
            w[row + j] = v
            w_bin[row + j] = 1 if v >= 0 else -1


@numba.njit(cache=True, nogil=True, inline="always")
def _step_threshold(theta, theta_int, u, step):
    """``theta[u] -= step``, clipped to ``>= 1``, and its integer copy refreshed as
    :meth:`bstdg.network.BinarySNN.integer_thresholds` rounds it."""
    theta[u] = max(theta[u] - step, 1.0)
    theta_int[u] = max(np.int32(np.ceil(theta[u] - np.float32(1e-4))), 1)


@numba.njit(cache=True, nogil=True)
def anytime_samples(events, order, labels, state, params, outputs):
    """Train with the ``anytime`` loss on samples ``order`` (indices into ``events``, an
    :class:`bstdg.encoding.EventArrays`, and ``labels``), one after the other (module
    docstring), updating the ``w``, ``w_bin``, ``theta`` and ``theta_int`` of ``state``
    (:class:`FcState`) in place, with the settings ``params`` (:class:`AnytimeParams`).

    ``outputs`` (:class:`bstdg.learning.SampleOutputs`, ``(len(order), n_out)``) receives each
    sample's output spike times and decision potentials before its update. Returns the summed
    loss of the samples (before their updates)."""
    ev_times, ev_units, ev_ptr = events
    w, w_bin, w_off, sizes, theta, theta_int, n_off = state
    t_max, probes, lr_w, lr_theta, learn_theta, beta, window = params
    out_times, decision_potential = outputs
    n_layers = len(sizes) - 1
    top = n_layers - 1
    m = len(probes)
    times = np.empty(n_off[n_layers], np.int32)
    potential = np.empty(sizes[n_layers], np.int32)
    width = 0
    for l in range(n_layers + 1):
        width = max(width, sizes[l])
    V = np.zeros((m, width), np.int32)  # potentials of one layer at the probe times
    V0 = np.zeros((m, sizes[1]), np.int32)  # ... of layer 0, recorded by the forward pass
    err = np.zeros((m, width))  # -dL/dV of that layer's neurons per probe (window included)
    err_below = np.zeros((m, width))
    pre_t = np.empty(width, np.int32)  # the spikes of a hidden layer as time-sorted events
    pre_u = np.empty(width, np.int32)
    step = np.empty(width, np.float32)
    total = 0.0
    for q in range(len(order)):
        s = order[q]
        lo, hi = ev_ptr[s], ev_ptr[s + 1]
        if_network_sample(ev_times, ev_units, lo, hi, w_bin, w_off, sizes, theta_int, n_off, t_max,
                          False, times, potential, probes, V0)  # V0: layer 0 at the probes
        out_times[q] = times[n_off[top]:]
        decision_potential[q] = potential
        n_ev = _layer_events(top, times, n_off, sizes, t_max, False, pre_t, pre_u)
        pt, pu = (ev_times[lo:hi], ev_units[lo:hi]) if top == 0 else (pre_t[:n_ev], pre_u[:n_ev])
        probe_potentials(pt, pu, w_bin, w_off[top], sizes[n_layers], probes, V)
        total += anytime_output_error(V[:, :sizes[n_layers]], theta_int[n_off[top]:], labels[s], beta,
                                      err[:, :sizes[n_layers]])
        for l in range(top, -1, -1):
            n_post, n_pre, o = sizes[l + 1], sizes[l], n_off[l]
            if l > 0:
                # Error for layer l-1, through the signs the forward pass used, times the
                # window of each of its neurons at each probe (from its potentials there).
                if l == 1:
                    Vb = V0  # from the forward pass
                else:
                    n_ev = _layer_events(l - 1, times, n_off, sizes, t_max, False, pre_t, pre_u)
                    probe_potentials(pre_t[:n_ev], pre_u[:n_ev], w_bin, w_off[l - 1], n_pre, probes, V)
                    Vb = V
                ob = n_off[l - 1]
                signs = w_bin[w_off[l]:w_off[l + 1]].reshape(n_pre, n_post).T  # (post, pre)
                for j in range(m):
                    e_j = err_below[j, :n_pre]
                    e_j[:] = 0.0
                    for h in range(n_post):
                        x = err[j, h]
                        if x != 0.0:
                            b_h = signs[h]
                            for i in range(n_pre):
                                e_j[i] += x * b_h[i]
                    for i in range(n_pre):
                        e_j[i] *= potential_window(Vb[j, i], theta_int[ob + i], times[ob + i] <= probes[j],
                                                   window)
            # A pre spike in probe bucket c counts at probes c..m-1: suffix sums over j.
            for j in range(m - 2, -1, -1):
                for h in range(n_post):
                    err[j, h] += err[j + 1, h]
            n_ev = _layer_events(l, times, n_off, sizes, t_max, l < top, pre_t, pre_u)
            pt, pu = (ev_times[lo:hi], ev_units[lo:hi]) if l == 0 else (pre_t[:n_ev], pre_u[:n_ev])
            _anytime_weight_steps(pt, pu, times[o:o + n_post], err, w, w_bin, w_off[l], probes, t_max,
                                  lr_w[l], l < top, step[:n_post])
            if learn_theta[l]:
                for h in range(n_post):
                    if err[0, h] != 0.0:  # the sum over all probes
                        _step_threshold(theta, theta_int, o + h, lr_theta * err[0, h])
            err, err_below = err_below, err
    return total


@numba.njit(cache=True, nogil=True)
def _layer_events(l, times, n_off, sizes, t_max, sort, pre_t, pre_u):
    """The spikes of hidden layer ``l - 1`` (the pre layer of layer ``l > 0``) as events in
    ``pre_t``/``pre_u`` (sorted by time if ``sort``); returns their number (0 for ``l == 0``,
    whose pre spikes are the input events)."""
    if l == 0:
        return 0
    spikes = times[n_off[l - 1]:n_off[l - 1] + sizes[l]]
    n = 0
    for i in _by_time(spikes, t_max) if sort else np.arange(len(spikes)):
        if spikes[i] < t_max:
            pre_t[n] = spikes[i]
            pre_u[n] = i
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _anytime_weight_steps(pre_t, pre_u, post, err, w, w_bin, row0, probes, t_max, lr, causal, a):
    """``w_ih += lr * err[c, h]`` for every pre spike ``(pre_t, pre_u)`` in probe bucket ``c``
    (``err`` already summed over the probes from ``c`` on), with ``t_i <= t_h`` when
    ``causal`` (hidden post neurons; the pre spikes must then be time-sorted); clipped to
    ``[-1, 1]``, signs refreshed. The step row ``a`` is rebuilt when the bucket changes and
    loses the post neurons that fired before the current pre time, then added to the
    contiguous weight row of every pre spike."""
    n_post, m = len(post), len(probes)
    lo, hi = np.float32(-1.0), np.float32(1.0)
    by_time = _by_time(post, t_max) if causal else np.arange(n_post)  # earliest spike first
    c_prev, gone = -1, 0
    for e in range(len(pre_t)):
        ti = pre_t[e]
        c = probe_bucket(ti, probes)
        if c != c_prev:
            c_prev, gone = c, 0
            for h in range(n_post):
                a[h] = lr * err[c, h] if c < m else 0.0
        if causal:
            while gone < n_post and post[by_time[gone]] < ti:
                a[by_time[gone]] = 0.0
                gone += 1
        row = row0 + pre_u[e] * n_post
        w_row = w[row:row + n_post]
        b_row = w_bin[row:row + n_post]
        for h in range(n_post):  # plain range over views, float32 throughout: vectorises
            v = min(max(w_row[h] + a[h], lo), hi)  # a zero step changes nothing
            w_row[h] = v
            b_row[h] = 1 if v >= 0 else -1


@numba.njit(cache=True, nogil=True)
def _by_time(times, t_max):
    """Indices that sort spike times ``times`` (``0..t_max``) stably, earliest first
    (a counting sort: ``O(len(times) + t_max)``)."""
    start = np.zeros(t_max + 2, np.int64)
    for t in times:
        start[t + 1] += 1
    for t in range(1, t_max + 2):
        start[t] += start[t - 1]
    order = np.empty(len(times), np.int64)
    for i in range(len(times)):
        order[start[times[i]]] = i
        start[times[i]] += 1
    return order
