"""``snntorch``: what a user would train instead — the snnTorch library's standard recipe on
the same latency-coded inputs and the same architecture, for ``bstdg compare``.

The recipe (snnTorch's MNIST tutorials; ``docs/baselines.md`` says why each choice):

* **input**: the latency code of :mod:`bstdg.encoding` at ``t_max = T`` (one spike per
  non-zero pixel), the run's ``SpikeEvents`` made a dense ``(T, B, n_in)`` 0/1 tensor per
  batch (:func:`bstdg.baselines.bptt_readout.dense_input`), exactly what the BPTT baselines read;
* **network**: ``nn.Linear`` (with bias, torch's default init) then ``snn.Leaky`` per layer,
  ``784-600-10``; ``Leaky(beta, threshold=1, spike_grad=surrogate.fast_sigmoid(slope))``,
  reset by subtraction (snnTorch's default), ``beta = 1`` by default: no leak, i.e. IF
  neurons as in bstdg — but real weights, a bias, and neurons that fire any number of times;
* **loop**: snnTorch's step-by-step loop ``spk, mem = lif(fc(x[t]), mem)`` over ``T`` steps;
* **loss**: ``snntorch.functional.ce_rate_loss`` (default; cross-entropy of the output spikes
  at every step), or ``ce_count_loss`` / ``ce_temporal_loss`` (``loss = "count"`` /
  ``"temporal"``);
* **optimiser**: Adam, ``lr = 5e-4``, ``betas = (0.9, 0.999)``, batches of 128 (the tutorials'),
  or the values of ``--bptt-settings``;
* **readout** (headline ``test_accuracy``): what snnTorch users see —
  ``snntorch.functional.accuracy_rate`` (largest spike count, torch's ``argmax``: a tie goes
  to the lowest index) for the rate and count losses, ``accuracy_temporal`` (earliest first
  spike, lowest index on ties) for the temporal loss; ``test_ties`` counts the samples whose
  readout was a tie (counted correct when the lowest tied index is the label, as snnTorch
  does). ``test_accuracy_first_spike``: bstdg's strict prediction rule
  (:func:`bstdg.metrics.decide` on each output's first spike and the output potentials at
  that step; a tie is never correct), also the rule of ``test_outputs.npz``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import metrics
from ..encoding import SpikeEvents
from ..engine import ForwardResult
from ..errors import BstdgError
from ..files import save_npz
from ..methods import load_fit_val_test
from ..runs import save_test_outputs
from . import apply_settings, require_torch, timed_epoch, torch_device
from .bptt import init_threads
from .bptt_readout import decision_potentials, dense_input, spike_times

NAME = "snntorch"
LOSSES = ("rate", "count", "temporal")


@dataclass(frozen=True)
class SnnTorchConfig:
    """The snnTorch recipe (saved into ``metrics.json``)."""

    hidden: tuple = (600,)
    t_max: int = 64
    epochs: int = 1
    batch_size: int = 128
    beta: float = 1.0  # Leaky's decay per step; 1: no leak (IF)
    threshold: float = 1.0
    slope: float = 25.0  # surrogate.fast_sigmoid(slope)
    lr: float = 5e-4  # Adam
    loss: str = "rate"  # ce_rate_loss, ce_count_loss or ce_temporal_loss
    seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r} (use {', '.join(LOSSES)})")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")


def require_snntorch():
    """The ``snntorch`` module; BstdgError with the install command when it is missing."""
    require_torch()
    try:
        import snntorch  # optional: the baselines extra
    except ImportError:
        raise BstdgError("the snntorch baseline needs snnTorch: pip install snntorch "
                         "(the 'baselines' extra)") from None
    return snntorch


def build(sizes, config: SnnTorchConfig, device="cpu"):
    """The network: per layer ``nn.Linear`` then ``snn.Leaky``, seeded with ``config.seed``."""
    t = require_torch()
    snn = require_snntorch()
    from snntorch import surrogate  # optional: the baselines extra

    class Net(t.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = t.nn.ModuleList(t.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
            self.lif = t.nn.ModuleList(
                snn.Leaky(beta=config.beta, threshold=config.threshold,
                          spike_grad=surrogate.fast_sigmoid(slope=config.slope)) for _ in sizes[1:])

        def forward(self, x, record_hidden: bool = False):
            """``x`` ``(T, B, n_in)`` -> (spike trains of every layer if ``record_hidden``
            else of the output only, each ``(T, B, n)``; output potentials ``(T, B, n_out)``)."""
            mem = [lif.init_leaky() for lif in self.lif]
            spikes = [[] for _ in self.lif]
            mem_out = []
            for step in range(x.shape[0]):
                s = x[step]
                for l, (fc, lif) in enumerate(zip(self.fc, self.lif)):
                    s, mem[l] = lif(fc(s), mem[l])
                    if record_hidden or l == len(self.lif) - 1:
                        spikes[l].append(s)
                mem_out.append(mem[-1])
            return [t.stack(s) for s in spikes if s], t.stack(mem_out)

    t.manual_seed(config.seed)
    return Net().to(device)


def loss_function(config: SnnTorchConfig):
    import snntorch.functional as SF  # optional: the baselines extra

    return {"rate": SF.ce_rate_loss, "count": SF.ce_count_loss,
            "temporal": SF.ce_temporal_loss}[config.loss]()


def readout(spk_out, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """snnTorch's prediction and whether it was a tie: largest spike count
    (``accuracy_rate``) or earliest first spike (``accuracy_temporal``), lowest index on
    ties (torch's ``max`` / ``min``)."""
    t = require_torch()
    if loss == "temporal":
        score = -t.as_tensor(spike_times(spk_out), dtype=t.float32)
    else:
        score = spk_out.sum(0).float().cpu()
    best, pred = score.max(1)
    ties = (score == best[:, None]).sum(1) > 1
    return pred.numpy(), ties.numpy()


class Trainer:
    """Adam on the snnTorch network; ``train_epoch`` does one pass in mini-batches."""

    def __init__(self, model, config: SnnTorchConfig, device="cpu"):
        t = require_torch()
        self.model, self.config, self.device = model, config, t.device(device)
        self.opt = t.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
        self.loss_fn = loss_function(config)
        self.rng = np.random.default_rng(config.seed + 1)
        self.epoch = 0

    def step(self, batch: SpikeEvents, labels: np.ndarray) -> tuple[float, int]:
        """One mini-batch update; returns (loss, correct readouts before the update)."""
        t = require_torch()
        self.model.train()
        x = dense_input(batch, self.config.t_max, self.device)
        targets = t.as_tensor(np.asarray(labels, np.int64), device=self.device)
        spikes, _ = self.model(x)
        loss = self.loss_fn(spikes[-1], targets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        pred, _ = readout(spikes[-1].detach(), self.config.loss)
        return float(loss.detach()), int((pred == np.asarray(labels)).sum())

    def train_epoch(self, events: SpikeEvents, labels: np.ndarray, log=print, log_every: int = 50) -> dict:
        order = self.rng.permutation(len(events))
        bs = self.config.batch_size
        losses, correct, curve = 0.0, 0, []
        start = time.perf_counter()
        for k in range(0, len(order), bs):
            idx = order[k:k + bs]
            loss, c = self.step(events.take(idx), labels[idx])
            losses += loss * len(idx)
            correct += c
            seen = k + len(idx)
            curve.append([self.epoch + seen / len(order), loss, c / len(idx)])
            if log and log_every and (k // bs + 1) % log_every == 0:
                log(f"  {seen}/{len(order)} samples, loss {losses / seen:.4f}, running accuracy "
                    f"{correct / seen:.4f}, {seen / (time.perf_counter() - start):.0f} samples/s")
        elapsed = time.perf_counter() - start
        self.epoch += 1
        return {"epoch": self.epoch, "loss": losses / len(order),
                "train_accuracy_running": correct / len(order), "train_seconds": elapsed,
                "train_samples_per_s": len(order) / elapsed, "batches": curve}


def eval_batch_size(t_max: int) -> int:
    return max(16, 32768 // t_max)


def evaluate(model, events: SpikeEvents, labels: np.ndarray, config: SnnTorchConfig, device="cpu") -> dict:
    """Both readouts on ``events`` (no gradient, all ``T`` steps). Returns the figures
    (``test_accuracy`` = snnTorch's readout, ``test_accuracy_first_spike`` = bstdg's rule),
    and, under ``"result"`` / ``"decision"``, first-spike times of every neuron and the
    strict rule's decisions (for ``test_outputs.npz``)."""
    t = require_torch()
    labels = np.asarray(labels)
    t_max, bs = config.t_max, eval_batch_size(config.t_max)
    preds, ties, times, potentials, hidden, silent = [], [], [], [], [], []
    model.eval()
    start = time.perf_counter()
    with t.no_grad():
        for k in range(0, len(events), bs):
            batch = events.take(np.arange(k, min(k + bs, len(events))))
            spikes, mem_out = model(dense_input(batch, t_max, device), record_hidden=True)
            p, tie = readout(spikes[-1], config.loss)
            preds.append(p)
            ties.append(tie)
            layer_times = [spike_times(s) for s in spikes]
            out_times = layer_times[-1]
            times.append(np.concatenate(layer_times, axis=1))
            potentials.append(decision_potentials(mem_out, out_times, binary=False))
            hidden.append(sum((s.sum((0, 2)).cpu().numpy() for s in spikes[:-1]), np.zeros(len(batch))))
            silent.append((spikes[-1].sum((0, 2)) == 0).cpu().numpy())
    elapsed = time.perf_counter() - start
    pred, tie = np.concatenate(preds), np.concatenate(ties)
    sizes = [int(events.n_units)] + [int(fc.out_features) for fc in model.fc]
    n_off = np.zeros(len(sizes), np.int64)
    np.cumsum(sizes[1:], out=n_off[1:])
    result = ForwardResult(np.concatenate(times), np.concatenate(potentials), n_off)
    decision = metrics.decide(result.times[:, n_off[-2]:], result.decision_potential, t_max)
    strict = metrics.correct(decision, labels)
    rate_like = config.loss != "temporal"
    return {
        "test_accuracy": float((pred == labels).mean()), "test_ties": int(tie.sum()),
        "test_silent": int(np.concatenate(silent).sum()),
        # the count readout needs all T steps; the temporal one decides at the first output spike
        "mean_decision_time": float(t_max if rate_like else decision.time.mean()),
        "hidden_spikes_per_sample": float(np.concatenate(hidden).mean()),  # every spike, all T steps
        "eval_samples_per_s": len(labels) / elapsed if elapsed > 0 else float("inf"),
        "test_accuracy_first_spike": float(strict.mean()),
        "first_spike": {"ties": int(decision.tie.sum()),
                        "mean_decision_time": float(decision.time.mean())},
        "result": result, "decision": decision,
    }


def config_dict(config: SnnTorchConfig) -> dict:
    d = asdict(config)
    d["hidden"] = list(config.hidden)
    return d


FIXED = ("hidden", "t_max", "epochs", "seed")


def run_method(run) -> dict:
    """``snntorch`` for :mod:`bstdg.compare` (``run`` is a ``MethodRun``): the recipe with
    ``run.settings`` over it, trained on ``run.device``, each epoch timed by ``run.meter``,
    stopped and selected by the run's :class:`~bstdg.methods.EarlyStopping` on the held-out
    accuracy of snnTorch's readout."""
    require_snntorch()
    n_threads = init_threads()
    device = torch_device(run.device)
    cfg = apply_settings(SnnTorchConfig(hidden=tuple(run.hidden), t_max=run.t_max, epochs=run.epochs,
                                        seed=run.seed), run.settings, FIXED)
    train, val, test = load_fit_val_test(run)
    sizes = (train.events.n_units, *cfg.hidden, train.n_classes)
    model = build(sizes, cfg, device)
    # Warm-up on a throwaway copy (thread pools, first allocations), outside the meter.
    warm = build(sizes, cfg, device)
    Trainer(warm, cfg, device).step(train.events.take(np.arange(min(8, len(train.events)))), train.labels[:8])
    evaluate(warm, test.events.take(np.arange(min(8, len(test.events)))), test.labels[:8], cfg, device)
    trainer = Trainer(model, cfg, device)
    stopping = run.stopping()
    history, batches, gpu_peaks = [], [], []
    selected = None
    while not stopping.stop:
        with timed_epoch(run.meter, device, gpu_peaks):
            info = trainer.train_epoch(train.events, train.labels)
        batches += info.pop("batches")
        ev = evaluate(model, test.events, test.labels, cfg, device)
        v = evaluate(model, val.events, val.labels, cfg, device)["test_accuracy"] if val is not None else None
        wall = float(sum(run.meter.seconds))
        info.update({k: ev[k] for k in ("test_accuracy", "test_accuracy_first_spike", "test_ties")},
                    wall_s=wall, val_accuracy=v)
        history.append(info)
        if stopping.update(info["epoch"], wall, v, ev["test_accuracy"]):
            selected = {k: p.detach().clone() for k, p in model.state_dict().items()}
        print(f"  epoch {info['epoch']}: loss {info['loss']:.4f}, test accuracy {ev['test_accuracy']:.4f} "
              f"(first-spike rule {ev['test_accuracy_first_spike']:.4f})"
              + (f", held-out {v:.4f}" if v is not None else "")
              + f", {info['train_samples_per_s']:,.0f} train samples/s", flush=True)
    model.load_state_dict(selected)
    ev = evaluate(model, test.events, test.labels, cfg, device)
    result, decision = ev.pop("result"), ev.pop("decision")
    out = Path(run.out)
    save_test_outputs(out, result, decision, test.labels, test.events.first_times(0, cfg.t_max),
                      cfg.t_max, sizes)
    save_npz(out / "model_real.npz", **{f"w{l}": fc.weight.detach().cpu().numpy().T.copy()
                                        for l, fc in enumerate(model.fc)},
             **{f"theta{l}": np.full(fc.out_features, cfg.threshold, np.float32) for l, fc in enumerate(model.fc)},
             **{f"b{l}": fc.bias.detach().cpu().numpy().copy() for l, fc in enumerate(model.fc)})
    import snntorch  # optional: the baselines extra (loaded by require_snntorch above)

    extra = {"gpu_peak_train_mib": max(gpu_peaks)} if gpu_peaks else {}
    return {
        "dataset": run.dataset, **ev,
        "train_accuracy_running": history[-1]["train_accuracy_running"],
        "epochs": cfg.epochs, "n_train": len(train.labels), "n_test": len(test.labels),
        "n_val": len(val.labels) if val is not None else 0,
        "sizes": list(sizes), "config": config_dict(cfg), "history": history, **stopping.summary(),
        "batches": batches, "torch_threads": n_threads, "device": str(device),
        "snntorch_version": snntorch.__version__,
        "readout": ("spike count (snntorch.functional.accuracy_rate)" if cfg.loss != "temporal" else
                    "first spike (snntorch.functional.accuracy_temporal)"),
        "inference": f"torch (snnTorch Leaky loop), all {cfg.t_max} steps, batches of {eval_batch_size(cfg.t_max)}",
        **extra,
    }
