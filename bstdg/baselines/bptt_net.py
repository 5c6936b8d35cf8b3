"""The fire-once IF network of the BPTT baselines as torch tensors, and its two unrollings
over ``T`` time steps (the training loop is :mod:`bstdg.baselines.bptt`).

* **neurons**: non-leaky IF, no delay (a spike at step ``t`` reaches the next layer at step
  ``t``, as in the engine), ``V_t = V_{t-1} + s_in[t] @ W``, spike when ``V_t >= theta``;
* **fire once**: ``s_t = H(V_t - theta) * (1 - fired_{t-1})`` where ``fired`` (no gradient)
  says whether the neuron crossed before ``t``: a neuron contributes its spike once, then is
  frozen;
* **surrogate**: ``H`` forward, fast-sigmoid derivative ``1 / (1 + slope * |u|)^2`` of
  ``u = (V - theta) / theta`` backward.

Two unrollings compute the same thing: ``loop`` (step by step, the textbook BPTT graph) and
``scan`` (default; each layer's input currents for all ``T`` steps in one matmul, the
membrane recurrence as a cumulative sum, the fire-once mask from each unit's first spike). Both keep
``O(T * B * n)`` activations for the backward pass.
"""

from __future__ import annotations

import numpy as np

from . import require_torch

_torch = require_torch  # torch is imported on first use, never at module import


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
