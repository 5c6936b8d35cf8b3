"""Event-driven simulation of binary fire-once integrate-and-fire networks (Numba).

Neuron ``j`` of a layer has potential ``V_j(t) = sum_{i: t_i <= t} b_ji`` (non-leaky,
integer, ``b`` in {-1, +1}; an input unit that spikes several times adds its weight each
time) and fires once, at the first time step where ``V_j(t) >= theta_j``. There is no
synaptic delay: a spike at step ``t`` reaches the next layer at step ``t``.

The kernel walks the input events in time order. At each distinct input time it adds the
weight rows of the spiking inputs to the *live* (not yet fired) neurons of layer 0, fires
those at or above threshold, and cascades the new spikes through the deeper layers within
the same step. While at least a quarter of a layer is live, its row adds and threshold
checks are contiguous passes over the whole layer (SIMD); after that only the list of live
neurons is touched. A layer with no live neurons is skipped,
and with ``stop_at_decision`` the run ends at the first output spike. Work is proportional
to (input events x live neurons), independent of ``t_max``.
"""

from __future__ import annotations

import numba
import numpy as np

from . import BinaryNet, ForwardResult

NEVER = np.int32(2147483647)  # the threshold of a neuron that has fired: unreachable


@numba.njit(cache=True, nogil=True)
def if_network_sample(ev_times, ev_units, lo, hi, W, w_off, sizes, theta, n_off, t_max,
                      stop_at_decision, times, decision_potential, probes, snap):
    """Run one sample's events ``[lo, hi)`` through all layers; fill ``times`` (n_neurons,)
    and ``decision_potential`` (n_out,) in place. Returns the index one past the last
    input event consumed.

    With probe times ``probes`` (ascending time steps; training with the anytime loss;
    empty arrays for none: :func:`no_probes`), also
    write layer 0's potentials at the end of each probe time's step into ``snap``
    ``(len(probes), sizes[1])``; layer 0 then keeps every neuron's potential exact (full
    row adds to the end of the input, fired or not)."""
    n_layers = len(sizes) - 1
    n_neurons = n_off[n_layers]
    out0 = n_off[n_layers - 1]
    n_out = sizes[n_layers]
    V = np.zeros(n_neurons, np.int32)
    # Thresholds still in force: a neuron that fired gets an unreachable one, so "did anyone
    # cross?" is one vectorised pass over the layer, and the live list is only walked when
    # somebody did.
    armed = theta.copy()
    live = np.empty(n_neurons, np.int32)   # per layer: indices of neurons that have not fired
    # (kept once a layer is sparse: fewer than a quarter of it live)
    n_live = np.empty(n_layers, np.int64)
    fired = np.empty(n_neurons, np.int32)  # per layer: neurons that fired at the current step
    for l in range(n_layers):
        n_live[l] = sizes[l + 1]
        for j in range(sizes[l + 1]):
            live[n_off[l] + j] = j
    times[:] = t_max
    decided = False
    exact0 = len(probes) > 0
    taken = 0  # probe times whose layer-0 potentials are in snap
    e = lo
    while e < hi:
        t = ev_times[e]
        while taken < len(probes) and probes[taken] < t:
            snap[taken, :] = V[:sizes[1]]
            taken += 1
        e_end = e
        while e_end < hi and ev_times[e_end] == t:
            e_end += 1
        # Layer 0 reads the input events of this step; layer l > 0 the spikes layer l-1
        # emitted in this step.
        src, s_lo, s_hi = ev_units, e, e_end
        for l in range(n_layers):
            o = n_off[l]
            n_post = sizes[l + 1]
            nl = n_live[l]
            if nl == 0 and not (l == 0 and exact0):
                break
            # Per-layer views indexed by a plain range counter: Numba then drops the
            # negative-index checks and the row add below vectorises.
            Vl = V[o:o + n_post]
            live_l = live[o:o + n_post]
            # While many neurons are live a full contiguous row add (SIMD) is cheaper than
            # a gather over the live list; fired neurons' potentials are never read again.
            dense_add = 4 * nl > n_post or (l == 0 and exact0)
            for s in range(s_lo, s_hi):
                row = w_off[l] + src[s] * n_post
                Wr = W[row:row + n_post]
                if dense_add:
                    for j in range(n_post):
                        Vl[j] += Wr[j]
                else:
                    for q in range(nl):
                        j = live_l[q]
                        Vl[j] += Wr[j]
            armed_l = armed[o:o + n_post]
            crossed = 0
            for j in range(n_post):
                crossed += Vl[j] >= armed_l[j]
            if crossed == 0:
                break
            n_new = 0
            if dense_add:
                # Many live: find the crossers in one pass over the layer (cheaper than
                # walking and compacting the live list, which dense adds do not need).
                for j in range(n_post):
                    if Vl[j] >= armed_l[j]:
                        times[o + j] = t
                        armed_l[j] = NEVER
                        fired[o + n_new] = j
                        n_new += 1
                n_live[l] = nl - n_new
                if 4 * n_live[l] <= n_post:  # sparse adds from the next step: list the live
                    kept = 0
                    for j in range(n_post):
                        if armed_l[j] != NEVER:
                            live_l[kept] = j
                            kept += 1
            else:
                kept = 0
                for q in range(nl):
                    j = live_l[q]
                    if Vl[j] >= armed_l[j]:
                        times[o + j] = t
                        armed_l[j] = NEVER
                        fired[o + n_new] = j
                        n_new += 1
                    else:
                        live_l[kept] = j
                        kept += 1
                n_live[l] = kept
            if l == n_layers - 1 and not decided:
                decided = True
                decision_potential[:] = Vl
            src, s_lo, s_hi = fired, o, o + n_new
        e = e_end
        if decided and stop_at_decision:
            break
        if n_live[0] == 0 and not exact0:
            break  # layer 0 is spent, so nothing downstream can change any more
    while taken < len(probes):
        snap[taken, :] = V[:sizes[1]]
        taken += 1
    if not decided:
        decision_potential[:] = V[out0:out0 + n_out]
    return e


@numba.njit(cache=True, nogil=True)
def no_probes():
    """The ``probes`` and ``snap`` arguments of :func:`if_network_sample` for a run without
    layer-0 potential snapshots."""
    return np.zeros(0, np.int64), np.zeros((0, 0), np.int32)


@numba.njit(cache=True, parallel=True)
def if_network_batch(events, net, t_max, stop_at_decision):
    """Batch version of :func:`if_network_sample` (samples in parallel): every sample of
    ``events`` (:class:`bstdg.encoding.EventArrays`) through ``net``
    (:class:`bstdg.engine.PackedFc`). Returns ``times`` ``(B, n_neurons)`` and
    ``decision_potential`` ``(B, n_out)``, int32."""
    ev_times, ev_units, ev_ptr = events
    W, w_off, sizes, theta, n_off = net
    n_samples = len(ev_ptr) - 1
    n_layers = len(sizes) - 1
    times = np.empty((n_samples, n_off[n_layers]), np.int32)
    decision_potential = np.empty((n_samples, sizes[n_layers]), np.int32)
    for b in numba.prange(n_samples):
        probes, snap = no_probes()
        if_network_sample(ev_times, ev_units, ev_ptr[b], ev_ptr[b + 1], W, w_off, sizes, theta,
                          n_off, t_max, stop_at_decision, times[b], decision_potential[b], probes, snap)
    return times, decision_potential


def if_network_forward(net: BinaryNet, events, stop_at_decision: bool = False) -> ForwardResult:
    """Event-driven forward pass of ``events`` (a :class:`~bstdg.encoding.SpikeEvents`).

    With ``stop_at_decision`` each sample stops at its first output spike (inference);
    otherwise it computes every spike (until the inputs run out or layer 0 has all fired).
    """
    if events.n_units != net.sizes[0]:
        raise ValueError(f"events have {events.n_units} input units, network expects {net.sizes[0]}")
    packed = net.packed()
    times, potential = if_network_batch(events.arrays(), packed, net.t_max, stop_at_decision)
    return ForwardResult(times, potential, packed.n_off)
