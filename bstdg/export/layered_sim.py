"""Independent re-run of an exported layered (conv/pool/fc) network: plain numpy, time-stepped.

Nothing here imports :mod:`bstdg.engine`; it works from the export's channel-first sign bits
(:mod:`.layered`), so it shares neither code nor memory layout with the event engine. For
every step ``t = 0..t_max-1`` in which some input spikes:

* the step's input spikes are counted into a dense map ``x`` (an input that spikes twice
  in one step counts 2), shaped ``(C, H, W)`` when the first layer is conv or pool;
* conv: ``V[co, oy, ox] += sum_{ci, ky, kx} xp[ci, oy*S + ky, ox*S + kx] * sign[co, ci, ky,
  kx]`` with ``xp`` = ``x`` zero-padded by ``P`` (an explicit loop over the ``K x K`` kernel
  offsets gathers the patches, one matrix product sums them); neurons with ``V >= theta``
  that have not fired fire now;
* pool: an output fires when its ``N x N`` window (stride ``N``, partial windows dropped)
  holds a spike of this step and it has not fired before (the earliest spike of the window);
* fc: ``V += x @ sign.T``, fire as for conv;

and a layer's new spikes (0/1) are the next layer's ``x`` in the same step (no delay, fire
once). A sample is decided at the first step where an output fires; the prediction rule is
:func:`.verify.decide` (highest potential among the outputs firing at that step, equal
potentials to the lower index as a tie; no output spike: every output with its potential
after the last step, decision time ``t_max``). Decided samples and samples without a
spike in a step are not simulated further in it, which changes no decision.
"""

from __future__ import annotations

import numpy as np

from .layered import ExportedLayeredNet
from .verify import Rerun, batches, decide, joined


def conv2d(x: np.ndarray, sign: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """``(A, C_in, H, W)`` spike counts times the ``(C_out, C_in, K, K)`` ±1 kernel, as the
    module docstring defines it: ``(A, C_out, H_out, W_out)`` float32 (exact integers)."""
    a, ci, h, w = x.shape
    co, _, k, _ = sign.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    cols = np.empty((a, ho, wo, ci, k, k), np.float32)
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            cols[:, :, :, :, ky, kx] = patch.transpose(0, 2, 3, 1)
    out = cols.reshape(a * ho * wo, ci * k * k) @ sign.reshape(co, -1).T.astype(np.float32)
    return out.reshape(a, ho, wo, co).transpose(0, 3, 1, 2)


def pool_any(x: np.ndarray, size: int) -> np.ndarray:
    """``(A, C, H//N, W//N)`` bool: the window holds a spike (rows/columns beyond whole
    windows dropped)."""
    a, c, h, w = x.shape
    hp, wp = h // size, w // size
    return x[:, :, :hp * size, :wp * size].reshape(a, c, hp, size, wp, size).max(axis=(3, 5)) > 0


def simulate_layered(ex: ExportedLayeredNet, events, batch_size: int = 1024) -> Rerun:
    """Run ``events`` (:class:`~bstdg.encoding.SpikeEvents`, the encoder's channel-first
    units) through ``ex``, ``batch_size`` samples at a time (:func:`.verify.batches`);
    predictions, ties and decision times."""
    return joined([_run_batch(ex, *batch)
                   for batch in batches(events, ex.sizes[0], int(ex.t_max), batch_size)])


def _run_batch(ex: ExportedLayeredNet, n: int, owner, t_ev, u_ev) -> Rerun:
    arch, T = ex.arch, int(ex.t_max)
    layers = arch.layers_all
    top = len(layers) - 1
    image_in = layers[0].kind != "fc" and len(arch.input_shape) == 3
    signs = [ex.signs(l) for l in range(len(layers))]
    fc_w = [s.T.astype(np.float32) if layer.kind == "fc" else None for s, layer in zip(signs, layers)]
    th = [np.asarray(t, np.int64).reshape(shape) if layer.kind != "pool" else None
          for t, shape, layer in zip(ex.thresholds, arch.shapes, layers)]
    V = [np.zeros((n, *shape), np.int64) for shape in arch.shapes]
    fired = [np.zeros((n, *shape), bool) for shape in arch.shapes]
    out_time = np.full(n, T, np.int64)
    out_potential = np.zeros((n, arch.n_classes), np.int64)
    candidates = np.zeros((n, arch.n_classes), bool)
    bounds = np.searchsorted(t_ev, np.arange(T + 1))
    for t in range(T):
        src, units = owner[bounds[t]:bounds[t + 1]], u_ev[bounds[t]:bounds[t + 1]]
        keep = out_time[src] == T
        src, units = src[keep], units[keep]
        if len(src) == 0:
            continue
        rows, where = np.unique(src, return_inverse=True)
        x = np.zeros((len(rows), ex.sizes[0]), np.float32)
        np.add.at(x, (where, units), 1.0)
        if image_in:
            x = x.reshape(len(rows), *arch.input_shape)
        for l, layer in enumerate(layers):
            if layer.kind == "conv":
                V[l][rows] += conv2d(x, signs[l], layer.stride, layer.padding).astype(np.int64)
                new = (V[l][rows] >= th[l]) & ~fired[l][rows]
            elif layer.kind == "pool":
                new = pool_any(x, layer.size) & ~fired[l][rows]
            else:
                V[l][rows] += (x.reshape(len(rows), -1) @ fc_w[l]).astype(np.int64)
                new = (V[l][rows] >= th[l]) & ~fired[l][rows]
            fired[l][rows] |= new
            spiking = new.reshape(len(rows), -1).any(axis=1)
            rows, x = rows[spiking], new[spiking].astype(np.float32)
            if len(rows) == 0:
                break
            if l == top:  # these samples are decided in this step
                out_time[rows] = t
                out_potential[rows] = V[l][rows]
                candidates[rows] = x > 0
    silent = out_time == T
    out_potential[silent] = V[top][silent]
    candidates[silent] = True
    prediction, tie = decide(candidates, out_potential)
    return Rerun(prediction, tie, out_time)
