"""bstdg: binarized single-spike SNNs trained with spike-timing-dependent gradients.

Time is measured in integer *time steps* everywhere in the package; a spike time is an
``int32`` in ``0..t_max-1`` and the value ``t_max`` itself means "no spike" (see
:mod:`bstdg.encoding`).

The public Python API (docs/api.md) is importable from here; each name is loaded on first
use, so ``import bstdg`` stays light (no Numba compilation, never torch):

* data: :func:`get_dataset`, :func:`load_events` (``bstdg.data``), :class:`EncodedSplit`;
* training: :class:`TrainConfig`, :class:`LearningRule`, :class:`Trainer`, :func:`fit`,
  :func:`initial_network`; for either kind of network (fc or conv, ``TrainConfig.arch``)
  :func:`initial_model`, :func:`make_trainer` (a :class:`Trainer` or a
  :class:`LayeredTrainer`); a run folder: :class:`RunInputs`, :func:`train_run`,
  :func:`load_model`;
* models: :class:`BinarySNN`, :class:`LayeredSNN` (``load``/``save``), :func:`evaluate`;
* scikit-learn style: :class:`BinarySNNClassifier`.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "BinarySNNClassifier": "bstdg.estimator",
    "BinarySNN": "bstdg.network",
    "TrainConfig": "bstdg.recipe",
    "LearningRule": "bstdg.learning",
    "Trainer": "bstdg.train",
    "fit": "bstdg.train",
    "initial_network": "bstdg.train",
    "initial_model": "bstdg.train",
    "make_trainer": "bstdg.train",
    "LayeredTrainer": "bstdg.conv_train",
    "LayeredSNN": "bstdg.convnet",
    "RunInputs": "bstdg.runs",
    "train_run": "bstdg.runs",
    "load_model": "bstdg.runs",
    "evaluate": "bstdg.evaluation",
    "get_dataset": "bstdg.data",
    "load_events": "bstdg.data",
    "EncodedSplit": "bstdg.data",
    "BstdgError": "bstdg.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'bstdg' has no attribute {name!r}")
