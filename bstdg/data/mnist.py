"""MNIST and Fashion-MNIST: IDX files, one latency spike per non-zero pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bstdg.data.base import EncodedSplit, FileDataset, check_limit, check_split, find_file, finish
from bstdg.data import fetch as fetch_mod
from bstdg.data.fetch import ENV_VAR, IDX_SPECS, file_list, idx_checks
from bstdg.data.idx import read_idx
from bstdg.encoding import Encoder, encode_latency, times_to_events
from bstdg.errors import DataError

IDX_DATASETS = tuple(IDX_SPECS)  # mnist, fashion-mnist
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
CLASSES = {"mnist": tuple(str(d) for d in range(10)),
           "fashion-mnist": ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                             "shirt", "sneaker", "bag", "ankle boot")}
LATENCY_NOTES = {"input_scale": "uint8 / 255", "units": "row-major (y * width + x)",
                 "formula": "t = round((1 - x) * (t_max - 1)); no spike (t_max) if x <= 0"}


def latency_encoder(t_max: int, input_shape, options: dict | None = None) -> Encoder:
    """The encoder of :func:`latency_events` (pixels of any shape, flattened row-major)."""
    return Encoder("latency", t_max, tuple(input_shape), dict(options or {}), LATENCY_NOTES)


def latency_events(x: np.ndarray, t_max: int):
    """Samples ``x`` ``(N, ...)`` (uint8 pixels, or intensities in [0, 1]) as latency-coded
    events, each sample flattened row-major (:func:`bstdg.encoding.encode_latency`)."""
    return times_to_events(encode_latency(x.reshape(len(x), -1), t_max), t_max)


class IdxDataset(FileDataset):
    """``mnist`` or ``fashion-mnist``: four IDX files (raw or ``.gz``), checksummed."""

    def __init__(self, name: str, options=None):
        super().__init__(options)
        self.name = name
        self.spec = IDX_SPECS[name]
        self.size = self.spec.size
        self.classes = CLASSES[name]

    def probe(self, folder: Path):
        return (folder, None) if all(find_file(folder, f) for f in self.spec.files) else (None, None)

    def missing_hint(self) -> str:
        return (f"Run `bstdg data fetch {self.name}` or place {file_list(self.spec)} in "
                f"datasets/{self.name}/ (or point {ENV_VAR} / --data-dir at it)")

    def wanted_files(self) -> tuple[str, ...]:
        return tuple(self.spec.files)

    def checks(self, folder: Path) -> dict[str, bool]:
        return idx_checks(self.spec, folder)

    def fetch(self, dest_root: Path, progress: bool | None = None) -> Path:
        return fetch_mod.fetch_idx(self.spec, dest_root, progress)

    def load(self, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
        """One latency spike per non-zero pixel (:func:`latency_events`), 784 inputs."""
        check_limit(limit)
        images, labels = load_idx_dataset(self.name, split, self.locate(data_dir))
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        encoder = latency_encoder(t_max, images.shape[1:], self.options_dict())
        return finish(self.name, split, latency_events(images, t_max), labels, N_CLASSES, encoder,
                      self.classes)


def load_idx_dataset(name: str, split: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one split: uint8 ``(N, 28, 28)`` and uint8 ``(N,)`` in 0..9.

    ``name``: ``mnist`` or ``fashion-mnist``; ``split``: ``train`` or ``test``; ``folder``
    holds the files (:meth:`IdxDataset.locate`).
    """
    if name not in IDX_DATASETS:
        raise DataError(f"unknown IDX dataset {name!r}; expected one of {', '.join(IDX_DATASETS)}")
    check_split(name, split)
    prefix = SPLIT_PREFIX[split]
    images_path = find_file(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = find_file(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)

    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{images_path} holds {images.dtype} {images.shape}; expected uint8 "
                        f"images of shape (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]})")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path} holds {labels.dtype} {labels.shape}; expected uint8 (N,)")
    if len(images) != len(labels):
        raise DataError(f"{name} {split}: {len(images)} images in {images_path.name} but "
                        f"{len(labels)} labels in {labels_path.name} (in {folder})")
    if len(labels) == 0:
        raise DataError(f"{name} {split}: no samples ({images_path} and {labels_path.name} hold 0)")
    if labels.max() >= N_CLASSES:
        raise DataError(f"{labels_path} has label {int(labels.max())}; labels must be "
                        f"0..{N_CLASSES - 1}")
    return images, labels
