"""``bptt`` and ``bptt-binary`` as methods of ``bstdg compare`` (:mod:`bstdg.compare`): build the
network (:mod:`bstdg.baselines.bptt_net` for fc layers, :mod:`bstdg.baselines.bptt_conv` with
conv or pool layers), train it epoch by epoch inside the run's meter, select, evaluate with
the prediction rule and save the run folder."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..evaluation import evaluate as evaluate_event
from ..files import save_npz
from ..methods import load_fit_val_test, model_meta
from ..recipe import TrainConfig
from ..runs import save_test_outputs
from ..train import initial_network
from . import apply_settings, bptt_conv, require_torch, timed_epoch, torch_device
from .bptt import FIXED, Trainer, config_dict, default_config, eval_batch_size, evaluate, init_threads, to_snn
from .bptt_net import Net


def run_method(run, binary: bool) -> dict:
    """``bptt`` / ``bptt-binary`` for :mod:`bstdg.compare` (``run`` is a ``MethodRun``):
    hyper-parameters from :func:`default_config` with ``run.settings`` over them, trained on
    ``run.device``; after each epoch the run's :class:`~bstdg.methods.EarlyStopping` (the rule
    the BSTDG methods apply through a ``fit`` hook) decides whether to go on and which
    epoch's network is kept, evaluated and saved."""
    n_threads = init_threads()
    t = require_torch()
    device = torch_device(run.device)
    t.manual_seed(run.seed)
    cfg = apply_settings(default_config(binary, hidden=tuple(run.hidden), t_max=run.t_max,
                                        epochs=run.epochs, seed=run.seed), run.settings, FIXED)
    train, val, test = load_fit_val_test(run)
    out = Path(run.out)
    meta = model_meta(run.dataset, train)
    eval_batch = eval_batch_size(cfg.t_max)
    if run.arch is not None:  # conv and pool layers: bptt_conv's network, the same loop
        net = bptt_conv.build(run, cfg, train, meta, binary, device)
        eval_batch = bptt_conv.eval_batch_size(net.arch, cfg.t_max)
    elif binary:
        snn = initial_network(replace(TrainConfig(), optimizer="adam", hidden=cfg.hidden, t_max=cfg.t_max,
                                      seed=cfg.seed), train.events, train.n_classes, meta)
        net = Net.from_snn(snn, cfg.slope, train_theta=cfg.lr_theta > 0, device=device)
    else:
        sizes = (train.events.n_units, *cfg.hidden, train.n_classes)
        net = Net.gaussian(sizes, np.random.default_rng(cfg.seed), 1.0, cfg.slope, device)
    # One step on a throwaway copy first: torch's thread pools and first allocations are
    # then outside the measured epochs, as Numba's kernel loading is for BSTDG.
    Trainer(net.clone(), cfg).step(train.events.take(np.arange(min(8, len(train.events)))), train.labels[:8])
    evaluate(net.clone(), test.events.take(np.arange(min(8, len(test.events)))), test.labels[:8], cfg.t_max,
             eval_batch)
    trainer = Trainer(net, cfg)
    stopping = run.stopping()
    history, batches, gpu_peaks = [], [], []
    selected = None
    while not stopping.stop:
        with timed_epoch(run.meter, device, gpu_peaks):
            info = trainer.train_epoch(train.events, train.labels, log_every=50)
        batches += info.pop("batches")
        ev = evaluate(net, test.events, test.labels, cfg.t_max, eval_batch)[0]
        v = evaluate(net, val.events, val.labels, cfg.t_max, eval_batch)[0].accuracy if val is not None else None
        wall = float(sum(run.meter.seconds))
        info.update(ev.test_metrics(), wall_s=wall, val_accuracy=v)
        history.append(info)
        if stopping.update(info["epoch"], wall, v, ev.accuracy):
            selected = net.clone()
        print(f"  epoch {info['epoch']}: loss {info['loss']:.4f}, test accuracy {ev.accuracy:.4f}"
              + (f", held-out {v:.4f}" if v is not None else "")
              + f", {info['train_samples_per_s']:,.0f} train samples/s", flush=True)
    net = selected
    ev, result, decision = evaluate(net, test.events, test.labels, cfg.t_max, eval_batch)
    save_test_outputs(out, result, decision, test.labels, test.events.first_times(0, cfg.t_max),
                      cfg.t_max, net.sizes)
    extra = {}
    if binary:
        if run.arch is not None:
            snn = bptt_conv.to_layered(net, cfg.t_max, meta)
        else:
            snn = to_snn(net, cfg.t_max, meta)
        snn.save(out / "model.npz")
        event = evaluate_event(snn, test.events, test.labels)
        extra["event_engine_test_accuracy"] = event.accuracy  # must equal test_accuracy
    else:
        state = net.state()
        save_npz(out / "model_real.npz", **{f"w{l}": w for l, w in enumerate(state["weights"])},
                 **{f"theta{l}": th for l, th in enumerate(state["thresholds"])})
    if gpu_peaks:
        extra["gpu_peak_train_mib"] = max(gpu_peaks)
    return {
        "dataset": run.dataset, **ev.test_metrics(),
        "train_accuracy_running": history[-1]["train_accuracy_running"],
        "epochs": cfg.epochs, "n_train": len(train.labels), "n_test": len(test.labels),
        "n_val": len(val.labels) if val is not None else 0,
        "sizes": list(net.sizes), "arch": run.arch, "config": config_dict(cfg), "history": history,
        **stopping.summary(),
        "batches": batches, "torch_threads": n_threads, "device": str(device),
        "inference": f"torch, time-stepped over all {cfg.t_max} steps, batches of {eval_batch}",
        **extra,
    }
