"""Datasets as objects: one registry from a *spec* to a :class:`~bstdg.data.base.Dataset`.

Specs: the built-in names (``mnist``, ``fashion-mnist``, ``caltech-face-motor``, ``shd``,
``fsdd-spikes``) and your own data, ``arrays:PATH.npz`` (:mod:`bstdg.data.arrays`),
``images:DIR`` (:mod:`bstdg.data.images`), ``events:DIR`` (:mod:`bstdg.data.events`),
``tonic:NAME`` (:mod:`bstdg.data.tonic_data`). A new built-in dataset is one module with a
``Dataset`` subclass plus one line in :data:`BUILTIN`; a new kind of spec, one line in
:data:`PREFIXES`.

:func:`get_dataset` makes the object (its options checked once, there);
:func:`load_events` is the shorthand ``get_dataset(spec, options).load(...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import DataError
from .arrays import ArraysDataset
from .base import Dataset, EncodedSplit, FileDataset, make_options
from .caltech import CaltechDataset
from .events import EventsFolderDataset
from .images import ImageFolderDataset
from .mnist import IdxDataset
from .shd import SpikeDataset
from .tonic_data import TonicDataset

# name -> a function making the dataset from its checked options
BUILTIN: dict[str, Callable[..., Dataset]] = {
    "mnist": lambda options=None: IdxDataset("mnist", options),
    "fashion-mnist": lambda options=None: IdxDataset("fashion-mnist", options),
    "caltech-face-motor": CaltechDataset,
    "shd": lambda options=None: SpikeDataset("shd", options),
    "fsdd-spikes": lambda options=None: SpikeDataset("fsdd-spikes", options),
}
# prefix of ``prefix:ARGUMENT`` -> the class, made as ``cls(ARGUMENT, options)``
PREFIXES: dict[str, type] = {
    "arrays": ArraysDataset,
    "images": ImageFolderDataset,
    "events": EventsFolderDataset,
    "tonic": TonicDataset,
}
DATASET_NAMES = tuple(BUILTIN)
IN_MEMORY = "arrays"  # the dataset a model fitted on arrays in memory records (the estimator)

# Options added after models were first saved, with the value those models were encoded with:
# Caltech models saved before the Gabor front end used the DoG maps unpooled.
EARLIER_DEFAULTS = {"caltech-face-motor": {"filter": "dog", "pool": 1}}


def options_class(spec: str) -> type:
    """The options dataclass of the dataset ``spec`` names (without reading its files)."""
    if spec in BUILTIN:
        return BUILTIN[spec]().Options
    prefix, sep, _ = spec.partition(":")
    if sep and prefix in PREFIXES:
        return PREFIXES[prefix].Options
    raise DataError(unknown_message(spec))


def unknown_message(spec: str) -> str:
    return (f"unknown dataset {spec!r}; use one of {', '.join(BUILTIN)}, or "
            f"{', '.join(f'{p}:...' for p in PREFIXES)} for your own data (README, Data)")


def get_dataset(spec: str, options: dict | None = None, source: str | None = None) -> Dataset:
    """The dataset ``spec`` names, with ``options`` (a dict of option values over its
    defaults) checked against its options dataclass: DataError naming ``source`` (default:
    the spec) on an unknown key, a wrong type or a value out of range."""
    if not isinstance(spec, str) or not spec:
        raise DataError(f"a dataset is named by a string, got {spec!r}")
    if spec in BUILTIN:
        defaults = BUILTIN[spec]()
        checked = make_options(type(defaults.options), options, source or f"dataset {spec}",
                               base=defaults.options)
        return BUILTIN[spec](checked)
    prefix, sep, argument = spec.partition(":")
    if spec == IN_MEMORY:
        raise DataError("this model was fitted on arrays in memory (BinarySNNClassifier.fit): there is "
                        "no dataset file to re-read; score it with the estimator, or verify an export "
                        "with --random-inputs N")
    if not (sep and prefix in PREFIXES):
        raise DataError(unknown_message(spec))
    if not argument:
        raise DataError(f"dataset {spec!r}: give a path or name after '{prefix}:'")
    cls = PREFIXES[prefix]
    return cls(argument, make_options(cls.Options, options, source or f"dataset {spec}"))


def trained_options(dataset: str, meta: dict) -> dict | None:
    """The dataset options a model was trained with (its ``meta["encoder"]["options"]``),
    completed with :data:`EARLIER_DEFAULTS` for models saved before an option existed;
    ``None`` when the model records none (the defaults then apply)."""
    options = (meta.get("encoder") or {}).get("options")
    if not options:
        return None
    return {**EARLIER_DEFAULTS.get(dataset, {}), **options}


def load_events(spec: str, split: str, t_max: int, data_dir=None, limit: int | None = None,
                *, options: dict | None = None) -> EncodedSplit:
    """Read ``split`` (``train``/``test``) of dataset ``spec`` and encode it with ``t_max``
    steps; ``limit`` keeps the first N samples (classes interleaved for the folder and HDF5
    datasets); ``options``: dataset options over its defaults."""
    return get_dataset(spec, options).load(split, t_max, data_dir, limit)


def locate(spec: str, data_dir=None, options: dict | None = None) -> Path:
    """Where dataset ``spec`` is read from; DataError saying where it was looked for."""
    return get_dataset(spec, options).locate(data_dir)


class DataListRow(NamedTuple):
    """One line of ``bstdg data list``."""

    name: str
    files: tuple[str, ...]
    searched: tuple[Path, ...]  # candidate folders, in search order
    found: Path | None  # the folder locate() would use, None when absent
    size: str = ""
    problems: tuple[str, ...] = ()  # incomplete copies seen while searching

    @property
    def present(self) -> bool:
        return self.found is not None


def data_list(data_dir=None) -> list[DataListRow]:
    """Each built-in dataset, its files, where it is looked for and where (if anywhere) it is."""
    rows = []
    for name, make in BUILTIN.items():
        ds = make()
        found, folders, problems = ds.search(data_dir)
        rows.append(DataListRow(name, ds.wanted_files(), tuple(folders), found, ds.size, tuple(problems)))
    return rows


__all__ = ["BUILTIN", "DATASET_NAMES", "PREFIXES", "DataListRow", "Dataset", "EncodedSplit",
           "FileDataset", "data_list", "fetch_dataset", "get_dataset", "load_events", "locate", "options_class",
           "trained_options", "verify"]


def verify(spec: str, folder, options: dict | None = None) -> dict[str, bool]:
    """Checks of the built-in dataset ``spec`` in ``folder`` (description -> passed)."""
    return get_dataset(spec, options).checks(Path(folder))


def fetch_dataset(spec: str, dest_root=Path("datasets"), progress: bool | None = None,
          options: dict | None = None) -> Path:
    """Download the built-in dataset ``spec`` into ``dest_root/<name>`` (verified)."""
    return get_dataset(spec, options).fetch(Path(dest_root), progress)
