"""Independent re-run of an exported file: its own reader, its own simulator.

Nothing here (nor in the readers it calls) imports :mod:`bstdg.engine`. :func:`simulate` is
a plain numpy clock-driven simulator working from the unpacked sign bits: for every step
``t = 0..t_max-1`` it adds the inputs that spike at ``t`` into the first layer, fires every
neuron whose potential first reaches its threshold, feeds those spikes into the next layer
in the same step, and so on (fire-once, no delay); :func:`decide` is the prediction rule.
A step in which no input spikes changes no potential and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import ExportError, ExportedNet


@dataclass(frozen=True)
class Rerun:
    prediction: np.ndarray  # int64 (B,)
    tie: np.ndarray  # bool (B,): the lower index broke a tie
    time: np.ndarray  # int64 (B,): first output spike, t_max if none


def simulate(ex: ExportedNet, events, batch_size: int = 4096) -> Rerun:
    """Run ``events`` (a :class:`~bstdg.encoding.SpikeEvents`: CSR ``times``, ``units``,
    ``ptr``, ``n_units``) through the exported network, ``batch_size`` samples at a time."""
    T = int(ex.t_max)
    # Row i of weights[l] is what a spike of input i adds to every neuron of layer l.
    weights = [np.ascontiguousarray(ex.signs(l).T.astype(np.int32)) for l in range(len(ex.bits))]
    thresholds = [np.asarray(th, np.int64) for th in ex.thresholds]
    return joined([_run_batch(weights, thresholds, T, *batch)
                   for batch in batches(events, ex.sizes[0], T, batch_size)])


def batches(events, n_inputs: int, t_max: int, batch_size: int):
    """The samples of ``events`` ``batch_size`` at a time (both re-runs: :func:`simulate`,
    :func:`.layered_sim.simulate_layered`): per batch ``(n, owner, times, units)``, its
    input spikes sorted by step, then by sample (``owner``: the sample within the batch).
    ExportError when the samples do not have ``n_inputs`` inputs or spike outside
    ``0..t_max-1``."""
    if events.n_units != n_inputs:
        raise ExportError(f"the samples have {events.n_units} inputs, the exported network {n_inputs}")
    times = np.asarray(events.times, np.int64)
    if len(times) and (times.min() < 0 or times.max() >= t_max):
        raise ExportError(f"the samples have spike times outside 0..{t_max - 1} (t_max {t_max})")
    for start in range(0, len(events), batch_size):
        stop = min(start + batch_size, len(events))
        lo, hi = int(events.ptr[start]), int(events.ptr[stop])
        owner = np.repeat(np.arange(stop - start), np.diff(events.ptr[start:stop + 1]))
        t_ev, u_ev = times[lo:hi], np.asarray(events.units[lo:hi], np.int64)
        order = np.lexsort((owner, t_ev))  # by step, then by sample
        yield stop - start, owner[order], t_ev[order], u_ev[order]


def joined(parts: list) -> Rerun:
    """One :class:`Rerun` of the batches' ``parts``, in order (empty arrays for none)."""
    if not parts:
        empty = np.zeros(0, np.int64)
        return Rerun(empty, empty.astype(bool), empty)
    return Rerun(*(np.concatenate([getattr(p, f) for p in parts])
                   for f in ("prediction", "tie", "time")))


def _run_batch(weights, thresholds, T, n, owner, t_ev, u_ev) -> Rerun:
    """Clock-driven run of one batch; the input spikes are sorted by step, then sample."""
    V = [np.zeros((n, w.shape[1]), np.int64) for w in weights]
    fired = [np.zeros((n, w.shape[1]), bool) for w in weights]
    out_time = np.full(n, T, np.int64)
    out_potential = np.zeros((n, weights[-1].shape[1]), np.int64)
    candidates = np.zeros((n, weights[-1].shape[1]), bool)
    bounds = np.searchsorted(t_ev, np.arange(T + 1))
    for t in range(T):
        # spikes arriving at layer l in step t: (sample, presynaptic index) pairs, by sample
        src, pre = owner[bounds[t]:bounds[t + 1]], u_ev[bounds[t]:bounds[t + 1]]
        for l, (w, th) in enumerate(zip(weights, thresholds)):
            if len(src) == 0:
                break  # nothing arrives: no potential of this or a later layer changes
            rows, first = np.unique(src, return_index=True)
            V[l][rows] += np.add.reduceat(w[pre], first, axis=0)
            new = (V[l][rows] >= th) & ~fired[l][rows]
            fired[l][rows] |= new
            r, j = np.nonzero(new)  # row-major: sorted by sample
            src, pre = rows[r], j
            if l == len(weights) - 1 and len(src):
                decided = rows[(out_time[rows] == T) & new.any(axis=1)]
                out_time[decided] = t
                out_potential[decided] = V[l][decided]
                candidates[decided] = new[np.searchsorted(rows, decided)]
    silent = out_time == T
    out_potential[silent] = V[-1][silent]
    candidates[silent] = True  # no output fired: every output is a candidate
    prediction, tie = decide(candidates, out_potential)
    return Rerun(prediction, tie, out_time)


def decide(candidates: np.ndarray, potential: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Among the ``candidates`` (outputs that fired at the decision step, or all of them
    when none fired), the highest potential wins; equal potentials go to the lower index
    and count as a tie."""
    score = np.where(candidates, potential.astype(np.float64), -np.inf)
    best = score.max(axis=1, keepdims=True)
    winners = score == best
    return winners.argmax(axis=1).astype(np.int64), winners.sum(axis=1) > 1


def compare(name: str, reference, rerun, what=("prediction", "tie", "time")) -> int:
    """ExportError unless ``rerun`` equals ``reference`` field by field (each an object
    with ``prediction``/``tie``/``time`` arrays, or a bare prediction array for
    ``rerun``); returns the number of samples compared."""
    if isinstance(rerun, np.ndarray):
        rerun, what = Rerun(rerun, None, None), ("prediction",)
    n = len(reference.prediction)
    for field in what:
        ref = np.asarray(getattr(reference, field)).astype(np.int64)
        got = np.asarray(getattr(rerun, field)).astype(np.int64)
        if got.shape != ref.shape:
            raise ExportError(f"{name}: {len(got)} results for {n} samples")
        bad = np.flatnonzero(got != ref)
        if len(bad):
            i = int(bad[0])
            raise ExportError(f"{name}: {field} differs from the trained model on {len(bad)} of "
                              f"{n} samples (first: sample {i}, model {int(ref[i])}, file "
                              f"{int(got[i])})")
    return n
