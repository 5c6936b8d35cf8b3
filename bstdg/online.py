"""Online training: the timing-dependent rule applied one sample at a time (plain SGD).

One fused Numba pass per chunk of samples. For each sample, in order:

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

import numba
import numpy as np

from .engine.event import if_network_sample
from .learning import pre_timing_error, relative_target_error


@numba.njit(cache=True, nogil=True)
def sgd_samples(ev_times, ev_units, ev_ptr, order, labels, w, w_bin, w_off, sizes, theta, theta_int,
                n_off, t_max, lr_w, lr_theta, learn_theta, margin, normalise, g, h, h_anti,
                out_times, decision_potential, silent_fire_later=False):
    """Train on samples ``order`` (indices into the CSR event list ``ev_*`` and ``labels``),
    one after the other, updating ``w``, ``w_bin``, ``theta`` and ``theta_int`` in place.

    ``lr_w`` and ``learn_theta`` hold one entry per layer; ``silent_fire_later`` keeps the
    "fire later" errors of silent neurons (``LearningRule.silent_fire_later``). ``out_times`` and
    ``decision_potential`` ``(len(order), n_out)`` receive each sample's output spike times
    and decision potentials *before* its update (for the running accuracy)."""
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
    for q in range(len(order)):
        s = order[q]
        lo, hi = ev_ptr[s], ev_ptr[s + 1]
        if_network_sample(ev_times, ev_units, lo, hi, w_bin, w_off, sizes, theta_int, n_off, t_max,
                          False, times, potential)
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
                    u = n_off[l] + j
                    theta[u] = max(theta[u] - lr_theta * delta[j], 1.0)
                    theta_int[u] = max(np.int32(np.ceil(theta[u] - np.float32(1e-4))), 1)
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
