"""The exported network as plain arrays: sign bits, integer thresholds, ``t_max``, encoder.

This module (like every reader in :mod:`bstdg.export` and the re-run in
:mod:`bstdg.export.verify`) imports nothing from :mod:`bstdg.engine`: a file is checked by
a code path that shares no simulation code with the engine that trained the model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from ..errors import BstdgError

from ..limits import T_MAX_LIMIT, THRESHOLD_MAX  # noqa: F401 (the limits every format checks)


class ExportError(BstdgError):
    """A file that cannot be written, or read back exactly (corrupt, truncated, mismatched)."""


@dataclass(frozen=True)
class ExportedNet:
    """What every export format holds.

    ``bits[l]`` is uint8 ``(n_out, n_in)`` with 1 for a +1 weight and 0 for -1 (output-major:
    row ``j`` is neuron ``j``'s synapses); ``thresholds[l]`` int64 ``(n_out,)``, the smallest
    integer potential that fires (>= 1); spike times are steps ``0..t_max-1``; ``encoder``
    is the input encoding (see :func:`latency_encoder`).
    """

    bits: tuple
    thresholds: tuple
    t_max: int
    encoder: dict

    @property
    def sizes(self) -> tuple:
        return (int(self.bits[0].shape[1]),) + tuple(int(b.shape[0]) for b in self.bits)

    def signs(self, l: int) -> np.ndarray:
        """Layer ``l`` as int8 ±1 ``(n_out, n_in)``."""
        return np.where(self.bits[l] != 0, 1, -1).astype(np.int8)

    def check(self, source: str = "network") -> "ExportedNet":
        """ExportError unless shapes, values, ``t_max`` and the encoder are consistent."""
        if not self.bits or len(self.bits) != len(self.thresholds):
            raise ExportError(f"{source}: need one threshold vector per weight matrix")
        if not isinstance(self.t_max, (int, np.integer)) or not 2 <= int(self.t_max) <= T_MAX_LIMIT:
            raise ExportError(f"{source}: t_max {self.t_max!r:.40} is not an integer in 2..{T_MAX_LIMIT}")
        for l, (b, th) in enumerate(zip(self.bits, self.thresholds)):
            if b.ndim != 2 or b.size == 0:
                raise ExportError(f"{source}: layer {l} weights have shape {b.shape}")
            if l and b.shape[1] != self.bits[l - 1].shape[0]:
                raise ExportError(f"{source}: layer {l} has {b.shape[1]} inputs but layer "
                                  f"{l - 1} has {self.bits[l - 1].shape[0]} neurons")
            if not np.isin(b, (0, 1)).all():
                raise ExportError(f"{source}: layer {l} sign bits are not all 0 or 1")
            if th.shape != (b.shape[0],):
                raise ExportError(f"{source}: layer {l} has {b.shape[0]} neurons but "
                                  f"{th.shape} thresholds")
            if th.size and (th.min() < 1 or th.max() > THRESHOLD_MAX):
                raise ExportError(f"{source}: layer {l} thresholds must be in 1..{THRESHOLD_MAX}, "
                                  f"found {int(th.min())}..{int(th.max())}")
        if not isinstance(self.encoder, dict):
            raise ExportError(f"{source}: the encoder definition is not a JSON object")
        if self.encoder.get("t_max") != int(self.t_max):
            raise ExportError(f"{source}: encoder t_max {self.encoder.get('t_max')!r} differs "
                              f"from the network's t_max {self.t_max}")
        shape = self.encoder.get("input_shape")
        if shape is not None and not (isinstance(shape, (list, tuple)) and shape and all(
                isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 2 ** 31 for s in shape)):
            raise ExportError(f"{source}: encoder input_shape must be a list of positive integers, "
                              f"found {shape!r:.60}")
        if shape is not None and int(np.prod(shape, dtype=object)) != self.sizes[0]:
            raise ExportError(f"{source}: encoder input shape {shape} does not give the "
                              f"{self.sizes[0]} inputs of the network")
        return self

    def digest(self) -> str:
        """SHA-256 (hex) of the content, as defined in docs/export.md: ``t_max`` and the
        sizes as int64 little-endian, then per layer the packed bits (rows padded to whole
        bytes) and the thresholds as int32 little-endian, then the encoder JSON (UTF-8)."""
        h = hashlib.sha256()
        h.update(np.array([self.t_max, *self.sizes], "<i8").tobytes())
        for b, th in zip(self.bits, self.thresholds):
            h.update(np.packbits(b, axis=1).tobytes())
            h.update(np.asarray(th, "<i4").tobytes())
        h.update(encoder_json(self.encoder).encode())
        return h.hexdigest()


def encoder_json(encoder: dict) -> str:
    """The canonical JSON text of an encoder definition (sorted keys, no spaces)."""
    return json.dumps(encoder, sort_keys=True, separators=(",", ":"))


def parse_encoder(text: str, source: str) -> dict:
    try:
        encoder = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ExportError(f"{source}: the encoder definition is not valid JSON "
                          f"({str(exc)[:100]})") from None
    if not isinstance(encoder, dict):
        raise ExportError(f"{source}: the encoder definition is not a JSON object")
    return encoder


def latency_encoder(t_max: int, input_shape, dataset: str | None = None) -> dict:
    """The definition of bstdg's latency code (:func:`bstdg.encoding.encode_latency`)."""
    return {
        "kind": "latency",
        "t_max": int(t_max),
        "input_shape": [int(s) for s in input_shape],
        "input_order": "row-major (C order) flattening of input_shape",
        "formula": "t = rint((1 - x) * (t_max - 1)); no spike (t = t_max) if x <= floor",
        "parameters": {"x": "pixel / 255 for uint8 input, else an intensity in [0, 1]",
                       "floor": 0.0, "rint": "round half to even (numpy.rint), float64"},
        "uint8_formula": "t = ((255 - p) * (t_max - 1) * 2 + 255) // 510 if p > 0 else t_max",
        "dataset": dataset,
    }


def from_binary_net(net, encoder: dict) -> ExportedNet:
    """An :class:`ExportedNet` from anything with ``weights`` (int8 ±1 ``(n_in, n_out)``),
    ``thresholds`` and ``t_max`` (a :class:`~bstdg.engine.BinaryNet`)."""
    bits, thresholds = [], []
    for l, (w, th) in enumerate(zip(net.weights, net.thresholds)):
        w = np.asarray(w)
        if not np.isin(w, (-1, 1)).all():
            raise ExportError(f"layer {l}: weights must all be -1 or +1 to export")
        bits.append(np.ascontiguousarray((w.T > 0).astype(np.uint8)))
        thresholds.append(np.asarray(th).astype(np.int64))
    return ExportedNet(tuple(bits), tuple(thresholds), int(net.t_max), dict(encoder)).check()


def to_binary_net(ex: ExportedNet):
    """The :class:`~bstdg.engine.BinaryNet` of an exported network (imports the engine
    package; the verify path never calls this)."""
    from ..engine import BinaryNet  # engine (Numba package): kept off the export read path

    return BinaryNet(tuple(np.ascontiguousarray(ex.signs(l).T) for l in range(len(ex.bits))),
                     tuple(np.asarray(th, np.int32) for th in ex.thresholds), ex.t_max)


def footprint(ex: ExportedNet) -> dict:
    """Bytes for the packed weights and int16 thresholds vs float32 weights and thresholds."""
    sizes = ex.sizes
    n_weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    n_neurons = sum(sizes[1:])
    weight_bytes = sum(b * ((a + 7) // 8) for a, b in zip(sizes[:-1], sizes[1:]))
    threshold_bytes = 2 * n_neurons
    float32_bytes = 4 * (n_weights + n_neurons)
    return {"sizes": list(sizes), "n_weights": n_weights, "n_neurons": n_neurons,
            "weight_bytes": weight_bytes, "threshold_bytes": threshold_bytes,
            "total_bytes": weight_bytes + threshold_bytes, "float32_bytes": float32_bytes,
            "ratio": float32_bytes / (weight_bytes + threshold_bytes)}
