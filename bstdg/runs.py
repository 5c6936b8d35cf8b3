"""The run folder: the one place that writes and reads a run's files.

A run folder ``RUN/`` holds ``model.npz`` (the network to evaluate and export),
``metrics.json`` (results and every input of the run, schema :data:`SCHEMA`),
``checkpoint.npz`` (the trainer's state after the last complete epoch, for ``--resume``),
and what reports add (``test_outputs.npz``, ``report.md``, figures). Guarantees
(docs/reliability.md):

* **atomic writes**: every file goes to a temporary file in the same folder, is flushed
  and ``fsync``-ed, then renamed over its final name (:func:`atomic_write`): a reader, a
  crash, ``kill -9`` or a full disk leaves the previous complete file or the new one, never
  a partial one;
* **one writer**: a process that writes a run holds an exclusive lock on ``RUN/.lock``
  (``flock``; released by the kernel when the process ends, however it ends);
* **nothing overwritten by surprise**: training into a folder that holds a run needs
  ``force`` (start over) or ``resume`` (continue); :func:`refuse_run_file` keeps other
  commands' outputs off a run's own files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numba
import numpy as np

from . import __version__
from .data import get_dataset
from .data.base import FileDataset
from .errors import BstdgError, Interrupted, Terminated, first_line, interrupt_in
from .evaluation import evaluate
from .files import read_json, save_npz, to_json, write_json
from .metrics import hidden_spikes_before_decision
from .conv_train import check_memory_layered, layered_arch
from .convnet import FORMAT as LAYERED_FORMAT
from .convnet import LayeredSNN
from .npzio import read_arrays
from .network import BinarySNN
from .recipe import TrainConfig
from .train import check_memory, fit, initial_model, make_trainer

SCHEMA = "bstdg-run/1"
MODEL, METRICS, CHECKPOINT, LOCK = "model.npz", "metrics.json", "checkpoint.npz", ".lock"
TEST_OUTPUTS, COMPARE = "test_outputs.npz", "compare.json"
# The files that make a folder a run (or a comparison), and that nothing but their owner writes.
RUN_FILES = (MODEL, METRICS, CHECKPOINT, TEST_OUTPUTS, COMPARE, "run_config.json")


# --- the folder --------------------------------------------------------------------------


class RunFolder:
    """A run folder (module docstring). Use as a context manager to hold its lock::

        with RunFolder(out).open(force=False, resume=False) as run:
            run.save_model(net); run.write_metrics(result)
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock_fd = None

    # paths
    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in (MODEL, METRICS, CHECKPOINT))

    # lock
    def lock(self) -> "RunFolder":
        """Take the folder's exclusive lock (BstdgError when another process holds it)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BstdgError(f"--out {self.path}: cannot write there ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise BstdgError(f"{self.path} is in use by another bstdg process (it holds "
                                 f"{self.path / LOCK}); wait for it or choose another --out") from None
            raise BstdgError(f"{self.path}: cannot lock ({exc.strerror or exc})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def __enter__(self) -> "RunFolder":
        if self._lock_fd is None:
            self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    def open(self, force: bool = False, resume: bool = False) -> "RunFolder":
        """Lock the folder for a training run. An existing run is refused unless ``force``
        (its files are removed now) or ``resume`` (its checkpoint must exist)."""
        if force and resume:
            raise BstdgError("--force and --resume exclude each other")
        self.lock()
        try:
            if resume:
                if not self.checkpoint.is_file():
                    raise BstdgError(f"{self.path}: no {CHECKPOINT} to resume from "
                                     f"(the run finished, or never completed an epoch)")
            elif self.holds_run():
                if not force:
                    raise BstdgError(f"{self.path} already holds a run; use --force to start over "
                                     f"(its files are replaced) or --resume to continue it")
                for name in RUN_FILES:
                    (self.path / name).unlink(missing_ok=True)
        except BaseException:
            self.unlock()
            raise
        return self

    # files
    def save_model(self, net) -> Path:
        """``net`` (a :class:`~bstdg.network.BinarySNN` or :class:`~bstdg.convnet.LayeredSNN`)
        to ``model.npz``, atomically."""
        net.save(self.model)
        return self.model

    def write_metrics(self, metrics: dict) -> Path:
        return write_json(self.metrics, {"schema": SCHEMA, **metrics})

    def read_metrics(self) -> dict:
        return read_json(self.metrics, "metrics file")

    def save_checkpoint(self, state: dict, record: dict) -> Path:
        """The trainer's ``state`` (arrays and JSON values) and the run's ``record`` (its
        inputs and history so far, JSON) to ``checkpoint.npz``, atomically."""
        arrays = {k: np.asarray(v) for k, v in state.items()}
        return save_npz(self.checkpoint, **arrays, record=np.array(to_json(record)))

    def read_checkpoint(self) -> tuple[dict, dict]:
        """``(state, record)`` of :meth:`save_checkpoint`; one-line BstdgError if damaged."""
        if not self.checkpoint.is_file():
            raise BstdgError(f"{self.checkpoint}: no such checkpoint")
        arrays = read_arrays(self.checkpoint, "checkpoint")
        try:
            record = json.loads(str(arrays.pop("record")))
        except (KeyError, ValueError) as exc:
            raise BstdgError(f"{self.checkpoint}: damaged checkpoint ({first_line(exc)}); start over "
                             f"with --force") from None
        state = {k: (v.item() if v.ndim == 0 and k != "rng" else v) for k, v in arrays.items()}
        if not isinstance(record, dict):
            raise BstdgError(f"{self.checkpoint}: damaged checkpoint record; start over with --force")
        return state, record

    def finish(self) -> None:
        """The run is complete: its checkpoint is no longer needed."""
        self.checkpoint.unlink(missing_ok=True)


def load_model(run) -> tuple[BinarySNN | LayeredSNN, str]:
    """The model of a run folder (or .npz file) and the dataset it was trained on: a
    :class:`~bstdg.network.BinarySNN` (format ``bstdg-model``) or a
    :class:`~bstdg.convnet.LayeredSNN` (format ``bstdg-layered-model``), chosen by the
    file's ``format`` field."""
    path = model_path(run)
    net = LayeredSNN.load(path) if model_format(path) == LAYERED_FORMAT else BinarySNN.load(path)
    dataset = net.meta.get("dataset")
    if not dataset:
        raise BstdgError(f"{path} does not say which dataset it was trained on (meta['dataset'])")
    return net, dataset


def model_format(path) -> str | None:
    """The ``format`` field of the model file at ``path`` (None when it has none; a file
    that is no readable .npz is one BstdgError line)."""
    fmt = read_arrays(path, "model file").get("format")
    return str(fmt) if fmt is not None and fmt.ndim == 0 and fmt.dtype.kind == "U" else None


def model_path(run) -> Path:
    """``run/model.npz`` for a run folder, ``run`` itself for a file; BstdgError if absent."""
    path = Path(run)
    if path.is_dir():
        path = path / MODEL
    if not path.is_file():
        raise BstdgError(f"no model at {path} (`bstdg train --out RUN` writes RUN/model.npz)")
    return path


def check_inputs(net: BinarySNN | LayeredSNN, events, dataset: str) -> None:
    """BstdgError when the model's input layer does not fit the dataset's encoding."""
    if events.n_units != net.sizes[0]:
        raise BstdgError(f"the model expects {net.sizes[0]} inputs, {dataset} encodes "
                         f"{events.n_units}")


def save_test_outputs(out, result, decision, labels, input_times, t_max: int, sizes) -> Path:
    """Per-sample test figures for the histograms, and one sample's spikes for the raster,
    to ``out/test_outputs.npz``: ``decision_time``, ``hidden_spikes`` (to the decision),
    ``prediction``, ``tie``, ``label``; ``raster_input_times`` / ``raster_times`` (all
    neurons, no early exit) of test sample 0."""
    return save_npz(
        Path(out) / TEST_OUTPUTS, compressed=True, decision_time=decision.time,
        prediction=decision.prediction, tie=decision.tie, label=np.asarray(labels),
        t_max=np.array(t_max), sizes=np.asarray(sizes, np.int64),
        hidden_spikes=hidden_spikes_before_decision(result, decision, t_max).astype(np.int32),
        raster_input_times=np.asarray(input_times, np.int32),
        raster_times=np.asarray(result.times[0], np.int32))


def refuse_run_file(target, option: str = "--out") -> None:
    """BstdgError when writing ``target`` would replace a run's own file (``model.npz``,
    ``metrics.json``, ... of a folder that holds a run, or a hard link to one)."""
    target = Path(target)
    if target.name in RUN_FILES and RunFolder(target.parent).holds_run():
        raise BstdgError(f"{option} {target} would overwrite a file of the run in {target.parent}; "
                         f"choose another name")
    if target.is_file():
        try:
            st = target.stat()
        except OSError:
            return
        if st.st_nlink > 1:
            raise BstdgError(f"{option} {target} is a hard link (to a run's file, perhaps); "
                             f"writing it would change the other name too: choose another name")


def versions() -> dict:
    """The versions of what a run depends on (recorded in ``metrics.json``)."""
    return {"bstdg": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "platform": platform.platform()}


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def today() -> str:
    return time.strftime("%Y-%m-%d")


# --- a training run ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunInputs:
    """Every input of a training run (``metrics.json`` records them; ``--resume`` reads
    them back): the dataset spec and the options given for it, where the data was looked
    for, the limits, and the training config."""

    dataset: str
    config: TrainConfig = field(default_factory=TrainConfig)
    options: dict = field(default_factory=dict)  # dataset options given (over its defaults)
    data_dir: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunInputs":
        try:
            return cls(**{**d, "config": TrainConfig.from_dict(d["config"])})
        except (TypeError, KeyError) as exc:
            raise BstdgError(f"the run's recorded inputs are incomplete ({exc})") from None


def train_run(inputs: RunInputs | None, out, *, force: bool = False, resume: bool = False,
              progress: bool | None = None, log: Callable | None = print,
              data_dir=None) -> dict:
    """Train into the run folder ``out`` and return its metrics (also written to
    ``out/metrics.json``). After every epoch ``model.npz`` and ``checkpoint.npz`` are
    written (atomically); with ``resume`` the inputs come from the checkpoint (``inputs``
    may be None; ``data_dir`` may point elsewhere) and training continues from the last
    complete epoch, ending bit-identical to a run that was never interrupted."""
    if not resume:  # unknown or missing data: fail before the run folder is touched
        ds = get_dataset(inputs.dataset, inputs.options)
        if isinstance(ds, FileDataset):
            ds.locate(inputs.data_dir)
    folder = RunFolder(out).open(force=force, resume=resume)
    with folder:
        history: list = []
        state = None
        if resume:
            state, record = folder.read_checkpoint()
            inputs = RunInputs.from_dict(record.get("inputs", {}))
            history = list(record.get("history", []))
            if data_dir is not None:
                inputs = RunInputs(**{**asdict(inputs), "config": inputs.config, "data_dir": str(data_dir)})
        config = inputs.config
        dataset = get_dataset(inputs.dataset, inputs.options)
        if log is not None and isinstance(dataset, FileDataset):
            where = dataset.locate(inputs.data_dir)
            skipped = dataset.problems(inputs.data_dir)
            log(f"data: {inputs.dataset} from {where}" + (f" (skipped: {'; '.join(skipped)})" if skipped else ""))
        train = dataset.load("train", config.t_max, inputs.data_dir, inputs.limit_train)
        test = dataset.load("test", config.t_max, inputs.data_dir, inputs.limit_test)
        if config.layered:
            try:
                arch = layered_arch(config, train.encoder.input_shape, train.n_classes)
            except BstdgError as exc:
                raise BstdgError(f"{inputs.dataset}: {exc}") from None
            sizes = arch.sizes
            check_memory_layered(arch)
        else:
            sizes = (train.events.n_units, *config.hidden, train.n_classes)
            check_memory(sizes, max(len(train.labels), len(test.labels)), config.optimizer)
        if log is not None and config.recipe == "anytime" and config.theta_out > sizes[-2]:
            log(f"note: theta_out {config.theta_out:g} is above the {sizes[-2]} neurons feeding the "
                f"outputs, so no output can spike: every decision falls back to the potentials at "
                f"t_max (the fashion-mnist and shd configs intend this; lower it to decide by first spike)")
        meta = {"dataset": inputs.dataset, "encoder": train.encoder.to_dict(),
                "classes": [str(c) for c in train.classes]}
        trainer = make_trainer(initial_model(config, train.events, train.n_classes, meta), config)
        if state is not None:
            trainer.restore(state)
            if log is not None:
                log(f"resuming {folder.path} after epoch {trainer.epoch} of {config.epochs}")
        record = {"inputs": inputs.to_dict(), "n_train": len(train.labels), "n_test": len(test.labels)}

        def checkpoint(trainer, model, info: dict) -> None:
            history.append(info)
            folder.save_model(model)
            folder.save_checkpoint(trainer.state(), {**record, "history": history})

        try:
            fit(trainer, train, test, hooks=(checkpoint,), progress=progress, log=log)
        except (KeyboardInterrupt, SystemError) as exc:
            if interrupt_in(exc) is None:
                raise
            status = 143 if isinstance(interrupt_in(exc), Terminated) else 130
            if not folder.checkpoint.is_file():
                raise Interrupted(f"interrupted before the first epoch was complete: {folder.path} "
                                  f"holds no model", status) from None
            raise Interrupted(f"interrupted: {folder.path} keeps the model and checkpoint of the last "
                              f"complete epoch; continue with `bstdg train --resume {folder.path}`",
                              status) from None
        model = trainer.model()
        final = evaluate(model, test.events, test.labels)
        result = {
            "dataset": inputs.dataset, **final.test_metrics(),
            "train_accuracy": evaluate(model, train.events, train.labels).accuracy,
            "epochs": config.epochs,
            "train_wall_s": float(sum(h["train_seconds"] for h in history)),
            "train_samples_per_s": float(np.median([h["train_samples_per_s"] for h in history])),
            "sizes": list(model.sizes), "arch": config.arch_spec, "config": config.to_dict(), "history": history,
            "classes": meta["classes"], "encoder": meta["encoder"],
            "inputs": inputs.to_dict(), "n_train": len(train.labels), "n_test": len(test.labels),
            "date": today(), "command": command_line(), "versions": versions(),
        }
        folder.write_metrics(result)
        folder.finish()
        return result
