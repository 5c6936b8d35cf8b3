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

import ctypes
import gc
import re
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .data import get_dataset
from .errors import BstdgError


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
    # Held-out selection and early stopping (``bstdg compare --until-converged``): ``val``
    # held-out training samples (0: none, None: :func:`default_val_size`), ``patience``
    # epochs without a better held-out accuracy (None: never stop for that), ``budget_s``
    # seconds of training wall time (None: no budget); ``epochs`` is then the maximum.
    val: int | None = 0
    patience: int | None = None
    budget_s: float | None = None
    device: str = "cpu"  # torch methods: "cpu" or "cuda"
    settings: dict | None = None  # hyper-parameters of this (method, T) (``--bptt-settings``)
    # ``bstdg compare --arch``: the hidden layers as an arch spec with conv or pool layers
    # (:mod:`bstdg.arch`; ``hidden`` then holds the sizes of its fc layers); None: fc layers
    # of the sizes ``hidden``.
    arch: str | None = None
    meter: Meter = field(default_factory=Meter, compare=False, repr=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "meter"}
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MethodRun":
        return cls(**{**d, "hidden": tuple(d["hidden"])})

    def stopping(self) -> "EarlyStopping":
        """The early-stopping rule of this run (``epochs`` is the maximum)."""
        return EarlyStopping(self.epochs, self.patience, self.budget_s)


def load_splits(config: MethodRun):
    """The train and test splits of a run (same loader, same code at ``t_max = T`` for all).
    With a held-out split (``config.val != 0``) the training split is the training set
    minus the held-out samples (:func:`load_fit_val_test`)."""
    if config.val != 0:
        fit, _, test = load_fit_val_test(config)
        return fit, test
    dataset = get_dataset(config.dataset)
    train = dataset.load("train", config.t_max, config.data_dir, config.limit_train)
    test = dataset.load("test", config.t_max, config.data_dir, config.limit_test)
    return train, test


# --- held-out split and early stopping ----------------------------------------------------

# The held-out split is drawn with this seed, whatever the run's seed, so every method and
# every T holds out the same training samples (the split of benchmarks/heldout_sweep.py).
VAL_SEED = 0


def default_val_size(n_train: int) -> int:
    """Held-out samples when ``--val`` is not given: 5,000 or a tenth of the training
    set, whichever is smaller (5,000 of MNIST's 60,000)."""
    return max(1, min(5000, n_train // 10))


def heldout_split(n_train: int, n_val: int, seed: int = VAL_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, val)``: sorted indices of the samples trained on and of the held-out ones, a
    fixed random partition of ``range(n_train)`` (``val`` = the first ``n_val`` of a
    permutation drawn with ``seed``)."""
    if not 0 < n_val < n_train:
        raise BstdgError(f"--val: the held-out split must be 1..{n_train - 1} samples of the "
                         f"{n_train:,} training samples, got {n_val}")
    order = np.random.default_rng(seed).permutation(n_train)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def subset(split, index: np.ndarray):
    """The samples ``index`` of an :class:`~bstdg.data.EncodedSplit`."""
    return replace(split, events=split.events.take(index), labels=split.labels[index])


def load_fit_val_test(config: MethodRun):
    """``(fit, val, test)``: the held-out split is drawn from the **full** training set
    (:func:`heldout_split`, ``config.val`` samples, None: :func:`default_val_size`), so it is
    the same whatever ``limit_train`` is; ``limit_train`` then keeps the first N of the
    remaining samples. ``val`` is None when ``config.val == 0``."""
    dataset = get_dataset(config.dataset)
    test = dataset.load("test", config.t_max, config.data_dir, config.limit_test)
    if config.val == 0:
        return dataset.load("train", config.t_max, config.data_dir, config.limit_train), None, test
    train = dataset.load("train", config.t_max, config.data_dir)
    n_val = default_val_size(len(train.labels)) if config.val is None else int(config.val)
    fit_idx, val_idx = heldout_split(len(train.labels), n_val)
    if config.limit_train:
        fit_idx = fit_idx[:config.limit_train]
    return subset(train, fit_idx), subset(train, val_idx), test


class EarlyStopping:
    """The stopping and selection rule every method of ``bstdg compare`` applies after each
    training epoch (:meth:`update`): stop when the held-out accuracy has not improved for
    ``patience`` epochs (``converged``), when the cumulative training wall time reaches
    ``budget_s`` (``budget``: the run may overshoot by at most one epoch), or after
    ``max_epochs`` (``max_epochs``); checked in that order. The selected epoch is the first
    one with the best held-out accuracy (the last epoch without a held-out split).

    ``history``: one entry per epoch, ``epoch``, ``wall_s`` (cumulative training time),
    ``val_accuracy`` (None without a held-out split), ``test_accuracy``."""

    def __init__(self, max_epochs: int, patience: int | None = None, budget_s: float | None = None):
        if patience is not None and patience < 1:
            raise BstdgError(f"--patience must be at least 1, got {patience}")
        if budget_s is not None and not budget_s > 0:
            raise BstdgError(f"--budget-s must be positive, got {budget_s}")
        self.max_epochs, self.patience, self.budget_s = int(max_epochs), patience, budget_s
        self.history: list[dict] = []
        self.best: dict | None = None
        self.stopped_by: str | None = None

    def update(self, epoch: int, wall_s: float, val_accuracy: float | None,
               test_accuracy: float) -> bool:
        """Record an epoch; True when it is the selected epoch so far (the caller keeps that
        model). Sets :attr:`stopped_by` when training must stop."""
        entry = {"epoch": int(epoch), "wall_s": float(wall_s),
                 "val_accuracy": None if val_accuracy is None else float(val_accuracy),
                 "test_accuracy": float(test_accuracy)}
        self.history.append(entry)
        improved = (self.best is None or val_accuracy is None
                    or val_accuracy > self.best["val_accuracy"])
        if improved:
            self.best = entry
        if (self.patience is not None and val_accuracy is not None
                and entry["epoch"] - self.best["epoch"] >= self.patience):
            self.stopped_by = "converged"
        elif self.budget_s is not None and wall_s >= self.budget_s:
            self.stopped_by = "budget"
        elif entry["epoch"] >= self.max_epochs:
            self.stopped_by = "max_epochs"
        return improved

    @property
    def stop(self) -> bool:
        return self.stopped_by is not None

    def summary(self) -> dict:
        """What a method adds to its result: the selected epoch, why training stopped,
        ``budgeted`` (stopped by the wall-time budget) and the history."""
        best = self.best or {}
        return {"selected_epoch": best.get("epoch"), "selected_val_accuracy": best.get("val_accuracy"),
                "stopped_by": self.stopped_by, "budgeted": self.stopped_by == "budget",
                "epochs_trained": len(self.history), "stopping": {
                    "max_epochs": self.max_epochs, "patience": self.patience, "budget_s": self.budget_s}}


def model_meta(dataset: str, train) -> dict:
    """The model metadata ``bstdg train`` writes (dataset, input code, class names)."""
    return {"dataset": dataset, "encoder": train.encoder.to_dict(), "classes": [str(c) for c in train.classes]}


def time_to_accuracy(history: list, levels=(0.90, 0.95, 0.97)) -> dict:
    """Training wall time to reach each accuracy level: ``{"time_to_90": s, ...}``, the
    cumulative ``wall_s`` of the first epoch of ``history`` whose ``test_accuracy`` is at
    least the level (None: never reached, or no timed history)."""
    out = {}
    for level in levels:
        hit = next((h for h in history if h.get("wall_s") is not None
                    and h.get("test_accuracy") is not None and h["test_accuracy"] >= level), None)
        out[f"time_to_{round(100 * level)}"] = None if hit is None else float(hit["wall_s"])
    return out
