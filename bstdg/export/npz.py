"""The canonical export: one ``.npz`` (a zip of ``.npy`` arrays, no pickles).

Layout (format ``bstdg-export`` version 1; every field is documented in docs/export.md):

``format``, ``format_version``, ``n_layers``, ``t_max``, ``sizes``, ``encoder`` (JSON text),
``digest`` (SHA-256, see :meth:`ExportedNet.digest`) and per layer ``l``:
``layer{l}_shape`` (int64 ``[n_out, n_in]``), ``layer{l}_bits`` (uint8
``(n_out, ceil(n_in/8))`` = ``numpy.packbits`` of the ``(n_out, n_in)`` sign bits along
each row, MSB first, bit 1 = +1, zero padding) and ``layer{l}_thresholds`` (int32).

Version 2 holds a layered (conv/pool/fc) network, :class:`~.layered.ExportedLayeredNet`:
``format``, ``format_version`` (2), ``kind`` (``"layered"``), ``arch`` (JSON text,
:func:`~.layered.arch_json`), ``t_max``, ``sizes`` (neurons per layer, input first),
``encoder``, ``digest`` (:meth:`ExportedLayeredNet.digest`) and per conv or fc layer ``l``
(pool layers have no arrays): ``layer{l}_shape`` (int64: ``[C_out, C_in, K, K]`` or
``[n_out, n_in]``), ``layer{l}_bits`` (uint8 ``(rows, ceil(row_bits/8))``: one row per
output channel, ``C_in*K*K`` bits in ``(ci, ky, kx)`` order, or per fc neuron) and
``layer{l}_thresholds`` (int32, per neuron, channel-first). fc networks are still written
as version 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..npzio import read_arrays, scalar
from ..files import save_npz
from .layered import ExportedLayeredNet, arch_json, loaded, parse_arch, read_layers, to_engine
from .model import T_MAX_LIMIT, ExportError, ExportedNet, encoder_json, from_binary_net, parse_encoder

FORMAT = "bstdg-export"
FORMAT_VERSION = 2
FC_VERSION = 1  # fc networks (ExportedNet) are written as version 1, layered ones as version 2


def export_npz(net, encoder: dict, path) -> Path:
    """Write ``net`` (a :class:`~bstdg.engine.BinaryNet`) and its encoder to ``path``."""
    return write_npz(from_binary_net(net, encoder), path)


def write_npz(ex, path) -> Path:
    if isinstance(ex, ExportedLayeredNet):
        return write_layered_npz(ex, path)
    layers = ((l, b.shape, b, th) for l, (b, th) in enumerate(zip(ex.bits, ex.thresholds)))
    return _save(path, FC_VERSION, {"n_layers": np.array(len(ex.bits), np.int64)}, ex, layers)


def write_layered_npz(ex: ExportedLayeredNet, path) -> Path:
    layers = ((l, ex.bits[l].shape, ex.rows(l), ex.thresholds[l])
              for l, kind in enumerate(ex.kinds) if kind != "pool")
    return _save(path, 2, {"kind": np.array("layered"), "arch": np.array(arch_json(ex.arch))}, ex, layers)


def _save(path, version: int, fields: dict, ex, layers) -> Path:
    """The export file of either version: ``format``, ``format_version``, ``fields``, ``t_max``,
    ``sizes``, ``encoder`` and ``digest``, then per ``(l, shape, rows, thresholds)`` of
    ``layers`` the arrays ``layer{l}_shape``, ``layer{l}_bits`` (the rows packed) and
    ``layer{l}_thresholds``. Written atomically; the name is kept as given (no ".npz"
    appended)."""
    arrays = {"format": np.array(FORMAT), "format_version": np.array(version, np.int64), **fields,
              "t_max": np.array(ex.t_max, np.int64), "sizes": np.array(ex.sizes, np.int64),
              "encoder": np.array(encoder_json(ex.encoder)), "digest": np.array(ex.digest())}
    for l, shape, rows, th in layers:
        arrays[f"layer{l}_shape"] = np.array(shape, np.int64)
        arrays[f"layer{l}_bits"] = np.packbits(rows, axis=1)
        arrays[f"layer{l}_thresholds"] = np.asarray(th, np.int32)
    return save_npz(Path(path), **arrays)


def read_npz(path):
    """The network in an export ``.npz`` (an :class:`ExportedNet`, or for version 2 an
    :class:`ExportedLayeredNet`); ExportError when it is not one, is truncated, corrupt
    (digest) or inconsistent."""
    source = str(path)
    z = read_arrays(path, "export file", ExportError)
    if "format" not in z or z["format"].dtype.kind != "U" or scalar(z, "format", "str", source,
                                                                    ExportError) != FORMAT:
        raise ExportError(f"{source}: not a bstdg export file (no format '{FORMAT}'); "
                          f"`bstdg export --format npz` writes one")
    version = scalar(z, "format_version", "int", source, ExportError)
    if version > FORMAT_VERSION or version < 1:
        raise ExportError(f"{source}: export format v{version}; this bstdg reads "
                          f"v1..v{FORMAT_VERSION}")
    if version == 2:
        return _read_layered(z, source)
    n_layers = scalar(z, "n_layers", "int", source, ExportError)
    t_max = scalar(z, "t_max", "int", source, ExportError)
    if not 2 <= t_max <= T_MAX_LIMIT:
        raise ExportError(f"{source}: t_max {t_max} is out of range (2..{T_MAX_LIMIT})")
    sizes = _int_vector(z, "sizes", source)
    encoder = parse_encoder(scalar(z, "encoder", "str", source, ExportError), source)
    digest = scalar(z, "digest", "str", source, ExportError)
    if n_layers < 1 or len(sizes) != n_layers + 1 or min(sizes) < 1:
        raise ExportError(f"{source}: {n_layers} layers but sizes {sizes}"[:200])
    bits, thresholds = [], []
    for l in range(n_layers):
        shape = _int_vector(z, f"layer{l}_shape", source)
        if shape != [sizes[l + 1], sizes[l]]:
            raise ExportError(f"{source}: layer {l} shape {shape} does not match "
                              f"sizes {sizes}"[:200])
        n_out, n_in = shape
        b, th = _layer(z, l, n_out, n_in, n_out, source)
        bits.append(b)
        thresholds.append(th)
    return _digest_checked(ExportedNet(tuple(bits), tuple(thresholds), t_max, encoder).check(source),
                           digest, source)


def _read_layered(z: dict, source: str) -> ExportedLayeredNet:
    if "kind" not in z or "arch" not in z:
        raise ExportError(f"{source}: export format v2 (a layered network) without its 'kind' and 'arch' "
                          f"(corrupt file)")
    if scalar(z, "kind", "str", source, ExportError) != "layered":
        raise ExportError(f"{source}: export format v2 must have kind 'layered'")
    arch = parse_arch(scalar(z, "arch", "str", source, ExportError), source)
    t_max = scalar(z, "t_max", "int", source, ExportError)
    encoder = parse_encoder(scalar(z, "encoder", "str", source, ExportError), source)
    digest = scalar(z, "digest", "str", source, ExportError)
    if _int_vector(z, "sizes", source) != list(arch.sizes):
        raise ExportError(f"{source}: sizes do not match the architecture {arch}")

    def read_layer(l, layer, shape):
        found = tuple(_int_vector(z, f"layer{l}_shape", source))
        if found != shape:
            raise ExportError(f"{source}: layer {l} ({layer}) shape {list(found)} does not match {list(shape)}")
        b, th = _layer(z, l, shape[0], int(np.prod(shape[1:])), arch.sizes[l + 1], source)
        return b.reshape(shape), th

    return _digest_checked(loaded(source, arch, *read_layers(arch, read_layer), t_max, encoder), digest, source)


def _layer(z: dict, l: int, n_rows: int, n_bits: int, n: int, source: str) -> tuple:
    """``(bits, thresholds)`` of layer ``l`` (either version): ``layer{l}_bits`` unpacked to
    uint8 ``(n_rows, n_bits)`` (its padding bits must be 0) and ``layer{l}_thresholds`` as
    int64 ``(n,)``; ExportError when either is missing or has the wrong type or shape."""
    packed = z.get(f"layer{l}_bits")
    if packed is None or packed.dtype != np.uint8 or packed.shape != (n_rows, (n_bits + 7) // 8):
        found = "nothing" if packed is None else f"{packed.dtype} {packed.shape}"
        raise ExportError(f"{source}: layer {l} bits are {found}; expected uint8 "
                          f"({n_rows}, {(n_bits + 7) // 8})")
    row = np.unpackbits(packed, axis=1)
    if row[:, n_bits:].any():
        raise ExportError(f"{source}: layer {l} has non-zero padding bits (corrupt)")
    th = z.get(f"layer{l}_thresholds")
    if th is None or th.dtype.kind not in "iu" or th.shape != (n,):
        found = "nothing" if th is None else f"{th.dtype} {th.shape}"
        raise ExportError(f"{source}: layer {l} thresholds are {found}; expected int32 ({n},)")
    return np.ascontiguousarray(row[:, :n_bits]), th.astype(np.int64)


def _digest_checked(ex, digest: str, source: str):
    """``ex``, or ExportError when its digest is not the file's ``digest``."""
    if ex.digest() != digest:
        raise ExportError(f"{source}: content does not match its SHA-256 digest (corrupt file)")
    return ex


def _int_vector(z: dict, key: str, source: str) -> list:
    a = z.get(key)
    if a is None or a.ndim != 1 or a.dtype.kind not in "iu":
        found = "nothing" if a is None else f"{a.dtype} {a.shape}"
        raise ExportError(f"{source}: {key!r} must be a vector of integers, found {found}")
    return [int(v) for v in a]


def load_npz(path):
    """``(BinaryNet, encoder)`` from an export ``.npz`` (``(LayeredNet, encoder)`` for a
    layered one)."""
    return to_engine(read_npz(path))
