"""NIR export: ``Input → (Linear(±1) → IF)×L → Output``, plus the readout potentials.

Each layer is ``Linear(weight)`` with the ``(n_out, n_in)`` ±1 weights followed by
``IF(r=1, v_threshold=θ - 0.5, v_reset=V_RESET)``. NIR's IF fires when ``v > v_threshold``
(strictly), bstdg's neurons when ``v >= θ``; potentials are integers, so ``θ - 0.5`` fires at
exactly the same steps under either comparison. Fire-once is said in NIR's own terms: the
reset potential ``V_RESET = -2**22`` lies far below any potential a neuron can reach
(``|v| <= fan-in`` for hidden layers; for the first layer ``|v|`` is at most the sample's
input spike count), so an IF that follows the specification cannot reach its threshold a
second time (it would need over four million more +1 inputs). All values stay integers
below ``2**24`` in magnitude: exact in float32.

The last Linear also feeds ``potential``, an integrator ``I(r=1)`` (``dv/dt = R·I``, no
threshold, no reset) whose state is the output layer's potential, read by the prediction
rule: the earliest output spike wins; several at one step: the highest ``potential`` at
that step, then the lower index (a tie); no output spike: the highest ``potential`` at
``t_max``. The graph has two Output nodes, ``output`` (spikes of the output IF) and
``potential`` (the integrator's state). Time is discrete: step ``t`` of the encoder is one
unit of time (Euler with ``dt = 1``), a spike is integrated by the next layer in the same
step. :mod:`.nir_spec` runs a file exactly so, from NIR's definitions alone.

The graph metadata carries ``t_max``, the encoder definition, the readout and the content
digest, which :func:`read_nir` checks. Files of format version 1 (``v_reset = 0``, no
integrator) are still read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import BstdgError
from ..files import atomic_path
from .layered import ExportedLayeredNet, to_engine
from .nir_layered import KIND as LAYERED, from_graph_layered, graph_chain, to_graph_layered
from .model import THRESHOLD_MAX, ExportError, ExportedNet, encoder_json, from_binary_net, parse_encoder

FORMAT = "bstdg-nir"
FORMAT_VERSION = 3  # the newest this bstdg reads; fc graphs are written as v2, layered ones as v3
FC_VERSION = 2
LAYERED_VERSION = 3
V_RESET = -float(2 ** 22)  # below any reachable potential: a spec-following IF fires once
SEMANTICS = ("fire-once non-leaky IF (v_reset far below any reachable potential), no synaptic "
             "delay (a spike is integrated by the next layer in the same time step); Euler with "
             "dt = 1 time step, steps 0..t_max-1; prediction = the output neuron that spikes "
             "first, several at that step -> higher 'potential' (the integrator node) at that "
             "step, then lower index (a tie); no output spike -> highest 'potential' at t_max; "
             "IF v_threshold = theta - 0.5")
READOUT = {"spikes": "output", "potential": "potential", "dt": 1.0}
NIR_MIN = (1, 0, 6)  # the first nir with IF.v_reset
INSTALL_HINT = ("--format nir needs the nir package: `pip install nir` "
                "(or `pip install -e '.[export]'` in a bstdg checkout)")


def require_nir():
    """The ``nir`` module, or BstdgError saying how to install it."""
    try:
        import nir  # optional: the export extra
    except ImportError:
        raise BstdgError(INSTALL_HINT) from None
    version = str(getattr(nir, "__version__", "0"))
    try:
        too_old = tuple(int(p) for p in version.split(".")[:3]) < NIR_MIN
    except ValueError:  # a development version: assume recent enough
        too_old = False
    if too_old:
        raise BstdgError(f"nir {version} is too old for bstdg's NIR files (IF v_reset came in "
                         f"nir {'.'.join(map(str, NIR_MIN))}): `pip install 'nir>=1.0.6'`")
    return nir


def _constants() -> dict:
    return {"nir": require_nir(), "FORMAT": FORMAT, "FORMAT_VERSION": LAYERED_VERSION, "V_RESET": V_RESET,
            "SEMANTICS": SEMANTICS, "READOUT": READOUT, "metadata_int": _metadata_int}


def to_graph(ex):
    """The NIR graph of an exported network (an :class:`ExportedNet`, or an
    :class:`~.layered.ExportedLayeredNet`: :mod:`.nir_layered`)."""
    if isinstance(ex, ExportedLayeredNet):
        return to_graph_layered(ex, _constants())
    nir = require_nir()
    nodes = {"input": nir.Input(input_type={"input": np.array([ex.sizes[0]])})}
    edges, previous = [], "input"
    for l, (b, th) in enumerate(zip(ex.bits, ex.thresholds)):
        n = b.shape[0]
        nodes[f"fc{l}"] = nir.Linear(weight=ex.signs(l).astype(np.float32))
        nodes[f"if{l}"] = nir.IF(r=np.ones(n, np.float32),
                                 v_threshold=np.asarray(th, np.float32) - np.float32(0.5),
                                 v_reset=np.full(n, V_RESET, np.float32))
        edges += [(previous, f"fc{l}"), (f"fc{l}", f"if{l}")]
        previous = f"if{l}"
    n_out = ex.sizes[-1]
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    nodes["integrator"] = nir.I(r=np.ones(n_out, np.float32))
    nodes["potential"] = nir.Output(output_type={"output": np.array([n_out])})
    edges += [(previous, "output"), (f"fc{len(ex.bits) - 1}", "integrator"),
              ("integrator", "potential")]
    metadata = {"bstdg_format": FORMAT, "bstdg_format_version": FC_VERSION,
                "t_max": int(ex.t_max), "encoder": encoder_json(ex.encoder),
                "bstdg_semantics": SEMANTICS, "bstdg_readout": json.dumps(READOUT),
                "bstdg_digest": ex.digest()}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def export_nir(net, encoder: dict, path) -> Path:
    """Write ``net`` (a :class:`~bstdg.engine.BinaryNet`) as a NIR file (HDF5)."""
    return write_nir(from_binary_net(net, encoder), path)


def write_nir(ex, path) -> Path:
    nir = require_nir()
    path = Path(path)
    with atomic_path(path) as tmp:
        nir.write(tmp, to_graph(ex))
    return path


def read_nir(path):
    """The network in a NIR file written by :func:`write_nir`, read with ``nir.read``;
    ExportError for anything else (other graph shapes, non-±1 weights, missing metadata)."""
    nir = require_nir()
    source = str(path)
    if not Path(path).is_file():
        raise ExportError(f"{source}: no such file")
    try:
        graph = nir.read(path)
    except Exception as exc:  # h5py/nir raise many kinds for a damaged file
        raise ExportError(f"{source}: cannot read the NIR file (truncated or corrupt?): "
                          f"{type(exc).__name__}: {exc}") from None
    return from_graph(graph, source)


def from_graph(graph, source: str = "NIR graph") -> ExportedNet:
    """The network of a NIR graph written by :func:`to_graph`; ExportError (one line) for
    any other graph, malformed metadata or values."""
    try:
        return _from_graph(graph, source)
    except ExportError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise ExportError(f"{source}: malformed bstdg NIR graph ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:120]})") from None


def _metadata_int(meta: dict, key: str, source: str) -> int:
    value = meta.get(key)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ExportError(f"{source}: metadata {key} must be an integer, found {value!r:.40}")
    return int(value)


def _metadata_str(meta: dict, key: str, source: str) -> str:
    value = meta.get(key)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise ExportError(f"{source}: metadata {key} must be text, found {type(value).__name__}")
    return value


def _from_graph(graph, source: str) -> ExportedNet:
    nir = require_nir()
    meta = dict(getattr(graph, "metadata", None) or {})
    if "bstdg_format" in meta:
        meta["bstdg_format"] = _metadata_str(meta, "bstdg_format", source)
    if meta.get("bstdg_format") != FORMAT:
        raise ExportError(f"{source}: not a bstdg NIR export (metadata bstdg_format is "
                          f"{meta.get('bstdg_format')!r}); t_max and the readout are unknown")
    for key in ("bstdg_format_version", "t_max", "encoder", "bstdg_digest"):
        if key not in meta:
            raise ExportError(f"{source}: metadata has no {key}")
    version = _metadata_int(meta, "bstdg_format_version", source)
    if version > FORMAT_VERSION:
        raise ExportError(f"{source}: bstdg NIR format v{version} is newer than this bstdg "
                          f"(v{FORMAT_VERSION})")
    nodes = dict(graph.nodes)
    edges = [tuple(e) for e in graph.edges]
    reset = 0.0
    if version >= 2:  # the readout branch: last Linear -> I -> Output "potential"
        reset = V_RESET
        tail = [("integrator", "potential")]
        if not isinstance(nodes.get("integrator"), nir.I) or not isinstance(nodes.get("potential"),
                                                                              nir.Output):
            raise ExportError(f"{source}: no readout integrator (I node 'integrator' -> Output "
                              f"'potential')")
        r = np.asarray(nodes["integrator"].r, np.float64)
        feeding = [a for a, b in edges if b == "integrator"]
        if len(feeding) != 1 or not (r == 1).all():
            raise ExportError(f"{source}: the readout integrator must have r = 1 and one input")
        tail.append((feeding[0], "integrator"))
        edges = [e for e in edges if e not in tail]
        del nodes["integrator"], nodes["potential"]
    if "bstdg_kind" in meta and _metadata_str(meta, "bstdg_kind", source) == LAYERED:
        if version < LAYERED_VERSION:
            raise ExportError(f"{source}: a layered network in bstdg NIR format v{version} (layered graphs "
                              f"are v{LAYERED_VERSION})")
        return from_graph_layered(graph, nodes, edges, {**meta, "_feeding": feeding[0]}, _constants(), source,
                                  _metadata_str)
    if version >= LAYERED_VERSION:
        raise ExportError(f"{source}: bstdg NIR format v{version} holds a layered network but its metadata "
                          f"has no bstdg_kind 'layered'")
    _, chain, name = graph_chain(nir, nodes, edges, source, " Input -> (Linear -> IF)... -> Output")
    if name is None or len(chain) % 2 or not chain or len(chain) + 2 != len(nodes):
        raise ExportError(f"{source}: expected Input -> (Linear -> IF)... -> Output, "
                          f"found {[type(nodes[k]).__name__ for k in chain]}")
    if version >= 2 and feeding[0] != chain[-2]:
        raise ExportError(f"{source}: the readout integrator is not fed by the last Linear")
    bits, thresholds = [], []
    for l in range(len(chain) // 2):
        lin, neuron = nodes[chain[2 * l]], nodes[chain[2 * l + 1]]
        if type(lin) is not nir.Linear or type(neuron) is not nir.IF:
            raise ExportError(f"{source}: layer {l} is {type(lin).__name__} -> "
                              f"{type(neuron).__name__}; expected Linear -> IF")
        w = np.asarray(lin.weight)
        if w.ndim != 2 or not np.isin(w, (-1.0, 1.0)).all():
            raise ExportError(f"{source}: layer {l} weights are not all -1 or +1")
        r, v_th, v_reset = (np.asarray(a, np.float64) for a in (neuron.r, neuron.v_threshold,
                                                                neuron.v_reset))
        if r.shape != (w.shape[0],) or v_th.shape != r.shape or v_reset.shape != r.shape:
            raise ExportError(f"{source}: layer {l} IF has shape {r.shape}, Linear has "
                              f"{w.shape[0]} outputs")
        if not (r == 1).all() or not (v_reset == reset).all():
            raise ExportError(f"{source}: layer {l} IF must have r = 1 and v_reset = {reset:g}")
        theta = v_th + 0.5
        if not (np.isfinite(theta).all() and (theta == np.round(theta)).all()):
            raise ExportError(f"{source}: layer {l} v_threshold is not an integer minus 0.5")
        if theta.size and (theta.min() < 1 or theta.max() > THRESHOLD_MAX):
            raise ExportError(f"{source}: layer {l} thresholds must be in 1..{THRESHOLD_MAX}")
        bits.append(np.ascontiguousarray((w > 0).astype(np.uint8)))
        thresholds.append(theta.astype(np.int64))
    ex = ExportedNet(tuple(bits), tuple(thresholds), _metadata_int(meta, "t_max", source),
                     parse_encoder(_metadata_str(meta, "encoder", source), source)).check(source)
    if ex.digest() != _metadata_str(meta, "bstdg_digest", source):
        raise ExportError(f"{source}: content does not match its SHA-256 digest (corrupt or "
                          f"edited file)")
    return ex


def load_nir(path):
    """``(BinaryNet, encoder)`` from a NIR export (``(LayeredNet, encoder)`` for a layered one)."""
    return to_engine(read_nir(path))
