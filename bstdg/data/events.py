"""``events:DIR``: your own spike recordings in the SHD HDF5 layout.

``DIR`` holds one ``*_train.h5`` and one ``*_test.h5`` file (e.g. ``mydata_train.h5``),
each in the layout of :mod:`bstdg.data.shd`: ``spikes/times`` (one float array of seconds
per sample), ``spikes/units`` (one integer array of channels per sample), ``labels``
(integers ``0..K-1``); optional ``extra/keys`` (class names) and the attribute
``n_channels``. The spikes are binned as SHD's (:func:`bstdg.data.shd.bin_spikes`) with
:class:`EventsOptions`: ``duration_s`` seconds over ``t_max`` steps, ``channels`` after
merging neighbours (0: every channel of the file), ``time_windows`` inputs per channel.
Channels of the file: its ``n_channels`` attribute, else the largest unit + 1 over both
files; classes: ``extra/keys``, else the largest label + 1 over both files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bstdg.data.base import SPLITS, Dataset, EncodedSplit, check_limit, check_split, finite, require
from bstdg.data.shd import SpikeOptions, _h5py, encode_spike_file, read_spike_file
from bstdg.errors import DataError


@dataclass(frozen=True)
class EventsOptions(SpikeOptions):
    """:class:`~bstdg.data.shd.SpikeOptions` with defaults for unknown recordings."""

    duration_s: float = 1.0  # time window, seconds: spikes at or after it are dropped
    channels: int = 0  # input channels after merging neighbours (0: all of the file's)
    time_windows: int = 1  # inputs per channel (1: one input per channel)

    def __post_init__(self):
        require(finite(self.duration_s) and self.duration_s > 0,
                f"duration_s must be a positive number of seconds, got {self.duration_s}")
        require(self.channels >= 0, f"channels must be 0 (all) or positive, got {self.channels}")
        require(self.time_windows >= 1, f"time_windows must be at least 1, got {self.time_windows}")


def _one(folder: Path, split: str, name: str) -> Path:
    found = sorted(folder.glob(f"*_{split}.h5"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise DataError(f"{name}: {what} *_{split}.h5 file(s) in {folder}; expected exactly one")
    return found[0]


def _peek(path: Path) -> tuple[int | None, int, int, list | None]:
    """``(n_channels attribute, largest unit, largest label, class names)`` of a file."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            attr = f.attrs.get("n_channels")
            units = f["spikes/units"][()]
            top = max((int(np.max(np.asarray(u, np.int64))) for u in units if len(u)), default=-1)
            labels = np.asarray(f["labels"][()])
            keys = [k.decode() if isinstance(k, bytes) else str(k)
                    for k in f["extra/keys"][()]] if "extra/keys" in f else None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a readable SHD-layout file ({exc})") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be a 1-d integer array, found {labels.dtype} {labels.shape}")
    return (None if attr is None else int(attr)), top, (int(labels.astype(np.int64).max()) if len(labels) else -1), keys


class EventsFolderDataset(Dataset):
    """``events:DIR`` (module docstring)."""

    Options = EventsOptions

    def __init__(self, root, options=None):
        super().__init__(options)
        self.root = Path(root).expanduser()
        self.name = f"events:{root}"
        if not self.root.is_dir():
            raise DataError(f"{self.name}: no such folder")
        self.files = {split: _one(self.root, split, self.name) for split in SPLITS}
        peeks = [_peek(path) for path in self.files.values()]
        attrs = {p[0] for p in peeks if p[0] is not None}
        if len(attrs) > 1:
            raise DataError(f"{self.name}: the files disagree on n_channels ({sorted(attrs)})")
        self.n_channels = attrs.pop() if attrs else max(p[1] for p in peeks) + 1
        if self.n_channels < 1:
            raise DataError(f"{self.name}: no spikes and no n_channels attribute")
        keys = next((p[3] for p in peeks if p[3]), None)
        n_classes = len(keys) if keys else max(p[2] for p in peeks) + 1
        if n_classes < 2:
            raise DataError(f"{self.name}: labels name {n_classes} class(es); need at least 2")
        self.classes = tuple(keys) if keys else tuple(str(c) for c in range(n_classes))
        if self.options.channels == 0:  # resolved here, so that the encoder records it
            self.options = replace(self.options, channels=self.n_channels)
        if self.options.channels > self.n_channels:
            raise DataError(f"{self.name}: channels must be 1..{self.n_channels}, got "
                            f"{self.options.channels}")

    def locate(self, data_dir=None) -> Path:
        return self.root

    def load(self, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
        check_split(self.name, split)
        check_limit(limit)
        sf = read_spike_file(self.files[split], self.n_channels, len(self.classes))
        return encode_spike_file(self.name, split, sf, t_max, self.options, len(self.classes),
                                 self.classes, limit)
