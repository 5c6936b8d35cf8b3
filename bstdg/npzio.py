"""Read the arrays of an ``.npz`` file without trusting it.

:func:`read_arrays` is what every bstdg reader of an ``.npz`` uses (models, export files,
saved test outputs) instead of ``numpy.load``. It opens the zip itself and, per ``.npy``
member, parses the header, refuses object (pickled) arrays, checks that the member holds
exactly the bytes its header declares, then builds the array from those bytes. So:

* no pickle is ever loaded, and a pickled array is refused with a :class:`BstdgError`;
* a member's declared size bounds what is read: a zip whose members would unpack to more
  than ``max_bytes`` (default :data:`MAX_NPZ_BYTES`) is refused before anything is
  inflated, and a header that claims a huge shape is refused instead of allocated;
* every failure (not a zip, truncated, a flipped byte failing the zip CRC-32, a damaged
  ``.npy`` header, an unsupported or encrypted member, ...) is one :class:`BstdgError`
  line naming the file.
"""

from __future__ import annotations

import io
import lzma
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import BstdgError

# Largest total unpacked size of an .npz bstdg reads (1 GiB; a 784-100000-10 model is 0.3 GiB).
MAX_NPZ_BYTES = 1 << 30

# What zipfile, zlib, lzma, bz2 and numpy's header parser raise on a damaged file.
READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, OverflowError,
               RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
               UnicodeDecodeError, SyntaxError, tokenize.TokenError, RecursionError)


def _header(f) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    reader = getattr(np.lib.format, "_read_array_header", None)
    if version == (3, 0) and reader is not None:
        return reader(f, version)
    raise ValueError(f".npy format version {version} is not supported")


def _array(data: bytes, member: str, source: str, error) -> np.ndarray:
    f = io.BytesIO(data)
    shape, fortran, dtype = _header(f)
    if dtype.hasobject:
        raise error(f"{source}: array {member} holds pickled Python objects; bstdg never "
                    f"loads pickles (not a file bstdg wrote)")
    count = 1
    for n in shape:
        count *= int(n)
    offset = f.tell()
    if offset + count * dtype.itemsize != len(data):
        raise error(f"{source}: array {member} is damaged (its header declares {dtype} "
                    f"{tuple(shape)}, {count * dtype.itemsize:,} bytes; the file holds "
                    f"{len(data) - offset:,})")
    array = np.frombuffer(data, dtype, count, offset).copy()
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def read_arrays(path, what: str = "file", error=BstdgError, max_bytes: int = MAX_NPZ_BYTES) -> dict:
    """``{name: array}`` of the ``.npy`` members of the ``.npz`` at ``path`` (see the
    module docstring); ``error`` (a BstdgError subclass) with one line on any problem.
    ``what`` names the kind of file in messages (``model``, ``export file``, ...)."""
    source = str(path)
    if not Path(path).is_file():
        raise error(f"{source}: no such {what}")
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if not i.is_dir()]
            total = sum(i.file_size for i in members)
            if total > max_bytes:
                raise error(f"{source}: this {what} would unpack to {total:,} bytes, more than "
                            f"the {max_bytes:,} bstdg reads (damaged or not a bstdg file)")
            arrays = {}
            for info in members:
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                arrays[name] = _array(zf.read(info), name, source, error)
            return arrays
    except BstdgError:
        raise
    except READ_ERRORS as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise error(f"{source}: cannot read the {what} (truncated or corrupt, or not an .npz: "
                    f"{' '.join(reason.split())[:300]})") from None


def scalar(arrays: dict, key: str, kind: str, source: str, error=BstdgError):
    """The 0-d array ``arrays[key]`` as a Python value: ``kind`` ``int`` (integer dtype),
    ``str`` (unicode) or ``float`` (a real number); ``error`` when absent or another kind."""
    if key not in arrays:
        raise error(f"{source}: no {key!r} in the file (not a complete bstdg file)")
    a = arrays[key]
    ok = a.shape == () and (a.dtype.kind in "iu" if kind == "int" else
                            a.dtype.kind == "U" if kind == "str" else a.dtype.kind in "iuf")
    if not ok:
        raise error(f"{source}: {key!r} must be a single {kind}, found {a.dtype} {a.shape}")
    return int(a) if kind == "int" else str(a) if kind == "str" else float(a)
