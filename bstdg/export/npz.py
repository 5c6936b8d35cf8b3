"""The canonical export: one ``.npz`` (a zip of ``.npy`` arrays, no pickles).

Layout (format ``bstdg-export`` version 1; every field is documented in docs/export.md):

``format``, ``format_version``, ``n_layers``, ``t_max``, ``sizes``, ``encoder`` (JSON text),
``digest`` (SHA-256, see :meth:`ExportedNet.digest`) and per layer ``l``:
``layer{l}_shape`` (int64 ``[n_out, n_in]``), ``layer{l}_bits`` (uint8
``(n_out, ceil(n_in/8))`` = ``numpy.packbits`` of the ``(n_out, n_in)`` sign bits along
each row, MSB first, bit 1 = +1, zero padding) and ``layer{l}_thresholds`` (int32).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .model import ExportError, ExportedNet, encoder_json, from_binary_net, parse_encoder, to_binary_net

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
    with open(path, "wb") as f:  # a file object: numpy must not append ".npz" to the name
        np.savez(f, **arrays)
    return path


def read_npz(path) -> ExportedNet:
    """The network in an export ``.npz``; ExportError when it is not one, is truncated,
    corrupt (digest) or inconsistent."""
    source = str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if "format" not in names or str(z["format"]) != FORMAT:
                raise ExportError(f"{source}: not a bstdg export file (no format '{FORMAT}'); "
                                  f"`bstdg export --format npz` writes one")
            version = int(z["format_version"])
            if version > FORMAT_VERSION or version < 1:
                raise ExportError(f"{source}: export format v{version}; this bstdg reads "
                                  f"v1..v{FORMAT_VERSION}")
            n_layers = int(z["n_layers"])
            t_max = int(z["t_max"])
            sizes = [int(s) for s in z["sizes"]]
            encoder = parse_encoder(str(z["encoder"]), source)
            digest = str(z["digest"])
            if n_layers < 1 or len(sizes) != n_layers + 1:
                raise ExportError(f"{source}: {n_layers} layers but sizes {sizes}")
            bits, thresholds = [], []
            for l in range(n_layers):
                shape = [int(s) for s in z[f"layer{l}_shape"]]
                if shape != [sizes[l + 1], sizes[l]]:
                    raise ExportError(f"{source}: layer {l} shape {shape} does not match "
                                      f"sizes {sizes}")
                n_out, n_in = shape
                packed = z[f"layer{l}_bits"]
                if packed.dtype != np.uint8 or packed.shape != (n_out, (n_in + 7) // 8):
                    raise ExportError(f"{source}: layer {l} bits are {packed.dtype} "
                                      f"{packed.shape}; expected uint8 ({n_out}, {(n_in + 7) // 8})")
                row = np.unpackbits(packed, axis=1)
                if row[:, n_in:].any():
                    raise ExportError(f"{source}: layer {l} has non-zero padding bits (corrupt)")
                th = z[f"layer{l}_thresholds"]
                if th.dtype.kind not in "iu" or th.shape != (n_out,):
                    raise ExportError(f"{source}: layer {l} thresholds are {th.dtype} "
                                      f"{th.shape}; expected int32 ({n_out},)")
                bits.append(np.ascontiguousarray(row[:, :n_in]))
                thresholds.append(th.astype(np.int64))
    except ExportError:
        raise
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{source}: cannot read the export file (truncated or corrupt?): "
                          f"{exc}") from None
    ex = ExportedNet(tuple(bits), tuple(thresholds), t_max, encoder).check(source)
    if ex.digest() != digest:
        raise ExportError(f"{source}: content does not match its SHA-256 digest (corrupt file)")
    return ex


def load_npz(path):
    """``(BinaryNet, encoder)`` from an export ``.npz``."""
    ex = read_npz(path)
    return to_binary_net(ex), ex.encoder
