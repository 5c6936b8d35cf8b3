"""Read and write IDX files (the MNIST file format), raw or gzip-compressed."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from bstdg.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# Largest decompressed IDX file bstdg reads (MNIST's training images are 47 MB).
MAX_IDX_BYTES = 1 << 30
_CHUNK = 1 << 20


def _open(path: Path):
    """The file opened for reading its (decompressed) bytes: gunzipped when it starts with
    the gzip magic, whatever its name."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if f.read(2) == GZIP_MAGIC:
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb"), f
    f.seek(0)
    return f, f


def _read(stream, n: int, path: Path) -> bytes:
    """Up to ``n`` bytes of ``stream`` (fewer at its end), read in chunks so that nothing
    beyond ``n`` is ever inflated."""
    parts, left = [], n
    try:
        while left > 0:
            part = stream.read(min(left, _CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a corrupt gzip file ({' '.join(str(exc).split())[:120]}); "
                        f"delete it and fetch it again") from None
    return b"".join(parts)


def _parse_header(head: bytes, path: Path) -> tuple[np.dtype, tuple, int]:
    """``(dtype, shape, header bytes)`` of an IDX header; DataError when malformed."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(f"{path} is not an IDX file (its header does not start with two zero bytes)")
    type_code, ndim = head[2], head[3]
    if type_code not in IDX_DTYPES:
        raise DataError(f"{path} has unknown IDX type code 0x{type_code:02x}")
    if ndim == 0:
        raise DataError(f"{path} declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        raise DataError(f"{path} is truncated inside its header ({len(head)} of {header_len} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[type_code], shape, header_len


def _check_declared(path: Path, shape: tuple, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DataError(f"{path} declares shape {str(shape)[:120]}, {size:,} bytes; bstdg reads "
                        f"IDX files up to {max_bytes:,} bytes")


def read_decompressed(path: str | Path, max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name),
    inflated as a stream: when it starts like an IDX file, never more than one byte beyond
    the size its header declares (so trailing data is seen, not inflated), and never more
    than ``max_bytes`` + 1 bytes (DataError past ``max_bytes``): a gzip bomb is refused
    after at most that much output."""
    path = Path(path)
    stream, raw = _open(path)
    with raw, stream:
        head = _read(stream, 4 + 4 * 255, path)
        limit = max_bytes
        try:
            dtype, shape, header_len = _parse_header(head, path)
        except DataError:
            pass  # not an IDX file: only the overall cap applies (read_idx says what is wrong)
        else:
            limit = header_len + int(np.prod(shape, dtype=object)) * dtype.itemsize
            _check_declared(path, shape, limit, max_bytes)
        data = head + _read(stream, max(limit + 1 - len(head), 0), path)
    if len(data) > max_bytes:
        raise DataError(f"{path} decompresses to more than {max_bytes:,} bytes; bstdg reads IDX "
                        f"files up to that size (damaged file or a gzip bomb?)")
    return data


def read_idx(path: str | Path, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Load an IDX file (raw or gzip) as an array in native byte order (uint8 stays uint8).
    The header is checked before the data are inflated: a declared size above ``max_bytes``
    is refused, and at most one byte beyond the declared size is ever inflated."""
    path = Path(path)
    data = read_decompressed(path, max_bytes)
    dtype, shape, header_len = _parse_header(data, path)
    expected = header_len + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        found = f"{len(data):,}" if len(data) < expected else f"more than {expected:,}"
        raise DataError(f"{path} {problem}: shape {shape} needs {expected:,} bytes "
                        f"(decompressed), found {found}"[:300])
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    path = Path(path)
    array = np.asarray(array)
    by_kind = {np.dtype(dt.newbyteorder("=")): code for code, dt in IDX_DTYPES.items()}
    code = by_kind.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
