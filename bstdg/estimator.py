"""``BinarySNNClassifier``: a binary single-spike network as an estimator with
scikit-learn's conventions (``fit`` / ``predict`` / ``score``, ``get_params`` /
``set_params``), so ``sklearn.base.clone``, ``cross_val_score`` and ``GridSearchCV`` drive
it. scikit-learn itself is not needed to use it.

Inputs ``X``: samples ``(N, ...)`` of uint8 pixels or floats in [0, 1], any sample shape
(flattened row-major), latency-coded as MNIST is (:func:`bstdg.data.arrays.encode_pixels`:
``t = round((1 - x)(t_max - 1))``, no spike for 0). Labels ``y``: any integers or strings;
``classes_`` holds them sorted. Predictions follow the one prediction rule
(:func:`bstdg.metrics.decide`); :meth:`score` never counts a tie as correct.
"""

from __future__ import annotations

import inspect

import numpy as np

from .data import IN_MEMORY
from .data.arrays import class_index, encode_pixels
from .data.base import EncodedSplit
from .errors import BstdgError
from .evaluation import forward_decisions
from .learning import LearningRule
from .metrics import correct
from .convnet import FORMAT as LAYERED_FORMAT
from .convnet import LayeredSNN
from .network import BinarySNN
from .recipe import TrainConfig
from .runs import model_format
from .train import fit, initial_model, make_trainer

RULE_PARAMS = ("loss", "margin", "probes", "beta", "window")  # LearningRule fields exposed here


class BinarySNNClassifier:
    """Binary single-spike classifier trained by the timing-dependent rule (no BPTT).

    Every constructor argument is a hyper-parameter with the default of
    :class:`~bstdg.recipe.TrainConfig` (``hidden`` ... ``seed``) or of
    :class:`~bstdg.learning.LearningRule` (``loss`` ... ``window``); ``verbose`` prints one
    line per epoch. After :meth:`fit`: ``model_`` (the :class:`~bstdg.network.BinarySNN`
    that predicts), ``classes_``, ``n_features_in_``, ``input_shape_``, ``history_`` (one
    dict per epoch).

    ``arch`` (e.g. ``"conv16k5,pool2,fc128"``) trains a conv network on image samples
    (``X`` of shape ``(N, H, W)`` or ``(N, C, H, W)``; ``model_`` is then a
    :class:`~bstdg.convnet.LayeredSNN`), with the conv settings ``lr_w_conv`` ...
    ``threshold_mode`` of :class:`~bstdg.recipe.TrainConfig` (None: their defaults).
    """

    def __init__(self, hidden=(600,), epochs=10, t_max=256, optimizer="sgd", batch_size=64,
                 lr_w=None, lr_w_out=None, lr_theta=None, lr_decay=0.9, theta_init=20.0,
                 theta_out=36.0, hidden_margin=None, average=0.999, shift=0, seed=0, loss=None,
                 margin=1.0, probes=6, beta=0.2, window=16.0, arch=None, lr_w_conv=None,
                 window_conv=None, fire_conv=None, fire_fc=None, conv_margin=None, threshold_mode=None,
                 verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.t_max = t_max
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.lr_w = lr_w
        self.lr_w_out = lr_w_out
        self.lr_theta = lr_theta
        self.lr_decay = lr_decay
        self.theta_init = theta_init
        self.theta_out = theta_out
        self.hidden_margin = hidden_margin
        self.average = average
        self.shift = shift
        self.seed = seed
        self.loss = loss
        self.margin = margin
        self.probes = probes
        self.beta = beta
        self.window = window
        self.arch = arch
        self.lr_w_conv = lr_w_conv
        self.window_conv = window_conv
        self.fire_conv = fire_conv
        self.fire_fc = fire_fc
        self.conv_margin = conv_margin
        self.threshold_mode = threshold_mode
        self.verbose = verbose

    # --- scikit-learn conventions ----------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "BinarySNNClassifier":
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for BinarySNNClassifier "
                                 f"(valid: {', '.join(valid)})")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k].default]
        return f"BinarySNNClassifier({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags  # optional: only sklearn calls this

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags())

    # --- training ----------------------------------------------------------------------------
    def train_config(self) -> TrainConfig:
        """The :class:`~bstdg.recipe.TrainConfig` of the current hyper-parameters (checked:
        one-line :class:`~bstdg.checks.SettingError` for a bad value)."""
        train = {k: getattr(self, k) for k in self._param_names() if k not in (*RULE_PARAMS, "verbose")}
        hidden = train["hidden"]
        train["hidden"] = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        rule = LearningRule(**{k: getattr(self, k) for k in RULE_PARAMS})
        return TrainConfig(**train, rule=rule)

    def fit(self, X, y) -> "BinarySNNClassifier":
        """Train from scratch on samples ``X`` with labels ``y``; returns self."""
        config = self.train_config()
        y = np.asarray(y)
        classes, to_index = class_index(y, "y")
        events, encoder = encode_pixels(X, config.t_max)
        labels = to_index(y)
        if len(labels) != len(events):
            raise BstdgError(f"X has {len(events)} samples but y has {len(labels)} labels")
        train = EncodedSplit(events, labels, len(classes), encoder, classes)
        meta = {"dataset": IN_MEMORY, "encoder": encoder.to_dict(), "classes": list(classes)}
        trainer = make_trainer(initial_model(config, events, len(classes), meta), config)
        self.history_ = fit(trainer, train, None, progress=False, log=print if self.verbose else None)
        self.model_ = trainer.model()
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = encoder.n_inputs
        self.input_shape_ = encoder.input_shape
        return self

    # --- inference ---------------------------------------------------------------------------
    def _decisions(self, X):
        if not hasattr(self, "model_"):
            raise BstdgError("this BinarySNNClassifier is not fitted yet: call fit(X, y) first")
        events, encoder = encode_pixels(X, self.model_.t_max)
        if encoder.n_inputs != self.n_features_in_:
            raise BstdgError(f"X has {encoder.n_inputs} features per sample; the model was fitted "
                             f"on {self.n_features_in_}")
        return forward_decisions(self.model_.binary(), events, "event")[1]

    def predict(self, X) -> np.ndarray:
        """The class of each sample by the prediction rule (a tie reports the lower index)."""
        return self.classes_[self._decisions(X).prediction]

    def decision_times(self, X) -> np.ndarray:
        """The step of each sample's first output spike (``t_max`` when none fired)."""
        return self._decisions(X).time

    def score(self, X, y) -> float:
        """Accuracy by the strict rule: a tie is never correct."""
        decision = self._decisions(X)
        y = np.asarray(y)
        index = np.searchsorted(self.classes_, y)
        index = np.minimum(index, len(self.classes_) - 1)
        known = self.classes_[index] == y
        return float(np.mean(correct(decision, np.where(known, index, -1))))

    # --- files -------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted model (with its hyper-parameters and classes) as a bstdg model
        file: ``bstdg eval``/``export`` read it, :meth:`load` makes the estimator again."""
        if not hasattr(self, "model_"):
            raise BstdgError("nothing to save: call fit(X, y) first")
        model = self.model_.copy()
        model.meta = {**model.meta, "estimator_params": _jsonable(self.get_params())}
        model.save(path)

    @classmethod
    def load(cls, path) -> "BinarySNNClassifier":
        """The estimator saved by :meth:`save` (fitted: ``predict`` works at once)."""
        model = LayeredSNN.load(path) if model_format(path) == LAYERED_FORMAT else BinarySNN.load(path)
        params = model.meta.get("estimator_params") or {}
        est = cls(**{k: (tuple(v) if k == "hidden" else v) for k, v in params.items()
                     if k in cls._param_names()})
        encoder = model.meta.get("encoder") or {}
        est.model_ = model
        est.classes_ = np.asarray(model.meta.get("classes") or list(range(model.sizes[-1])))
        est.n_features_in_ = model.sizes[0]
        est.input_shape_ = tuple(encoder.get("input_shape") or (model.sizes[0],))
        return est


def _jsonable(params: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
