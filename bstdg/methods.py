"""What a method of ``bstdg compare`` receives and uses: :class:`MethodRun` (one method at
one T), the time and memory :class:`Meter` that wraps its training epochs, and the data and
model metadata every method shares (:func:`load_splits`, :func:`model_meta`). The methods
(:mod:`bstdg.compare`, :mod:`bstdg.baselines`) import this module; it imports none of them.

**Peak training memory** is the growth of the process's resident set (RSS) during the
training epochs: the kernel's high-water mark (``VmHWM``) is reset through
``/proc/self/clear_refs`` right before each epoch, read right after it, and the RSS just
before the epoch is subtracted (details in :mod:`bstdg.compare`).
"""

from __future__ import annotations

import gc
import re
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data import get_dataset


# --- measurement --------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``), so that the RSS
    before an epoch is live memory and memory the epoch reuses from an earlier phase counts
    as growth."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def maxrss_kib() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib // 1024 if sys.platform == "darwin" else kib  # bytes on macOS


class Meter:
    """Wall time, CPU time (all threads, user + system) and peak RSS growth of the training
    epochs of one run."""

    def __init__(self):
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.peak_growth_kib = 0
        self.method = None

    @contextmanager
    def training(self):
        gc.collect()
        _release_free_memory()
        rss = _status_kib("VmRSS")
        if rss is not None and _reset_peak() and _status_kib("VmHWM") is not None:
            self.method = "VmHWM reset via /proc/self/clear_refs, minus VmRSS before"
            base, peak = rss, lambda: _status_kib("VmHWM")
        else:
            self.method = "growth of ru_maxrss (lower bound)"
            base, peak = maxrss_kib(), maxrss_kib
        start, cpu = time.perf_counter(), _cpu_s()
        try:
            yield self
        finally:
            self.seconds.append(time.perf_counter() - start)
            self.cpu_seconds.append(_cpu_s() - cpu)
            self.peak_growth_kib = max(self.peak_growth_kib, peak() - base)


# --- methods ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodRun:
    """One (method, T) run."""

    method: str
    dataset: str
    t_max: int
    out: str  # the run's folder
    hidden: tuple = (600,)
    epochs: int = 1
    seed: int = 0
    limit_train: int | None = None
    limit_test: int | None = None
    data_dir: str | None = None
    meter: Meter = field(default_factory=Meter, compare=False, repr=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "meter"}
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MethodRun":
        return cls(**{**d, "hidden": tuple(d["hidden"])})


def load_splits(config: MethodRun):
    """The train and test splits of a run (same loader, same code at ``t_max = T`` for all)."""
    dataset = get_dataset(config.dataset)
    train = dataset.load("train", config.t_max, config.data_dir, config.limit_train)
    test = dataset.load("test", config.t_max, config.data_dir, config.limit_test)
    return train, test


def model_meta(dataset: str, train) -> dict:
    """The model metadata ``bstdg train`` writes (dataset, input code, class names)."""
    return {"dataset": dataset, "encoder": train.encoder.to_dict(), "classes": [str(c) for c in train.classes]}
