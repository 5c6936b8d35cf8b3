"""One trial of a sweep: one training on the training split minus the held-out part,
scored on the held-out part after every epoch; the test split is read once, after
training, for the record only.

The held-out part is ``n_val`` training samples drawn once with ``split_seed``
(:func:`heldout_split`): the same samples for every trial and every seed of the sweep, so
the trials are compared on the same data, and none of them ever trains on it.

:func:`run_trial` is plain Python (a ``report`` callback receives one dict per epoch);
:func:`ray_trial` is the function trainable Ray Tune runs, one process per trial with one
CPU and one Numba thread. Every trial reads the dataset from its path (its own copy in
memory): on one machine, or a cluster whose nodes share the data folder, that costs a few
seconds per trial and nothing else (docs/scaling.md, for the object-store alternative).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from ..data import EncodedSplit, get_dataset
from ..errors import BstdgError
from ..evaluation import evaluate
from ..train import fit, initial_model, make_trainer
from .sweep_spec import SweepSpec

TRIAL_THREADS = 1  # Numba threads per trial: one trial per CPU


def heldout_split(n_train: int, n_val: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fit_idx, val_idx)``: sorted indices of the samples trained on and of the ``n_val``
    held out, a random permutation of ``0..n_train-1`` drawn with ``split_seed`` (it does
    not depend on the trial or its seed)."""
    check_n_val(n_val, n_train)
    order = np.random.default_rng(split_seed).permutation(n_train)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def check_n_val(n_val: int, n_train: int, source: str = "sweep") -> None:
    if not 0 < n_val < n_train:
        raise BstdgError(f"{source}: n_val {n_val} must be at least 1 and smaller than the training "
                         f"set ({n_train} samples), so that some samples are left to train on")


def subset(split: EncodedSplit, idx: np.ndarray) -> EncodedSplit:
    """The samples ``idx`` of ``split``."""
    return EncodedSplit(split.events.take(idx), split.labels[idx], split.n_classes, split.encoder,
                        split.classes)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares: the spec, where the data is (absolute paths,
    since Ray runs each trial in its own folder), and the size of the training split."""

    spec: SweepSpec
    dataset: str  # the spec's dataset with an absolute path for arrays:/images:/events:
    data_dir: str | None = None


def run_trial(setup: TrialSetup, point: dict, seed: int, report: Callable[[dict], None]) -> dict:
    """Train the trial of ``point`` with ``seed``; call ``report`` after every epoch but the
    last with ``{"epoch", "val_accuracy", "val_decision_time"}``, and at the end with those
    plus ``test_accuracy`` (of the final model, for the record), ``val_history``,
    ``wall_s`` and ``final: True``. Returns the final dict."""
    start = time.perf_counter()
    spec = setup.spec
    config, options = spec.trial_settings(point, seed)
    dataset = get_dataset(setup.dataset, options)
    train = dataset.load("train", config.t_max, setup.data_dir, spec.limit_train)
    fit_idx, val_idx = heldout_split(len(train.labels), spec.n_val, spec.split_seed)
    fit_split, val = subset(train, fit_idx), subset(train, val_idx)
    del train
    meta = {"dataset": spec.dataset, "encoder": fit_split.encoder.to_dict(),
            "classes": [str(c) for c in fit_split.classes]}
    trainer = make_trainer(initial_model(config, fit_split.events, fit_split.n_classes, meta), config)
    history: list[float] = []
    last: dict = {}

    def score(trainer, model, info: dict) -> None:
        ev = evaluate(model, val.events, val.labels)
        history.append(float(ev.accuracy))
        last.update(epoch=int(trainer.epoch), val_accuracy=float(ev.accuracy),
                    val_decision_time=float(ev.mean_decision_time))
        if trainer.epoch < config.epochs:  # the last epoch is reported with the test figure
            report(dict(last))

    fit(trainer, fit_split, None, hooks=(score,), progress=False, log=None)
    # Training is over: the test split is read now, once, and only recorded.
    test = dataset.load("test", config.t_max, setup.data_dir, spec.limit_test)
    et = evaluate(trainer.model(), test.events, test.labels)
    final = {**last, "test_accuracy": float(et.accuracy), "val_history": history,
             "n_fit": len(fit_idx), "n_val": len(val_idx),
             "wall_s": time.perf_counter() - start, "final": True}
    report(final)
    return final


def ray_trial(config: dict, setup: TrialSetup) -> None:
    """The Ray Tune function trainable: ``config`` holds the ``point`` and the ``seed``
    (grid, random), or the sampled values and Repeater's ``__trial_index__`` (optuna)."""
    os.environ["NUMBA_NUM_THREADS"] = str(TRIAL_THREADS)  # for anything this process starts
    from ray import tune  # optional: the sweep extra

    numba.set_num_threads(min(TRIAL_THREADS, numba.config.NUMBA_NUM_THREADS))
    point, seed = decode_config(config, setup.spec)
    run_trial(setup, point, seed, tune.report)


def decode_config(config: dict, spec: SweepSpec) -> tuple[dict, int]:
    """``(point, seed)`` of a trial's Ray config (see :func:`bstdg.harness.sweep.param_space`)."""
    if "point" in config:
        point = {k: tuple(v) if isinstance(v, list) else v for k, v in config["point"].items()}
        return point, int(config["seed"])
    point = {}
    for entry in spec.space:
        value = config[entry.name]
        if hasattr(entry, "values"):  # a choice: Optuna draws its index
            value = entry.values[int(value)]
        elif entry.integer:
            value = int(value)
        else:
            value = float(value)
        point[entry.name] = value
    return point, int(spec.seeds[int(config.get("__trial_index__", 0))])
