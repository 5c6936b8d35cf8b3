"""Hex memory files (``$readmemh``) for layered (conv/pool/fc) networks: manifest version 2.

Per conv or fc layer ``l`` (export layout of :mod:`.layered`, channel-first):

* ``layer{l}_weights.hex``: one line per conv output channel (``C_in*K*K`` sign bits in
  ``(ci, ky, kx)`` order, the kernel of that channel) or per fc neuron (``n_in`` bits), MSB
  first, ``ceil(bits / 4)`` hex digits, zero padding bits, 1 = +1;
* ``layer{l}_thresholds.hex``: one line per neuron (conv: ``C_out*H_out*W_out`` lines,
  channel-first), 4 hex digits.

A pool layer has no files. ``manifest.json``: ``format`` ``bstdg-hex``, ``format_version``
2, ``kind`` ``layered``, ``arch`` (JSON text), ``t_max``, ``sizes``, ``encoder``,
``digest`` (:meth:`~.layered.ExportedLayeredNet.digest`) and per layer ``kind`` plus, for
conv/fc, ``rows``, ``row_bits``, ``weight_digits``, ``n_thresholds``, the two file names and
their SHA-256 (pool: ``size``). The Verilog core in ``hardware/`` runs fc networks only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .hex_common import FORMAT, MANIFEST, _integer, _read_nibbles, _weight_lines
from .layered import ExportedLayeredNet, arch_json, loaded, parse_arch, read_layers
from .model import ExportError

VERSION = 2


def write_hex_layered(ex: ExportedLayeredNet, folder) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = []
    for l, layer in enumerate(ex.arch.layers_all):
        if layer.kind == "pool":
            layers.append({"kind": "pool", "size": layer.size})
            continue
        rows = ex.rows(l)
        files = {"weights": f"layer{l}_weights.hex", "thresholds": f"layer{l}_thresholds.hex"}
        texts = {"weights": "\n".join(_weight_lines(rows)) + "\n",
                 "thresholds": "".join(f"{int(t):04x}\n" for t in ex.thresholds[l])}
        for kind, name in files.items():
            atomic_write(folder / name, texts[kind].encode())
        layers.append({"kind": layer.kind, "rows": int(rows.shape[0]), "row_bits": int(rows.shape[1]),
                       "weight_digits": (int(rows.shape[1]) + 3) // 4, "n_thresholds": int(ex.thresholds[l].size),
                       "threshold_digits": 4, **files,
                       "sha256": {kind: hashlib.sha256(texts[kind].encode()).hexdigest() for kind in files}})
    manifest = {"format": FORMAT, "format_version": VERSION, "kind": "layered", "arch": arch_json(ex.arch),
                "t_max": int(ex.t_max), "sizes": list(ex.sizes), "encoder": ex.encoder, "layers": layers,
                "digest": ex.digest()}
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())  # last
    return folder


def read_hex_layered(folder: Path, manifest: dict) -> ExportedLayeredNet:
    """The layered network of a version 2 manifest (already parsed); ExportError for
    missing, corrupt or inconsistent files."""
    source = str(folder)
    if manifest.get("kind") != "layered":
        raise ExportError(f"{folder / MANIFEST}: hex format v2 must have kind 'layered'")
    arch = parse_arch(manifest["arch"], str(folder / MANIFEST))
    if [_integer(s, "sizes") for s in manifest["sizes"]] != list(arch.sizes):
        raise ExportError(f"{source}: sizes do not match the architecture {arch}")
    entries = manifest["layers"]
    if not isinstance(entries, list) or len(entries) != len(arch.layers_all):
        raise ExportError(f"{source}: the manifest lists {len(entries)} layers, the architecture "
                          f"{len(arch.layers_all)}")
    for l, (layer, entry) in enumerate(zip(arch.layers_all, entries)):
        if entry.get("kind") != layer.kind:
            raise ExportError(f"{source}: layer {l} is {entry.get('kind')!r} in the manifest, {layer.kind} "
                              f"in the architecture")

    def read_layer(l, layer, shape):
        entry = entries[l]
        n_rows, n_bits, n = shape[0], int(np.prod(shape[1:])), arch.sizes[l + 1]
        if (_integer(entry["rows"], "rows"), _integer(entry["row_bits"], "row_bits"),
                _integer(entry["n_thresholds"], "n_thresholds")) != (n_rows, n_bits, n):
            raise ExportError(f"{source}: layer {l} ({layer}) sizes in the manifest do not match the architecture")
        for kind in ("weights", "thresholds"):
            name = entry[kind]
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                raise ExportError(f"{folder / MANIFEST}: layer {l} {kind} must be a file name in the folder")
        digits = (n_bits + 3) // 4
        nibbles = _read_nibbles(folder / entry["weights"], n_rows, digits, entry["sha256"]["weights"],
                                f"layer {l} weights")
        t_digits = _read_nibbles(folder / entry["thresholds"], n, 4, entry["sha256"]["thresholds"],
                                 f"layer {l} thresholds")
        row = np.unpackbits(nibbles[..., None], axis=-1)[..., 4:].reshape(n_rows, 4 * digits)
        if row[:, n_bits:].any():
            raise ExportError(f"{source}: layer {l} weights have non-zero padding bits")
        return (np.ascontiguousarray(row[:, :n_bits]).reshape(shape),
                t_digits.astype(np.int64) @ np.array([4096, 256, 16, 1]))

    ex = loaded(source, arch, *read_layers(arch, read_layer), _integer(manifest["t_max"], "t_max"),
                manifest["encoder"])
    if ex.digest() != manifest["digest"]:
        raise ExportError(f"{source}: content does not match the manifest's digest")
    return ex
