"""Train a binary single-spike conv net on MNIST or Fashion-MNIST with the anytime rule; report accuracy, speed.

    BSTDG_DATA=/path/to/datasets python benchmarks/conv_mnist.py --arch conv16k5,pool2,fc128 \
        --epochs 3 --heldout 5000 --out runs/conv-mnist.json

Trains on the MNIST training set minus its last ``--heldout`` images (held out to choose
hyper-parameters; never the test set), evaluates the saved network (running average plus
margins) on the held-out images and on the test set after every epoch (strict prediction
rule of :mod:`bstdg.metrics`), and reports training samples/s, epoch time, spikes per
sample per layer and the mean decision time. ``--speed`` then measures, on the test
images, event-driven inference with early exit (median of ``--repeats``), without early
exit, and the time-stepped reference (:mod:`bstdg.engine.dense_conv`) on
``--dense-samples`` images, their ratio, and checks that both engines agree on every spike.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numba
import numpy as np

from bstdg import metrics
from bstdg.conv_train import LayeredTrainer, initial_layered
from bstdg.convnet import LayeredSNN
from bstdg.data import load_events
from bstdg.engine.conv import layered_forward
from bstdg.engine.dense_conv import layered_forward_dense
from bstdg.evaluation import evaluate
from bstdg.learning import LearningRule
from bstdg.recipe import TrainConfig

# The recipe this script trains with unless --set says otherwise (TrainConfig fields; the
# ConvRecipe defaults it used before that class was folded into TrainConfig).
DEFAULTS = {"epochs": 3, "theta_out": 32.0}


def evaluate_layered(net, events, labels) -> dict:
    """The ``metrics.json`` figures of ``net`` on ``events`` (early exit), spikes per layer included."""
    return {**evaluate(net, events, labels).test_metrics(), "n_samples": len(labels)}


def saved_config(recipe: dict) -> TrainConfig:
    """The TrainConfig recorded in a model's meta (``recipe``); margins written as floats
    by older versions of this script become integers."""
    d = dict(recipe)
    for name in ("hidden_margin", "conv_margin"):
        if isinstance(d.get(name), float) and d[name].is_integer():
            d[name] = int(d[name])
    return TrainConfig.from_dict(d)


def speed(net, events, repeats: int, dense_samples: int) -> dict:
    bn = net.binary()
    layered_forward(bn, events.take(np.arange(64)), True, False)  # compile outside the timing
    runs, cpu = {}, {}
    for name, stop in (("early_exit", True), ("full", False)):
        times, cpu_times = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            layered_forward(bn, events, stop, False)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - start_cpu)
        runs[name] = len(events) / float(np.median(times))
        cpu[name] = float(np.median(cpu_times)) / len(events) * 1e6  # CPU µs per sample, all threads
    sub = events.take(np.arange(dense_samples))
    start = time.perf_counter()
    dense = layered_forward_dense(bn, sub)
    dense_rate = dense_samples / (time.perf_counter() - start)
    ev = layered_forward(bn, sub)
    d_ev = metrics.decide(ev.output_times, ev.decision_potential, net.t_max)
    d_dense = metrics.decide(dense.output_times, dense.decision_potential, net.t_max)
    return {"event_early_exit_samples_per_s": runs["early_exit"], "event_full_samples_per_s": runs["full"],
            "event_early_exit_cpu_us_per_sample": cpu["early_exit"], "event_full_cpu_us_per_sample": cpu["full"],
            "dense_samples_per_s": dense_rate, "ratio_early_exit_vs_dense": runs["early_exit"] / dense_rate,
            "spikes_agree": bool(np.array_equal(ev.times, dense.times)),
            "decisions_agree": bool(np.array_equal(d_ev.prediction, d_dense.prediction)
                                    and np.array_equal(d_ev.tie, d_dense.tie)),
            "n_samples": len(events), "dense_samples": dense_samples, "threads": numba.get_num_threads(),
            "repeats": repeats}


def sweep_thresholds(base, held_ev, held_lab, test_ev, test_lab, theta_outs, fc_margins, conv_margins,
                     within: float = 0.001) -> dict:
    """Choose the output threshold and the hidden margins on the held-out images: every
    combination is scored there; among those within ``within`` of the best held-out accuracy
    the one that decides earliest is taken, and only it is scored on the test set. ``base``:
    the running average without margins. Neither setting enters training (docs/learning.md)."""
    rows = []
    kinds = [layer.kind for layer in base.arch.layers]
    for theta_out in theta_outs:
        for fm in fc_margins:
            for cm in conv_margins:
                offsets = [cm if k == "conv" else fm if k == "fc" else 0.0 for k in kinds]
                ev = evaluate_layered(base.with_thresholds(offsets, theta_out), held_ev, held_lab)
                rows.append({"theta_out": theta_out, "hidden_margin": fm, "conv_margin": cm,
                             "heldout_accuracy": ev["test_accuracy"], "heldout_decision": ev["mean_decision_time"]})
    best = max(r["heldout_accuracy"] for r in rows)
    pick = min((r for r in rows if r["heldout_accuracy"] >= best - within), key=lambda r: r["heldout_decision"])
    offsets = [pick["conv_margin"] if k == "conv" else pick["hidden_margin"] if k == "fc" else 0.0 for k in kinds]
    chosen = base.with_thresholds(offsets, pick["theta_out"])
    return {"grid": rows, "pick": pick, "test": evaluate_layered(chosen, test_ev, test_lab), "model": chosen}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"),
                   help="a 28x28 image dataset (default mnist)")
    p.add_argument("--arch", default="conv16k5,pool2,fc128")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N (after the held-out split)")
    p.add_argument("--heldout", type=int, default=5000, help="last N training images, held out")
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a TrainConfig field (e.g. theta_out=16, lr_w_conv=0.002) or a rule field "
                        "(window, beta, probes)")
    p.add_argument("--sweep", action="store_true",
                   help="choose theta_out and the margins on the held-out images after training")
    p.add_argument("--theta-outs", default="12,16,20,24,28,32")
    p.add_argument("--fc-margins", default="0,1,2,3,4")
    p.add_argument("--conv-margins", default="0,1")
    p.add_argument("--speed", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dense-samples", type=int, default=64)
    p.add_argument("--model", default=None,
                   help="skip training: load this model (saved with --model-out) for --sweep and --speed")
    p.add_argument("--model-out", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    fields = {**DEFAULTS, "arch": args.arch, "epochs": args.epochs}
    rule = {}
    for item in args.set:
        key, value = item.split("=", 1)
        target = rule if key in ("window", "beta", "probes") else fields
        target[key] = value if key == "threshold_mode" else json.loads(value)
    recipe = TrainConfig(**fields, rule=LearningRule(loss="anytime", **rule))
    train = load_events(args.dataset, "train", recipe.t_max, args.data_dir)
    test = load_events(args.dataset, "test", recipe.t_max, args.data_dir, args.limit_test)
    n = len(train.labels)
    fit = np.arange(n - args.heldout)[:args.limit_train]
    held = np.arange(n - args.heldout, n)
    fit_ev, fit_lab = train.events.take(fit), train.labels[fit]
    held_ev, held_lab = train.events.take(held), train.labels[held]
    meta = {"dataset": args.dataset, "encoder": train.encoder.to_dict(), "recipe": recipe.to_dict()}
    history = []
    if args.model:  # the saved network less the margins it was saved with: the running average
        model = LayeredSNN.load(args.model)
        saved = saved_config(model.meta.get("recipe") or {"arch": str(model.arch)})
        margins = model.meta.get("margins") or {"hidden_margin": saved.margin(),
                                                "conv_margin": saved.conv_setting("conv_margin")}  # by --sweep
        kinds = [layer.kind for layer in model.arch.layers]
        average = model.with_thresholds([-(margins["conv_margin"] if k == "conv" else margins["hidden_margin"]
                                           if k == "fc" else 0) for k in kinds])
        recipe = saved
    else:
        net = initial_layered(recipe, fit_ev, (1, 28, 28), train.n_classes, meta)
        trainer = LayeredTrainer(net, recipe)
        for _ in range(recipe.epochs):
            info = trainer.train_epoch(fit_ev, fit_lab)
            model = trainer.model()
            info["heldout"] = evaluate_layered(model, held_ev, held_lab) if args.heldout else None
            info["test"] = evaluate_layered(model, test.events, test.labels)
            history.append(info)
            print(f"epoch {info['epoch']}: held-out "
                  f"{info['heldout']['test_accuracy'] if args.heldout else float('nan'):.4f}"
                  f" test {info['test']['test_accuracy']:.4f} decision {info['test']['mean_decision_time']:.1f} "
                  f"spikes {info['test']['spikes_per_layer']} train {info['train_samples_per_s']:.0f} samples/s "
                  f"({info['train_seconds']:.1f} s)", flush=True)
        model, average = trainer.model(), trainer.averaged()
    result = {"arch": str(model.arch), "recipe": recipe.to_dict(), "n_train": len(fit), "n_heldout": len(held),
              "history": history, "final": history[-1] if history else None}
    if args.sweep and args.heldout:
        floats = [[float(x) for x in a.split(",")] for a in (args.theta_outs, args.fc_margins, args.conv_margins)]
        sweep = sweep_thresholds(average, held_ev, held_lab, test.events, test.labels, *floats)
        model = sweep.pop("model")
        model.meta["margins"] = {k: sweep["pick"][k] for k in ("hidden_margin", "conv_margin")}
        result["sweep"] = sweep
        print(f"chosen on held-out: {sweep['pick']}; test {sweep['test']['test_accuracy']:.4f} "
              f"decision {sweep['test']['mean_decision_time']:.1f}", flush=True)
    if args.model_out:
        model.save(args.model_out)
    if args.speed:
        result["speed"] = speed(model, test.events, args.repeats, args.dense_samples)
        print(json.dumps(result["speed"], indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
