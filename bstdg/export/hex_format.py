"""Hex memory files for FPGA flows (Verilog ``$readmemh``), one folder per network.

``OUT/manifest.json`` names the files and holds ``t_max``, the sizes, the encoder and a
SHA-256 of every file; per layer ``l``:

* ``layer{l}_weights.hex``: one line per neuron (``n_out`` lines), ``ceil(n_in / 4)``
  lower-case hex digits, the row's sign bits MSB first (the first digit's top bit is input 0;
  bit 1 = +1), zero bits padding the row to whole digits. Read with
  ``reg [4*D-1:0] w [0:n_out-1]; $readmemh("layer0_weights.hex", w);`` — input ``i`` of
  neuron ``j`` is ``w[j][4*D-1-i]``.
* ``layer{l}_thresholds.hex``: one line per neuron, 4 hex digits, the threshold as a 16-bit
  unsigned word (thresholds are 1..32767).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..files import atomic_write
from . import hex_layered
from .hex_common import FORMAT, MANIFEST, _integer, _read_nibbles, _weight_lines
from .layered import to_engine
from .model import ExportError, ExportedNet, from_binary_net

FORMAT_VERSION = 2  # version 1: fc networks; version 2: layered (conv/pool/fc), :mod:`.hex_layered`


def export_hex(net, encoder: dict, folder) -> Path:
    """Write ``net`` (a :class:`~bstdg.engine.BinaryNet`) as hex files into ``folder``."""
    return write_hex(from_binary_net(net, encoder), folder)


def write_hex(ex, folder) -> Path:
    if not isinstance(ex, ExportedNet):  # a layered network
        return hex_layered.write_hex_layered(ex, folder)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = []
    for l, (b, th) in enumerate(zip(ex.bits, ex.thresholds)):
        files = {"weights": f"layer{l}_weights.hex", "thresholds": f"layer{l}_thresholds.hex"}
        texts = {"weights": "\n".join(_weight_lines(b)) + "\n",
                 "thresholds": "".join(f"{int(t):04x}\n" for t in th)}
        for kind, name in files.items():
            atomic_write(folder / name, texts[kind].encode())
        layers.append({"n_in": int(b.shape[1]), "n_out": int(b.shape[0]),
                       "weight_digits": (int(b.shape[1]) + 3) // 4, "threshold_digits": 4,
                       **files,
                       "sha256": {kind: hashlib.sha256(texts[kind].encode()).hexdigest()
                                  for kind in files}})
    manifest = {"format": FORMAT, "format_version": 1, "t_max": int(ex.t_max),
                "sizes": list(ex.sizes), "encoder": ex.encoder, "layers": layers,
                "digest": ex.digest()}
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())  # last: it
    return folder  # names the checksums of the files above, so a half-written folder never verifies


def read_hex(folder):
    """The network in a hex export folder; ExportError when files are missing, corrupt or
    do not agree with the manifest."""
    folder = Path(folder)
    source = str(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ExportError(f"{folder / MANIFEST}: cannot read ({exc.strerror or exc}); "
                          f"`bstdg export --format hex --out DIR` writes it") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ExportError(f"{folder / MANIFEST}: not valid JSON ({str(exc)[:100]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{folder / MANIFEST}: not a bstdg hex export manifest")
    try:
        if _integer(manifest["format_version"], "format_version") > FORMAT_VERSION:
            raise ExportError(f"{source}: hex format v{manifest['format_version']} is newer "
                              f"than this bstdg (v{FORMAT_VERSION})")
        if manifest["format_version"] == 2:
            return hex_layered.read_hex_layered(folder, manifest)
        sizes = [_integer(s, "sizes") for s in manifest["sizes"]]
        layers = manifest["layers"]
        if not isinstance(layers, list) or len(layers) != len(sizes) - 1 or not layers:
            raise ExportError(f"{source}: {len(layers)} layers in the manifest, sizes {sizes}")
        bits, thresholds = [], []
        for l, layer in enumerate(layers):
            n_in, n_out = _integer(layer["n_in"], "n_in"), _integer(layer["n_out"], "n_out")
            if (n_in, n_out) != (sizes[l], sizes[l + 1]) or min(n_in, n_out) < 1:
                raise ExportError(f"{source}: layer {l} is {n_in}->{n_out}, sizes say {sizes}"[:200])
            for kind in ("weights", "thresholds"):
                name = layer[kind]
                if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                    raise ExportError(f"{folder / MANIFEST}: layer {l} {kind} must be a file name "
                                      f"in the folder, found {name!r:.60}")
            digits = (n_in + 3) // 4
            nibbles = _read_nibbles(folder / layer["weights"], n_out, digits,
                                    layer["sha256"]["weights"], f"layer {l} weights")
            t_digits = _read_nibbles(folder / layer["thresholds"], n_out, 4,
                                     layer["sha256"]["thresholds"], f"layer {l} thresholds")
            row = np.unpackbits(nibbles[..., None], axis=-1)[..., 4:].reshape(n_out, 4 * digits)
            if row[:, n_in:].any():
                raise ExportError(f"{source}: layer {l} weights have non-zero padding bits")
            bits.append(np.ascontiguousarray(row[:, :n_in]))
            thresholds.append(t_digits.astype(np.int64) @ np.array([4096, 256, 16, 1]))
        ex = ExportedNet(tuple(bits), tuple(thresholds), _integer(manifest["t_max"], "t_max"),
                         manifest["encoder"]).check(source)
        digest = manifest["digest"]
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        raise ExportError(f"{folder / MANIFEST}: incomplete or malformed manifest "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    if ex.digest() != digest:
        raise ExportError(f"{source}: content does not match the manifest's digest")
    return ex


def load_hex(folder):
    """``(BinaryNet, encoder)`` from a hex export folder (``(LayeredNet, encoder)`` for a
    layered one)."""
    return to_engine(read_hex(folder))
