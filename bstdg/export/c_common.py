"""What the C header versions share (:mod:`.c_format`: version 1, fc networks;
:mod:`.c_layered`: version 2, conv/pool/fc): the CRC-32, the text of a header (macros,
``static const`` arrays, the encoder JSON comment) and the parsing of its macros and arrays
back into a layer's sign bits and thresholds."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np

from .model import ExportError


def checksum(head, layers) -> int:
    """CRC-32 (IEEE, as zlib) of the ``head`` values as uint32 little-endian, then per
    ``(packed, thresholds)`` of ``layers`` the packed weight bytes and the thresholds as
    int16 little-endian (both header versions: :func:`.c_format.crc32`, :func:`.c_layered.crc32`)."""
    crc = zlib.crc32(np.array(head, "<u4").tobytes())
    for packed, th in layers:
        crc = zlib.crc32(packed.tobytes(), crc)
        crc = zlib.crc32(np.asarray(th, "<i2").tobytes(), crc)
    return crc


def array(ctype: str, name: str, values, per_line: int, fmt) -> str:
    """``static const ctype name[n] = {...};``, ``per_line`` values a line, each ``fmt(v)``."""
    values = list(values)
    rows = [", ".join(fmt(v) for v in values[i:i + per_line])
            for i in range(0, len(values), per_line)]
    body = ",\n    ".join(rows)
    return f"static const {ctype} {name}[{len(values)}] = {{\n    {body}\n}};\n"


def encoder_comment(encoder: dict) -> str:
    """The ``/* bstdg-encoder-json: ... */`` line (``*/`` escaped so the comment holds)."""
    text = json.dumps(encoder, sort_keys=True).replace("*/", "*\\/")
    return f"/* bstdg-encoder-json: {text} */"


def header(comment: list, version: int, ex, crc: int, arrays: list, layers: list) -> str:
    """The text of a C header of either version: the ``comment`` lines, the include guard,
    the macros (``BSTDG_FORMAT_VERSION`` = ``version``, the sizes of ``ex``, ``BSTDG_CRC32``
    = ``crc``, ``BSTDG_DIGEST``), the ``bstdg_sizes`` array and then ``arrays`` (array
    texts); per layer ``l`` a ``(note, packed, thresholds)`` of ``layers``: the comment
    ``/* layer l: note */`` and the arrays ``bstdg_w{l}`` (the packed bytes) and
    ``bstdg_th{l}``; last the tables of pointers to them."""
    sizes, n_layers = ex.sizes, len(layers)
    out = [
        *comment,
        "#ifndef BSTDG_MODEL_H",
        "#define BSTDG_MODEL_H",
        "#include <stdint.h>",
        "",
        f"#define BSTDG_FORMAT_VERSION {version}",
        f"#define BSTDG_N_LAYERS {n_layers}",
        f"#define BSTDG_T_MAX {ex.t_max}",
        f"#define BSTDG_N_INPUTS {sizes[0]}",
        f"#define BSTDG_N_OUTPUTS {sizes[-1]}",
        f"#define BSTDG_N_NEURONS {sum(sizes[1:])}",
        f"#define BSTDG_MAX_WIDTH {max(sizes)}",
        f"#define BSTDG_CRC32 0x{crc:08x}UL",
        f"#define BSTDG_DIGEST \"{ex.digest()}\"  /* SHA-256 of the network and the encoder */",
        "",
        array("uint32_t", "bstdg_sizes", sizes, 16, str),
        *arrays,
    ]
    for l, (note, packed, th) in enumerate(layers):
        out.append(f"/* layer {l}: {note} */")
        out.append(array("uint8_t", f"bstdg_w{l}", np.ravel(packed), 16, lambda v: f"0x{v:02x}"))
        out.append(array("int16_t", f"bstdg_th{l}", th, 16, str))
    names = ", ".join(f"bstdg_w{l}" for l in range(n_layers))
    out.append(f"static const uint8_t *const bstdg_weights[BSTDG_N_LAYERS] = {{{names}}};")
    names = ", ".join(f"bstdg_th{l}" for l in range(n_layers))
    out.append(f"static const int16_t *const bstdg_thresholds[BSTDG_N_LAYERS] = {{{names}}};")
    out += ["", "#endif /* BSTDG_MODEL_H */", ""]
    return "\n".join(out)


_DEFINE = re.compile(r"^#define\s+(BSTDG_\w+)\s+(\S+)\s*(?:/\*.*\*/)?\s*$", re.M)
_ARRAY = re.compile(r"static const (uint8_t|int16_t|uint32_t) (\w+)\[(\d+)\] = \{([^}]*)\};")


def layer_arrays(arrays: dict, l: int, n_rows: int, n_bits: int, source: str) -> tuple:
    """``(bits, thresholds)`` of layer ``l`` from the parsed arrays ``bstdg_w{l}`` (``n_rows``
    rows of ``n_bits`` sign bits, each padded to whole bytes) and ``bstdg_th{l}``: bits uint8
    ``(n_rows, n_bits)``, thresholds int64; ExportError when the bytes do not fit."""
    packed = np.array(arrays[f"bstdg_w{l}"], np.int64)
    if packed.size != n_rows * ((n_bits + 7) // 8) or packed.min(initial=0) < 0 \
            or packed.max(initial=0) > 255:
        raise ExportError(f"{source}: layer {l} weights do not hold {n_rows} rows of "
                          f"{(n_bits + 7) // 8} bytes")
    row = np.unpackbits(packed.astype(np.uint8).reshape(n_rows, -1), axis=1)
    if row[:, n_bits:].any():
        raise ExportError(f"{source}: layer {l} weights have non-zero padding bits")
    return np.ascontiguousarray(row[:, :n_bits]), np.array(arrays[f"bstdg_th{l}"], np.int64)


def check_crc(macros: dict, crc: int, source: str) -> None:
    """ExportError unless the header's ``BSTDG_CRC32`` is ``crc``."""
    if crc != int(macros["BSTDG_CRC32"].rstrip("UuLl"), 0):
        raise ExportError(f"{source}: content does not match BSTDG_CRC32 (corrupt or edited header)")
