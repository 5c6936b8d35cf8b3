"""BPTT baselines: the same fire-once IF network, unrolled over ``T`` time steps in torch and
trained with a surrogate gradient and a first-spike loss.

Set-up (see ``docs/baselines.md`` for the reasons):

* **input**: the latency code of :mod:`bstdg.encoding` at ``t_max = T`` (one spike per
  non-zero pixel), as a dense ``(T, B, n_in)`` 0/1 tensor built per mini-batch;
* **neurons**: non-leaky IF, no delay (a spike at step ``t`` reaches the next layer at step
  ``t``, as in the engine), ``V_t = V_{t-1} + s_in[t] @ W``, spike when ``V_t >= theta``;
* **fire once**: ``s_t = H(V_t - theta) * (1 - fired_{t-1})`` where ``fired`` (no gradient)
  says whether the neuron crossed before ``t``: a neuron contributes its spike once, then is
  frozen;
* **surrogate**: ``H`` forward, fast-sigmoid derivative ``1 / (1 + slope * |u|)^2`` of
  ``u = (V - theta) / theta`` backward;
* **loss**: cross-entropy of ``softmax(-t_out / (tau * T))`` on the first-spike times of the
  outputs, computed differentiably from the spike train as ``t = T - sum_t (T - t) s_t``,
  plus a cross-entropy on the output potentials (over thresholds) at the decision step,
  which is what the prediction rule compares when outputs spike at the same step;
* **variants**: ``bptt`` (real weights, thresholds fixed) and ``bptt-binary`` (forward
  with ``sign(w)`` and ``ceil(theta)``, straight-through to latent ``w`` clipped to [-1, 1]
  and latent ``theta >= 1``, BinaryConnect-style);
* **start**: binary: the initial network of the BSTDG trainer's ``adam`` path
  (``bstdg.train.initial_network``: latent weights uniform in [-0.1, 0.1], thresholds fitted
  to the data; the all-excitatory start of per-sample SGD gives BPTT no gradient to
  break its symmetry); real: weights ``N(0, 1/n_in)``, thresholds 1;
* **optimiser**: Adam, mini-batches of 64, one ``numpy`` permutation per epoch as the trainer;
* **evaluation**: spike times and output potentials at the decision step, scored with
  :func:`bstdg.metrics.decide` (the prediction rule used everywhere).

Two unrollings compute the same thing: ``loop`` (step by step, the textbook BPTT graph) and
``scan`` (default; each layer's input currents for all ``T`` steps in one matmul, the
membrane recurrence as a cumulative sum, the fire-once mask from each unit's first spike). Both keep
``O(T * B * n)`` activations for the backward pass.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from .. import metrics
from ..encoding import SpikeEvents
from ..engine import ForwardResult
from ..evaluation import Evaluation, score
from . import require_torch

_torch = require_torch  # torch is imported on first use, never at module import


@dataclass(frozen=True)
class BPTTConfig:
    """Everything that defines a BPTT baseline run (saved into ``metrics.json``)."""

    hidden: tuple = (600,)
    t_max: int = 64  # T, the number of unrolled time steps
    epochs: int = 1
    batch_size: int = 64
    binary: bool = False  # sign(w) / ceil(theta) forward with a straight-through estimator
    lr: float = 1e-3  # Adam, weights (real) or latent weights (binary)
    lr_theta: float = 0.0  # Adam, latent thresholds (binary only; 0: fixed)
    lr_decay: float = 1.0  # factor per epoch
    slope: float = 5.0  # fast-sigmoid surrogate: 1 / (1 + slope |u|)^2, u = (V - theta) / theta
    loss: str = "ce"  # "ce" (softmax of -t) or "s4nn" (relative target times, as BSTDG's)
    tau: float = 1 / 16  # softmax temperature of the "ce" loss, as a fraction of T
    margin: float = 0.02  # "s4nn": how far the correct output must lead, as a fraction of T
    potential: float = 0.0  # weight of the cross-entropy on the potentials at the decision step
    seed: int = 0
    unroll: str = "scan"  # "scan" or "loop" (same spikes, same gradients)

    def __post_init__(self):
        if self.loss not in ("ce", "s4nn"):
            raise ValueError(f"unknown loss {self.loss!r} (use 'ce' or 's4nn')")
        if self.unroll not in ("scan", "loop"):
            raise ValueError(f"unknown unroll {self.unroll!r} (use 'scan' or 'loop')")


def threads() -> int:
    """The machine's cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- the network ------------------------------------------------------------------------


def spike_function():
    """The Heaviside step with a fast-sigmoid surrogate derivative, as an autograd Function
    (built on first use so that torch is imported lazily)."""
    global SpikeFn
    if SpikeFn is None:
        t = _torch()

        class _SpikeFn(t.autograd.Function):
            @staticmethod
            def forward(ctx, u, slope):
                ctx.save_for_backward(u)
                ctx.slope = slope
                return (u >= 0).to(u.dtype)

            @staticmethod
            def backward(ctx, grad):
                (u,) = ctx.saved_tensors
                return grad / (1.0 + ctx.slope * u.abs()) ** 2, None

        SpikeFn = _SpikeFn
    return SpikeFn


SpikeFn = None


def time_cumsum(x):
    """``cumsum(x, 0)`` of a ``(T, ...)`` tensor as ``T - 1`` in-place adds of whole steps
    (forward) and of the reversed gradient (backward): the same sums as ``torch.cumsum``,
    which on CPU walks dimension 0 several times slower."""
    global CumsumFn
    if CumsumFn is None:
        t = _torch()

        def scan(y, reverse):
            steps = range(len(y) - 2, -1, -1) if reverse else range(1, len(y))
            for i in steps:
                y[i].add_(y[i + 1] if reverse else y[i - 1])
            return y

        class _CumsumFn(t.autograd.Function):
            @staticmethod
            def forward(ctx, v):
                return scan(v.contiguous().clone(), False)

            @staticmethod
            def backward(ctx, grad):
                return scan(grad.contiguous().clone(), True)

        CumsumFn = _CumsumFn
    return CumsumFn.apply(x)


CumsumFn = None


class Net:
    """A fire-once IF network as torch tensors: per layer a weight matrix ``(n_in, n_out)``
    (input-major, like :class:`~bstdg.engine.BinaryNet`) and a threshold vector.

    With ``binary`` the parameters are latent: the forward pass uses ``sign(w)`` (0 counts
    as +1) and ``max(ceil(theta - 1e-4), 1)``, exactly as :class:`~bstdg.network.BinarySNN`,
    and gradients pass straight through to the latent values.
    """

    def __init__(self, weights, thresholds, binary: bool, slope: float = 5.0,
                 train_theta: bool = False, device="cpu"):
        t = _torch()
        self.binary = binary
        self.slope = slope
        self.device = t.device(device)
        self.weights = [t.tensor(np.asarray(w, np.float32), requires_grad=True, device=self.device)
                        for w in weights]
        self.thresholds = [t.tensor(np.asarray(th, np.float32), requires_grad=train_theta,
                                    device=self.device) for th in thresholds]

    @classmethod
    def from_snn(cls, snn, slope: float = 5.0, train_theta: bool = False, device="cpu") -> "Net":
        """The binary variant starting from a :class:`~bstdg.network.BinarySNN`'s latent
        weights and thresholds (the BSTDG trainer's starting point)."""
        return cls([snn.weight(l) for l in range(snn.n_layers)],
                   [snn.threshold(l) for l in range(snn.n_layers)], True, slope, train_theta, device)

    @classmethod
    def gaussian(cls, sizes, rng: np.random.Generator, gain: float = 1.0, slope: float = 5.0,
                 device="cpu") -> "Net":
        """The real variant: weights ``N(0, gain^2 / n_in)``, thresholds fixed at 1."""
        return cls([rng.normal(0.0, gain / np.sqrt(a), (a, b)).astype(np.float32)
                    for a, b in zip(sizes[:-1], sizes[1:])],
                   [np.ones(b, np.float32) for b in sizes[1:]], False, slope, False, device)

    @property
    def sizes(self) -> tuple:
        return (self.weights[0].shape[0],) + tuple(w.shape[1] for w in self.weights)

    def parameters(self) -> list:
        return [p for p in self.weights + self.thresholds if p.requires_grad]

    def effective(self) -> list:
        """``(W, theta)`` per layer as used by the forward pass (straight-through for binary)."""
        t = _torch()
        if not self.binary:
            return list(zip(self.weights, self.thresholds))
        layers = []
        for w, th in zip(self.weights, self.thresholds):
            b = t.where(w >= 0, 1.0, -1.0)
            th_int = t.clamp(t.ceil(th - 1e-4), min=1.0)
            layers.append((w + (b - w).detach(), th + (th_int - th).detach()))
        return layers

    def clip_(self) -> None:
        """Keep latent weights in [-1, 1] and latent thresholds >= 1 (binary)."""
        if self.binary:
            with _torch().no_grad():
                for w in self.weights:
                    w.clamp_(-1.0, 1.0)
                for th in self.thresholds:
                    th.clamp_(min=1.0)

    def forward(self, x, unroll: str = "scan"):
        """Run the input raster ``x`` ``(T, B, n_in)``; returns ``(spikes, v_out)``: the spike
        trains of every layer ``(T, B, n_l)`` (0/1, differentiable through the surrogate)
        and the output potentials ``(T, B, n_out)`` after each step."""
        layers = self.effective()
        if unroll == "scan":
            return forward_scan(x, layers, self.slope)
        if unroll == "loop":
            return forward_loop(x, layers, self.slope)
        raise ValueError(f"unknown unroll {unroll!r}")

    def state(self) -> dict:
        return {"weights": [w.detach().cpu().numpy().copy() for w in self.weights],
                "thresholds": [th.detach().cpu().numpy().copy() for th in self.thresholds]}

    def clone(self) -> "Net":
        state = self.state()
        return Net(state["weights"], state["thresholds"], self.binary, self.slope,
                   any(th.requires_grad for th in self.thresholds), self.device)


def fire_once(v, theta, slope: float):
    """Spikes ``(T, B, n)`` of neurons whose potentials after each step are ``v``: ``H(v -
    theta)`` at the first crossing, zero after it (the mask carries no gradient)."""
    return first_only(spike_function().apply((v - theta) / theta.detach(), slope))


def first_only(raw):
    """``raw`` ``(T, B, ...)`` 0/1 times the mask ``t <= first 1 of its unit`` (all steps of a
    unit without a 1): entries after the first 1 become zero, the surrogate gradient of the
    steps up to it passes (the mask carries no gradient). The first 1 is found with one
    ``argmax`` over time (a cumulative max is several times slower on CPU)."""
    t = _torch()
    n_steps = raw.shape[0]
    with t.no_grad():
        fired = raw > 0
        first = t.where(fired.any(0), t.argmax(fired.to(t.uint8), 0), n_steps)
        steps = t.arange(n_steps, device=raw.device).view(n_steps, *([1] * (raw.dim() - 1)))
        keep = (steps <= first).to(raw.dtype)
    return raw * keep


def forward_scan(x, layers, slope: float):
    t = _torch()
    inp = x
    spikes = []
    v = None
    for w, th in layers:
        v = time_cumsum(t.matmul(inp, w))  # no leak, no reset: V_t = sum_{t' <= t} I_t'
        inp = fire_once(v, th, slope)
        spikes.append(inp)
    return spikes, v


def forward_loop(x, layers, slope: float):
    t = _torch()
    n_steps, batch = x.shape[:2]
    fn = spike_function()
    v = [x.new_zeros(batch, w.shape[1]) for w, _ in layers]
    fired = [x.new_zeros(batch, w.shape[1]) for w, _ in layers]
    spikes = [[] for _ in layers]
    v_out = []
    for step in range(n_steps):
        inp = x[step]
        for l, (w, th) in enumerate(layers):
            v[l] = v[l] + inp @ w
            s = fn.apply((v[l] - th) / th.detach(), slope) * (1.0 - fired[l])
            fired[l] = fired[l] + s.detach()
            spikes[l].append(s)
            inp = s
        v_out.append(v[-1])
    return [t.stack(s) for s in spikes], t.stack(v_out)


# --- inputs, times, loss, decisions ---------------------------------------------------------


def dense_input(events: SpikeEvents, t_max: int, device="cpu"):
    """The input spikes of a batch as a ``(T, B, n_in)`` float32 tensor of spike counts,
    built on ``device`` (only the event lists travel there)."""
    t = _torch()
    n = len(events)
    x = t.zeros((t_max, n, events.n_units), dtype=t.float32, device=device)
    owner = np.repeat(np.arange(n), np.diff(events.ptr))
    index = tuple(t.from_numpy(a.astype(np.int64)).to(device) for a in (events.times, owner, events.units))
    x.index_put_(index, t.ones(len(owner), device=device), accumulate=True)
    return x


def soft_first_times(s):
    """Differentiable first-spike time of fire-once spike trains ``(T, B, n)``:
    ``T - sum_t (T - t) s_t`` (``T`` when silent)."""
    t = _torch()
    n_steps = s.shape[0]
    lead = t.arange(n_steps, 0, -1, dtype=s.dtype, device=s.device)  # T - t
    return n_steps - t.einsum("t,tbn->bn", lead, s)


def spike_times(s) -> np.ndarray:
    """Integer first-spike times ``(B, n)`` int32 of spike trains ``(T, B, n)``; ``T`` = none.
    Spike maps ``(T, B, C, H, W)`` of a conv or pool layer give ``(B, H * W * C)``, numbered
    channel-last as the engine numbers them (:mod:`bstdg.arch`)."""
    t = _torch()
    fired = s > 0
    first = t.argmax(fired.to(t.uint8), 0)
    times = t.where(fired.any(0), first, s.shape[0]).cpu().numpy().astype(np.int32)
    if times.ndim == 4:
        times = np.ascontiguousarray(times.transpose(0, 2, 3, 1)).reshape(len(times), -1)
    return times


def order_key(values: np.ndarray) -> np.ndarray:
    """int64 keys with the order and the equalities of float ``values`` (so that
    :func:`bstdg.metrics.decide`, which compares integer potentials, ranks real ones)."""
    v = np.asarray(values, np.float64) + 0.0  # -0.0 -> 0.0
    bits = v.view(np.int64)
    return np.where(bits < 0, -(bits & np.int64(0x7FFFFFFFFFFFFFFF)), bits)


def decision_potentials(v_out, out_times: np.ndarray, binary: bool) -> np.ndarray:
    """Output potentials ``(B, n_out)`` at each sample's decision step (its first output
    spike, or the last step when no output fired), as int64 keys for the prediction rule."""
    t = _torch()
    n_steps, batch = v_out.shape[:2]
    step = np.minimum(out_times.min(axis=1), n_steps - 1)
    pot = v_out.detach()[t.from_numpy(step.astype(np.int64)).to(v_out.device),
                         t.arange(batch, device=v_out.device)].cpu().numpy()
    return np.rint(pot).astype(np.int64) if binary else order_key(pot)


def loss_function(s_out, labels, config: BPTTConfig, v_out=None, theta=None):
    """The first-spike loss on the differentiable output spike times ``t`` (B, n_out).

    * ``ce``: cross-entropy of ``softmax(-t / (tau * T))``;
    * ``s4nn``: ``1/2 sum_j (t_j - T_j)^2 / T`` with the relative targets of BSTDG's default
      loss (:func:`bstdg.learning.output_error`): ``T_c = min(t_min, T - m)`` for the correct
      output, ``T_j = t_min + m`` for wrong outputs firing before that (others: no error),
      ``m = max(1, margin * T)`` steps.
    """
    t = _torch()
    n_steps = s_out.shape[0]
    times = soft_first_times(s_out)
    labels = t.from_numpy(np.asarray(labels, np.int64)).to(s_out.device)
    extra = 0.0
    if config.potential:
        with t.no_grad():
            step = t.clamp(times.min(1).values.round().long(), max=n_steps - 1)
        v_dec = v_out[step, t.arange(len(labels), device=v_out.device)]
        extra = config.potential * t.nn.functional.cross_entropy(v_dec / theta.detach(), labels)
    if config.loss == "ce":
        return t.nn.functional.cross_entropy(-times / (config.tau * n_steps), labels) + extra
    with t.no_grad():
        m = max(1.0, config.margin * n_steps)
        rows = t.arange(len(labels), device=times.device)
        wrong = t.ones_like(times, dtype=t.bool)
        wrong[rows, labels] = False
        t_min = times.min(1, keepdim=True).values
        target = t.where(wrong & (times < t_min + m), t_min + m, times)
        target[rows, labels] = t.clamp(t_min[:, 0], max=n_steps - m)
        target = t.where(wrong & (times >= n_steps), times, target)
    return 0.5 * ((times - target) ** 2).sum(1).mean() / n_steps + extra


def forward_result(spikes, v_out, binary: bool, t_max: int) -> tuple[ForwardResult, metrics.Decision]:
    """Spike times of every layer and the prediction rule's decision, as for the engine."""
    per_layer = [spike_times(s) for s in spikes]
    times = np.concatenate(per_layer, axis=1)
    n_off = np.zeros(len(spikes) + 1, np.int64)
    np.cumsum([s.shape[1] for s in per_layer], out=n_off[1:])
    out_times = times[:, n_off[-2]:]
    potential = decision_potentials(v_out, out_times, binary)
    result = ForwardResult(times, potential, n_off)
    return result, metrics.decide(out_times, potential, t_max)


# --- training and evaluation ---------------------------------------------------------------


class Trainer:
    """Adam on a :class:`Net`; ``train_epoch`` does one pass in mini-batches."""

    def __init__(self, net: Net, config: BPTTConfig):
        t = _torch()
        self.net, self.config = net, config
        self.rng = np.random.default_rng(config.seed + 1)
        groups = [{"params": net.weights, "lr": config.lr}]
        theta = [th for th in net.thresholds if th.requires_grad]
        if theta:
            groups.append({"params": theta, "lr": config.lr_theta})
        self.opt = t.optim.Adam(groups)
        self.base_lr = [g["lr"] for g in groups]
        self.epoch = 0

    def step(self, batch: SpikeEvents, labels: np.ndarray) -> tuple[float, int]:
        """One mini-batch update; returns (loss, correct decisions before the update)."""
        cfg = self.config
        x = dense_input(batch, cfg.t_max, self.net.device)
        spikes, v_out = self.net.forward(x, cfg.unroll)
        loss = loss_function(spikes[-1], labels, cfg, v_out, self.net.effective()[-1][1])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.net.clip_()
        out_times = spike_times(spikes[-1].detach())
        d = metrics.decide(out_times, decision_potentials(v_out, out_times, self.net.binary), cfg.t_max)
        return float(loss.detach()), int(metrics.correct(d, labels).sum())

    def train_epoch(self, events: SpikeEvents, labels: np.ndarray, log_every: int = 0,
                    log=print) -> dict:
        for g, lr in zip(self.opt.param_groups, self.base_lr):
            g["lr"] = lr * self.config.lr_decay ** self.epoch
        order = self.rng.permutation(len(events))
        bs = self.config.batch_size
        losses, correct, curve = [], 0, []
        start = time.perf_counter()
        for k in range(0, len(order), bs):
            idx = order[k:k + bs]
            loss, c = self.step(events.take(idx), labels[idx])
            losses.append(loss * len(idx))
            correct += c
            seen = k + len(idx)
            curve.append([self.epoch + seen / len(order), loss, c / len(idx)])
            if log_every and (k // bs + 1) % log_every == 0:
                log(f"  {seen}/{len(order)} samples, loss {sum(losses) / seen:.4f}, "
                    f"running accuracy {correct / seen:.4f}, {seen / (time.perf_counter() - start):.0f} samples/s")
        elapsed = time.perf_counter() - start
        self.epoch += 1
        return {"epoch": self.epoch, "loss": sum(losses) / len(order),
                "train_accuracy_running": correct / len(order), "train_seconds": elapsed,
                "train_samples_per_s": len(order) / elapsed, "batches": curve}


def eval_batch_size(t_max: int) -> int:
    """Evaluation batch: about 32k (step, sample) rows of input per forward pass."""
    return max(16, 32768 // t_max)


def evaluate(net: Net, events: SpikeEvents, labels: np.ndarray, t_max: int,
             batch_size: int | None = None) -> tuple[Evaluation, ForwardResult, metrics.Decision]:
    """Time-stepped inference over all ``t_max`` steps (no gradient), scored with the
    prediction rule. Returns the figures, the spike times and the decisions."""
    t = _torch()
    batch_size = batch_size or eval_batch_size(t_max)
    results, decisions = [], []
    start = time.perf_counter()
    with t.no_grad():
        for k in range(0, len(events), batch_size):
            batch = events.take(np.arange(k, min(k + batch_size, len(events))))
            spikes, v_out = net.forward(dense_input(batch, t_max, net.device))
            r, d = forward_result(spikes, v_out, net.binary, t_max)
            results.append(r)
            decisions.append(d)
    elapsed = time.perf_counter() - start
    result = ForwardResult(np.concatenate([r.times for r in results]),
                           np.concatenate([r.decision_potential for r in results]), results[0].n_off)
    decision = metrics.Decision(*(np.concatenate([getattr(d, f) for d in decisions])
                                  for f in ("prediction", "tie", "time")))
    return score(result, decision, labels, t_max, elapsed), result, decision


def config_dict(config: BPTTConfig) -> dict:
    d = asdict(config)
    d["hidden"] = list(config.hidden)
    return d


def default_config(binary: bool, **overrides) -> BPTTConfig:
    """The settings ``bstdg compare`` uses for ``bptt`` (real) and ``bptt-binary``."""
    if binary:
        base = BPTTConfig(binary=True, lr=1e-2, lr_theta=0.1, potential=1.0)
    else:
        base = BPTTConfig(binary=False, lr=3e-3, potential=1.0)
    return replace(base, **overrides)


def init_threads() -> int:
    t = _torch()
    n = threads()
    t.set_num_threads(n)
    return n



# --- export (the ``bstdg compare`` method: :mod:`bstdg.baselines.bptt_method`) ------------------


def to_snn(net: Net, t_max: int, meta: dict):
    """The binary variant as a :class:`~bstdg.network.BinarySNN` (its latent values), so
    that ``bstdg eval`` and the event engine run it."""
    from ..network import BinarySNN

    state = net.state()
    return BinarySNN(net.sizes, t_max, np.concatenate([w.ravel() for w in state["weights"]]),
                     np.concatenate(state["thresholds"]), meta)


# What ``--bptt-settings`` may not set: the run decides them.
FIXED = ("hidden", "t_max", "epochs", "seed", "binary")
