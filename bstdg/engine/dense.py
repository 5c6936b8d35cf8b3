"""Time-stepped reference simulator (numpy): the test oracle and the speed baseline.

It does what a clock-driven simulator does: for every time step ``t = 0..t_max-1`` it
multiplies the input spike counts of that step into every layer (``V += s_t @ W``),
fires neurons whose potential reached the threshold for the first time, and passes those
spikes on within the same step. No event lists, no early exit, no skipping of silent steps.
"""

from __future__ import annotations

import numpy as np

from ..errors import BstdgError
from ..limits import available_memory
from . import BinaryNet, ForwardResult


def if_network_forward_dense(net: BinaryNet, events, batch_size: int = 256) -> ForwardResult:
    """Clock-driven forward pass; same semantics and output as the event-driven engine run
    with ``stop_at_decision=False``."""
    if events.n_units != net.sizes[0]:
        raise ValueError(f"events have {events.n_units} input units, network expects {net.sizes[0]}")
    per_sample = 4 * net.t_max * events.n_units + 8 * sum(net.sizes)  # raster, V and times
    available = available_memory()
    if available is not None:
        if per_sample > available // 2:
            raise BstdgError(f"the time-stepped reference needs {per_sample / 2**30:.1f} GiB per sample "
                             f"at t_max {net.t_max} ({available / 2**30:.1f} GiB available); use "
                             f"the event engine")
        batch_size = max(1, min(batch_size, available // (2 * per_sample)))
    weights = [w.astype(np.float32) for w in net.weights]
    thresholds = [t.astype(np.float32) for t in net.thresholds]
    n_off = np.zeros(len(weights) + 1, dtype=np.int64)
    np.cumsum([w.shape[1] for w in weights], out=n_off[1:])
    all_times, all_potential = [], []
    for start in range(0, len(events), batch_size):
        batch = events.take(np.arange(start, min(start + batch_size, len(events))))
        raster = batch.rasters(net.t_max)
        n = len(batch)
        V = [np.zeros((n, w.shape[1]), np.float32) for w in weights]
        times = [np.full((n, w.shape[1]), net.t_max, np.int32) for w in weights]
        decision_potential = np.zeros((n, weights[-1].shape[1]), np.float32)
        decided = np.zeros(n, dtype=bool)
        for t in range(net.t_max):
            spikes = raster[:, t, :]
            for l, (w, th) in enumerate(zip(weights, thresholds)):
                V[l] += spikes @ w
                new = (V[l] >= th) & (times[l] == net.t_max)
                times[l][new] = t
                spikes = new.astype(np.float32)
            first = ~decided & (times[-1] == t).any(axis=1)
            decision_potential[first] = V[-1][first]
            decided |= first
        decision_potential[~decided] = V[-1][~decided]
        all_times.append(np.concatenate(times, axis=1))
        all_potential.append(decision_potential.astype(np.int32))
    return ForwardResult(np.concatenate(all_times), np.concatenate(all_potential), n_off)
