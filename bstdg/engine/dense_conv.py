"""Time-stepped reference simulator (numpy) for layered networks: conv, pool and fc.

The conv/pool counterpart of :mod:`bstdg.engine.dense`, the test oracle and speed baseline
of :mod:`bstdg.engine.conv`. For every time step ``t = 0..t_max-1`` it convolves the spike
map of that step into each conv layer (``V += conv(s_t, b)``, an im2col product), fires the
neurons that reached their threshold for the first time, pools the new spikes of a pool
layer's windows (an output fires at the first step any spike of its window arrives, once),
multiplies into fc layers, and passes the new spikes on within the same step. No event
lists, no early exit, no skipping of silent steps. Image layers are ``(B, H, W, C)`` arrays,
so the flattened spike times come out channel-last like the event engine's.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import ForwardResult
from .conv import LayeredNet, neuron_offsets


def conv_step(x: np.ndarray, kernel: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """``out[b, oy, ox, co] = sum_{ci, ky, kx} xp[b, oy*S + ky, ox*S + kx, ci] * kernel[ci, ky, kx, co]``
    with ``xp`` = ``x`` ``(B, H, W, C_in)`` zero-padded by ``padding`` on each side."""
    k = kernel.shape[1]
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho = (xp.shape[1] - k) // stride + 1
    wo = (xp.shape[2] - k) // stride + 1
    win = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride][:, :ho, :wo]
    return np.tensordot(win, kernel, axes=([3, 4, 5], [0, 1, 2]))  # (B, ho, wo, C_out)


def pool_step(x: np.ndarray, size: int) -> np.ndarray:
    """``out[b, py, px, c]``: any spike in window ``(py, px)`` of channel ``c`` (bool)."""
    n, h, w, c = x.shape
    hp, wp = h // size, w // size
    return x[:, :hp * size, :wp * size].reshape(n, hp, size, wp, size, c).max(axis=(2, 4)) > 0


def layered_forward_dense(net: LayeredNet, events, batch_size: int = 64) -> ForwardResult:
    """Clock-driven forward pass; same semantics and output as
    :func:`bstdg.engine.conv.layered_forward` without early exit (``times`` channel-last)."""
    arch = net.arch
    if events.n_units != net.sizes[0]:
        raise ValueError(f"events have {events.n_units} input units, network expects {net.sizes[0]}")
    layers, shapes = arch.layers_all, arch.shapes
    hwc = [(s[1], s[2], s[0]) if len(s) == 3 else s for s in shapes]  # per layer output, channel-last
    weights = [w.astype(np.float32) for w in net.weights]
    thresholds = [th.astype(np.float32).reshape(shape) for th, shape in zip(net.thresholds, hwc)]
    image_in = layers[0].kind != "fc" and len(arch.input_shape) == 3
    all_times, all_potential = [], []
    for start in range(0, len(events), batch_size):
        batch = events.take(np.arange(start, min(start + batch_size, len(events))))
        raster = batch.rasters(net.t_max)
        n = len(batch)
        V = [np.zeros((n, *s), np.float32) for s in hwc]
        times = [np.full((n, *s), net.t_max, np.int32) for s in hwc]
        decision_potential = np.zeros((n, arch.n_classes), np.float32)
        decided = np.zeros(n, dtype=bool)
        for t in range(net.t_max):
            x = raster[:, t, :]
            if image_in:
                x = x.reshape(n, *arch.input_shape).transpose(0, 2, 3, 1)  # (B, H, W, C)
            for l, layer in enumerate(layers):
                if layer.kind == "conv":
                    V[l] += conv_step(x, weights[l], layer.stride, layer.padding)
                    new = (V[l] >= thresholds[l]) & (times[l] == net.t_max)
                elif layer.kind == "pool":
                    new = pool_step(x, layer.size) & (times[l] == net.t_max)
                else:
                    V[l] += x.reshape(n, -1) @ weights[l]
                    new = (V[l] >= thresholds[l]) & (times[l] == net.t_max)
                times[l][new] = t
                x = new.astype(np.float32)
            first = ~decided & (times[-1] == t).any(axis=1)
            decision_potential[first] = V[-1][first]
            decided |= first
        decision_potential[~decided] = V[-1][~decided]
        all_times.append(np.concatenate([tm.reshape(n, -1) for tm in times], axis=1))
        all_potential.append(decision_potential.astype(np.int32))
    return ForwardResult(np.concatenate(all_times), np.concatenate(all_potential), neuron_offsets(arch))
