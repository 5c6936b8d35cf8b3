"""The prediction rule and the figures reported for a run.

Prediction rule (the one honest definition used everywhere):

1. the output neuron that spikes **earliest** wins;
2. among outputs spiking at that same step, the **higher potential** at that step wins;
3. if still equal, the **lower index** is reported, but the sample is a *tie* and is never
   counted as correct;
4. if no output spikes at all, the highest potential at ``t_max`` wins (equal → tie, as in 3).

The decision time is the step of the first output spike (``t_max`` when none fired).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decision:
    prediction: np.ndarray  # int64 (B,)
    tie: np.ndarray  # bool (B,): the rule needed the index to break a tie
    time: np.ndarray  # int32 (B,): first output spike, t_max if none


def decide(output_times: np.ndarray, decision_potential: np.ndarray, t_max: int) -> Decision:
    """Apply the prediction rule to output spike times ``(B, n_out)`` and the output
    potentials at the decision time ``(B, n_out)``."""
    first = output_times.min(axis=1)
    candidates = output_times == first[:, None]  # when nobody fired: all outputs (t_max)
    score = np.where(candidates, decision_potential.astype(np.int64), np.iinfo(np.int64).min)
    best = score.max(axis=1)
    winners = score == best[:, None]
    prediction = winners.argmax(axis=1)
    tie = winners.sum(axis=1) > 1
    return Decision(prediction, tie, first.astype(np.int32))


def correct(decision: Decision, labels: np.ndarray) -> np.ndarray:
    """Boolean per sample: predicted the label without a tie."""
    return (decision.prediction == labels) & ~decision.tie


def hidden_spikes_before_decision(result, decision: Decision, t_max: int) -> np.ndarray:
    """Hidden spikes per sample emitted no later than the decision time (what an
    early-exit inference actually computes)."""
    hidden = result.times[:, :result.n_off[-2]]
    return ((hidden <= decision.time[:, None]) & (hidden < t_max)).sum(axis=1)
