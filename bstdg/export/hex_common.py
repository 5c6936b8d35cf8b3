"""What the hex manifest versions share (:mod:`.hex_format`: version 1, fc networks;
:mod:`.hex_layered`: version 2, conv/pool/fc): the manifest's name and format tag, the
weight rows as hex digits, and the checked reading of a memory file and of a manifest
integer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .model import ExportError

FORMAT = "bstdg-hex"
MANIFEST = "manifest.json"


def _weight_lines(bits: np.ndarray) -> list:
    n_out, n_in = bits.shape
    digits = (n_in + 3) // 4
    padded = np.zeros((n_out, 4 * digits), np.uint8)
    padded[:, :n_in] = bits
    nibbles = padded.reshape(n_out, digits, 4) @ np.array([8, 4, 2, 1])
    table = np.array(list("0123456789abcdef"))
    return ["".join(row) for row in table[nibbles]]


_HEX_VALUE = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_c] = _HEX_VALUE[ord(chr(_c).upper())] = _i


def _read_nibbles(path: Path, n_lines: int, digits: int, sha: str, what: str) -> np.ndarray:
    """The hex digits of a memory file as uint8 ``(n_lines, digits)``, after checking the
    SHA-256 from the manifest, the line count and the line length."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise ExportError(f"{path}: {what} do not match the SHA-256 in {MANIFEST} (corrupt, "
                          f"truncated or edited file)")
    lines = data.split()
    if len(lines) != n_lines or any(len(s) != digits for s in lines):
        raise ExportError(f"{path}: expected {n_lines} lines of {digits} hex digits")
    values = _HEX_VALUE[np.frombuffer(b"".join(lines), np.uint8)]
    if (values == 255).any():
        raise ExportError(f"{path}: not hex digits")
    return values.reshape(n_lines, digits)


def _integer(value, key: str) -> int:
    """A JSON integer of the manifest (not a bool, float or string)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be an integer, found {value!r:.40}")
    return value
