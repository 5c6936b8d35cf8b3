"""The exported layered network (conv, pool, fc) as plain arrays, channel-first throughout.

The export layout is NIR's and PyTorch's, not the engine's: every image tensor is ``(C, H,
W)`` and flattened channel-first, neuron ``(c, y, x)`` of a layer is number ``(c * H + y) *
W + x`` (the engine numbers image layers channel-last, ``(y * W + x) * C + c``, see
:mod:`bstdg.arch`). The input units are the encoder's, already channel-first, so an exported
file takes the encoder's spikes as they are. Per layer ``l`` of ``arch.layers_all``:

* conv: ``bits[l]`` uint8 ``(C_out, C_in, K, K)``, 1 for +1, 0 for -1 (PyTorch's
  ``Conv2d.weight`` order; output ``(co, oy, ox)`` sums input ``(ci, oy*S - P + ky, ox*S - P
  + kx)`` times ``sign[co, ci, ky, kx]``, a cross-correlation); ``thresholds[l]`` int64 per
  neuron ``(C_out * H_out * W_out,)`` channel-first (a per-channel threshold appears as its
  value repeated over the positions);
* pool: ``bits[l]`` and ``thresholds[l]`` empty (shape ``(0,)``); an output fires at the
  earliest spike of its ``N x N`` window (stride ``N``, partial windows dropped), once;
* fc: ``bits[l]`` uint8 ``(n_out, n_in)``, inputs in the channel-first order of the layer
  below (or the encoder's); ``thresholds[l]`` int64 ``(n_out,)``.

Thresholds are the smallest integer potential that fires (>= 1); spike times are steps
``0..t_max-1``. Like :mod:`.model`, nothing here imports :mod:`bstdg.engine` outside the
two conversion functions that take or return the engine's :class:`LayeredNet`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from ..arch import Architecture
from ..errors import BstdgError
from .model import T_MAX_LIMIT, THRESHOLD_MAX, ExportError, encoder_json, to_binary_net


def arch_json(arch: Architecture) -> str:
    """The canonical JSON text of an architecture (sorted keys, no spaces)."""
    return json.dumps(arch.to_dict(), sort_keys=True, separators=(",", ":"))


def parse_arch(text: str, source: str | None = None) -> Architecture:
    """An architecture from its JSON text; ExportError (one line, after ``source: `` when
    given) for anything malformed."""
    try:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        return Architecture.from_dict(d)
    except (ValueError, RecursionError, BstdgError, TypeError, AttributeError) as exc:
        where = f"{source}: " if source is not None else ""
        raise ExportError(f"{where}the architecture record is malformed ({' '.join(str(exc).split())[:120]})") \
            from None


def bits_shape(arch: Architecture, l: int) -> tuple:
    """Shape of layer ``l``'s sign bits in the export layout (module docstring)."""
    layer, shape_in = arch.layers_all[l], arch.in_shapes[l]
    if layer.kind == "conv":
        return (layer.channels, shape_in[0], layer.kernel, layer.kernel)
    if layer.kind == "fc":
        return (layer.units, int(np.prod(shape_in)))
    return (0,)


def last_of_first(shape) -> np.ndarray:
    """``idx[cf]``: the channel-last index of the channel-first index ``cf`` of a ``(C, H, W)``
    tensor; the identity for a flat ``(N,)`` one."""
    n = int(np.prod(shape))
    if len(shape) != 3:
        return np.arange(n)
    c, h, w = shape
    return np.arange(n).reshape(h, w, c).transpose(2, 0, 1).ravel()


@dataclass(frozen=True)
class ExportedLayeredNet:
    """A layered network as every export format holds it (layouts: module docstring);
    checked on construction (ExportError)."""

    arch: Architecture
    bits: tuple
    thresholds: tuple
    t_max: int
    encoder: dict

    def __post_init__(self):
        self.check()

    @property
    def sizes(self) -> tuple:
        return tuple(int(n) for n in self.arch.sizes)

    @property
    def kinds(self) -> tuple:
        return tuple(layer.kind for layer in self.arch.layers_all)

    def signs(self, l: int) -> np.ndarray:
        """Layer ``l``'s weights as int8 ±1 in the export layout."""
        return np.where(self.bits[l] != 0, 1, -1).astype(np.int8)

    def rows(self, l: int) -> np.ndarray:
        """Layer ``l``'s bits as rows, one per output channel (conv: ``C_in*K*K`` bits each)
        or neuron (fc); ``(0, 0)`` for pool."""
        b = self.bits[l]
        return b.reshape(b.shape[0], -1) if b.ndim > 1 else b.reshape(0, 0)

    def check(self) -> "ExportedLayeredNet":
        if not isinstance(self.arch, Architecture):
            raise ExportError("the architecture is not a bstdg.arch.Architecture")
        n_layers = len(self.arch.layers_all)
        if len(self.bits) != n_layers or len(self.thresholds) != n_layers:
            raise ExportError(f"need one weight and one threshold array per layer ({n_layers}: {self.arch}), "
                              f"found {len(self.bits)} and {len(self.thresholds)}")
        if not isinstance(self.t_max, (int, np.integer)) or not 2 <= int(self.t_max) <= T_MAX_LIMIT:
            raise ExportError(f"t_max {self.t_max!r:.40} is not an integer in 2..{T_MAX_LIMIT}")
        for l, (layer, b, th) in enumerate(zip(self.arch.layers_all, self.bits, self.thresholds)):
            want = bits_shape(self.arch, l)
            n = 0 if layer.kind == "pool" else self.arch.sizes[l + 1]
            if not isinstance(b, np.ndarray) or b.shape != want:
                raise ExportError(f"layer {l} ({layer}): weights have shape {getattr(b, 'shape', None)}, "
                                  f"expected {want}")
            if not np.isin(b, (0, 1)).all():
                raise ExportError(f"layer {l} ({layer}): sign bits are not all 0 or 1")
            if not isinstance(th, np.ndarray) or th.shape != (n,) or th.dtype.kind not in "iu":
                raise ExportError(f"layer {l} ({layer}): thresholds are {getattr(th, 'dtype', None)} "
                                  f"{getattr(th, 'shape', None)}, expected integers ({n},)")
            if th.size and (th.min() < 1 or th.max() > THRESHOLD_MAX):
                raise ExportError(f"layer {l} ({layer}): thresholds must be in 1..{THRESHOLD_MAX}, "
                                  f"found {int(th.min())}..{int(th.max())}")
        if not isinstance(self.encoder, dict):
            raise ExportError("the encoder definition is not a JSON object")
        if self.encoder.get("t_max") != int(self.t_max):
            raise ExportError(f"encoder t_max {self.encoder.get('t_max')!r} differs from the network's "
                              f"t_max {self.t_max}")
        shape = self.encoder.get("input_shape")
        if shape is not None and (not isinstance(shape, (list, tuple)) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 2 ** 31 for s in shape)
                or int(np.prod(shape, dtype=object)) != self.sizes[0]):
            raise ExportError(f"encoder input shape {shape!r:.60} does not give the {self.sizes[0]} inputs "
                              f"of the network")
        return self

    def digest(self) -> str:
        """SHA-256 (hex) of the content (docs/export.md): the tag ``bstdg-layered``, ``t_max``
        as int64 little-endian, the architecture JSON (:func:`arch_json`), per conv/fc layer
        the packed rows (:meth:`rows`, each padded to whole bytes) and the thresholds as
        int32 little-endian, then the encoder JSON (UTF-8)."""
        h = hashlib.sha256(b"bstdg-layered")
        h.update(np.array([self.t_max], "<i8").tobytes())
        h.update(arch_json(self.arch).encode())
        for l, th in enumerate(self.thresholds):
            if self.kinds[l] != "pool":
                h.update(np.packbits(self.rows(l), axis=1).tobytes())
                h.update(np.asarray(th, "<i4").tobytes())
        h.update(encoder_json(self.encoder).encode())
        return h.hexdigest()


def read_layers(arch: Architecture, read_layer) -> tuple:
    """``(bits, thresholds)``, one entry per layer of ``arch``, for a reader: a conv or fc
    layer ``l`` gives ``read_layer(l, layer, bits_shape(arch, l))`` (its bits of that shape
    and its thresholds), a pool layer the empty arrays."""
    bits, thresholds = [], []
    for l, layer in enumerate(arch.layers_all):
        if layer.kind == "pool":
            b, th = np.zeros(0, np.uint8), np.zeros(0, np.int64)
        else:
            b, th = read_layer(l, layer, bits_shape(arch, l))
        bits.append(b)
        thresholds.append(th)
    return tuple(bits), tuple(thresholds)


def loaded(source: str, arch: Architecture, bits, thresholds, t_max: int, encoder: dict) -> ExportedLayeredNet:
    """The :class:`ExportedLayeredNet` a reader found in ``source``: ExportError from its
    check with ``source: `` in front."""
    try:
        return ExportedLayeredNet(arch, tuple(bits), tuple(thresholds), t_max, encoder)
    except ExportError as exc:
        raise ExportError(f"{source}: {exc}") from None


def from_layered_net(net, encoder: dict) -> ExportedLayeredNet:
    """The export of the engine's :class:`~bstdg.engine.conv.LayeredNet` (or of a
    :class:`~bstdg.convnet.LayeredSNN`, through its ``binary()``): weights and thresholds
    moved from the engine's channel-last layout to the channel-first export layout."""
    if hasattr(net, "binary") and not hasattr(net, "weights"):
        net = net.binary()
    arch = net.arch
    bits, thresholds = [], []
    for l, (layer, w, th) in enumerate(zip(arch.layers_all, net.weights, net.thresholds)):
        w = np.asarray(w)
        if layer.kind != "pool" and not np.isin(w, (-1, 1)).all():
            raise ExportError(f"layer {l} ({layer}): weights must all be -1 or +1 to export")
        shape_in, shape_out = arch.in_shapes[l], arch.shapes[l]
        if layer.kind == "conv":
            bits.append(np.ascontiguousarray(w.transpose(3, 0, 1, 2) > 0).astype(np.uint8))
            thresholds.append(np.asarray(th, np.int64)[last_of_first(shape_out)])
        elif layer.kind == "pool":
            bits.append(np.zeros(0, np.uint8))
            thresholds.append(np.zeros(0, np.int64))
        else:  # rows of w are in the engine's order of the layer below: channel-last after conv/pool
            rows = last_of_first(shape_in) if l > 0 else np.arange(w.shape[0])
            bits.append(np.ascontiguousarray((w[rows].T > 0).astype(np.uint8)))
            thresholds.append(np.asarray(th, np.int64).copy())
    return ExportedLayeredNet(arch, tuple(bits), tuple(thresholds), int(net.t_max), dict(encoder))


def to_layered_net(ex: ExportedLayeredNet):
    """The engine's :class:`~bstdg.engine.conv.LayeredNet` of an export (imports the engine;
    the verify path never calls this)."""
    from ..engine.conv import LayeredNet  # engine (Numba): kept off the export read path

    arch = ex.arch
    weights, thresholds = [], []
    for l, layer in enumerate(arch.layers_all):
        s = ex.signs(l)
        shape_in, shape_out = arch.in_shapes[l], arch.shapes[l]
        if layer.kind == "conv":
            weights.append(np.ascontiguousarray(s.transpose(1, 2, 3, 0)))
            th = np.empty(arch.sizes[l + 1], np.int32)
            th[last_of_first(shape_out)] = ex.thresholds[l]
            thresholds.append(th)
        elif layer.kind == "pool":
            weights.append(np.zeros(0, np.int8))
            thresholds.append(np.ones(arch.sizes[l + 1], np.int32))
        else:
            w = np.empty((s.shape[1], s.shape[0]), np.int8)
            rows = last_of_first(shape_in) if l > 0 else np.arange(s.shape[1])
            w[rows] = s.T
            weights.append(w)
            thresholds.append(np.asarray(ex.thresholds[l], np.int32))
    return LayeredNet(arch, tuple(weights), tuple(thresholds), int(ex.t_max))


def to_engine(ex) -> tuple:
    """``(net, encoder)`` of an export read back: the engine's
    :class:`~bstdg.engine.conv.LayeredNet` of an :class:`ExportedLayeredNet`
    (:func:`to_layered_net`), the :class:`~bstdg.engine.BinaryNet` of an fc
    :class:`~.model.ExportedNet` (:func:`~.model.to_binary_net`); imports the engine."""
    return (to_layered_net(ex) if isinstance(ex, ExportedLayeredNet) else to_binary_net(ex)), ex.encoder


def layered_footprint(ex: ExportedLayeredNet) -> dict:
    """Bytes for the packed weights (rows padded to bytes) and int16 thresholds vs float32,
    with the keys of :func:`.model.footprint`."""
    n_weights = sum(int(b.size) for b in ex.bits)
    n_neurons = sum(int(t.size) for t in ex.thresholds)
    weight_bytes = sum(ex.rows(l).shape[0] * ((ex.rows(l).shape[1] + 7) // 8) for l in range(len(ex.bits)))
    threshold_bytes = 2 * n_neurons
    float32_bytes = 4 * (n_weights + n_neurons)
    return {"sizes": list(ex.sizes), "arch": str(ex.arch), "n_weights": n_weights, "n_neurons": n_neurons,
            "weight_bytes": weight_bytes, "threshold_bytes": threshold_bytes,
            "total_bytes": weight_bytes + threshold_bytes, "float32_bytes": float32_bytes,
            "ratio": float32_bytes / max(weight_bytes + threshold_bytes, 1)}
