"""``tonic:NAME``: a dataset of the ``tonic`` package already on disk, binned to the
engine's events.

``NAME`` is a tonic dataset class (case-insensitive): ``NMNIST``, ``DVSGesture``,
``POKERDVS`` (event cameras: ``x, y, p, t``) or ``SHD``, ``SSC`` (cochlea channels:
``x, t``) — the classification datasets of tonic with a train/test split and a fixed sensor
(:data:`KNOWN`). bstdg reads the files through tonic's own class (``pip install tonic``, or
the ``tonic`` extra) and **never downloads**: tonic's ``download`` (and POKERDVS's copy of
its packaged archive) is replaced by a refusal, so a copy tonic finds missing or incomplete
is a one-line DataError saying where it looked.

Where: tonic keeps a dataset in ``SAVE_TO/<NAME>/`` (its ``save_to`` argument, e.g.
``SAVE_TO/NMNIST/Train/3/00042.bin`` and ``SAVE_TO/NMNIST/train.zip``). bstdg tries, for
each data root ``R`` (``--data-dir``, ``$BSTDG_DATA``, ``./datasets``), ``R/tonic/<NAME>``,
``R/<NAME>`` and ``R`` itself when it is named ``<NAME>``; option ``root`` replaces the
search by one ``SAVE_TO``. The first folder where tonic lists the samples of both splits
without wanting to download is used; the others are named in the error when none is.
``complete`` (default true) requires tonic's own completeness check to pass (for NMNIST:
its ``train.zip``/``test.zip`` beside ``Train/``/``Test/`` holding at least 10,000 ``.bin``
files each); ``complete = false`` reads whatever samples the folder holds (a partial copy,
a subset). Listing reads no sample; tonic's POKERDVS alone loads its (small) files then.

Binning (options :class:`TonicOptions`; tonic's times are microseconds): an event at ``t``
goes to time step ``floor(t * t_max / (1000 * duration_ms) + 1e-6)`` (the 1e-6 of a step
puts a float time stored just below a step boundary on the step it was written for, as
:func:`bstdg.data.shd.bin_spikes` does); events before 0 or at or after ``duration_ms`` are
dropped. With ``align_start`` each sample's times are first shifted so that its first event
is at 0. The input unit comes from the event's address:

* event cameras, sensor ``W x H`` with ``P`` polarities: ``x' = x // downsample``,
  ``y' = y // downsample``, ``p' = 0`` if ``merge_polarity`` else ``p``; unit
  ``(p' * H' + y') * W' + x'`` with ``W' = ceil(W / downsample)``, ``H' = ceil(H /
  downsample)``, ``P' = 1`` or ``P``: input shape ``(P', H', W')`` (so ``shift``
  augmentation moves the events like an image's);
* cochlea-like sensors (``x`` only, ``W`` channels): unit ``x * channels // W``
  (``channels`` 0: all ``W``), input shape ``(channels,)``.

Every event is kept (a unit may spike many times, also within one step: the engine takes
multi-spike inputs; hidden and output neurons still fire at most once), time-sorted per
sample (stable: events of one step keep their file order). Samples are ordered round-robin
over the classes (tonic's order within a class), and ``limit`` N reads only the files of
those first N samples. Classes: the tonic class's ``classes`` (SHD/SSC: the file's
``extra/keys``). Defaults left at 0 (``duration_ms``, ``downsample``) take the dataset's
value from :data:`KNOWN`; the encoder records the values used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bstdg.data.base import (
    SPLITS,
    EncodedSplit,
    FileDataset,
    check_limit,
    check_split,
    data_roots,
    finish,
    finite,
    require,
)
from bstdg.data.shd import class_round_robin
from bstdg.encoding import Encoder, SpikeEvents
from bstdg.errors import DataError


class Known(NamedTuple):
    """What bstdg knows of a tonic dataset class (read from its source, tonic 1.5 to 1.7)."""

    split_argument: str  # "train" (train=True/False) or "split" ("train"/"test")
    duration_ms: float  # default time window (0: none; the option must be given)
    downsample: int  # default spatial downsampling (camera sensors)
    note: str


KNOWN: dict[str, Known] = {
    "NMNIST": Known("train", 300.0, 1, "34x34x2 ATIS, three 100 ms saccades per digit"),
    "DVSGesture": Known("train", 1500.0, 4, "128x128x2 DVS, 6 s recordings: the first 1.5 s, "
                                            "downsampled to 32x32"),
    "POKERDVS": Known("train", 0.0, 1, "35x35x2 DVS card symbols; give duration_ms"),
    "SHD": Known("train", 1400.0, 1, "700 cochlea channels, digits up to ~1.4 s"),
    "SSC": Known("split", 1000.0, 1, "700 cochlea channels, commands up to 1 s"),
}

FORMULA = ("step = floor(t_us * t_max / (1000 * duration_ms) + 1e-6), events at t < 0 or "
           "t >= duration_ms dropped (align_start: t -= first event time); camera: unit = "
           "(p' * H' + y // downsample) * W' + x // downsample, p' = 0 if merge_polarity else p; "
           "cochlea: unit = x * channels // sensor channels; every event kept, time-sorted (stable)")


@dataclass(frozen=True)
class TonicOptions:
    """How a tonic dataset is found and binned (module docstring)."""

    root: str = ""  # tonic's save_to (the folder holding <NAME>/); "": search the data roots
    duration_ms: float = 0.0  # time window, ms (0: the dataset's default, KNOWN)
    downsample: int = 0  # camera sensors: pixels merged per side (0: the dataset's default)
    merge_polarity: bool = False  # camera sensors: one input plane for both polarities
    channels: int = 0  # cochlea sensors: input channels after merging neighbours (0: all)
    align_start: bool = False  # shift each sample's times so that its first event is at 0
    complete: bool = True  # require tonic's own check of a complete copy (false: read what is there)

    def __post_init__(self):
        require(finite(self.duration_ms) and self.duration_ms >= 0,
                f"duration_ms must be a positive number of milliseconds (0: the dataset's default), "
                f"got {self.duration_ms}")
        require(self.downsample >= 0, f"downsample must be 0 (the dataset's default) or positive, "
                                      f"got {self.downsample}")
        require(self.channels >= 0, f"channels must be 0 (all) or positive, got {self.channels}")


class _Refused(Exception):
    """Raised where tonic would download (or copy in) files."""

    def __init__(self, where: str, wants: str):
        super().__init__(where)
        self.where, self.wants = where, wants


def _refuse(self, *args, **kwargs):
    folder = getattr(self, "folder_name", "") or ""
    archive = getattr(self, "filename", "") or ""
    wants = " and ".join(w for w in (archive and f"its archive {archive}",
                                     folder and f"the extracted {folder}/") if w)
    raise _Refused(str(getattr(self, "location_on_system", "?")), wants or "its files")


def _tonic():
    try:
        import tonic  # optional: the tonic extra
    except ImportError:
        raise DataError("tonic: datasets need the tonic package (pip install tonic, or "
                        "pip install 'bstdg[tonic]')") from None
    return tonic


def canonical_name(name: str) -> str:
    """The tonic class name ``name`` spells (case-insensitive); DataError otherwise."""
    match = {k.lower(): k for k in KNOWN}.get(str(name).lower())
    if match is not None:
        return match
    known = ", ".join(KNOWN)
    try:
        import tonic.datasets as td  # optional: the tonic extra
        in_tonic = next((n for n in getattr(td, "__all__", dir(td)) if n.lower() == str(name).lower()), None)
    except ImportError:
        in_tonic = None
    if in_tonic:
        raise DataError(f"tonic:{in_tonic} is not supported (bstdg reads tonic's classification "
                        f"datasets with a train/test split and a fixed sensor: {known})")
    raise DataError(f"unknown tonic dataset {name!r}; bstdg reads {known}")


class TonicDataset(FileDataset):
    """``tonic:NAME`` (module docstring)."""

    Options = TonicOptions

    def __init__(self, name: str, options=None):
        super().__init__(options)
        self.tonic_name = canonical_name(name)
        self.name = f"tonic:{self.tonic_name}"
        self.known = KNOWN[self.tonic_name]
        self.size = self.known.note
        self.tonic_class = getattr(_tonic().datasets, self.tonic_name)
        self.sensor = tuple(int(n) for n in self.tonic_class.sensor_size)  # (W, H, P)
        self.camera = "y" in self.tonic_class.dtype.names
        o = self.options
        duration = o.duration_ms or self.known.duration_ms
        if duration <= 0:
            raise DataError(f"{self.name}: no default time window; give duration_ms (milliseconds) "
                            f"in a --config file")
        width = self.sensor[0]
        if self.camera:
            if o.channels:
                raise DataError(f"{self.name}: channels is for cochlea sensors; this camera's inputs "
                                f"are set by downsample and merge_polarity")
            resolved = replace(o, duration_ms=float(duration),
                               downsample=o.downsample or self.known.downsample)
        else:
            if o.downsample > 1 or o.merge_polarity:
                raise DataError(f"{self.name}: downsample and merge_polarity are for camera sensors; "
                                f"a cochlea's inputs are set by channels")
            if o.channels > width:
                raise DataError(f"{self.name}: channels must be 1..{width}, got {o.channels}")
            resolved = replace(o, duration_ms=float(duration), downsample=1, channels=o.channels or width)
        self.options = resolved
        classes = getattr(self.tonic_class, "classes", None)
        self.classes = tuple(str(c) for c in classes) if isinstance(classes, (list, tuple)) else ()
        self._opened: dict = {}  # (folder, split) -> tonic's dataset object

    # --- files ---------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        w, h, p = self.sensor
        o = self.options
        if not self.camera:
            return (o.channels,)
        d = o.downsample
        return (1 if o.merge_polarity else p, math.ceil(h / d), math.ceil(w / d))

    def candidates(self, data_dir=None) -> list[Path]:
        """The folders ``SAVE_TO/<NAME>`` looked at, in order (module docstring)."""
        if self.options.root:
            return [Path(self.options.root).expanduser() / self.tonic_name]
        folders = []
        for root in data_roots(data_dir):
            folders += [root / "tonic" / self.tonic_name, root / self.tonic_name]
            if root.name == self.tonic_name:
                folders.append(root)
        return folders

    def search(self, data_dir=None):
        folders = self.candidates(data_dir)
        problems: list[str] = []
        for folder in folders:
            found, problem = self.probe(folder)
            if found is not None:
                return found, folders, problems
            if problem:
                problems.append(problem)
        return None, folders, problems

    def probe(self, folder: Path):
        """``(folder, None)`` when tonic reads both splits there without downloading;
        ``(None, why)`` when it finds them incomplete or unreadable; ``(None, None)``
        when there is no such folder."""
        if not folder.is_dir():
            return None, None
        try:
            for split in SPLITS:
                self.open_at(folder, split)
        except DataError as exc:
            return None, str(exc)
        return folder, None

    def missing_hint(self) -> str:
        return (f"bstdg never downloads tonic datasets (tonic would, for a missing or incomplete "
                f"copy): place tonic's complete copy (the {self.tonic_name}/ folder that "
                f"tonic.datasets.{self.tonic_name}(save_to=...) writes) in datasets/tonic/, or point "
                f"--data-dir, BSTDG_DATA or the option root at the folder holding it; "
                f"complete = false (in a --config file) reads the samples a partial copy holds")

    def verify(self, data_dir=None) -> dict[str, bool]:
        raise DataError(f"{self.name}: nothing to verify (tonic checks its own copy when bstdg reads it)")

    def fetch(self, dest_root: Path, progress: bool | None = None) -> Path:
        raise DataError(f"{self.name} cannot be fetched. {self.missing_hint()}")

    def open_at(self, folder: Path, split: str):
        """tonic's dataset object for ``split`` of the copy ``folder`` (``SAVE_TO/<NAME>``):
        its list of samples, none read yet; made so that it cannot download. DataError
        (naming the folder) when tonic finds the copy incomplete, cannot read it, or it holds
        no sample."""
        key = (str(folder), split)
        if key in self._opened:
            return self._opened[key]
        attrs = {"download": _refuse, "_copy_and_extract_local_data": _refuse}
        if not self.options.complete:
            attrs["_check_exists"] = lambda self, *args, **kwargs: True
        # Same class name: tonic's folder is save_to/<class name>.
        guarded = type(self.tonic_class.__name__, (self.tonic_class,), attrs)
        argument = {"train": split == "train"} if self.known.split_argument == "train" else {"split": split}
        try:
            dataset = guarded(save_to=str(folder.parent), **argument)
        except _Refused as exc:
            raise DataError(f"{exc.where}: tonic finds its {split} files incomplete (it wants "
                            f"{exc.wants})") from None
        except Exception as exc:  # noqa: BLE001 - tonic raises many kinds (OSError, KeyError, ...)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{folder}: tonic cannot read its {split} files ({reason})") from None
        if len(dataset) == 0:
            raise DataError(f"{folder}: no {split} samples")
        self._opened[key] = dataset
        return dataset

    def open(self, split: str, data_dir=None):
        """tonic's dataset object for ``split`` of the copy :meth:`locate` finds."""
        check_split(self.name, split)
        return self.open_at(self.locate(data_dir), split)

    # --- samples -------------------------------------------------------------------------
    def load(self, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
        """Every event of the first ``limit`` samples (round-robin over the classes) binned to
        ``t_max`` steps (module docstring)."""
        check_split(self.name, split)
        check_limit(limit)
        if isinstance(t_max, bool) or not isinstance(t_max, (int, np.integer)) or t_max < 2:
            raise DataError(f"t_max must be an integer of at least 2 time steps, got {t_max!r}")
        dataset = self.open(split, data_dir)
        labels = tonic_labels(dataset, self.name, split)
        classes = tonic_classes(dataset) or self.classes or tuple(str(c) for c in range(labels.max() + 1))
        order = class_round_robin(labels)
        if limit is not None:
            order = order[:limit]
        times, units = [], []
        for i in order:
            events = dataset[int(i)][0]
            try:
                t, u = bin_events(events, t_max, self.options, self.sensor, self.camera)
            except ValueError as exc:
                where = dataset.data[i] if isinstance(getattr(dataset, "data", None), list) else f"sample {i}"
                raise DataError(f"{self.name} {split}: {where}: {exc}") from None
            times.append(t)
            units.append(u)
        ptr = np.zeros(len(order) + 1, np.int64)
        np.cumsum([len(t) for t in times], out=ptr[1:])
        shape = self.input_shape
        events = SpikeEvents(np.concatenate(times) if times else np.zeros(0, np.int32),
                             np.concatenate(units) if units else np.zeros(0, np.int32), ptr,
                             int(np.prod(shape)))
        notes = {"tonic_dataset": self.tonic_name, "sensor_size": list(self.sensor),
                 "step_ms": self.options.duration_ms / t_max, "formula": FORMULA,
                 "unit_order": "(polarity, y, x) row-major" if self.camera else "channel"}
        encoder = Encoder("tonic-bins", t_max, shape, asdict(self.options), notes)
        return finish(self.name, split, events, labels[order], len(classes), encoder, classes)


def tonic_labels(dataset, name: str, split: str) -> np.ndarray:
    """The label of every sample of a tonic dataset object without reading its samples:
    its ``targets`` list (folder datasets), else the ``labels`` of its HDF5 file (SHD/SSC)."""
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        labels = np.asarray(targets)
    else:
        import h5py  # heavy: loads only when the labels are read from the HDF5 file

        with h5py.File(Path(dataset.location_on_system) / dataset.data_filename, "r") as f:
            labels = np.asarray(f["labels"][()])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{name} {split}: tonic's labels are not integers ({labels.dtype})")
    return labels.astype(np.int64)


def tonic_classes(dataset) -> tuple[str, ...]:
    """Class names of a tonic dataset object (label k is names[k]); () when it has none."""
    classes = getattr(dataset, "classes", None)
    if classes is None:
        return ()
    if isinstance(classes, dict):  # name -> label
        return tuple(str(k) for k, _ in sorted(classes.items(), key=lambda kv: kv[1]))
    return tuple(c.decode() if isinstance(c, bytes) else str(c) for c in classes)


def bin_events(events: np.ndarray, t_max: int, options: TonicOptions, sensor: tuple,
               camera: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, units)`` int32 of one sample's structured event array (fields ``t``, ``x``
    and, for cameras, ``y``, ``p``), binned as the module docstring says; time-sorted,
    stable. ValueError naming the first address outside the sensor."""
    t = np.asarray(events["t"], np.float64)
    if options.align_start and t.size:
        t = t - t.min()
    step = np.floor(t * t_max / (1000.0 * options.duration_ms) + 1e-6)
    x = np.asarray(events["x"]).astype(np.int64)
    w, h, p_count = sensor
    _check_range("x", x, w)
    if camera:
        y = np.asarray(events["y"]).astype(np.int64)
        p = np.asarray(events["p"]).astype(np.int64)
        _check_range("y", y, h)
        _check_range("p", p, p_count)
        d = options.downsample
        wd, hd = math.ceil(w / d), math.ceil(h / d)
        plane = np.zeros_like(p) if options.merge_polarity else p
        units = (plane * hd + y // d) * wd + x // d
    else:
        units = x * options.channels // w
    keep = (step >= 0) & (step < t_max)
    steps, units = step[keep].astype(np.int64), units[keep]
    if steps.size and (np.diff(steps) < 0).any():
        order = np.argsort(steps, kind="stable")
        steps, units = steps[order], units[order]
    return steps.astype(np.int32), units.astype(np.int32)


def _check_range(field: str, values: np.ndarray, size: int) -> None:
    if values.size and (values.min() < 0 or values.max() >= size):
        bad = int(values.min()) if values.min() < 0 else int(values.max())
        raise ValueError(f"event {field} = {bad} outside the sensor's 0..{size - 1}")
