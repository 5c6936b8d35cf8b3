"""The methods of ``bstdg compare`` (:mod:`bstdg.compare`) and their registry.

A *method* is a function ``(MethodRun) -> dict`` registered in :data:`METHODS` with
:func:`register`. It loads its data (same loader, same latency code at ``t_max = T``),
trains, wraps **every training epoch** (and nothing else) in ``config.meter.training()``,
evaluates on the test split with the prediction rule of :mod:`bstdg.metrics`, writes its
folder (``metrics.json``, ``test_outputs.npz`` via :func:`save_test_outputs`, a model) and
returns a dict with at least the keys of :data:`RESULT_KEYS`. The harness adds the timing
and memory figures measured by the meter, so they are measured the same way for all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

from .baselines import ann_convert, bptt_method, quant_threshold, snntorch_baseline
from .baselines.ratecode import bstdg_synops  # synaptic operations, counted as for the baselines
from .bench import first, warm_up
from .engine import ForwardResult
from .engine.event import if_network_forward
from .evaluation import evaluate, forward_decisions
from .learning import LearningRule
from .methods import MethodRun, load_fit_val_test, model_meta
from .recipe import TrainConfig
from .runs import RunFolder, save_test_outputs
from .train import StopTraining, fit, initial_model, make_trainer


# The BSTDG-family methods: one engine and trainer, different rules
# (benchmarks/mnist_accuracy.py uses the same table).
TRAIN_CONFIGS = {
    "bstdg": TrainConfig(),
    "s4nn-rule": replace(TrainConfig(), lr_theta=0.0,
                         rule=LearningRule(loss="s4nn", anti=0.0, tau_anti=0.0, center_hidden=False,
                                           learn_hidden_thresholds=False)),
    # The default of session 6: per-sample SGD with the s4nn loss from an all-excitatory start.
    "bstdg-s4nn": replace(TrainConfig(), rule=LearningRule(loss="s4nn")),
    # The default of sessions 3-5: mini-batch Adam, mixed-sign start, anti-causal error.
    "bstdg-adam": replace(TrainConfig(), optimizer="adam",
                          rule=LearningRule(loss="s4nn", margin=5.0, anti=1.0,
                                            learn_hidden_thresholds=False, silent_fire_later=True)),
}

# What every method returns (the harness adds the RUN_KEYS of :mod:`bstdg.compare_run`).
RESULT_KEYS = ("test_accuracy", "test_ties", "test_silent", "mean_decision_time",
               "hidden_spikes_per_sample", "eval_samples_per_s", "train_accuracy_running",
               "n_train", "n_test", "history")


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[MethodRun], dict]
    description: str
    needs_torch: bool = False
    selects: bool = False  # applies the run's EarlyStopping (held-out split, --until-converged)
    conv: bool = False  # trains networks with conv and pool layers (``--arch``)


METHODS: dict[str, Method] = {}


def register(name: str, description: str, needs_torch: bool = False, selects: bool = False,
             conv: bool = False):
    """Decorator: ``@register("name", "what it is")`` on a ``(MethodRun) -> dict`` function.
    ``selects``: the method trains on ``load_fit_val_test`` and applies ``config.stopping()``
    after every epoch (it can run ``--until-converged``); ``conv``: it trains the network of
    ``config.arch`` when that has conv or pool layers."""
    def add(fn):
        METHODS[name] = Method(name, fn, description, needs_torch, selects, conv)
        return fn
    return add


def run_trainer(config: MethodRun, train_config: TrainConfig) -> dict:
    """A BSTDG-family method: :func:`bstdg.train.fit` with ``train_config``'s rule, each
    training epoch inside the run's meter. After each epoch a ``fit`` hook applies the run's
    :class:`~bstdg.methods.EarlyStopping` (held-out accuracy, patience, budget) and keeps the
    selected epoch's network, which is the one evaluated and saved."""
    tc = replace(train_config, hidden=tuple(config.hidden), arch=config.arch, t_max=config.t_max,
                 epochs=config.epochs, seed=config.seed)
    train, val, test = load_fit_val_test(config)
    net = initial_model(tc, train.events, train.n_classes, model_meta(config.dataset, train))
    # Load the Numba kernels on a throwaway copy and a few samples, outside the measured epochs.
    make_trainer(net.copy(), tc).train_epoch(first(train.events, 8), train.labels[:8], progress=False)
    warm_up(net, first(test.events, 8))
    trainer = make_trainer(net, tc)
    stopping = config.stopping()
    selected = {}

    def select(trainer, model, info):
        v = evaluate(model, val.events, val.labels).accuracy if val is not None else None
        wall = float(sum(config.meter.seconds))
        info.update(wall_s=wall, val_accuracy=v)
        if v is not None:
            print(f"  held-out accuracy {v:.4f}", flush=True)
        if stopping.update(info["epoch"], wall, v, info["test_accuracy"]):
            selected["net"] = model.copy()
        if stopping.stop:
            raise StopTraining(stopping.stopped_by)

    history = fit(trainer, train, test, hooks=(select,), timer=config.meter.training, progress=False,
                  log=lambda line: print("  " + line, flush=True))
    net = selected["net"]
    ev = evaluate(net, test.events, test.labels)
    RunFolder(config.out).save_model(net)
    if tc.layered:  # spike times kept for the histograms; synaptic operations counted for fc only
        result, decision = forward_decisions(net.binary(), test.events, "event", keep_times=True)
        full = forward_decisions(net.binary(), first(test.events, 1), "event", False, keep_times=True)[0]
        synops = {}
    else:
        result, decision = forward_decisions(net.binary(), test.events, "event")
        synops = bstdg_synops(result, decision, test.events, tc.t_max)
        full = if_network_forward(net.binary(), first(test.events, 1))
    save_test_outputs(config.out, replace_times(result, full.times[0]), decision, test.labels,
                      test.events.first_times(0, tc.t_max), tc.t_max, net.sizes)
    return {
        "dataset": config.dataset, **ev.test_metrics(),
        "train_accuracy_running": history[-1]["train_accuracy_running"],
        "epochs": tc.epochs, "n_train": len(train.labels), "n_test": len(test.labels),
        "n_val": len(val.labels) if val is not None else 0,
        "sizes": list(net.sizes), "arch": tc.arch, "config": tc.to_dict(), "history": history,
        **stopping.summary(), "inference": "event-driven engine (Numba), early exit at the first output spike",
        **{k: v for k, v in synops.items() if k != "hidden_spikes_per_sample"},
    }


def replace_times(result, times0):
    """``result`` with sample 0's spike times replaced (by those of a run without early
    exit, for the raster); the histograms use the early-exit figures of the others."""
    times = result.times.copy()
    times[0] = times0
    return ForwardResult(times, result.decision_potential, result.n_off)


# The BSTDG-family methods: run_trainer with the TrainConfig of the same name; (name,
# description, trains conv networks), registered in this order.
BSTDG_FAMILY = (
    ("bstdg", "BSTDG rule (bstdg.train defaults), event-driven engine", True),
    ("s4nn-rule", "ablation: S4NN-style rule (indicator, no anti-causal error, no "
                  "threshold training), same engine", False),
    ("bstdg-s4nn", "per-sample SGD with the s4nn loss from an all-excitatory start (the "
                   "default of 2026-12-01), same engine", False),
    ("bstdg-adam", "BSTDG rule with mini-batch Adam from a mixed-sign start (the default "
                   "until 2026-12-01), same engine", False),
)
for _name, _description, _conv in BSTDG_FAMILY:
    register(_name, _description, selects=True, conv=_conv)(partial(run_trainer, train_config=TRAIN_CONFIGS[_name]))


@register("bptt", "BPTT (torch), real weights, surrogate gradient, first-spike loss", needs_torch=True,
          selects=True, conv=True)
def run_bptt(config: MethodRun) -> dict:
    return bptt_method.run_method(config, binary=False)


@register("bptt-binary", "BPTT (torch), binary weights through a straight-through estimator",
          needs_torch=True, selects=True, conv=True)
def run_bptt_binary(config: MethodRun) -> dict:
    return bptt_method.run_method(config, binary=True)


@register("snntorch", "snnTorch's standard recipe (Leaky neurons, beta=1, ce_rate_loss, Adam, batch 128), "
                      "real weights, same latency code; accuracy by snnTorch's spike-count readout",
          needs_torch=True, selects=True)
def run_snntorch(config: MethodRun) -> dict:
    return snntorch_baseline.run_method(config)


# Rate-coded baselines: T is the number of time steps of the rate code (analog pixel as a
# constant input current at each step), not the t_max of a latency code; real weights.
@register("quant-threshold", "rate-coded IF network trained directly with a trainable threshold "
                             "(the quantization step); T = time steps of the rate code; real weights",
          needs_torch=True)
def run_quant_threshold(config: MethodRun) -> dict:
    return quant_threshold.run_method(config)


@register("ann-convert", "ReLU ANN converted to IF (reset by subtraction), thresholds tuned per T "
                         "(untuned: test_accuracy_untuned); T = time steps of the rate code; real weights",
          needs_torch=True)
def run_ann_convert(config: MethodRun) -> dict:
    return ann_convert.run_method(config)
