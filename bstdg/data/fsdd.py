"""``bstdg data build fsdd-spikes``: Free Spoken Digit recordings -> SHD-layout spike files.

Each recording ``{digit}_{speaker}_{index}.wav`` (mono WAV) goes through the ``lauscher``
cochlea model (``Wave2Spike(num_channels=C)``: RMS normalisation, Hanning window, basilar
membrane, hair cells, bushy cells; the model that produced SHD). Index 0-4 of each
speaker/digit is the test split (the FSDD convention), the rest train. The result is
``fsdd<C>_train.h5`` / ``fsdd<C>_test.h5`` in the SHD layout (:mod:`bstdg.data.shd`), read
by ``bstdg train --dataset fsdd-spikes``. It is a stand-in for SHD with the same layout,
not SHD: report it under its own name.

lauscher is optional (``pip install 'bstdg[audio]'``) and imported only here. It draws
random numbers from numpy's global generator; each recording is converted with the seed
``seed + crc32(file name)``, in one process (lauscher's own process pools are replaced by a
serial map), so a build is reproducible whatever ``jobs`` is.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import zlib
from pathlib import Path

import numpy as np

from bstdg.data.base import data_roots
from bstdg.data.shd import write_spike_file
from bstdg.errors import DataError
from bstdg.progress import Progress

FILE_PATTERN = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
TEST_INDICES = range(5)  # index 0-4 of each speaker/digit: test split
SOURCE_FOLDERS = ("fsdd/recordings", "free-spoken-digit-dataset/recordings", "recordings", "fsdd")


class _SerialPool:
    """Stands in for multiprocessing.Pool inside lauscher: same map, no processes."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, iterable, chunksize=None):
        return list(map(fn, iterable))


def lauscher_cochlea(path: str, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spike times (s, float32, sorted) and channels (uint16) of one WAV through lauscher."""
    try:
        from lauscher.audiowaves import FileMonoAudioWave  # optional: the audio extra
        from lauscher.transformations import basilar_membrane, bushy_cell, hair_cell
        from lauscher.transformations.wave2spike import Wave2Spike
    except ImportError:
        raise DataError("building fsdd-spikes needs the lauscher cochlea model: "
                        "pip install 'bstdg[audio]' (or pip install lauscher)") from None
    for module in (basilar_membrane, bushy_cell, hair_cell):
        module.Pool = _SerialPool
    np.random.seed(seed % (2 ** 32))
    try:
        spikes = FileMonoAudioWave(path).transform(Wave2Spike(num_channels=channels))
    except Exception as exc:  # noqa: BLE001 - soundfile/lauscher errors are not typed
        raise DataError(f"{path}: lauscher could not convert it ({exc})") from None
    times = np.asarray(spikes.spike_times, np.float64)
    units = np.asarray(spikes.spike_labels, np.int64)
    order = np.lexsort((units, times))
    return times[order].astype(np.float32), units[order].astype(np.uint16)


def find_recordings(source: str | Path | None = None, data_dir=None) -> Path:
    """The folder of FSDD WAV files: ``source`` if given, else the first of
    ``fsdd/recordings`` etc. under the data roots (``--data-dir``, $BSTDG_DATA, ./datasets)."""
    if source is not None:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(f"--source {folder}: no such folder")
        if not any(FILE_PATTERN.match(p.name) for p in folder.iterdir()):
            raise DataError(f"--source {folder}: no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav)")
        return folder
    tried = []
    for root in data_roots(data_dir):
        for sub in SOURCE_FOLDERS:
            folder = root / sub
            tried.append(str(folder))
            if folder.is_dir() and any(FILE_PATTERN.match(p.name) for p in folder.iterdir()):
                return folder
    raise DataError(f"no FSDD recordings found (looked in: {', '.join(tried)}). Clone the Free "
                    f"Spoken Digit Dataset (github.com/Jakobovski/free-spoken-digit-dataset) and "
                    f"pass --source .../recordings")


def list_recordings(folder: Path) -> list[tuple[Path, int, str, int]]:
    """``(path, digit, speaker, index)`` of every recording, sorted by digit, speaker, index."""
    items = []
    for path in folder.iterdir():
        m = FILE_PATTERN.match(path.name)
        if m and path.is_file():
            items.append((path, int(m.group(1)), m.group(2), int(m.group(3))))
    return sorted(items, key=lambda it: (it[1], it[2], it[3]))


def _seed(seed: int, name: str) -> int:
    return (seed + zlib.crc32(name.encode())) % (2 ** 32)


def _convert(job):
    path, channels, seed, cochlea = job
    return cochlea(str(path), channels, _seed(seed, path.name))


def build_fsdd_spikes(source=None, dest_root="datasets", channels: int = 70, jobs: int | None = None,
                      seed: int = 0, limit: int | None = None, data_dir=None,
                      progress: bool | None = None, cochlea=None, log=print) -> dict[str, Path]:
    """Convert the FSDD recordings into ``dest_root/fsdd-spikes/fsdd<channels>_{train,test}.h5``.

    ``jobs``: worker processes (default: all cores); ``limit``: only the first N recordings
    (sorted by digit, speaker, index; for quick tries); ``cochlea``: ``f(path, channels,
    seed) -> (times, units)`` replacing lauscher (tests). Returns split -> written file.
    """
    if channels < 1 or channels > 65535:
        raise DataError(f"--channels must be 1..65535, got {channels}")
    folder = find_recordings(source, data_dir)
    items = list_recordings(folder)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise DataError(f"{folder}: no recordings to convert")
    cochlea = cochlea or lauscher_cochlea
    if cochlea is lauscher_cochlea:
        try:
            import lauscher  # noqa: F401  (optional: the audio extra)
        except ImportError:
            raise DataError("building fsdd-spikes needs the lauscher cochlea model: "
                            "pip install 'bstdg[audio]' (or pip install lauscher)") from None
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(items)))
    dest = Path(dest_root) / "fsdd-spikes"
    dest.mkdir(parents=True, exist_ok=True)
    work = [(path, channels, seed, cochlea) for path, *_ in items]
    log(f"converting {len(items)} recordings from {folder} with {jobs} process(es), "
        f"{channels} channels")
    results = []
    with Progress(len(work), "fsdd-spikes", enabled=progress, unit="files") as bar:
        if jobs == 1:
            for job in work:
                results.append(_convert(job))
                bar.update(1)
        else:
            context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
            with context.Pool(jobs) as pool:
                for result in pool.imap(_convert, work, chunksize=1):
                    results.append(result)
                    bar.update(1)
    speakers = sorted({speaker for _, _, speaker, _ in items})
    written = {}
    model_name = ('lauscher cochlea model (Wave2Spike)' if cochlea is lauscher_cochlea
                  else getattr(cochlea, '__name__', 'custom cochlea'))
    for split in ("train", "test"):
        chosen = [i for i, (_, _, _, index) in enumerate(items)
                  if (index in TEST_INDICES) == (split == "test")]
        if not chosen:
            log(f"note: no {split} recordings; {split} file not written")
            continue
        written[split] = write_spike_file(
            dest / f"fsdd{channels}_{split}.h5",
            [results[i][0] for i in chosen], [results[i][1] for i in chosen],
            [items[i][1] for i in chosen], channels, keys=[str(d) for d in range(10)],
            speakers=[speakers.index(items[i][2]) for i in chosen], speaker_names=speakers,
            files=[items[i][0].name for i in chosen],
            source=(f"Free Spoken Digit Dataset recordings, "
                    f"{model_name}, "
                    f"{channels} channels, numpy seed {seed} + crc32(file name)"))
        log(f"wrote {written[split]} ({len(chosen)} recordings)")
    return written
