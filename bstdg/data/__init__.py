"""Datasets as spike events: locate/fetch the files, read them, encode them.

:func:`load_events` is the one entry point the trainer uses; each dataset module only has
to turn its files into arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encoding import SpikeEvents, encode_latency, times_to_events
from ..errors import DataError
from .mnist import IDX_DATASETS, load_idx_dataset

DATASET_NAMES = IDX_DATASETS  # every dataset load_events can encode


@dataclass(frozen=True)
class EncodedSplit:
    """One split of a dataset, encoded: input spike events and integer labels."""

    events: SpikeEvents
    labels: np.ndarray  # int64 (N,)
    n_classes: int


def load_events(name: str, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
    """Read ``split`` (``train``/``test``) of dataset ``name`` and latency-encode it.

    Images become one spike per non-zero pixel (:func:`~bstdg.encoding.encode_latency`),
    flattened row-major. ``limit`` keeps the first N samples.
    """
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(DATASET_NAMES)}")
    images, labels = load_idx_dataset(name, split, data_dir)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if len(labels) == 0:
        raise DataError(f"{name} {split}: no samples")
    times = encode_latency(images.reshape(len(images), -1), t_max)
    return EncodedSplit(times_to_events(times, t_max), labels.astype(np.int64), 10)
