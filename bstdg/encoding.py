"""Latency (time-to-first-spike) encoding and the event lists the engine consumes.

Conventions used across the package:

* time is an integer number of **time steps**; a spike time lies in ``0..t_max-1``;
* "no spike" is the value ``t_max`` itself (it sorts after every real spike time);
* a batch of input spikes is a :class:`SpikeEvents` list in CSR form: sample ``b`` owns
  ``times[ptr[b]:ptr[b+1]]`` / ``units[ptr[b]:ptr[b+1]]``, sorted by time. Latency-coded
  images give at most one event per unit; audio spike data (SHD layout) may repeat a unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np


class EventArrays(NamedTuple):
    """The arrays of a :class:`SpikeEvents` batch, bundled as one Numba kernel argument
    (:meth:`SpikeEvents.arrays`); same CSR layout and dtypes."""

    times: np.ndarray  # int32 (E,), time steps, sorted within each sample
    units: np.ndarray  # int32 (E,), input channel index
    ptr: np.ndarray  # int64 (B+1,), sample b owns [ptr[b], ptr[b+1])


@dataclass(frozen=True)
class SpikeEvents:
    """Input spikes of a batch in CSR form (see module docstring)."""

    times: np.ndarray  # int32 (E,), time steps, sorted within each sample
    units: np.ndarray  # int32 (E,), input channel index
    ptr: np.ndarray  # int64 (B+1,), sample b owns [ptr[b], ptr[b+1])
    n_units: int

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def arrays(self) -> EventArrays:
        """``(times, units, ptr)`` as one kernel argument (no copy)."""
        return EventArrays(self.times, self.units, self.ptr)

    def take(self, index: np.ndarray) -> "SpikeEvents":
        """The events of the samples ``index`` (in that order), as a new batch."""
        index = np.asarray(index, dtype=np.int64)
        starts, ends = self.ptr[index], self.ptr[index + 1]
        counts = ends - starts
        ptr = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        # Gather all [start, end) ranges at once: position k of the output belongs to
        # sample s(k) and reads starts[s] + (k - ptr[s]).
        owner = np.repeat(np.arange(len(index)), counts)
        src = starts[owner] + (np.arange(ptr[-1]) - ptr[owner])
        return SpikeEvents(self.times[src], self.units[src], ptr, self.n_units)

    def owner(self) -> np.ndarray:
        """The sample each event belongs to, ``(E,)`` int64."""
        return np.repeat(np.arange(len(self)), np.diff(self.ptr))

    def first_times(self, index: int, t_max: int) -> np.ndarray:
        """Spike time per input unit of sample ``index`` (``t_max``: none; the earliest
        spike where a unit spikes several times), int32 ``(n_units,)``."""
        lo, hi = self.ptr[index], self.ptr[index + 1]
        times = np.full(self.n_units, t_max, np.int32)
        np.minimum.at(times, self.units[lo:hi], self.times[lo:hi])
        return times

    def rasters(self, t_max: int) -> np.ndarray:
        """Dense spike counts ``(B, t_max, n_units)`` float32 (for the reference simulator)."""
        raster = np.zeros((len(self), t_max, self.n_units), dtype=np.float32)
        np.add.at(raster, (self.owner(), self.times, self.units), 1.0)
        return raster


def encode_latency(x: np.ndarray, t_max: int, floor: float = 0.0) -> np.ndarray:
    """Time-to-first-spike code: ``t = round((1 - x) * (t_max - 1))``, ``t_max`` if ``x <= floor``.

    ``x`` holds intensities in ``[0, 1]`` (floats) or uint8 pixels (divided by 255). The
    brightest value spikes at step 0, values just above ``floor`` near ``t_max - 1``, and
    values at or below ``floor`` emit no spike (returned as ``t_max``). Returns int32 spike
    times of the same shape, in time steps.
    """
    if t_max < 2:
        raise ValueError(f"t_max must be at least 2 time steps, got {t_max}")
    x = np.asarray(x)
    v = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if v.size and (np.nanmin(v) < 0.0 or np.nanmax(v) > 1.0 or np.isnan(v).any()):
        raise ValueError("encode_latency expects values in [0, 1] (or uint8 pixels)")
    times = np.rint((1.0 - v) * (t_max - 1)).astype(np.int32)
    times[v <= floor] = t_max
    return times


def times_to_events(times: np.ndarray, t_max: int) -> SpikeEvents:
    """Convert spike times ``(B, n)`` (``t_max`` = no spike) to a time-sorted event list."""
    times = np.asarray(times, dtype=np.int32)
    if times.ndim != 2:
        times = times.reshape(len(times), -1)
    n_samples, n_units = times.shape
    # A stable sort of (sample, time) keeps unit order within a time step deterministic.
    key = np.arange(n_samples, dtype=np.int64)[:, None] * (t_max + 1) + times
    order = np.argsort(key, axis=None, kind="stable")
    flat_times = times.ravel()[order]
    keep = flat_times < t_max
    order, flat_times = order[keep], flat_times[keep]
    counts = np.count_nonzero(times < t_max, axis=1)
    ptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    units = (order % n_units).astype(np.int32)
    return SpikeEvents(flat_times.astype(np.int32), units, ptr, n_units)


def shift_events(events: SpikeEvents, shape, dy: np.ndarray, dx: np.ndarray) -> SpikeEvents:
    """Sample ``b``'s spikes moved by ``(dy[b], dx[b])`` pixels on its ``(C, H, W)`` (or
    ``(H, W)``) input grid (unit ``(c * H + y) * W + x``); spikes moved off the grid are
    dropped. Times are unchanged, so each sample stays time-sorted."""
    c, h, w = (int(n) for n in (shape if len(shape) == 3 else (1, *shape)))
    if c * h * w != events.n_units:
        raise ValueError(f"input shape {c}x{h}x{w} does not match {events.n_units} inputs")
    owner = events.owner()
    plane, pixel = np.divmod(events.units.astype(np.int64), h * w)
    y = pixel // w + np.asarray(dy, np.int64)[owner]
    x = pixel % w + np.asarray(dx, np.int64)[owner]
    keep = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    ptr = np.zeros(len(events) + 1, np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=len(events)), out=ptr[1:])
    units = (plane * h + y) * w + x
    return SpikeEvents(events.times[keep], units[keep].astype(np.int32), ptr, events.n_units)


@dataclass(frozen=True)
class Encoder:
    """How a dataset's samples became input spikes: what a model carries so that its inputs
    can be re-made (``bstdg eval``, exports) and what the trainer needs to know of them.

    ``kind``: ``latency`` (:func:`encode_latency` of pixels), ``gabor-latency`` /
    ``dog-latency`` / ``none-latency`` (image front ends, :mod:`bstdg.data.images`),
    ``spike-bins`` (spike files binned to steps, :mod:`bstdg.data.shd`), ``tonic-bins``
    (tonic datasets, :mod:`bstdg.data.tonic_data`) or ``events``
    (ready-made event lists, :mod:`bstdg.data.arrays`). ``t_max``: time steps of the code
    (spike times lie in ``0..t_max-1``). ``input_shape``: the shape the inputs are the
    row-major flattening of (``(C, H, W)`` or ``(H, W)`` for images; ``(n,)`` otherwise).
    ``options``: the dataset options it was made with (plain JSON values; passing them back
    to the dataset re-encodes a split the same way). ``notes``: descriptive entries (the
    formula, unit order, ...) for readers of a model file; they change nothing.
    """

    kind: str
    t_max: int
    input_shape: tuple
    options: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.t_max, (int, np.integer)) or isinstance(self.t_max, bool) or self.t_max < 2:
            raise ValueError(f"encoder t_max must be an integer >= 2, got {self.t_max!r}")
        shape = tuple(int(n) for n in self.input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"encoder input_shape must be positive sizes, got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "t_max", int(self.t_max))

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    def to_dict(self) -> dict:
        """Plain JSON values: ``kind``, ``t_max``, ``input_shape`` (a list), ``options`` and
        the notes' keys (the layout of ``meta["encoder"]`` in a model file)."""
        return {**self.notes, "kind": self.kind, "t_max": self.t_max,
                "input_shape": list(self.input_shape), "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict, n_inputs: int | None = None) -> "Encoder":
        """The inverse of :meth:`to_dict`; a model saved without ``input_shape`` gets
        ``(n_inputs,)``."""
        d = dict(d)
        kind, t_max = d.pop("kind", "latency"), d.pop("t_max")
        shape = d.pop("input_shape", None) or [n_inputs]
        options = d.pop("options", None) or {}
        return cls(kind, t_max, tuple(shape), dict(options), d)

    def with_t_max(self, t_max: int) -> "Encoder":
        return replace(self, t_max=t_max)
