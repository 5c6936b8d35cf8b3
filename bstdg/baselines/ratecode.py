"""Multi-step rate-coded IF networks: the pieces shared by the ``quant-threshold`` and
``ann-convert`` baselines, and the synaptic-operation counts every method reports.

Set-up (derivation in ``docs/baselines-quant-convert.md``):

* **input**: the analog pixel ``x`` in [0, 1] (uint8 / 255), injected as the same input
  current at each of the ``T`` steps (direct / constant-current coding). This is the input
  the quantized-ReLU equivalence and the conversion theory are written for; the latency
  spikes BSTDG uses would give hidden neurons a current that changes from step to step
  (a deviation error already in the first layer);
* **hidden neurons**: non-leaky IF with reset by subtraction, one threshold ``theta_l`` per
  layer and an initial potential ``v0 * theta_l``::

      V_t = V_{t-1} + I_t,   s_t = [V_t >= theta_l],   V_t <- V_t - theta_l s_t

  at most one spike per step. A spike of layer ``l`` carries the amplitude ``theta_l`` (the
  same network as thresholds 1 with weights ``theta_{l-1} W_l / theta_l``), so its rate in
  activation units is ``r_l = theta_l * n_l / T`` (``n_l`` spikes in ``T`` steps);
* **currents**: ``I_t = theta_{l-1} s_{l-1,t} @ W_l + b_l`` (``x @ W_1 + b_1`` for the first
  layer), no synaptic delay;
* **output layer**: ``n_out`` non-spiking integrators; the logits are the potentials after
  ``T`` steps divided by ``T``: ``r_{L-1} @ W_L + b_L``. The prediction is the largest logit;
  equal largest logits are a tie and never count as correct (rule 3 of the prediction rule).

With a constant current ``m`` (the first hidden layer) the spike count is exactly
``n = clip(floor(T m / theta + v0), 0, T)`` (:func:`quantized_relu`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from ..errors import BstdgError
from ..files import save_npz
from . import require_torch

_torch = require_torch  # torch is imported on first use, never at module import


def init_threads(n: int | None = None) -> int:
    """``torch.set_num_threads(n)``; default 1. These networks do many small element-wise
    steps (one per time step); on a shared, loaded 2-core machine two OpenMP threads made
    them about 100x slower than one (threads spinning at every barrier)."""
    n = n or 1
    _torch().set_num_threads(n)
    return n


# --- data ---------------------------------------------------------------------------------


ANALOG_DATASETS = ("mnist", "fashion-mnist")


def load_analog(dataset: str, split: str, data_dir=None, limit: int | None = None):
    """``(x, labels)``: float32 ``(N, 784)`` pixels / 255 and int64 labels, first ``limit``."""
    if dataset not in ANALOG_DATASETS:
        raise BstdgError(f"the rate-coded baselines need analog images ({', '.join(ANALOG_DATASETS)}); "
                         f"got {dataset!r}")
    from ..data.mnist import IdxDataset, load_idx_dataset  # heavy: the data registry (tqdm)

    images, labels = load_idx_dataset(dataset, split, IdxDataset(dataset).locate(data_dir))
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0,
            labels.astype(np.int64))


# --- the network --------------------------------------------------------------------------


@dataclass
class RateNet:
    """Weights ``(n_in, n_out)`` and biases per layer (numpy), one threshold per hidden layer,
    the initial potential ``v0`` (fraction of the threshold)."""

    weights: list
    biases: list
    thetas: list  # one float per hidden layer (len(weights) - 1)
    v0: float = 0.5

    @property
    def sizes(self) -> tuple:
        return (self.weights[0].shape[0],) + tuple(w.shape[1] for w in self.weights)

    def with_thetas(self, thetas) -> "RateNet":
        return RateNet(self.weights, self.biases, [float(t) for t in thetas], self.v0)


def init_layers(sizes, seed: int, dtype=None):
    """torch's default ``nn.Linear`` initialisation (uniform in ``±1/sqrt(n_in)`` for weights
    and biases), from a seeded generator; tensors requiring grad."""
    t = _torch()
    dtype = dtype or t.float32
    g = t.Generator().manual_seed(seed)
    weights, biases = [], []
    for a, b in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(a)
        weights.append(((t.rand(a, b, generator=g, dtype=dtype) * 2 - 1) * bound).requires_grad_())
        biases.append(((t.rand(b, generator=g, dtype=dtype) * 2 - 1) * bound).requires_grad_())
    return weights, biases


def quantized_relu(m, theta, n_steps: int, v0: float = 0.5):
    """``theta / T * clip(floor(T m / theta + v0), 0, T)`` (numpy or torch, no gradient
    tricks): the rate of an IF neuron driven by the constant current ``m`` for ``T`` steps."""
    if isinstance(m, np.ndarray) or np.isscalar(m):
        n = np.clip(np.floor(n_steps * np.asarray(m) / theta + v0), 0, n_steps)
        return theta / n_steps * n
    t = _torch()
    return theta / n_steps * t.clamp(t.floor(n_steps * m / theta + v0), 0, n_steps)


def quantized_relu_ste(m, theta, n_steps: int, v0: float = 0.5):
    """:func:`quantized_relu` with a straight-through ``floor``: the forward value is the
    quantized ReLU; the gradient is 1 (to ``m``) and ``n/T - m/theta`` (to ``theta``) inside
    the range, 0 and 0 below it, 0 and 1 above it (the learned-step-size gradient)."""
    t = _torch()
    u = n_steps * m / theta + v0
    u = u + (t.floor(u) - u).detach()
    return theta / n_steps * t.clamp(u, 0, n_steps)


def if_spikes(currents, theta, n_steps: int, v0: float = 0.5):
    """IF neurons with reset by subtraction: spike trains ``(T, B, n)`` (0/1, same dtype) for
    currents ``(T, B, n)`` or a constant ``(B, n)``. No gradient."""
    t = _torch()
    with t.no_grad():
        const = currents.dim() == 2
        shape = currents.shape if const else currents.shape[1:]
        v = t.full(shape, v0 * float(theta), dtype=currents.dtype)
        out = t.empty((n_steps,) + tuple(shape), dtype=currents.dtype)
        for step in range(n_steps):
            v += currents if const else currents[step]
            s = (v >= theta).to(currents.dtype)
            v -= theta * s
            out[step] = s
    return out


@dataclass
class SNNRun:
    """What one time-stepped run of a :class:`RateNet` produced (numpy)."""

    logits: np.ndarray  # (B, n_out): output potentials after T steps / T
    spikes: list  # per hidden layer: (B,) spikes per sample (all steps, all neurons)
    rates: list  # per hidden layer: (B, n) theta * count / T
    currents: list  # per hidden layer: (B, n) mean input current over the T steps


def snn_forward(net: RateNet, x, n_steps: int, batch_size: int = 1000, dtype=None) -> SNNRun:
    """Run the rate-coded IF network on analog inputs ``x`` ``(B, n_in)`` for ``n_steps``."""
    t = _torch()
    dtype = dtype or t.float32
    layers = [(t.as_tensor(np.asarray(w), dtype=dtype), t.as_tensor(np.asarray(b), dtype=dtype))
              for w, b in zip(net.weights, net.biases)]
    parts = []
    with t.no_grad():
        for k in range(0, len(x), batch_size):
            xb = t.as_tensor(np.asarray(x[k:k + batch_size]), dtype=dtype)
            spikes_in, logits = None, None
            spikes, rates, currents = [], [], []
            for l, (w, b) in enumerate(layers):
                if l == 0:
                    cur = xb @ w + b  # constant over the T steps
                    mean_cur = cur
                else:
                    cur = net.thetas[l - 1] * (spikes_in @ w) + b  # (T, B, n)
                    mean_cur = cur.mean(0)
                if l == len(layers) - 1:
                    logits = mean_cur
                    break
                s = if_spikes(cur, net.thetas[l], n_steps, net.v0)
                count = s.sum(0)
                spikes.append(count.sum(1))
                rates.append(net.thetas[l] * count / n_steps)
                currents.append(mean_cur)
                spikes_in = s
            parts.append((logits, spikes, rates, currents))
    def cat(seq):
        return np.concatenate([p.numpy() for p in seq])
    n_hidden = len(layers) - 1
    return SNNRun(cat([p[0] for p in parts]),
                  [cat([p[1][l] for p in parts]) for l in range(n_hidden)],
                  [cat([p[2][l] for p in parts]) for l in range(n_hidden)],
                  [cat([p[3][l] for p in parts]) for l in range(n_hidden)])


def ann_forward(net: RateNet, x, clip: bool = False, batch_size: int = 4096, dtype=None):
    """The ReLU network (``clip``: ReLU clipped at each layer's threshold): ``(logits,
    [activations per hidden layer])``, numpy."""
    t = _torch()
    dtype = dtype or t.float32
    acts, logits = [[] for _ in net.thetas], []
    with t.no_grad():
        for k in range(0, len(x), batch_size):
            h = t.as_tensor(np.asarray(x[k:k + batch_size]), dtype=dtype)
            for l, (w, b) in enumerate(zip(net.weights, net.biases)):
                z = h @ t.as_tensor(np.asarray(w), dtype=dtype) + t.as_tensor(np.asarray(b), dtype=dtype)
                if l == len(net.weights) - 1:
                    logits.append(z.numpy())
                    break
                h = t.clamp(z, 0, net.thetas[l]) if clip else t.relu(z)
                acts[l].append(h.numpy())
    return np.concatenate(logits), [np.concatenate(a) for a in acts]


# --- scoring, synaptic operations -------------------------------------------------------------


def decide_logits(logits: np.ndarray):
    """``(prediction, tie)``: the largest logit; more than one equal largest is a tie."""
    best = logits.max(axis=1, keepdims=True)
    winners = logits == best
    return winners.argmax(axis=1), winners.sum(axis=1) > 1


def accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """``(accuracy, ties)``; a tie never counts as correct."""
    pred, tie = decide_logits(logits)
    return float(((pred == labels) & ~tie).mean()), int(tie.sum())


def rate_synops(x: np.ndarray, run: SNNRun, sizes, n_steps: int) -> dict:
    """Synaptic operations per sample of a rate-coded run (means over the samples).

    ``input``: every non-zero pixel drives its ``n_1`` synapses at each of the ``T`` steps
    (``nnz(x) * n_1 * T``; multiply-accumulates, the input is analog); ``hidden``:
    ``spikes of layer l * n_{l+1}`` summed over hidden layers and steps (accumulates).
    ``input_once`` is the cheaper count when the constant input current ``x @ W_1`` is
    computed once and re-added: ``nnz(x) * n_1 + n_1 * T``.
    """
    nnz = float(np.count_nonzero(x, axis=1).mean())
    input_ops = nnz * sizes[1] * n_steps
    hidden_ops = sum(float(s.mean()) * sizes[l + 2] for l, s in enumerate(run.spikes))
    return {"synops_per_sample": input_ops + hidden_ops, "synops_input": input_ops,
            "synops_hidden": hidden_ops,
            "synops_input_once": nnz * sizes[1] + sizes[1] * n_steps,
            "input_nonzero_per_sample": nnz,
            "hidden_spikes_per_sample": float(sum(s.mean() for s in run.spikes))}


def bstdg_synops(result, decision, events, t_max: int, early_exit: bool = True) -> dict:
    """BSTDG's synaptic operations per sample, counted like :func:`rate_synops`:
    input spikes ``* n_1`` plus, per hidden layer, spikes ``* n_{l+1}``; with ``early_exit``
    only spikes at or before the decision step (what the event engine computes before it
    stops; the same cut as ``hidden_spikes_per_sample``). All are accumulates of ±1.

    ``result``: a :class:`~bstdg.engine.ForwardResult`; ``decision``: its
    :class:`~bstdg.metrics.Decision`; ``events``: the input :class:`~bstdg.encoding.SpikeEvents`.
    """
    n = len(events)
    sizes = [events.n_units] + [int(result.n_off[l + 1] - result.n_off[l])
                                for l in range(len(result.n_off) - 1)]
    limit = decision.time if early_exit else np.full(n, t_max, np.int64)
    owner = np.repeat(np.arange(n), np.diff(events.ptr))
    in_spikes = np.bincount(owner[events.times <= limit[owner]], minlength=n).astype(np.float64)
    input_ops = in_spikes * sizes[1]
    hidden_ops = np.zeros(n)
    hidden_spikes = np.zeros(n)
    for l in range(len(sizes) - 2):
        times = result.layer_times(l)
        fired = (times < t_max) & (times <= limit[:, None])
        hidden_spikes += fired.sum(1)
        hidden_ops += fired.sum(1) * sizes[l + 2]
    return {"synops_per_sample": float((input_ops + hidden_ops).mean()),
            "synops_input": float(input_ops.mean()), "synops_hidden": float(hidden_ops.mean()),
            "input_spikes_per_sample": float(in_spikes.mean()),
            "hidden_spikes_per_sample": float(hidden_spikes.mean())}


def iterate_minibatches(rng: np.random.Generator, n: int, batch_size: int):
    order = rng.permutation(n)
    for k in range(0, n, batch_size):
        yield order[k:k + batch_size]


def train_epoch(opt, logits_of, xt, yt, rng: np.random.Generator, batch_size: int,
                after_step=None) -> dict:
    """One epoch of mini-batch cross-entropy training of ``logits_of(inputs)`` with ``opt``
    (``after_step()`` runs after every update, e.g. to clamp parameters). Returns the epoch's
    mean loss, running accuracy, seconds and samples/s under their history names."""
    t = _torch()
    n = len(xt)
    start = time.perf_counter()
    losses, correct = 0.0, 0
    for idx in iterate_minibatches(rng, n, batch_size):
        idx = t.as_tensor(idx)
        logits = logits_of(xt[idx])
        loss = t.nn.functional.cross_entropy(logits, yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        losses += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == yt[idx]).sum())
    elapsed = time.perf_counter() - start
    return {"loss": losses / n, "train_accuracy_running": correct / n, "train_seconds": elapsed,
            "train_samples_per_s": n / elapsed if elapsed > 0 else float("inf")}


def layer_errors(net: RateNet, run: SNNRun, n_steps: int, ann_acts=None) -> list:
    """Per hidden layer, mean absolute errors in activation units (means over samples and
    neurons) between the SNN rate ``r`` and:

    * ``quantization_error``: the clipped ReLU of its own mean current, ``clip(m, 0, theta)``;
    * ``clipping_error``: ``|clip(m, 0, theta) - relu(m)|`` (activity above the threshold lost);
    * ``deviation_error``: ``|r - quantized_relu(m)|``: what the step-to-step variation of the
      current adds (0 for the first layer, whose current is constant);
    * ``conversion_error`` (with ``ann_acts``): ``|r - a|``, ``a`` the ANN activation on the
      same input (errors of earlier layers included).
    """
    out = []
    for l, (r, m) in enumerate(zip(run.rates, run.currents)):
        theta = net.thetas[l]
        clipped = np.clip(m, 0.0, theta)
        row = {"layer": l + 1, "theta": float(theta),
               "quantization_error": float(np.abs(r - clipped).mean()),
               "clipping_error": float(np.abs(clipped - np.maximum(m, 0.0)).mean()),
               "deviation_error": float(np.abs(r - quantized_relu(m, theta, n_steps, net.v0)).mean()),
               "spikes_per_neuron": float(r.mean() / theta * n_steps) if theta > 0 else 0.0}
        if ann_acts is not None:
            row["conversion_error"] = float(np.abs(r - ann_acts[l]).mean())
        out.append(row)
    return out


def bstdg_figures(net, events, labels, early_exit: bool = True) -> dict:
    """A trained BSTDG :class:`~bstdg.network.BinarySNN` on the event engine (early exit at
    the first output spike unless ``early_exit`` is false): the usual evaluation figures plus
    :func:`bstdg_synops`, so that its row compares like with like with the rate-coded ones."""
    from ..evaluation import forward_decisions, score  # heavy: the engine (Numba)

    bn = net.binary()
    start = time.perf_counter()
    result, decision = forward_decisions(bn, events, "event", early_exit)
    ev = score(result, decision, labels, bn.t_max, time.perf_counter() - start)
    return {"test_accuracy": ev.accuracy, "test_ties": ev.ties, "test_silent": ev.silent,
            "mean_decision_time": ev.mean_decision_time, "t_max": int(bn.t_max),
            "sizes": [int(s) for s in bn.sizes], "early_exit": bool(early_exit),
            **bstdg_synops(result, decision, events, bn.t_max, early_exit)}


# --- the compare harness ---------------------------------------------------------------------


def compare_data(run):
    """Analog train/test splits for a :class:`bstdg.methods.MethodRun`."""
    x_train, y_train = load_analog(run.dataset, "train", run.data_dir, run.limit_train)
    x_test, y_test = load_analog(run.dataset, "test", run.data_dir, run.limit_test)
    return x_train, y_train, x_test, y_test


def test_figures(net: RateNet, x, labels, n_steps: int) -> dict:
    """The common metric keys of :mod:`bstdg.compare` for a rate-coded network at ``n_steps``.

    ``mean_decision_time`` is ``T``: the output integrators are read after the last step;
    ``test_silent`` counts samples in which no hidden neuron spiked (the logits are then the
    biases alone); ``hidden_spikes_per_sample`` counts every spike of every step.
    """
    start = time.perf_counter()
    run = snn_forward(net, x, n_steps)
    elapsed = time.perf_counter() - start
    acc, ties = accuracy(run.logits, labels)
    total = np.sum(run.spikes, axis=0)
    return {"test_accuracy": acc, "test_ties": ties, "test_silent": int((total == 0).sum()),
            "mean_decision_time": float(n_steps), "hidden_spikes_per_sample": float(total.mean()),
            "eval_samples_per_s": len(x) / elapsed if elapsed > 0 else float("inf")}, run


def save_rate_model(path, net: RateNet, n_steps: int, **meta) -> None:
    """``model_rate.npz``: ``w{l}``, ``b{l}`` per layer, ``thetas`` (hidden layers), ``v0``,
    ``t_steps`` and JSON ``meta``."""
    save_npz(path, **{f"w{l}": w for l, w in enumerate(net.weights)},
             **{f"b{l}": b for l, b in enumerate(net.biases)},
             thetas=np.asarray(net.thetas, np.float64), v0=np.array(net.v0),
             t_steps=np.array(n_steps), meta=np.array(json.dumps(meta)))


def load_rate_model(path) -> tuple[RateNet, int]:
    with np.load(path, allow_pickle=False) as z:
        n = sum(1 for k in z.files if k.startswith("w"))
        net = RateNet([z[f"w{l}"] for l in range(n)], [z[f"b{l}"] for l in range(n)],
                      [float(t) for t in z["thetas"]], float(z["v0"]))
        return net, int(z["t_steps"])
