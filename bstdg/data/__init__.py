"""Datasets as spike events: locate/fetch the files, read them, encode them.

:func:`load_events` is the one entry point the trainer uses; each dataset module only has
to turn its files into arrays (``mnist.py``: IDX images; ``caltech.py``: JPEG folders and
the DoG filter; ``shd.py``: SHD-layout HDF5 spike files, used by ``shd`` and ``fsdd-spikes``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encoding import SpikeEvents, encode_latency, times_to_events
from ..errors import DataError
from .mnist import IDX_DATASETS, load_idx_dataset

# every dataset load_events can encode
DATASET_NAMES = (*IDX_DATASETS, "caltech-face-motor", "shd", "fsdd-spikes")
N_CLASSES = {"mnist": 10, "fashion-mnist": 10, "caltech-face-motor": 2, "shd": 20,
             "fsdd-spikes": 10}


@dataclass(frozen=True)
class EncodedSplit:
    """One split of a dataset, encoded: input spike events and integer labels.

    ``encoder`` describes how the events were made (kind, ``t_max``, the dataset options);
    a model's ``meta["encoder"]`` should hold it, and passing ``encoder["options"]`` back
    to :func:`load_events` re-encodes a split the same way.
    """

    events: SpikeEvents
    labels: np.ndarray  # int64 (N,)
    n_classes: int
    encoder: dict | None = None


def dataset_options(name: str, options: dict | None = None) -> dict:
    """The complete options of ``name``: packaged defaults (``bstdg/configs/<name>.toml``)
    overridden by ``options``; BstdgError on an unknown key or a wrong type."""
    from ..config import check_data_options

    return check_data_options(name, dict(options or {}), f"{name} options")


# Options added after models were first saved, with the value those models were encoded with:
# Caltech models saved before the Gabor front end (2026-12-02) used the DoG maps unpooled.
EARLIER_DEFAULTS = {"caltech-face-motor": {"filter": "dog", "pool": 1}}


def trained_options(dataset: str, meta: dict) -> dict | None:
    """The dataset options a model was trained with (its ``meta["encoder"]["options"]``),
    completed with :data:`EARLIER_DEFAULTS` for models saved before an option existed;
    ``None`` when the model records none (the packaged defaults then apply)."""
    options = (meta.get("encoder") or {}).get("options")
    if not options:
        return None
    return {**EARLIER_DEFAULTS.get(dataset, {}), **options}


def load_events(name: str, split: str, t_max: int, data_dir=None, limit: int | None = None,
                *, options: dict | None = None) -> EncodedSplit:
    """Read ``split`` (``train``/``test``) of dataset ``name`` and encode it as spikes.

    MNIST/Fashion-MNIST: one latency spike per non-zero pixel
    (:func:`~bstdg.encoding.encode_latency`), flattened row-major. Caltech101
    Face/Motorbike: on/off DoG latency code (:mod:`bstdg.data.caltech`). SHD and FSDD
    spikes: every spike binned to ``t_max`` steps (:mod:`bstdg.data.shd`). ``limit``
    keeps the first N samples (classes interleaved for the folder and HDF5 datasets).
    ``options``: dataset options (see :func:`dataset_options`).
    """
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(DATASET_NAMES)}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    opts = dataset_options(name, options)
    if name in IDX_DATASETS:
        images, labels = load_idx_dataset(name, split, data_dir)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        events = times_to_events(encode_latency(images.reshape(len(images), -1), t_max), t_max)
        encoder = {"kind": "latency", "t_max": t_max, "input_scale": "uint8 / 255",
                   "input_shape": list(images.shape[1:]), "units": "row-major (y * width + x)",
                   "formula": "t = round((1 - x) * (t_max - 1)); no spike (t_max) if x <= 0",
                   "options": opts}
    elif name == "caltech-face-motor":
        from .caltech import load_split as load
        events, labels, encoder = load(split, t_max, data_dir, opts, limit)
    else:
        from .shd import load_split as load_spikes
        events, labels, encoder = load_spikes(name, split, t_max, data_dir, opts, limit)
    if len(labels) == 0:
        raise DataError(f"{name} {split}: no samples")
    return EncodedSplit(events, np.asarray(labels, np.int64), N_CLASSES[name], encoder)
