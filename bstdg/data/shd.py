"""Spike data in the SHD HDF5 layout: the Spiking Heidelberg Digits and the FSDD spikes.

File layout (Cramer et al. 2020, as published): ``spikes/times`` (one float array per
sample, seconds), ``spikes/units`` (one integer array per sample, channel indices),
``labels`` (integers); optional ``extra/speaker``, ``extra/keys`` (class names) and the
attribute ``n_channels``. ``shd``: ``shd_train.h5`` / ``shd_test.h5``, 700 channels, 20
classes. ``fsdd-spikes``: ``fsdd<C>_train.h5`` / ``fsdd<C>_test.h5`` built by
``bstdg data build fsdd-spikes`` (:mod:`bstdg.data.fsdd`), C channels (option
``input_channels``), 10 classes.

Encoding (options: :class:`SpikeOptions`, :class:`FsddOptions`): every input spike is kept,
so a channel may spike many times (hidden and output neurons still fire at most once). A
spike at ``t`` seconds goes to time step ``floor(t / (duration_s / t_max))``; spikes at or
after ``duration_s`` are dropped. Channel ``u`` becomes input unit
``u * channels // n_channels`` (``channels`` < ``n_channels`` sums neighbouring channels,
e.g. 700 -> 140 merges 5 into 1; spikes are never merged, only relabelled). Option
``time_windows`` K > 1 also splits each channel by time: a spike at step ``s`` goes to unit
``c + channels * floor(s * K / t_max)``, so the network has ``channels * K`` inputs and a
weight per (channel, time window) instead of one per channel; every spike is still kept,
at its own step (``time_windows = 1``: no split). Samples are
ordered round-robin over the classes (file order within a class), so ``limit`` N takes a
balanced subset.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bstdg.data.base import (EncodedSplit, FileDataset, check_limit, check_split, finish, finite,
                             require)
from bstdg.encoding import Encoder, SpikeEvents
from bstdg.errors import DataError

SPLITS = ("train", "test")
REQUIRED_KEYS = ("spikes/times", "spikes/units", "labels")
# Per dataset: source channels (None: from the option input_channels), classes, and the
# sample counts of the known copies (checked by `bstdg data verify`).
DATASETS = {
    "shd": {"channels": 700, "classes": 20, "counts": {"train": 8156, "test": 2264},
            "size": "8,156/2,264 samples, 700 channels, 20 classes"},
    "fsdd-spikes": {"channels": None, "classes": 10, "counts": {"train": 2700, "test": 300},
                    "size": "2,700/300 recordings, built locally (70 channels: 92 MiB)"},
}


def _h5py():
    try:
        import h5py  # heavy: loads only when an HDF5 file is read
    except ImportError:  # pragma: no cover - h5py is a dependency of bstdg
        raise DataError("reading HDF5 spike files needs h5py (pip install h5py)") from None
    return h5py


@dataclass(frozen=True)
class SpikeOptions:
    """How spike files become input events (module docstring); defaults: SHD's."""

    duration_s: float = 1.4  # time window, seconds
    channels: int = 140  # input channels after downsampling (700 -> 140 merges 5 into 1)
    time_windows: int = 28  # inputs per channel, one per time window (1: no split)

    def __post_init__(self):
        require(finite(self.duration_s) and self.duration_s > 0,
                f"duration_s must be a positive number of seconds, got {self.duration_s}")
        require(self.channels >= 1, f"channels must be at least 1, got {self.channels}")
        require(self.time_windows >= 1, f"time_windows must be at least 1, got {self.time_windows}")


@dataclass(frozen=True)
class FsddOptions(SpikeOptions):
    """:class:`SpikeOptions` with fsdd-spikes' defaults and the build to read."""

    duration_s: float = 1.0  # 99 % of recordings end before 0.93 s
    channels: int = 70
    time_windows: int = 20
    input_channels: int = 70  # which build: fsdd<input_channels>_{train,test}.h5

    def __post_init__(self):
        super().__post_init__()
        require(self.input_channels >= 1, f"input_channels must be at least 1, got {self.input_channels}")


class SpikeDataset(FileDataset):
    """``shd`` or ``fsdd-spikes``: SHD-layout HDF5 files (module docstring)."""

    def __init__(self, name: str, options=None):
        self.Options = SpikeOptions if name == "shd" else FsddOptions
        super().__init__(options)
        self.name = name
        self.size = DATASETS[name]["size"]
        self.classes = tuple(str(c) for c in range(DATASETS[name]["classes"]))

    @property
    def source_channels(self) -> int:
        fixed = DATASETS[self.name]["channels"]
        return int(fixed if fixed is not None else self.options.input_channels)

    def file_names(self) -> dict[str, str]:
        """Split -> file name (fsdd-spikes: depends on ``input_channels``)."""
        if self.name == "shd":
            return {split: f"shd_{split}.h5" for split in SPLITS}
        return {split: f"fsdd{self.options.input_channels}_{split}.h5" for split in SPLITS}

    def probe(self, folder: Path):
        files = self.file_names()
        present = {split: (folder / f).is_file() for split, f in files.items()}
        if all(present.values()):
            return folder, None
        if any(present.values()):
            missing = [files[s] for s, ok in present.items() if not ok]
            return None, f"{folder} lacks {', '.join(missing)}"
        if self.name == "fsdd-spikes" and folder.is_dir():
            other = sorted(p.name for p in folder.glob("fsdd*_train.h5"))
            if other:
                return None, (f"{folder} holds {', '.join(other)} but not {files['train']} "
                              f"(set input_channels in a --config file)")
        if any((folder / f"{f}.gz").is_file() or (folder / f"{f}.zip").is_file()
               for f in files.values()):
            return None, f"{folder} holds compressed copies: unpack them to {', '.join(files.values())}"
        return None, None

    def missing_hint(self) -> str:
        files = self.file_names()
        if self.name == "shd":
            return (f"Run `bstdg data fetch shd` (needs the tonic package and a network), or "
                    f"download shd_train.h5.gz and shd_test.h5.gz from the SHD web page (Zenke "
                    f"lab), unpack them and place {files['train']} and {files['test']} in "
                    f"datasets/shd/ (or point BSTDG_DATA / --data-dir at them)")
        return (f"Build it from the Free Spoken Digit recordings: `bstdg data build fsdd-spikes "
                f"--source DIR --channels {self.source_channels}` (writes {files['train']} and "
                f"{files['test']} into datasets/fsdd-spikes/), or point BSTDG_DATA / --data-dir "
                f"at a folder holding them")

    def wanted_files(self) -> tuple[str, ...]:
        return tuple(self.file_names().values())

    def checks(self, folder: Path) -> dict[str, bool]:
        return checks(self, folder)

    def fetch(self, dest_root: Path, progress: bool | None = None) -> Path:
        return fetch(self, dest_root, progress)

    def load(self, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
        """Every spike binned to ``t_max`` steps (:func:`bin_spikes`)."""
        check_split(self.name, split)
        check_limit(limit)
        folder = self.locate(data_dir)
        sf = read_spike_file(folder / self.file_names()[split], self.source_channels,
                             len(self.classes))
        return encode_spike_file(self.name, split, sf, t_max, self.options, len(self.classes),
                                 self.classes, limit)


def encode_spike_file(name: str, split: str, sf: "SpikeFile", t_max: int, options: SpikeOptions,
                      n_classes: int, classes, limit: int | None = None) -> EncodedSplit:
    """The EncodedSplit of a read spike file (first ``limit`` samples)."""
    if limit is not None:
        sf = reorder(sf, np.arange(min(limit, len(sf))))
    events = bin_spikes(sf, t_max, options.duration_s, options.channels, options.time_windows)
    encoder = Encoder("spike-bins", t_max, (options.channels * options.time_windows,),
                      asdict(options), {"source_channels": sf.n_channels,
                                        "step_s": options.duration_s / t_max,
                                        "formula": FORMULA})
    return finish(name, split, events, sf.labels, n_classes, encoder, classes)


FORMULA = ("step = floor(t / (duration_s / t_max)), spikes at t >= duration_s dropped; "
           "unit = u * channels // source_channels + channels * floor(step * time_windows / t_max); "
           "every spike kept")


# --- reading -----------------------------------------------------------------------------


@dataclass
class SpikeFile:
    """The samples of one HDF5 file, concatenated: sample ``i`` owns
    ``times[ptr[i]:ptr[i+1]]`` and ``units[...]``."""

    times: np.ndarray  # float64 seconds
    units: np.ndarray  # int64
    ptr: np.ndarray  # int64 (N+1,)
    labels: np.ndarray  # int64 (N,)
    n_channels: int
    speakers: np.ndarray | None = None
    keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)


def _ragged(f, key: str, path: Path) -> list[np.ndarray]:
    data = f[key]
    try:
        values = data[()]
    except (OSError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: cannot read {key} ({exc})") from None
    if isinstance(values, np.ndarray) and values.dtype == object:
        return [np.asarray(v) for v in values]
    if isinstance(values, np.ndarray) and values.ndim == 2:  # rectangular: one row per sample
        return list(values)
    raise DataError(f"{path}: {key} must hold one array per sample, found {getattr(values, 'shape', values)}")


def read_spike_file(path: str | Path, n_channels: int, n_classes: int,
                    limit_order: bool = True) -> SpikeFile:
    """Read and check an SHD-layout file. ``n_channels``/``n_classes``: what the dataset
    must have (a file attribute ``n_channels`` that disagrees is an error). Samples come
    back in round-robin class order when ``limit_order`` (see the module docstring)."""
    h5py = _h5py()
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, ValueError, ... for a bad file
        raise DataError(f"{path}: not a readable HDF5 file ({_reason(exc)})") from None
    try:
        with f:
            contents = _read_contents(f, path, n_channels)
        sf = _check_contents(*contents, path, n_channels, n_classes)
    except DataError:
        raise
    except HDF5_ERRORS as exc:  # external or broken links, damaged objects, odd types
        raise DataError(f"{path}: cannot read its contents ({_reason(exc)}); an SHD-layout "
                        f"file needs {', '.join(REQUIRED_KEYS)} as plain datasets") from None
    return reorder(sf, class_round_robin(sf.labels)) if limit_order else sf


# What h5py (and numpy on what it returns) raise for damaged files, external or dangling links
# and objects of the wrong kind.
HDF5_ERRORS = (KeyError, OSError, TypeError, ValueError, RuntimeError, IndexError, OverflowError,
               NotImplementedError, AttributeError)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:150]}"


def _external_link(f, key: str) -> tuple[str, str] | None:
    """``(link path, target file)`` when ``key`` or a group on its way is an external link."""
    h5py = _h5py()
    node, parts = f, key.split("/")
    for i, part in enumerate(parts):
        link = node.get(part, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return "/".join(parts[:i + 1]), str(link.filename)
        if link is None or i == len(parts) - 1:
            return None
        node = node.get(part)
        if not isinstance(node, h5py.Group):
            return None
    return None


def _read_contents(f, path: Path, n_channels: int):
    """The raw arrays of an open SHD-layout file (no links followed to other files)."""
    for key in REQUIRED_KEYS + ("extra/speaker", "extra/keys"):
        external = _external_link(f, key)
        if external is not None:
            raise DataError(f"{path}: {external[0]} is an external link to {external[1]}; bstdg "
                            f"reads only data stored in the file itself")
    missing = [key for key in REQUIRED_KEYS if key not in f]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (an SHD-layout file needs "
                        f"{', '.join(REQUIRED_KEYS)})")
    attr = f.attrs.get("n_channels")
    if attr is not None and int(np.asarray(attr).item()) != n_channels:
        raise DataError(f"{path}: has {int(np.asarray(attr).item())} channels (attribute "
                        f"n_channels), expected {n_channels}")
    times = _ragged(f, "spikes/times", path)
    units = _ragged(f, "spikes/units", path)
    labels = np.asarray(f["labels"][()])
    speakers = np.asarray(f["extra/speaker"][()]) if "extra/speaker" in f else None
    keys = None
    if "extra/keys" in f:
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in f["extra/keys"][()]]
    return times, units, labels, speakers, keys


def _check_contents(times, units, labels, speakers, keys, path: Path, n_channels: int,
                    n_classes: int) -> SpikeFile:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be a 1-d integer array, found {labels.dtype} {labels.shape}")
    n = len(labels)
    if len(times) != n or len(units) != n:
        raise DataError(f"{path}: {len(times)} spike time arrays, {len(units)} unit arrays and "
                        f"{n} labels; they must match")
    if n == 0:
        raise DataError(f"{path}: no samples")
    if labels.min() < 0 or labels.max() >= n_classes:
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DataError(f"{path}: label {bad} out of range; labels must be 0..{n_classes - 1}")
    for what, arrays, kinds in (("spikes/times", times, "iuf"), ("spikes/units", units, "iu")):
        wrong = next((a for a in arrays if a.ndim != 1 or a.dtype.kind not in kinds), None)
        if wrong is not None:
            raise DataError(f"{path}: {what} must hold 1-d {'numbers' if kinds == 'iuf' else 'integers'} "
                            f"per sample, found {wrong.dtype} {wrong.shape}")
    counts = np.fromiter((len(t) for t in times), np.int64, n)
    if not np.array_equal(counts, np.fromiter((len(u) for u in units), np.int64, n)):
        i = int(np.nonzero(counts != np.fromiter((len(u) for u in units), np.int64, n))[0][0])
        raise DataError(f"{path}: sample {i} has {len(times[i])} spike times but {len(units[i])} units")
    flat_t = np.concatenate(times).astype(np.float64) if counts.sum() else np.zeros(0)
    flat_u = np.concatenate(units) if counts.sum() else np.zeros(0, np.int64)
    if flat_t.size:
        if not np.isfinite(flat_t).all():
            raise DataError(f"{path}: spike times contain NaN or infinity")
        if flat_t.min() < 0:
            raise DataError(f"{path}: negative spike time {flat_t.min():g} s")
        if not np.issubdtype(flat_u.dtype, np.integer):
            raise DataError(f"{path}: spikes/units must be integers, found {flat_u.dtype}")
        if flat_u.min() < 0 or flat_u.max() >= n_channels:
            bad = int(flat_u.min()) if flat_u.min() < 0 else int(flat_u.max())
            raise DataError(f"{path}: unit {bad} out of range; units must be 0..{n_channels - 1}")
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return SpikeFile(flat_t, flat_u.astype(np.int64), ptr, labels.astype(np.int64), n_channels,
                     speakers, keys)


def class_round_robin(labels: np.ndarray) -> np.ndarray:
    """An order that interleaves the classes (file order within each class)."""
    labels = np.asarray(labels)
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        rank[idx] = np.arange(len(idx))
    return np.lexsort((labels, rank))


def reorder(sf: SpikeFile, index: np.ndarray) -> SpikeFile:
    """The samples ``index`` of ``sf``, in that order."""
    index = np.asarray(index, np.int64)
    starts, counts = sf.ptr[index], np.diff(sf.ptr)[index]
    ptr = np.zeros(len(index) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    owner = np.repeat(np.arange(len(index)), counts)
    src = starts[owner] + (np.arange(ptr[-1]) - ptr[owner])
    return SpikeFile(sf.times[src], sf.units[src], ptr, sf.labels[index], sf.n_channels,
                     None if sf.speakers is None else sf.speakers[index], sf.keys)


def bin_spikes(sf: SpikeFile, t_max: int, duration_s: float, channels: int,
               time_windows: int = 1) -> SpikeEvents:
    """Integer-step events (see the module docstring): step = floor(t / (duration_s / t_max)),
    unit = channel after downsampling + channels * time window of the step."""
    if t_max < 2:
        raise DataError(f"t_max must be at least 2 time steps, got {t_max}")
    if not duration_s > 0:
        raise DataError(f"duration_s must be positive, got {duration_s}")
    if not 1 <= channels <= sf.n_channels:
        raise DataError(f"channels must be 1..{sf.n_channels}, got {channels}")
    if not 1 <= time_windows <= t_max:
        raise DataError(f"time_windows must be 1..t_max ({t_max}), got {time_windows}")
    # + 1e-6 step: a time stored as float32 just below a step boundary (0.005 s is
    # 0.0049999999) lands on the step it was written for.
    step = np.floor(sf.times * (t_max / duration_s) + 1e-6)
    keep = step < t_max
    owner = np.repeat(np.arange(len(sf)), np.diff(sf.ptr))[keep]
    steps = step[keep].astype(np.int64)
    units = sf.units[keep] * channels // sf.n_channels + channels * (steps * time_windows // t_max)
    key = owner * t_max + steps
    if key.size and (np.diff(key) < 0).any():  # not time-sorted within a sample
        order = np.argsort(key, kind="stable")
        steps, units, owner = steps[order], units[order], owner[order]
    ptr = np.zeros(len(sf) + 1, np.int64)
    np.cumsum(np.bincount(owner, minlength=len(sf)), out=ptr[1:])
    return SpikeEvents(steps.astype(np.int32), units.astype(np.int32), ptr,
                       int(channels) * int(time_windows))


# --- verify ------------------------------------------------------------------------------


def checks(ds: SpikeDataset, folder: Path) -> dict[str, bool]:
    """Each file reads as an SHD-layout file with valid times, units and labels, and has
    the sample count of the known copy. No checksums: none are published for these files
    that bstdg could check against (fetch through tonic checks tonic's own MD5s)."""
    result = {}
    name, n_channels = ds.name, ds.source_channels
    for split, file in ds.file_names().items():
        path = folder / file
        try:
            sf = read_spike_file(path, n_channels, DATASETS[name]["classes"], limit_order=False)
        except DataError as exc:
            result[f"{file}: {exc}"] = False
            continue
        result[f"{file}: SHD layout, {n_channels} channels, labels 0..{DATASETS[name]['classes'] - 1}"] = True
        known = DATASETS[name]["counts"][split]
        result[f"{file}: {len(sf)} samples (known copy: {known})"] = len(sf) == known
    return result


# --- fetch -------------------------------------------------------------------------------


def fetch(ds: SpikeDataset, dest_root: Path, progress: bool | None = None) -> Path:
    """SHD: download with tonic's SHD dataset (which checks its own MD5s) into
    ``dest_root/shd/``; fsdd-spikes: explain how to build it. DataError otherwise."""
    name = ds.name
    dest = Path(dest_root) / name
    if name != "shd":
        raise DataError(f"{name} cannot be downloaded. {ds.missing_hint()}")
    files = ds.file_names()
    if ds.probe(dest)[0] is not None and all(checks(ds, dest).values()):
        return dest
    try:
        import tonic  # noqa: F401  (optional: the shd/tonic extra)
    except ImportError:
        raise DataError(f"fetching shd needs the tonic package (pip install tonic), which "
                        f"downloads it. {ds.missing_hint()}") from None
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".tonic-") as work:
        try:
            for split in SPLITS:
                dataset = tonic.datasets.SHD(save_to=work, train=split == "train")
                found = Path(getattr(dataset, "location_on_system", work)) / files[split]
                if not found.is_file():
                    found = next(Path(work).rglob(files[split]), None)
                if found is None:
                    raise DataError(f"tonic did not produce {files[split]}")
                os.replace(found, dest / files[split])
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - tonic raises many kinds (network, zip, ...)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"tonic could not download SHD ({reason}). {ds.missing_hint()}") from None
    bad = [k for k, ok in checks(ds, dest).items() if not ok]
    if bad:
        raise DataError(f"shd in {dest} fails verification: {'; '.join(bad)}")
    return dest


def write_spike_file(path: str | Path, times: list, units: list, labels, n_channels: int,
                     keys=None, speakers=None, speaker_names=None, files=None,
                     source: str = "") -> Path:
    """Write samples in the SHD layout (float32 seconds, uint16 units), to a temp file in
    the same folder that is renamed into place once complete."""
    h5py = _h5py()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            ft = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
            fu = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
            for i, (t, u) in enumerate(zip(times, units)):
                ft[i] = np.asarray(t, np.float32)
                fu[i] = np.asarray(u, np.uint16)
            f.create_dataset("labels", data=np.asarray(labels, np.uint16))
            if speakers is not None:
                f.create_dataset("extra/speaker", data=np.asarray(speakers, np.uint16))
            if keys is not None:
                f.create_dataset("extra/keys", data=np.asarray([str(k).encode() for k in keys]))
            if speaker_names is not None:
                f.create_dataset("extra/speaker_names",
                                 data=np.asarray([str(k).encode() for k in speaker_names]))
            if files is not None:
                f.create_dataset("extra/files", data=np.asarray([str(k).encode() for k in files]))
            f.attrs["n_channels"] = int(n_channels)
            if source:
                f.attrs["source"] = source
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

