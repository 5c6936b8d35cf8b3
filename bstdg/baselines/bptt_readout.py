"""What goes into and comes out of the BPTT networks (:mod:`bstdg.baselines.bptt_net`):

* **input**: the latency code of :mod:`bstdg.encoding` at ``t_max = T`` (one spike per
  non-zero pixel), as a dense ``(T, B, n_in)`` 0/1 tensor built per mini-batch;
* **times**: the first-spike times of the spike trains, differentiable (for the loss) and as
  integers;
* **evaluation**: spike times and output potentials at the decision step, scored with
  :func:`bstdg.metrics.decide` (the prediction rule used everywhere).
"""

from __future__ import annotations

import numpy as np

from .. import metrics
from ..encoding import SpikeEvents
from ..engine import ForwardResult
from . import require_torch

_torch = require_torch  # torch is imported on first use, never at module import


def dense_input(events: SpikeEvents, t_max: int, device="cpu"):
    """The input spikes of a batch as a ``(T, B, n_in)`` float32 tensor of spike counts,
    built on ``device`` (only the event lists travel there)."""
    t = _torch()
    n = len(events)
    x = t.zeros((t_max, n, events.n_units), dtype=t.float32, device=device)
    owner = np.repeat(np.arange(n), np.diff(events.ptr))
    index = tuple(t.from_numpy(a.astype(np.int64)).to(device) for a in (events.times, owner, events.units))
    x.index_put_(index, t.ones(len(owner), device=device), accumulate=True)
    return x


def soft_first_times(s):
    """Differentiable first-spike time of fire-once spike trains ``(T, B, n)``:
    ``T - sum_t (T - t) s_t`` (``T`` when silent)."""
    t = _torch()
    n_steps = s.shape[0]
    lead = t.arange(n_steps, 0, -1, dtype=s.dtype, device=s.device)  # T - t
    return n_steps - t.einsum("t,tbn->bn", lead, s)


def spike_times(s) -> np.ndarray:
    """Integer first-spike times ``(B, n)`` int32 of spike trains ``(T, B, n)``; ``T`` = none.
    Spike maps ``(T, B, C, H, W)`` of a conv or pool layer give ``(B, H * W * C)``, numbered
    channel-last as the engine numbers them (:mod:`bstdg.arch`)."""
    t = _torch()
    fired = s > 0
    first = t.argmax(fired.to(t.uint8), 0)
    times = t.where(fired.any(0), first, s.shape[0]).cpu().numpy().astype(np.int32)
    if times.ndim == 4:
        times = np.ascontiguousarray(times.transpose(0, 2, 3, 1)).reshape(len(times), -1)
    return times


def order_key(values: np.ndarray) -> np.ndarray:
    """int64 keys with the order and the equalities of float ``values`` (so that
    :func:`bstdg.metrics.decide`, which compares integer potentials, ranks real ones)."""
    v = np.asarray(values, np.float64) + 0.0  # -0.0 -> 0.0
    bits = v.view(np.int64)
    return np.where(bits < 0, -(bits & np.int64(0x7FFFFFFFFFFFFFFF)), bits)


def decision_potentials(v_out, out_times: np.ndarray, binary: bool) -> np.ndarray:
    """Output potentials ``(B, n_out)`` at each sample's decision step (its first output
    spike, or the last step when no output fired), as int64 keys for the prediction rule."""
    t = _torch()
    n_steps, batch = v_out.shape[:2]
    step = np.minimum(out_times.min(axis=1), n_steps - 1)
    pot = v_out.detach()[t.from_numpy(step.astype(np.int64)).to(v_out.device),
                         t.arange(batch, device=v_out.device)].cpu().numpy()
    return np.rint(pot).astype(np.int64) if binary else order_key(pot)



def forward_result(spikes, v_out, binary: bool, t_max: int) -> tuple[ForwardResult, metrics.Decision]:
    """Spike times of every layer and the prediction rule's decision, as for the engine."""
    per_layer = [spike_times(s) for s in spikes]
    times = np.concatenate(per_layer, axis=1)
    n_off = np.zeros(len(spikes) + 1, np.int64)
    np.cumsum([s.shape[1] for s in per_layer], out=n_off[1:])
    out_times = times[:, n_off[-2]:]
    potential = decision_potentials(v_out, out_times, binary)
    result = ForwardResult(times, potential, n_off)
    return result, metrics.decide(out_times, potential, t_max)
