"""NIR graphs of layered (conv/pool/fc) networks, written and read back (:mod:`.nir_format`
dispatches here for an :class:`~.layered.ExportedLayeredNet`).

The chain, in NIR's channel-first ``(C, H, W)`` layout (the export layout of
:mod:`.layered`; the encoder's input units in their own order, ``Input`` typed with the
encoder's ``(C, H, W)``)::

    Input -> [Conv2d -> IF | SumPool2d -> IF | (Flatten ->) Linear -> IF]... -> Output

* conv ``l``: ``Conv2d(weight = ±1 (C_out, C_in, K, K), stride (S, S), padding (P, P),
  dilation 1, groups 1, bias 0, input_shape (H, W))`` named ``conv{l}``, then ``if{l}``:
  ``IF(r = 1, v_threshold = θ - 0.5, v_reset = V_RESET)`` with ``(C_out, H_out, W_out)``
  arrays (per neuron; a per-channel threshold is repeated over the positions);
* pool ``l``: ``SumPool2d(kernel_size (N, N), stride (N, N), padding (0, 0))`` named
  ``pool{l}``, then ``if{l}``: ``IF(r = 1, v_threshold = 0.5, v_reset = V_RESET)``: the window's
  spike count crosses 0.5 at its first spike and the reset far below every reachable
  potential keeps it from firing again, so the IF emits exactly the earliest spike of the
  window (bstdg's earliest-spike pooling);
* fc ``l``: ``Flatten(start_dim = 0)`` named ``flatten{l}`` when the layer below is an image
  (channel-first flattening, as the export's fc columns are numbered), then ``Linear``
  ``fc{l}`` ``(n_out, n_in)`` ±1 and ``IF`` ``if{l}``.

The readout is the fc export's: the last Linear also feeds the integrator ``I`` node
``integrator`` and the Output ``potential``; metadata as in :mod:`.nir_format` with
``bstdg_format_version`` 3, plus ``bstdg_kind = "layered"`` and ``bstdg_arch`` (the
architecture JSON, also covered by the digest).
"""

from __future__ import annotations

import json

import numpy as np

from ..arch import FC, Architecture, Conv, Pool
from .layered import ExportedLayeredNet, arch_json, parse_arch
from .model import THRESHOLD_MAX, ExportError, encoder_json, parse_encoder

KIND = "layered"


def to_graph_layered(ex: ExportedLayeredNet, fmt: dict):
    """The NIR graph of ``ex``; ``fmt`` holds the constants of :mod:`.nir_format`
    (``nir``, ``FORMAT``, ``FORMAT_VERSION``, ``V_RESET``, ``SEMANTICS``, ``READOUT``)."""
    nir, v_reset = fmt["nir"], fmt["V_RESET"]
    arch = ex.arch
    nodes = {"input": nir.Input(input_type={"input": np.array(arch.input_shape)})}
    edges, previous = [], "input"

    def neuron(name, theta, shape):
        n = int(np.prod(shape))
        nodes[name] = nir.IF(r=np.ones(shape, np.float32),
                             v_threshold=(np.asarray(theta, np.float32) - np.float32(0.5)).reshape(shape),
                             v_reset=np.full(n, v_reset, np.float32).reshape(shape))

    last_fc = None
    for l, layer in enumerate(arch.layers_all):
        shape_in, shape_out = arch.in_shapes[l], arch.shapes[l]
        if layer.kind == "conv":
            nodes[f"conv{l}"] = nir.Conv2d(
                input_shape=(int(shape_in[1]), int(shape_in[2])), weight=ex.signs(l).astype(np.float32),
                stride=(layer.stride, layer.stride), padding=(layer.padding, layer.padding),
                dilation=(1, 1), groups=1, bias=np.zeros(layer.channels, np.float32))
            neuron(f"if{l}", ex.thresholds[l], shape_out)
            edges += [(previous, f"conv{l}"), (f"conv{l}", f"if{l}")]
        elif layer.kind == "pool":
            nodes[f"pool{l}"] = nir.SumPool2d(kernel_size=np.array([layer.size, layer.size]),
                                              stride=np.array([layer.size, layer.size]),
                                              padding=np.array([0, 0]))
            neuron(f"if{l}", np.ones(int(np.prod(shape_out))), shape_out)
            edges += [(previous, f"pool{l}"), (f"pool{l}", f"if{l}")]
        else:
            if len(shape_in) == 3:
                nodes[f"flatten{l}"] = nir.Flatten(input_type={"input": np.array(shape_in)}, start_dim=0,
                                                   end_dim=-1)
                edges.append((previous, f"flatten{l}"))
                previous = f"flatten{l}"
            nodes[f"fc{l}"] = nir.Linear(weight=ex.signs(l).astype(np.float32))
            neuron(f"if{l}", ex.thresholds[l], shape_out)
            edges += [(previous, f"fc{l}"), (f"fc{l}", f"if{l}")]
            last_fc = f"fc{l}"
        previous = f"if{l}"
    n_out = arch.n_classes
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    nodes["integrator"] = nir.I(r=np.ones(n_out, np.float32))
    nodes["potential"] = nir.Output(output_type={"output": np.array([n_out])})
    edges += [(previous, "output"), (last_fc, "integrator"), ("integrator", "potential")]
    metadata = {"bstdg_format": fmt["FORMAT"], "bstdg_format_version": fmt["FORMAT_VERSION"],
                "bstdg_kind": KIND, "bstdg_arch": arch_json(arch),
                "t_max": int(ex.t_max), "encoder": encoder_json(ex.encoder),
                "bstdg_semantics": fmt["SEMANTICS"] + "; SumPool2d -> IF(v_threshold 0.5, fire-once) = "
                                                      "the earliest spike of each window; (C, H, W) channel-first",
                "bstdg_readout": json.dumps(fmt["READOUT"]), "bstdg_digest": ex.digest()}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _pair(value, name: str, source: str) -> tuple:
    a = np.asarray(value).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or a[0] != a[1] or a[0] != int(a[0]):
        raise ExportError(f"{source}: {name} must be one integer for both axes, found {a.tolist()}")
    return int(a[0])


def graph_chain(nir, nodes: dict, edges: list, source: str, expected: str = "") -> tuple:
    """``(first, chain, last)`` of a graph that must be one path (both NIR readers): its one
    Input node, the nodes after it up to the first Output, and that Output's name (None when
    the path ends before one). ExportError when a node has several successors (``expected``
    says what chain is wanted), there is not exactly one Input, or the path loops or leaves
    the graph."""
    succ = {}
    for a, b in edges:
        if a in succ:
            raise ExportError(f"{source}: node {a!r} has several successors; expected a chain{expected}")
        succ[a] = b
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise ExportError(f"{source}: expected one Input node, found {len(inputs)}")
    chain, name = [], succ.get(inputs[0])
    while name is not None and not isinstance(nodes.get(name), nir.Output):
        if name in chain or name not in nodes:
            raise ExportError(f"{source}: the graph is not a chain from Input to Output")
        chain.append(name)
        name = succ.get(name)
    return inputs[0], chain, name


def from_graph_layered(graph, nodes: dict, edges: list, meta: dict, fmt: dict, source: str,
                       metadata_str) -> ExportedLayeredNet:
    """The layered network of a graph written by :func:`to_graph_layered` (readout branch
    already removed from ``nodes``/``edges`` by the caller); ExportError for anything else."""
    nir = fmt["nir"]
    arch_meta = parse_arch(metadata_str(meta, "bstdg_arch", source))
    first, chain, name = graph_chain(nir, nodes, edges, source)
    input_shape = tuple(int(s) for s in np.asarray(nodes[first].input_type["input"]).reshape(-1))
    if name is None or len(chain) + 2 != len(nodes):
        raise ExportError(f"{source}: the graph is not one chain from Input to Output")
    layers, bits, thresholds, i, last_linear = [], [], [], 0, None
    while i < len(chain):
        node = nodes[chain[i]]
        if type(node) is nir.Flatten:
            if int(node.start_dim) != 0 or int(node.end_dim) != -1:
                raise ExportError(f"{source}: Flatten {chain[i]!r} must flatten (C, H, W) whole "
                                  f"(start_dim 0, end_dim -1)")
            i += 1
            if i >= len(chain) or type(nodes[chain[i]]) is not nir.Linear:
                raise ExportError(f"{source}: a Flatten must be followed by a Linear")
            continue
        if i + 1 >= len(chain) or type(nodes[chain[i + 1]]) is not nir.IF:
            raise ExportError(f"{source}: {type(node).__name__} {chain[i]!r} is not followed by an IF")
        neuron = nodes[chain[i + 1]]
        if type(node) is nir.Conv2d:
            w = np.asarray(node.weight)
            if w.ndim != 4 or w.shape[2] != w.shape[3]:
                raise ExportError(f"{source}: Conv2d {chain[i]!r} weight has shape {w.shape}")
            if int(np.asarray(node.groups)) != 1 or _pair(node.dilation, "dilation", source) != 1 \
                    or np.asarray(node.bias).any():
                raise ExportError(f"{source}: Conv2d {chain[i]!r} must have groups 1, dilation 1, bias 0")
            if isinstance(node.padding, str):
                raise ExportError(f"{source}: Conv2d {chain[i]!r} padding must be integers")
            layers.append(Conv(int(w.shape[0]), int(w.shape[2]), _pair(node.stride, "stride", source),
                               _pair(node.padding, "padding", source)))
        elif type(node) is nir.SumPool2d:
            size = _pair(node.kernel_size, "kernel_size", source)
            if _pair(node.stride, "stride", source) != size or _pair(node.padding, "padding", source) != 0:
                raise ExportError(f"{source}: SumPool2d {chain[i]!r} must have stride = kernel_size, padding 0")
            layers.append(Pool(size))
            w = None
        elif type(node) is nir.Linear:
            w = np.asarray(node.weight)
            if w.ndim != 2:
                raise ExportError(f"{source}: Linear {chain[i]!r} weight has shape {w.shape}")
            layers.append(FC(int(w.shape[0])))
            last_linear = chain[i]
        else:
            raise ExportError(f"{source}: node {chain[i]!r} is a {type(node).__name__}; expected Conv2d, "
                              f"SumPool2d, Flatten or Linear, each followed by an IF")
        r, v_th, v_reset = (np.asarray(a, np.float64) for a in (neuron.r, neuron.v_threshold, neuron.v_reset))
        if not (r == 1).all() or not (v_reset == fmt["V_RESET"]).all() or v_th.shape != r.shape:
            raise ExportError(f"{source}: IF {chain[i + 1]!r} must have r = 1 and v_reset = {fmt['V_RESET']:g}")
        theta = (v_th + 0.5).reshape(-1)
        if not (np.isfinite(theta).all() and (theta == np.round(theta)).all()):
            raise ExportError(f"{source}: IF {chain[i + 1]!r} v_threshold is not an integer minus 0.5")
        if theta.size and (theta.min() < 1 or theta.max() > THRESHOLD_MAX):
            raise ExportError(f"{source}: IF {chain[i + 1]!r} thresholds must be in 1..{THRESHOLD_MAX}")
        if w is None:
            if not (theta == 1).all():
                raise ExportError(f"{source}: the IF after SumPool2d {chain[i]!r} must have v_threshold 0.5")
            bits.append(np.zeros(0, np.uint8))
            thresholds.append(np.zeros(0, np.int64))
        else:
            if not np.isin(w, (-1.0, 1.0)).all():
                raise ExportError(f"{source}: {chain[i]!r} weights are not all -1 or +1")
            bits.append(np.ascontiguousarray((w > 0).astype(np.uint8)))
            thresholds.append(theta.astype(np.int64))
        i += 2
    if not layers or layers[-1].kind != "fc":
        raise ExportError(f"{source}: the last layer must be Linear -> IF")
    if meta.get("_feeding") != last_linear:
        raise ExportError(f"{source}: the readout integrator is not fed by the last Linear")
    try:
        arch = Architecture(tuple(layers[:-1]), input_shape, layers[-1].units)
    except Exception as exc:  # noqa: BLE001 - BstdgError from the shapes
        raise ExportError(f"{source}: the layers do not fit together ({exc})") from None
    if arch_json(arch) != arch_json(arch_meta):
        raise ExportError(f"{source}: the graph's layers ({arch}) differ from its metadata bstdg_arch ({arch_meta})")
    try:
        ex = ExportedLayeredNet(arch, tuple(bits), tuple(thresholds), fmt["metadata_int"](meta, "t_max", source),
                                parse_encoder(metadata_str(meta, "encoder", source), source))
    except ExportError as exc:
        raise ExportError(f"{source}: {exc}") from None
    if ex.digest() != metadata_str(meta, "bstdg_digest", source):
        raise ExportError(f"{source}: content does not match its SHA-256 digest (corrupt or edited file)")
    return ex
