"""Files written whole or not at all (:func:`atomic_write`), and JSON read with one-line
errors. Every file bstdg writes goes through here."""

from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import BstdgError


def atomic_write(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a flushed, fsync-ed temporary file in the same
    folder renamed into place (``os.replace``). OSError becomes a one-line BstdgError."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise BstdgError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with _ignored(OSError):
                os.unlink(tmp)
    return path


def _fsync_dir(folder: Path) -> None:
    with _ignored(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def _ignored(*kinds):
    try:
        yield
    except kinds:
        pass


def to_json(obj) -> str:
    """JSON text of ``obj``; numpy scalars and arrays become plain numbers and lists."""
    return json.dumps(obj, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def write_json(path, obj) -> Path:
    return atomic_write(path, (to_json(obj) + "\n").encode())


def save_npz(path, compressed: bool = False, **arrays) -> Path:
    """``np.savez`` (or ``savez_compressed``) of ``arrays``, written atomically."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return atomic_write(path, buf.getvalue())


def read_json(path, what: str = "file") -> dict:
    """A JSON object from ``path``; one-line BstdgError if it is missing, unreadable, not
    JSON or not an object."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BstdgError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BstdgError(f"{path}: not a readable JSON {what} ({str(exc).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise BstdgError(f"{path}: not a JSON object")
    return value


@contextmanager
def atomic_path(path):
    """For writers that need a file name (h5py, nir): yields a temporary name in the same
    folder, renamed over ``path`` when the block ends without an exception (removed if not)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            with _ignored(OSError):
                os.unlink(tmp)
