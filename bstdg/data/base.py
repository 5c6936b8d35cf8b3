"""The dataset protocol: one object per dataset that knows where its files are, how to
check and fetch them, and how to read and encode a split.

A dataset is a :class:`Dataset` subclass instance, made by :func:`bstdg.data.get_dataset`
from a *spec* (``mnist``, ``arrays:PATH.npz``, ``images:DIR``, ``events:DIR``,
``tonic:NAME``) and a dict of options. Its options are one frozen dataclass
(:attr:`Dataset.Options`), checked once where they enter (:func:`make_options`); the rooms
downstream receive the dataclass and never re-check it.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoding import Encoder, SpikeEvents
from ..errors import DataError

SPLITS = ("train", "test")
ENV_VAR = "BSTDG_DATA"


@dataclass(frozen=True)
class EncodedSplit:
    """One split of a dataset, encoded: input spike events and integer labels ``0..n-1``.

    ``encoder`` describes how the events were made (a model carries it, see
    :class:`~bstdg.encoding.Encoder`); ``classes`` names label ``k`` (``classes[k]``).
    """

    events: SpikeEvents
    labels: np.ndarray  # int64 (N,)
    n_classes: int
    encoder: Encoder
    classes: tuple = ()


@dataclass(frozen=True)
class NoOptions:
    """A dataset without options."""


class Dataset:
    """Base of every dataset. Subclasses set ``name`` (the spec it was made from),
    ``Options`` (a frozen dataclass) and implement :meth:`load`; built-in datasets also
    implement :meth:`locate`, :meth:`verify` and :meth:`fetch`.

    The constructor takes the options (an ``Options`` instance); ``classes`` (a tuple of
    names, label ``k`` is ``classes[k]``) is known once the files are found.
    """

    name: str = ""
    Options: type = NoOptions
    size: str = ""  # what `bstdg data list` says about its size

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    # --- files ---------------------------------------------------------------------------
    def locate(self, data_dir=None) -> Path:
        """The folder (or file) the dataset is read from; DataError when it is missing."""
        raise DataError(f"{self.name}: bstdg cannot locate this dataset")

    def verify(self, data_dir=None) -> dict[str, bool]:
        """Checks of the files that would be used (name -> passed)."""
        raise DataError(f"{self.name}: nothing to verify (not a built-in dataset)")

    def fetch(self, dest_root: Path) -> Path:
        """Download into ``dest_root/<name>`` and verify; returns the folder."""
        raise DataError(f"{self.name}: bstdg cannot download this dataset; place its files by hand")

    def problems(self, data_dir=None) -> list[str]:
        """What is missing where the dataset was looked for (for `bstdg data list`)."""
        return []

    # --- samples -------------------------------------------------------------------------
    def load(self, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
        """Read ``split`` (``train`` or ``test``), encode it with ``t_max`` steps; ``limit``
        keeps the first N samples (classes interleaved where the files group them)."""
        raise NotImplementedError

    def options_dict(self) -> dict:
        """The options as plain JSON values (what an encoder records)."""
        return dataclasses.asdict(self.options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.options!r})"


class FileDataset(Dataset):
    """A built-in dataset whose files are searched for in the data roots
    (:func:`data_roots`): ``R/<name>/`` then ``R`` for each root ``R``. Subclasses say what a
    folder must hold (:meth:`probe`), what to tell a user who has none
    (:meth:`missing_hint`), what :meth:`verify` checks (:meth:`checks`)."""

    def probe(self, folder: Path) -> tuple[Path | None, str | None]:
        """``(folder to read, None)`` when ``folder`` holds the dataset; ``(None, problem)``
        when it holds part of it; ``(None, None)`` when there is no trace of it."""
        raise NotImplementedError

    def missing_hint(self) -> str:
        return f"Run `bstdg data fetch {self.name}` or place its files in datasets/{self.name}/"

    def wanted_files(self) -> tuple[str, ...]:
        return ()

    def checks(self, folder: Path) -> dict[str, bool]:
        raise NotImplementedError

    def search(self, data_dir=None) -> tuple[Path | None, list[Path], list[str]]:
        """(the folder to use or None, the folders searched, incomplete copies seen)."""
        folders = candidate_folders(self.name, data_dir)
        problems: list[str] = []
        for folder in folders:
            found, problem = self.probe(folder)
            if found is not None:
                return found, folders, problems
            if problem and problem not in problems:
                problems.append(problem)
        return None, folders, problems

    def locate(self, data_dir=None) -> Path:
        found, folders, problems = self.search(data_dir)
        if found is not None:
            return found
        looked_in = ", ".join(str(folder) for folder in folders)
        seen = f"; {'; '.join(problems)}" if problems else ""
        raise DataError(f"{self.name} not found (looked in: {looked_in}{seen}). {self.missing_hint()}")

    def problems(self, data_dir=None) -> list[str]:
        return self.search(data_dir)[2]

    def verify(self, data_dir=None) -> dict[str, bool]:
        return self.checks(self.locate(data_dir))


def data_roots(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for datasets, in order: ``data_dir``, $BSTDG_DATA, ./datasets."""
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    roots.append(Path.cwd() / "datasets")
    return roots


def candidate_folders(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Every folder that may hold dataset ``name``: ``R/<name>`` then ``R`` for each root R."""
    return [folder for root in data_roots(data_dir) for folder in (root / name, root)]


def find_file(folder: Path, file: str) -> Path | None:
    """``folder/file`` or ``folder/file.gz``, whichever exists (raw first); None if neither."""
    for path in (folder / file, folder / f"{file}.gz"):
        if path.is_file():
            return path
    return None


def check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; expected train or test")


def check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
                              or limit < 1):
        raise DataError(f"limit must be a positive integer, got {limit!r}")


def finish(name: str, split: str, events: SpikeEvents, labels, n_classes: int, encoder: Encoder,
           classes=()) -> EncodedSplit:
    """The EncodedSplit of a loader, checked: samples present, labels in ``0..n_classes-1``,
    as many labels as samples, inputs matching the encoder."""
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        raise DataError(f"{name} {split}: no samples")
    if len(labels) != len(events):
        raise DataError(f"{name} {split}: {len(events)} samples but {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"{name} {split}: labels must be 0..{n_classes - 1}, found "
                        f"{int(labels.min())}..{int(labels.max())}")
    if events.n_units != encoder.n_inputs:
        raise DataError(f"{name} {split}: {events.n_units} inputs, but the encoder's input shape "
                        f"{encoder.input_shape} has {encoder.n_inputs}")
    return EncodedSplit(events, labels, int(n_classes), encoder, tuple(classes))


# --- options -----------------------------------------------------------------------------

def _kind_ok(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, (int, np.integer))
    if kind is float:
        return isinstance(value, (int, float, np.integer, np.floating))
    return isinstance(value, kind)


def make_options(cls, values: dict | None, source: str, base=None):
    """An instance of the frozen options dataclass ``cls`` from ``values`` over ``base``
    (default: the class defaults). DataError naming the source on an unknown key, a value
    of the wrong type, or one the class's ``__post_init__`` rejects."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise DataError(f"{source}: unknown option(s) {', '.join(unknown)} (its options: "
                        f"{', '.join(known) or 'none'})")
    for key, value in values.items():
        kind = hints[key]
        if not _kind_ok(value, kind):
            raise DataError(f"{source}: option {key} must be {kind.__name__}, got {value!r}")
        if kind is float:
            values[key] = float(value)
        elif kind is int:
            values[key] = int(value)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None


def require(condition: bool, message: str) -> None:
    """For options' ``__post_init__``: raise ValueError(message) unless ``condition``."""
    if not condition:
        raise ValueError(message)


def finite(value: float) -> bool:
    return bool(np.isfinite(value))
