"""BPTT baselines for conv networks: the fire-once IF network of an :class:`~bstdg.arch.Architecture`
with conv, pool and fc layers, unrolled over ``T`` steps in torch.

Everything but the layers is the fc baseline's (:mod:`bstdg.baselines.bptt_net`,
:mod:`bstdg.baselines.bptt_readout`, :mod:`bstdg.baselines.bptt`): the latency
input raster, the fast-sigmoid surrogate spike, the fire-once mask, the first-spike loss, the
decision rule, the ``real`` / ``binary`` variants and the training loop (its ``Trainer`` and
``evaluate`` take a :class:`ConvNet` as they take a ``Net``). The layers, as the event engine
(:mod:`bstdg.engine.conv`) defines them:

* **conv**: ``torch.nn.functional.conv2d`` with the layer's kernel, stride and zero padding,
  no bias, applied to the spike maps of all ``T * B`` (step, sample) pairs at once; non-leaky
  IF, no delay: ``V_t = sum_{t' <= t} (W * s_in[t'])``, spike at the first step with ``V_t >=
  theta``; thresholds one per output channel (``(C, 1, 1)``) or per neuron (``(C, H, W)``);
* **pool** (earliest-spike pooling): ``max_pool2d`` of the binary spike maps of each step, then
  the fire-once mask: a pool output fires at the first step any input of its window has fired,
  once; the gradient goes to the window's input that spiked (to the first of several);
* **fc**: as the fc baseline; an image input is flattened channel-last, the engine's order, so
  fc weights have the engine's layout.

Weights are held in torch's layout: conv ``(C_out, C_in, K, K)`` (the engine's ``(C_in, K, K,
C_out)`` transposed), fc ``(n_in, n_out)``. :func:`from_layered` and :func:`to_layered` convert
from and to :class:`~bstdg.convnet.LayeredSNN` (binary variant: the latent values).
Activations kept for the backward pass: ``O(T * B * n)`` per layer, ``n`` its neurons.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..arch import Architecture
from ..conv_train import initial_layered, layered_arch
from ..convnet import LayeredSNN
from ..recipe import TrainConfig
from . import require_torch
from .bptt_net import Net, fire_once, first_only, time_cumsum

_torch = require_torch


class ConvNet(Net):
    """A fire-once conv/pool/fc network in torch (module docstring). ``weights`` and
    ``thresholds``: one per conv or fc layer of ``arch.layers_all``, in torch's layout."""

    def __init__(self, arch: Architecture, weights, thresholds, binary: bool, slope: float = 5.0,
                 train_theta: bool = False, device="cpu"):
        n_param = sum(layer.kind != "pool" for layer in arch.layers_all)
        if len(weights) != n_param or len(thresholds) != n_param:
            raise ValueError(f"{arch}: need {n_param} weight and threshold arrays (conv and fc layers)")
        super().__init__(weights, thresholds, binary, slope, train_theta, device)
        self.arch = arch

    @property
    def sizes(self) -> tuple:
        return self.arch.sizes

    def forward(self, x, unroll: str = "scan"):
        """Run the input raster ``x`` ``(T, B, n_in)`` (the encoder's channel-first order);
        returns ``(spikes, v_out)``: per layer its spikes, ``(T, B, C, H, W)`` for conv and
        pool layers, ``(T, B, n)`` for fc layers, and the output potentials ``(T, B, n_out)``.
        Only the scan unrolling exists here."""
        if unroll != "scan":
            raise ValueError(f"conv networks unroll with 'scan' only, got {unroll!r}")
        return forward_layers(x, self.arch, self.effective(), self.slope)

    def clone(self) -> "ConvNet":
        state = self.state()
        return ConvNet(self.arch, state["weights"], state["thresholds"], self.binary, self.slope,
                       any(th.requires_grad for th in self.thresholds), self.device)


def forward_layers(x, arch: Architecture, params, slope: float):
    """The scan unrolling through conv, pool and fc layers (``params``: ``(W, theta)`` per
    conv or fc layer, as used by the forward pass)."""
    t = _torch()
    F = t.nn.functional
    n_steps, batch = x.shape[:2]
    inp = x if arch.layers_all[0].kind == "fc" else x.reshape(n_steps, batch, *arch.input_shape)
    params = iter(params)
    spikes, v = [], None
    for layer in arch.layers_all:
        if layer.kind == "conv":
            w, th = next(params)
            cur = F.conv2d(inp.reshape(n_steps * batch, *inp.shape[2:]), w, stride=layer.stride,
                           padding=layer.padding)
            v = time_cumsum(cur.reshape(n_steps, batch, *cur.shape[1:]))
            inp = fire_once(v, th, slope)
        elif layer.kind == "pool":
            hit = F.max_pool2d(inp.reshape(n_steps * batch, *inp.shape[2:]), layer.size)
            inp = first_only(hit.reshape(n_steps, batch, *hit.shape[1:]))
        else:
            w, th = next(params)
            if inp.dim() == 5:  # (T, B, C, H, W) -> (T, B, H * W * C): channel-last, as the engine
                inp = inp.permute(0, 1, 3, 4, 2).reshape(n_steps, batch, -1)
            v = time_cumsum(t.matmul(inp, w))
            inp = fire_once(v, th, slope)
        spikes.append(inp)
    return spikes, v


# --- from and to the engine's layouts -----------------------------------------------------


def torch_threshold(snn, l: int) -> np.ndarray:
    """Layer ``l``'s latent thresholds of a LayeredSNN in the layout the forward pass
    broadcasts: conv ``(C, 1, 1)`` (per channel) or ``(C, H, W)`` (per neuron), fc ``(n,)``."""
    th = np.asarray(snn.threshold(l), np.float32)
    layer = snn.arch.layers_all[l]
    if layer.kind != "conv":
        return th.copy()
    if snn.threshold_mode == "channel":
        return th.reshape(-1, 1, 1).copy()
    c, h, w = snn.arch.shapes[l]
    return np.ascontiguousarray(th.reshape(h, w, c).transpose(2, 0, 1))


def from_layered(snn, slope: float = 5.0, train_theta: bool = False, device="cpu") -> ConvNet:
    """The binary variant starting from a :class:`~bstdg.convnet.LayeredSNN`'s latent
    weights and thresholds (its forward pass then uses ``sign(w)`` and ``ceil(theta)``, as
    the LayeredSNN's :meth:`~bstdg.convnet.LayeredSNN.binary`)."""
    weights, thresholds = [], []
    for l, layer in enumerate(snn.arch.layers_all):
        if layer.kind == "pool":
            continue
        w = np.asarray(snn.weight(l), np.float32)
        weights.append(np.ascontiguousarray(w.transpose(3, 0, 1, 2)) if layer.kind == "conv" else w.copy())
        thresholds.append(torch_threshold(snn, l))
    return ConvNet(snn.arch, weights, thresholds, True, slope, train_theta, device)


def gaussian(arch: Architecture, rng: np.random.Generator, gain: float = 1.0, slope: float = 5.0,
             device="cpu") -> ConvNet:
    """The real variant: weights ``N(0, gain^2 / fan_in)`` (conv fan-in ``C_in * K * K``),
    thresholds fixed at 1 (one per conv channel)."""
    weights, thresholds = [], []
    for layer, shape_in, n_in in zip(arch.layers_all, arch.in_shapes, arch.sizes):
        if layer.kind == "conv":
            fan_in = shape_in[0] * layer.kernel ** 2
            weights.append(rng.normal(0.0, gain / np.sqrt(fan_in),
                                      (layer.channels, shape_in[0], layer.kernel, layer.kernel)).astype(np.float32))
            thresholds.append(np.ones((layer.channels, 1, 1), np.float32))
        elif layer.kind == "fc":
            weights.append(rng.normal(0.0, gain / np.sqrt(n_in), (n_in, layer.units)).astype(np.float32))
            thresholds.append(np.ones(layer.units, np.float32))
    return ConvNet(arch, weights, thresholds, False, slope, False, device)


def to_layered(net: ConvNet, t_max: int, meta: dict):
    """The binary variant as a :class:`~bstdg.convnet.LayeredSNN` (its latent values), so
    that ``bstdg eval`` and the event engine run it. Conv thresholds ``(C, 1, 1)`` become a
    per-channel model, ``(C, H, W)`` a per-neuron one."""
    state = net.state()
    conv_th = [th for th, layer in zip(state["thresholds"], [x for x in net.arch.layers_all if x.kind != "pool"])
               if layer.kind == "conv"]
    mode = "neuron" if any(th.shape[1:] != (1, 1) for th in conv_th) else "channel"
    w, theta = [], []
    for (layer, wl, th) in zip([x for x in net.arch.layers_all if x.kind != "pool"], state["weights"],
                               state["thresholds"]):
        if layer.kind == "conv":
            w.append(wl.transpose(1, 2, 3, 0).ravel())
            theta.append(th.ravel() if mode == "channel" else th.transpose(1, 2, 0).ravel())
        else:
            w.append(wl.ravel())
            theta.append(th.ravel())
    return LayeredSNN(net.arch, t_max, np.concatenate(w), np.concatenate(theta), mode, meta)


def eval_batch_size(arch: Architecture, t_max: int) -> int:
    """Evaluation batch: about 2^24 (step, sample, neuron) entries in the largest layer."""
    return max(1, min(1024, 2 ** 24 // (t_max * max(arch.sizes))))


def build(run, cfg, train, meta: dict, binary: bool, device) -> ConvNet:
    """The network a ``bptt`` / ``bptt-binary`` run with conv layers starts from: binary,
    the BSTDG conv trainer's start (:func:`bstdg.conv_train.initial_layered`: mixed-sign
    latent weights, thresholds fitted to the data); real, :func:`gaussian` (gain 1)."""
    tc = replace(TrainConfig(), arch=run.arch, t_max=cfg.t_max, seed=cfg.seed)
    shape = meta["encoder"].get("input_shape")
    if binary:
        snn = initial_layered(tc, train.events, shape, train.n_classes, meta)
        return from_layered(snn, cfg.slope, train_theta=cfg.lr_theta > 0, device=device)
    return gaussian(layered_arch(tc, shape, train.n_classes), np.random.default_rng(cfg.seed), 1.0,
                    cfg.slope, device)
