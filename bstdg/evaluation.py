"""Inference on either engine, scored with the prediction rule of :mod:`bstdg.metrics`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import metrics
from .engine import BinaryNet, ForwardResult
from .engine.dense import if_network_forward_dense
from .engine.event import if_network_forward
from .errors import BstdgError


@dataclass
class Evaluation:
    """Figures of one evaluation (names as in ``metrics.json``)."""

    accuracy: float
    ties: int
    silent: int  # samples where no output neuron fired
    mean_decision_time: float  # time steps; a silent sample counts as t_max
    hidden_spikes_per_sample: float  # emitted no later than the decision
    samples_per_s: float

    def test_metrics(self) -> dict:
        """The figures under their ``metrics.json`` names, as plain numbers."""
        return {"test_accuracy": float(self.accuracy), "test_ties": int(self.ties),
                "test_silent": int(self.silent), "mean_decision_time": float(self.mean_decision_time),
                "hidden_spikes_per_sample": float(self.hidden_spikes_per_sample),
                "eval_samples_per_s": float(self.samples_per_s)}


def forward_decisions(bn: BinaryNet, events, engine: str = "event", stop_at_decision: bool = True
                      ) -> tuple[ForwardResult, metrics.Decision]:
    """Forward pass on ``engine`` (``event`` or ``dense``) plus the prediction rule.

    ``stop_at_decision`` applies to the event engine only (the dense reference always runs
    all ``t_max`` steps)."""
    if engine == "dense":
        result = if_network_forward_dense(bn, events)
    elif engine == "event":
        result = if_network_forward(bn, events, stop_at_decision)
    else:
        raise BstdgError(f"unknown engine {engine!r}; expected event or dense")
    return result, metrics.decide(result.output_times, result.decision_potential, bn.t_max)


def score(result: ForwardResult, decision: metrics.Decision, labels: np.ndarray, t_max: int,
          elapsed_s: float) -> Evaluation:
    """The evaluation figures of one forward pass."""
    n = max(len(labels), 1)
    return Evaluation(
        accuracy=float(metrics.correct(decision, labels).sum() / n),
        ties=int(decision.tie.sum()),
        silent=int((decision.time >= t_max).sum()),
        mean_decision_time=float(decision.time.sum() / n),
        hidden_spikes_per_sample=float(
            metrics.hidden_spikes_before_decision(result, decision, t_max).sum() / n),
        samples_per_s=n / elapsed_s if elapsed_s > 0 else float("inf"))


def evaluate(net, events, labels: np.ndarray, engine: str = "event") -> Evaluation:
    """Early-exit inference of a :class:`~bstdg.network.BinarySNN` (or the time-stepped
    reference with ``engine="dense"``, which must give identical figures)."""
    bn = net.binary()
    start = time.perf_counter()
    result, decision = forward_decisions(bn, events, engine)
    return score(result, decision, labels, net.t_max, time.perf_counter() - start)
