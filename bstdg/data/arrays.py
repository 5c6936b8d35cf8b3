"""``arrays:PATH.npz``: your own data as numpy arrays in one ``.npz`` file, and the same
encoding for arrays in memory (:func:`encode_pixels`, used by
:class:`bstdg.estimator.BinarySNNClassifier`).

Keys of the file (read with ``allow_pickle=False``), either

* **pixels** ``x_train``, ``y_train``, ``x_test``, ``y_test``: ``x_*`` of shape ``(N, ...)``
  (any sample shape; flattened row-major), uint8 (divided by 255) or floats in [0, 1],
  latency-coded as MNIST is (:func:`bstdg.encoding.encode_latency`: ``t = round((1 - x)
  (t_max - 1))``, no spike for ``x = 0``); or
* **spike events** ``times_train``, ``units_train``, ``ptr_train``, ``y_train`` and the same
  for ``test`` (CSR: sample ``b`` owns ``times[ptr[b]:ptr[b+1]]``), integer time steps
  ``>= 0`` (a step ``>= t_max`` is dropped) and input units ``0..n_units-1``; a unit may
  spike several times; ``n_units`` (optional scalar): the number of inputs, else the
  largest unit + 1.

Labels ``y_*``: integers or strings, any values: the classes are their sorted distinct
values over both splits, and label ``k`` is the ``k``-th of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bstdg.data.base import SPLITS, Dataset, EncodedSplit, check_limit, check_split, finish
from bstdg.data.mnist import latency_encoder, latency_events
from bstdg.encoding import Encoder, SpikeEvents
from bstdg.errors import DataError
from bstdg.limits import available_memory
from bstdg.npzio import MAX_NPZ_BYTES, read_arrays

PIXEL_KEYS = ("x_train", "y_train", "x_test", "y_test")
EVENT_KEYS = tuple(f"{k}_{s}" for s in SPLITS for k in ("times", "units", "ptr", "y"))
EVENT_NOTES = {"formula": "ready-made events: integer steps, steps >= t_max dropped"}


def check_pixels(x, what: str) -> np.ndarray:
    """``x`` as an array of samples ``(N, ...)``: uint8, or finite floats in [0, 1]."""
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{what}: expected samples of shape (N, ...) with N >= 1, got {x.shape}")
    if x.dtype == np.uint8:
        return x
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{what}: expected uint8 pixels or floats in [0, 1], got {x.dtype}")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: float values must be finite and in [0, 1], found NaN or infinity")
    if x.min() < 0 or x.max() > 1:
        raise DataError(f"{what}: float values must be finite and in [0, 1] (uint8 pixels are "
                        f"divided by 255), found {x.min():g}..{x.max():g}")
    return x


def class_index(y_all, what: str) -> tuple[tuple, callable]:
    """``(classes, to_index)``: the sorted distinct labels, and a function mapping labels to
    their index in them (DataError for labels not among them)."""
    y_all = np.asarray(y_all)
    if y_all.ndim != 1 or y_all.dtype.kind not in "iuUSb":
        raise DataError(f"{what}: labels must be a 1-d array of integers or strings, got "
                        f"{y_all.dtype} {y_all.shape}")
    values = np.unique(y_all)
    if len(values) < 2:
        raise DataError(f"{what}: the labels hold {len(values)} class(es); need at least 2")

    def to_index(y):
        y = np.asarray(y)
        idx = np.searchsorted(values, y)
        if y.shape != (len(y),) or (idx >= len(values)).any() or (values[np.minimum(idx, len(values) - 1)] != y).any():
            raise DataError(f"{what}: labels not among the classes {values.tolist()}")
        return idx.astype(np.int64)
    return tuple(v.item() if hasattr(v, "item") else v for v in values), to_index


def encode_pixels(x, t_max: int) -> tuple[SpikeEvents, Encoder]:
    """Latency-coded events and their encoder for pixel samples ``x`` ``(N, ...)``."""
    x = check_pixels(x, "X")
    return latency_events(x, t_max), latency_encoder(t_max, x.shape[1:])


def events_from_csr(times, units, ptr, n_units: int, t_max: int, what: str) -> SpikeEvents:
    """Checked CSR events; steps ``>= t_max`` dropped, each sample sorted by time (stable)."""
    times, units, ptr = (np.asarray(a) for a in (times, units, ptr))
    for name, a in (("times", times), ("units", units), ("ptr", ptr)):
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{what}: {name} must be a 1-d integer array, got {a.dtype} {a.shape}")
    if len(ptr) < 2 or ptr[0] != 0 or ptr[-1] != len(times) or (np.diff(ptr) < 0).any():
        raise DataError(f"{what}: ptr must rise from 0 to len(times) = {len(times)}")
    if len(units) != len(times):
        raise DataError(f"{what}: {len(times)} times but {len(units)} units")
    if len(times) and (times.min() < 0 or units.min() < 0 or units.max() >= n_units):
        raise DataError(f"{what}: times must be >= 0 and units 0..{n_units - 1}")
    owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    keep = times < t_max
    order = np.lexsort((times[keep], owner[keep]))
    owner = owner[keep][order]
    new_ptr = np.zeros(len(ptr), np.int64)
    np.cumsum(np.bincount(owner, minlength=len(ptr) - 1), out=new_ptr[1:])
    return SpikeEvents(times[keep][order].astype(np.int32), units[keep][order].astype(np.int32),
                       new_ptr, int(n_units))


class ArraysDataset(Dataset):
    """``arrays:PATH.npz`` (module docstring)."""

    def __init__(self, path, options=None):
        super().__init__(options)
        self.path = Path(path).expanduser()
        self.name = f"arrays:{path}"
        self._arrays = self._read()
        self.kind = "pixels" if "x_train" in self._arrays else "events"
        y_all = np.concatenate([self._arrays["y_train"], self._arrays["y_test"]])
        self.classes, self._to_index = class_index(y_all, self.name)

    def _read(self) -> dict:
        if not self.path.is_file():
            raise DataError(f"{self.name}: no such file")
        z = read_arrays(self.path, "arrays file", DataError, max(MAX_NPZ_BYTES, (available_memory() or 0) // 2))
        keys = set(z)
        wanted = PIXEL_KEYS if "x_train" in keys else EVENT_KEYS
        missing = [k for k in wanted if k not in keys]
        if missing:
            raise DataError(f"{self.name}: missing {', '.join(missing)} (pixels need "
                            f"{', '.join(PIXEL_KEYS)}; events need {', '.join(EVENT_KEYS)})")
        return {k: z[k] for k in (*wanted, "n_units") if k in keys}

    def locate(self, data_dir=None) -> Path:
        return self.path

    def load(self, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
        check_split(self.name, split)
        check_limit(limit)
        a, what = self._arrays, f"{self.name} {split}"
        labels = self._to_index(a[f"y_{split}"])
        if self.kind == "pixels":
            x = check_pixels(a[f"x_{split}"], what)
            if len(x) != len(labels):
                raise DataError(f"{what}: {len(x)} samples but {len(labels)} labels")
            if limit is not None:
                x, labels = x[:limit], labels[:limit]
            events, encoder = latency_events(x, t_max), latency_encoder(t_max, x.shape[1:])
        else:
            units_all = np.concatenate([a["units_train"], a["units_test"]])
            n_units = int(a["n_units"]) if "n_units" in a else int(units_all.max(initial=-1)) + 1
            if n_units < 1:
                raise DataError(f"{self.name}: no spikes and no n_units")
            events = events_from_csr(a[f"times_{split}"], a[f"units_{split}"], a[f"ptr_{split}"],
                                     n_units, t_max, what)
            if limit is not None:
                events, labels = events.take(np.arange(min(limit, len(events)))), labels[:limit]
            encoder = Encoder("events", t_max, (n_units,), {}, EVENT_NOTES)
        return finish(self.name, split, events, labels, len(self.classes), encoder, self.classes)
