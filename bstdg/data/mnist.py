"""Load MNIST and Fashion-MNIST splits from their IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bstdg.data.fetch import find_file, locate
from bstdg.data.idx import read_idx
from bstdg.errors import DataError

IDX_DATASETS = ("mnist", "fashion-mnist")
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10


def load_idx_dataset(name: str, split: str, data_dir: str | Path | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one split: uint8 ``(N, 28, 28)`` and uint8 ``(N,)`` in 0..9.

    ``name``: ``mnist`` or ``fashion-mnist``; ``split``: ``train`` or ``test``; the folder
    is found with :func:`bstdg.data.fetch.locate`.
    """
    if name not in IDX_DATASETS:
        raise DataError(f"unknown IDX dataset {name!r}; expected one of {', '.join(IDX_DATASETS)}")
    if split not in SPLIT_PREFIX:
        raise DataError(f"unknown split {split!r}; expected train or test")
    folder = locate(name, data_dir)
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
