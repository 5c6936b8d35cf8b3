"""The canonical export: one ``.npz`` (a zip of ``.npy`` arrays, no pickles).

Layout (format ``bstdg-export`` version 1; every field is documented in docs/export.md):

``format``, ``format_version``, ``n_layers``, ``t_max``, ``sizes``, ``encoder`` (JSON text),
``digest`` (SHA-256, see :meth:`ExportedNet.digest`) and per layer ``l``:
``layer{l}_shape`` (int64 ``[n_out, n_in]``), ``layer{l}_bits`` (uint8
``(n_out, ceil(n_in/8))`` = ``numpy.packbits`` of the ``(n_out, n_in)`` sign bits along
each row, MSB first, bit 1 = +1, zero padding) and ``layer{l}_thresholds`` (int32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..npzio import read_arrays, scalar
from ..files import save_npz
from .model import (T_MAX_LIMIT, ExportError, ExportedNet, encoder_json, from_binary_net, parse_encoder,
                    to_binary_net)

FORMAT = "bstdg-export"
FORMAT_VERSION = 1


def export_npz(net, encoder: dict, path) -> Path:
    """Write ``net`` (a :class:`~bstdg.engine.BinaryNet`) and its encoder to ``path``."""
    return write_npz(from_binary_net(net, encoder), path)


def write_npz(ex: ExportedNet, path) -> Path:
    path = Path(path)
    arrays = {"format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION, np.int64),
              "n_layers": np.array(len(ex.bits), np.int64), "t_max": np.array(ex.t_max, np.int64),
              "sizes": np.array(ex.sizes, np.int64), "encoder": np.array(encoder_json(ex.encoder)),
              "digest": np.array(ex.digest())}
    for l, (b, th) in enumerate(zip(ex.bits, ex.thresholds)):
        arrays[f"layer{l}_shape"] = np.array(b.shape, np.int64)
        arrays[f"layer{l}_bits"] = np.packbits(b, axis=1)
        arrays[f"layer{l}_thresholds"] = np.asarray(th, np.int32)
    return save_npz(path, **arrays)  # atomic; the name is kept as given (no ".npz" appended)


def read_npz(path) -> ExportedNet:
    """The network in an export ``.npz``; ExportError when it is not one, is truncated,
    corrupt (digest) or inconsistent."""
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
        packed = z.get(f"layer{l}_bits")
        if packed is None or packed.dtype != np.uint8 or packed.shape != (n_out, (n_in + 7) // 8):
            found = "nothing" if packed is None else f"{packed.dtype} {packed.shape}"
            raise ExportError(f"{source}: layer {l} bits are {found}; expected uint8 "
                              f"({n_out}, {(n_in + 7) // 8})")
        row = np.unpackbits(packed, axis=1)
        if row[:, n_in:].any():
            raise ExportError(f"{source}: layer {l} has non-zero padding bits (corrupt)")
        th = z.get(f"layer{l}_thresholds")
        if th is None or th.dtype.kind not in "iu" or th.shape != (n_out,):
            found = "nothing" if th is None else f"{th.dtype} {th.shape}"
            raise ExportError(f"{source}: layer {l} thresholds are {found}; expected int32 ({n_out},)")
        bits.append(np.ascontiguousarray(row[:, :n_in]))
        thresholds.append(th.astype(np.int64))
    ex = ExportedNet(tuple(bits), tuple(thresholds), t_max, encoder).check(source)
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
    """``(BinaryNet, encoder)`` from an export ``.npz``."""
    ex = read_npz(path)
    return to_binary_net(ex), ex.encoder
