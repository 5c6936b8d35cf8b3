"""A plain numpy interpreter of NIR graphs, written from NIR's node definitions.

Independent of bstdg's engine and of bstdg's own NIR reader (:mod:`.nir_format`): it takes
whatever graph ``nir.read`` returns and runs it node by node, as the NIR documentation
defines the nodes, time-stepped with the forward Euler method and ``dt = 1`` (one encoder
time step is one unit of time). In each step ``t = 0..t_max-1`` every node, in topological
order, receives the sum of its predecessors' outputs of the same step (NIR edges carry no
delay) and computes:

* ``Input``: the step's input (spike counts per input unit); ``Output``: records its input;
* ``Linear``: ``y = W x``; ``Affine``: ``y = W x + b``; ``Scale``: ``y = s x``;
* ``Flatten``: the dimensions ``start_dim..end_dim`` of the (batch-less) input merged,
  C order;
* ``Conv2d`` (groups 1): ``y[co, i, j] = b[co] + sum_{ci, ky, kx} x_p[ci, i*s_0 + ky*d_0,
  j*s_1 + kx*d_1] W[co, ci, ky, kx]``, ``x_p`` zero-padded (integer padding or
  ``"valid"``), a cross-correlation as in PyTorch; output ``floor((H + 2p - d(k-1) - 1)/s) + 1``;
* ``SumPool2d``: ``y[c, i, j] = sum_{ky, kx} x_p[c, i*s_0 + ky, j*s_1 + kx]``, same sizes;
* ``I`` (integrator): ``dv/dt = R I``, so ``v <- v + dt R I``; output ``v``;
* ``LI``: ``tau dv/dt = (v_leak - v) + R I``, so ``v <- v + dt/tau ((v_leak - v) + R I)``;
  output ``v``;
* ``IF``: ``dv/dt = R I``, then ``z = [v > v_threshold]``, ``v <- v_reset`` where ``z``;
  output ``z``; ``LIF``: the LI update, then the same threshold and reset.

States start at 0 (``v_leak`` plays no part before the first step). Any other node type
is refused with one line. The prediction is then read from two Output nodes named in the
graph's metadata (``bstdg_readout``: the output spikes and the output potentials): the
earliest step with an output spike decides; among the outputs spiking at that step the
highest potential wins, equal potentials go to the lower index (a tie); with no output
spike, every output is a candidate with its potential after the last step, and the
decision time is ``t_max``. A decided sample is dropped from the batch (nothing after its
decision step enters the rule).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import ExportError

SUPPORTED = ("Input", "Output", "Linear", "Affine", "Scale", "Flatten", "Conv2d", "SumPool2d", "I", "LI",
             "IF", "LIF")


@dataclass(frozen=True)
class SpecRun:
    prediction: np.ndarray  # int64 (B,)
    tie: np.ndarray  # bool (B,)
    time: np.ndarray  # int64 (B,): the decision step, t_max if no output spiked


def _node_name(end, nodes: dict) -> str:
    """An edge end: a node name, or ``node.port`` for a node with named ports."""
    end = str(end)
    return end if end in nodes else end.split(".")[0]


def _order(nodes: dict, edges) -> tuple[list, dict]:
    """Topological order of the node names and each node's predecessors (Kahn)."""
    pred = {k: [] for k in nodes}
    for a, b in edges:
        a, b = _node_name(a, nodes), _node_name(b, nodes)
        if a not in nodes or b not in nodes:
            raise ExportError(f"NIR graph: edge {a!r} -> {b!r} names a missing node")
        pred[b].append(a)
    indegree = {k: len(v) for k, v in pred.items()}
    succ = {k: [] for k in nodes}
    for b, srcs in pred.items():
        for a in srcs:
            succ[a].append(b)
    ready = [k for k in nodes if indegree[k] == 0]
    order = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for b in succ[k]:
            indegree[b] -= 1
            if indegree[b] == 0:
                ready.append(b)
    if len(order) != len(nodes):
        raise ExportError("NIR graph: has a cycle; this interpreter runs feed-forward graphs")
    return order, pred


def _param(node, name: str) -> np.ndarray:
    return np.asarray(getattr(node, name), np.float64).reshape(-1)


def _state_param(node, name: str) -> np.ndarray:
    """A neuron parameter in the node's own shape (``(n,)`` or ``(C, H, W)``): it broadcasts
    against a ``(B, ...)`` batch."""
    return np.asarray(getattr(node, name), np.float64)


def _two(value) -> tuple:
    a = np.asarray(value).reshape(-1)
    return (int(a[0]), int(a[-1]))


def conv2d(node, u: np.ndarray) -> np.ndarray:
    """NIR ``Conv2d`` on a batch ``(B, C_in, H, W)``, rows without input skipped."""
    w = np.asarray(node.weight, np.float64)
    if int(np.asarray(node.groups)) != 1:
        raise ExportError("NIR graph: Conv2d with groups other than 1 is not interpreted")
    if isinstance(node.padding, str):
        if node.padding != "valid":
            raise ExportError(f"NIR graph: Conv2d padding {node.padding!r} is not interpreted (only integers, valid)")
        pad = (0, 0)
    else:
        pad = _two(node.padding)
    (s0, s1), (d0, d1) = _two(node.stride), _two(node.dilation)
    b, _, h, wd = u.shape
    co, _, k0, k1 = w.shape
    ho, wo = (h + 2 * pad[0] - d0 * (k0 - 1) - 1) // s0 + 1, (wd + 2 * pad[1] - d1 * (k1 - 1) - 1) // s1 + 1
    y = np.zeros((b, ho, wo, co))
    rows = np.flatnonzero(u.reshape(b, -1).any(axis=1))
    if len(rows):
        xp = np.pad(u[rows], ((0, 0), (0, 0), pad, pad))
        acc = np.zeros((len(rows), ho, wo, co))
        for ky in range(k0):
            for kx in range(k1):
                patch = xp[:, :, ky * d0:ky * d0 + s0 * (ho - 1) + 1:s0, kx * d1:kx * d1 + s1 * (wo - 1) + 1:s1]
                acc += np.tensordot(patch, w[:, :, ky, kx], axes=([1], [1]))
        y[rows] = acc
    bias = np.asarray(node.bias, np.float64).reshape(-1)
    return y.transpose(0, 3, 1, 2) + (bias[:, None, None] if bias.size == co else 0.0)


def sum_pool2d(node, u: np.ndarray) -> np.ndarray:
    """NIR ``SumPool2d`` on a batch ``(B, C, H, W)``."""
    (k0, k1), (s0, s1), pad = _two(node.kernel_size), _two(node.stride), _two(node.padding)
    b, c, h, w = u.shape
    ho, wo = (h + 2 * pad[0] - k0) // s0 + 1, (w + 2 * pad[1] - k1) // s1 + 1
    xp = np.pad(u, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    y = np.zeros((b, c, ho, wo))
    for ky in range(k0):
        for kx in range(k1):
            y += xp[:, :, ky:ky + s0 * (ho - 1) + 1:s0, kx:kx + s1 * (wo - 1) + 1:s1]
    return y


def flatten(node, u: np.ndarray) -> np.ndarray:
    """NIR ``Flatten``: ``start_dim..end_dim`` of the batch-less shape merged."""
    shape = u.shape[1:]
    start, end = int(node.start_dim), int(node.end_dim)
    end = end if end >= 0 else len(shape) + end
    merged = int(np.prod(shape[start:end + 1]))
    return u.reshape(u.shape[0], *shape[:start], merged, *shape[end + 1:])


class Interpreter:
    """Batch state of one graph; :meth:`step` advances every node by one time step."""

    def __init__(self, graph):
        self.nodes = dict(graph.nodes)
        for name, node in self.nodes.items():
            kind = type(node).__name__
            if kind not in SUPPORTED:
                raise ExportError(f"NIR graph: node {name!r} is a {kind}; this interpreter runs "
                                  f"{', '.join(SUPPORTED)}")
        self.order, self.pred = _order(self.nodes, graph.edges)
        self.inputs = [k for k in self.order if type(self.nodes[k]).__name__ == "Input"]
        if len(self.inputs) != 1:
            raise ExportError(f"NIR graph: {len(self.inputs)} Input nodes; expected one")
        self.state: dict = {}

    def reset(self):
        self.state = {}

    def select(self, rows: np.ndarray):
        """Keep only the batch rows ``rows`` (a mask) of every node's state."""
        self.state = {k: v[rows] for k, v in self.state.items()}

    def step(self, x: np.ndarray) -> dict:
        """One step with input ``x`` ``(B, n_in)``; returns every node's output."""
        out = {}
        for name in self.order:
            node = self.nodes[name]
            kind = type(node).__name__
            if kind == "Input":
                out[name] = x
                continue
            srcs = self.pred[name]
            if not srcs:
                raise ExportError(f"NIR graph: node {name!r} has no input")
            u = out[srcs[0]]
            for s in srcs[1:]:
                u = u + out[s]
            out[name] = self._node(name, kind, node, u)
        return out

    def _node(self, name, kind, node, u):
        if kind == "Output":
            return u
        if kind == "Flatten":
            return flatten(node, u)
        if kind == "Conv2d":
            return conv2d(node, u)
        if kind == "SumPool2d":
            return sum_pool2d(node, u)
        if kind in ("Linear", "Affine"):
            w = np.asarray(node.weight, np.float64)
            active = np.flatnonzero(u.any(axis=0))  # zero inputs add nothing: skip them
            y = u[:, active] @ w[:, active].T
            return y + _param(node, "bias") if kind == "Affine" else y
        if kind == "Scale":
            return u * _param(node, "scale")
        r = _state_param(node, "r")
        v = self.state.get(name)
        if v is None:
            v = np.zeros(u.shape, np.float64)
        if kind in ("I", "IF"):
            v = v + r * u  # dt = 1
        else:  # LI, LIF
            tau, v_leak = _state_param(node, "tau"), _state_param(node, "v_leak")
            v = v + (1.0 / tau) * ((v_leak - v) + r * u)
        if kind in ("I", "LI"):
            self.state[name] = v
            return v
        z = v > _state_param(node, "v_threshold")
        v = np.where(z, _state_param(node, "v_reset"), v)
        self.state[name] = v
        return z.astype(np.float64)


def readout_names(graph) -> tuple[str, str]:
    """The Output nodes holding the output spikes and the output potentials."""
    meta = dict(getattr(graph, "metadata", None) or {})
    try:
        readout = json.loads(meta["bstdg_readout"]) if isinstance(meta.get("bstdg_readout"), str) \
            else dict(meta["bstdg_readout"])
        spikes, potential = str(readout["spikes"]), str(readout["potential"])
    except (KeyError, TypeError, ValueError):
        raise ExportError("NIR graph: the metadata names no readout (bstdg_readout: the output "
                          "spike and potential nodes); files of bstdg NIR format v1 have none, "
                          "export again") from None
    for name in (spikes, potential):
        if type(graph.nodes.get(name)).__name__ != "Output":
            raise ExportError(f"NIR graph: readout node {name!r} is not an Output node")
    return spikes, potential


def run_graph(graph, events, t_max: int, batch_size: int = 2048) -> SpecRun:
    """Run ``events`` (a :class:`~bstdg.encoding.SpikeEvents`) through ``graph`` for
    ``t_max`` steps, ``batch_size`` samples at a time, and apply the prediction rule."""
    spikes_name, potential_name = readout_names(graph)
    machine = Interpreter(graph)
    in_shape = tuple(int(d) for d in np.asarray(machine.nodes[machine.inputs[0]].input_type["input"]).reshape(-1))
    n_in = int(np.prod(in_shape))
    if events.n_units != n_in:
        raise ExportError(f"the samples have {events.n_units} inputs, the NIR graph {n_in}")
    times = np.asarray(events.times, np.int64)
    if len(times) and (times.min() < 0 or times.max() >= t_max):
        raise ExportError(f"the samples have spike times outside 0..{t_max - 1}")
    parts = []
    for start in range(0, len(events), batch_size):
        stop = min(start + batch_size, len(events))
        lo, hi = int(events.ptr[start]), int(events.ptr[stop])
        owner = np.repeat(np.arange(stop - start), np.diff(events.ptr[start:stop + 1]))
        t_ev, u_ev = times[lo:hi], np.asarray(events.units[lo:hi], np.int64)
        order = np.argsort(t_ev, kind="stable")
        owner, t_ev, u_ev = owner[order], t_ev[order], u_ev[order]
        bounds = np.searchsorted(t_ev, np.arange(t_max + 1))
        n = stop - start
        machine.reset()
        decided = np.full(n, t_max, np.int64)
        live = np.arange(n)  # the undecided samples, the rows of the machine's state
        row_of = np.arange(n)
        cand = potential = v_live = None
        for t in range(t_max):
            o, u = owner[bounds[t]:bounds[t + 1]], u_ev[bounds[t]:bounds[t + 1]]
            keep = row_of[o] >= 0
            x = np.zeros((len(live), n_in), np.float64)
            np.add.at(x, (row_of[o[keep]], u[keep]), 1.0)
            out = machine.step(x.reshape(len(live), *in_shape))
            z, v = out[spikes_name], out[potential_name]
            if cand is None:
                cand, potential = np.zeros((n, z.shape[1]), bool), np.zeros((n, v.shape[1]))
            new = (z > 0).any(axis=1)
            v_live = v
            if new.any():  # decided now: record, then drop from the state (nothing later matters)
                idx = live[new]
                decided[idx] = t
                cand[idx], potential[idx] = z[new] > 0, v[new]
                machine.select(~new)
                live, v_live = live[~new], v[~new]
                row_of[:] = -1
                row_of[live] = np.arange(len(live))
            if len(live) == 0:
                break
        if len(live):
            cand[live], potential[live] = True, v_live
        score = np.where(cand, potential, -np.inf)
        winners = score == score.max(axis=1, keepdims=True)
        parts.append(SpecRun(winners.argmax(axis=1).astype(np.int64), winners.sum(axis=1) > 1,
                             decided))
    if not parts:
        empty = np.zeros(0, np.int64)
        return SpecRun(empty, empty.astype(bool), empty)
    return SpecRun(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("prediction", "tie", "time")))


def run_file(path, events, batch_size: int = 2048) -> SpecRun:
    """Read a NIR file with ``nir.read`` and run it; ``t_max`` comes from its metadata."""
    try:
        import nir  # optional: the export extra
    except ImportError:
        raise ExportError("the NIR interpreter needs the nir package (`pip install nir`)") from None
    try:
        graph = nir.read(Path(path))
    except Exception as exc:  # noqa: BLE001 - h5py/nir raise many kinds for a damaged file
        raise ExportError(f"{path}: cannot read the NIR file: {type(exc).__name__}: {exc}") from None
    meta = dict(getattr(graph, "metadata", None) or {})
    if "t_max" not in meta:
        raise ExportError(f"{path}: the metadata has no t_max (the number of time steps)")
    return run_graph(graph, events, int(meta["t_max"]), batch_size)
