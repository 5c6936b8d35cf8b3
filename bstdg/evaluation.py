"""Inference on either engine, scored with the prediction rule of :mod:`bstdg.metrics`, for
both model kinds: fc networks (:class:`~bstdg.engine.BinaryNet`, :mod:`bstdg.engine.event` /
:mod:`bstdg.engine.dense`) and layered conv/pool/fc networks
(:class:`~bstdg.engine.conv.LayeredNet`, :mod:`bstdg.engine.conv` /
:mod:`bstdg.engine.dense_conv`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import metrics
from .engine import BinaryNet, ForwardResult
from .engine.conv import LayeredNet, LayeredResult, layered_forward
from .engine.dense import if_network_forward_dense
from .engine.dense_conv import layered_forward_dense
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
    # layered networks: mean spikes per sample of every layer up to the decision, keyed
    # "l:layer" ("0:conv16k5", "1:pool2", ..., the output layer last); None for fc networks
    spikes_per_layer: dict | None = None

    def test_metrics(self) -> dict:
        """The figures under their ``metrics.json`` names, as plain numbers
        (``spikes_per_layer`` for layered networks only)."""
        figures = {"test_accuracy": float(self.accuracy), "test_ties": int(self.ties),
                   "test_silent": int(self.silent), "mean_decision_time": float(self.mean_decision_time),
                   "hidden_spikes_per_sample": float(self.hidden_spikes_per_sample),
                   "eval_samples_per_s": float(self.samples_per_s)}
        if self.spikes_per_layer is not None:
            figures["spikes_per_layer"] = dict(self.spikes_per_layer)
        return figures


def forward_decisions(bn: BinaryNet | LayeredNet, events, engine: str = "event", stop_at_decision: bool = True,
                      keep_times: bool = False) -> tuple[ForwardResult | LayeredResult, metrics.Decision]:
    """Forward pass on ``engine`` (``event`` or ``dense``) plus the prediction rule.

    ``stop_at_decision`` applies to the event engine only (the dense reference always runs
    all ``t_max`` steps). A :class:`~bstdg.engine.conv.LayeredNet` on the event engine gives
    a :class:`~bstdg.engine.conv.LayeredResult` (spikes per layer; every neuron's spike time
    only with ``keep_times``, which costs a conv layer's neurons per sample in memory); every
    other case a :class:`~bstdg.engine.ForwardResult` with every spike time."""
    layered = isinstance(bn, LayeredNet)
    if engine == "dense":
        result = layered_forward_dense(bn, events) if layered else if_network_forward_dense(bn, events)
    elif engine == "event":
        result = (layered_forward(bn, events, stop_at_decision, keep_times) if layered
                  else if_network_forward(bn, events, stop_at_decision))
    else:
        raise BstdgError(f"unknown engine {engine!r}; expected event or dense")
    return result, metrics.decide(result.output_times, result.decision_potential, bn.t_max)


def layer_spikes(result: ForwardResult | LayeredResult, decision: metrics.Decision, t_max: int) -> np.ndarray:
    """int64 ``(B, n_layers)``: spikes of every layer no later than each sample's decision
    (a :class:`~bstdg.engine.conv.LayeredResult` of an early-exit run counts exactly those;
    of a run without early exit, every spike)."""
    if isinstance(result, LayeredResult):
        return result.spikes
    n_off = result.n_off
    before = (result.times <= decision.time[:, None]) & (result.times < t_max)
    return np.stack([before[:, n_off[l]:n_off[l + 1]].sum(axis=1) for l in range(len(n_off) - 1)], axis=1)


def score(result: ForwardResult | LayeredResult, decision: metrics.Decision, labels: np.ndarray, t_max: int,
          elapsed_s: float, bn: BinaryNet | LayeredNet | None = None) -> Evaluation:
    """The evaluation figures of one forward pass. ``bn``: the network, needed for a layered
    one (its hidden spikes are those of its conv and fc layers: a pool output relays a spike
    of its window and is counted in ``spikes_per_layer`` only)."""
    n = max(len(labels), 1)
    per_layer = None
    if isinstance(bn, LayeredNet):
        counts = layer_spikes(result, decision, t_max)
        layers = bn.arch.layers_all
        neuron_layers = [l for l, layer in enumerate(layers[:-1]) if layer.kind != "pool"]
        hidden = float(counts[:, neuron_layers].sum() / n)
        per_layer = {f"{l}:{layer}": float(counts[:, l].sum() / n) for l, layer in enumerate(layers)}
    else:
        hidden = float(metrics.hidden_spikes_before_decision(result, decision, t_max).sum() / n)
    return Evaluation(
        accuracy=float(metrics.correct(decision, labels).sum() / n),
        ties=int(decision.tie.sum()),
        silent=int((decision.time >= t_max).sum()),
        mean_decision_time=float(decision.time.sum() / n),
        hidden_spikes_per_sample=hidden,
        samples_per_s=n / elapsed_s if elapsed_s > 0 else float("inf"),
        spikes_per_layer=per_layer)


def evaluate(net, events, labels: np.ndarray, engine: str = "event") -> Evaluation:
    """Early-exit inference of a :class:`~bstdg.network.BinarySNN` or a
    :class:`~bstdg.convnet.LayeredSNN` (or the time-stepped reference with
    ``engine="dense"``, which must give identical figures)."""
    bn = net.binary()
    start = time.perf_counter()
    result, decision = forward_decisions(bn, events, engine)
    return score(result, decision, labels, net.t_max, time.perf_counter() - start, bn)


def layer_spike_times(bn: LayeredNet, events, chunk: int = 256) -> dict:
    """When each layer does its work: per layer, the mean time step of its spikes that come
    no later than the sample's decision (``mean``) and the mean time of its first such spike
    (``first``, over the samples where it has one), keyed ``"l:layer"`` as
    ``spikes_per_layer`` (the output layer last). An early-exit event-engine pass with every
    neuron's spike time, ``chunk`` samples at a time (a conv layer's spike times cost its
    neurons x 4 B per sample)."""
    names = [str(layer) for layer in bn.arch.layers_all]
    total = np.zeros(len(names))
    count = np.zeros(len(names))
    first_total = np.zeros(len(names))
    first_count = np.zeros(len(names))
    for start in range(0, len(events), chunk):
        part = events.take(np.arange(start, min(start + chunk, len(events))))
        result, decision = forward_decisions(bn, part, "event", keep_times=True)
        for l in range(len(names)):
            t = result.times[:, result.n_off[l]:result.n_off[l + 1]].astype(np.int64)
            fired = (t <= decision.time[:, None]) & (t < bn.t_max)
            total[l] += t[fired].sum()
            count[l] += fired.sum()
            has = fired.any(axis=1)
            first_total[l] += np.where(fired, t, bn.t_max).min(axis=1)[has].sum()
            first_count[l] += has.sum()
    return {f"{l}:{name}": {"mean": float(total[l] / count[l]) if count[l] else None,
                            "first": float(first_total[l] / first_count[l]) if first_count[l] else None}
            for l, name in enumerate(names)}

