"""Export a trained network for hardware, and prove the export exact.

Formats (``bstdg export --format NAME``; registry :data:`FORMATS`, layouts in docs/export.md):

* ``npz`` — the canonical, versioned file: sign bits packed 8 per byte, int32 thresholds,
  the encoder definition, a SHA-256 digest (:mod:`.npz`);
* ``nir`` — a NIR graph ``Input → (Linear → IF)… → Output`` plus an integrator node for the
  output potentials (:mod:`.nir_format`);
* ``c`` — a C header for the C99 reference inference in ``examples/c/`` (:mod:`.c_format`);
* ``hex`` — ``$readmemh`` memory files, one line per neuron, plus a manifest (:mod:`.hex_format`).

Every format has a writer taking an :class:`~.model.ExportedNet` and a reader returning
one; ``export_npz(net, encoder, path)`` / ``load_npz(path) -> (BinaryNet, encoder)`` (and the
same for ``nir``, ``c``, ``hex``) work on a :class:`~bstdg.engine.BinaryNet`.
:func:`verify_file` reads a written file back with its reader, re-runs it with the plain
numpy simulator of :mod:`.verify` (and, for ``c``, compiles and runs the C program) and
requires the predictions to equal the trained model's (a ``nir`` file is also run by the
NIR-specification interpreter of :mod:`.nir_spec`; a ``hex`` folder can run in an HDL
simulator with :mod:`.hdl`, fc networks only). Layered (conv/pool/fc) networks are an
:class:`~.layered.ExportedLayeredNet` in every format (channel-first layout; npz, C header
and hex manifest version 2), re-run by :mod:`.layered_sim`. This package imports
:mod:`bstdg.engine` only inside the functions that return or take a ``BinaryNet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import metrics
from ..encoding import encode_latency, times_to_events
from ..errors import BstdgError
from . import c_format, hex_format, layered_sim, nir_format, nir_spec, npz, verify
from .c_format import export_c, load_c_header, read_c_header
from .hex_format import export_hex, load_hex, read_hex
from .layered import ExportedLayeredNet, from_layered_net, layered_footprint, to_engine, to_layered_net
from .model import (ExportError, ExportedNet, footprint, from_binary_net, latency_encoder,
                    to_binary_net)
from .nir_format import export_nir, load_nir, read_nir
from .npz import export_npz, load_npz, read_npz

__all__ = ["FORMATS", "ExportFormat", "ExportError", "ExportedNet", "export_npz", "load_npz",
           "read_npz", "export_nir", "load_nir", "read_nir", "export_c", "load_c_header",
           "read_c_header", "export_hex", "load_hex", "read_hex", "footprint",
           "latency_encoder", "from_binary_net", "to_binary_net", "write", "read",
           "output_path", "encoder_for_model", "verify_file", "random_events", "detect_format",
           "ExportedModel", "exported_model", "ExportedLayeredNet", "from_layered_net",
           "to_layered_net", "is_layered", "exported", "write_model", "export_footprint", "layered_decisions"]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    description: str
    write: Callable  # (ExportedNet, path) -> Path
    read: Callable  # path -> ExportedNet
    default_name: str  # file (or folder) written when --out is a folder
    is_folder: bool = False


FORMATS = {f.name: f for f in (
    ExportFormat("npz", "canonical versioned .npz: packed sign bits, int32 thresholds, encoder",
                 npz.write_npz, npz.read_npz, "export.npz"),
    ExportFormat("nir", "NIR graph (HDF5): Linear, Conv2d or SumPool2d -> fire-once IF per layer, I readout",
                 nir_format.write_nir, nir_format.read_nir, "export.nir"),
    ExportFormat("c", "C99 header: const uint8_t packed weights, int16_t thresholds",
                 c_format.write_c, c_format.read_c_header, "bstdg_model.h"),
    ExportFormat("hex", "$readmemh memory files, one line per neuron (conv: per kernel), plus manifest.json",
                 hex_format.write_hex, hex_format.read_hex, "hex", is_folder=True),
)}


def get_format(name: str) -> ExportFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise BstdgError(f"unknown export format {name!r}; expected one of "
                         f"{', '.join(FORMATS)}") from None


def output_path(fmt: str, out) -> Path:
    """Where format ``fmt`` writes for ``--out out``: the hex folder itself; for a file
    format, ``out`` or, when ``out`` is an existing folder, ``out/<default name>``."""
    spec, out = get_format(fmt), Path(out)
    if not spec.is_folder and out.is_dir():
        return out / spec.default_name
    return out


def write(fmt: str, ex: ExportedNet, out) -> Path:
    """Write ``ex`` in format ``fmt``; returns the path written."""
    spec = get_format(fmt)
    path = output_path(fmt, out)
    try:
        if spec.is_folder:
            path.mkdir(parents=True, exist_ok=True)
        elif path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        return spec.write(ex, path)
    except OSError as exc:
        raise BstdgError(f"--out {path}: cannot write there ({exc.strerror or exc})") from None


def read(fmt: str, path) -> ExportedNet:
    """Read a file (folder for ``hex``) of format ``fmt`` with that format's own reader."""
    return get_format(fmt).read(path)


def encoder_for_model(net) -> dict:
    """The encoder definition of a trained :class:`~bstdg.network.BinarySNN`, from its
    ``meta``: for the latency code the full definition of :func:`~.model.latency_encoder`
    (the model's input shape when it records one that fits, else ``(n_inputs,)``); for any
    other kind the model's own description (kind, formula, options), completed with
    ``t_max``, ``input_shape`` and ``dataset``."""
    meta = net.meta or {}
    trained = dict(meta.get("encoder") or {"kind": "latency"})
    if int(trained.get("t_max", net.t_max)) != net.t_max:
        raise BstdgError(f"the model's meta says t_max {trained['t_max']}, its network {net.t_max}")
    dataset = meta.get("dataset")
    n_in = net.sizes[0]
    shape = trained.get("input_shape")
    if not shape or int(np.prod(shape)) != n_in:
        shape = [n_in]
    if trained.get("kind") == "latency":
        encoder = latency_encoder(net.t_max, shape, dataset)
        if trained.get("options"):
            encoder["options"] = trained["options"]
        return encoder
    return {**trained, "t_max": net.t_max, "dataset": dataset, "input_shape": list(shape)}


def random_events(n_samples: int, n_inputs: int, t_max: int, seed: int = 0, p_silent: float = 0.3):
    """Latency-coded random intensities (a share ``p_silent`` of inputs silent): inputs for
    ``--verify`` without a dataset."""
    rng = np.random.default_rng(seed)
    x = rng.random((n_samples, n_inputs))
    x[x < p_silent] = 0.0
    return times_to_events(encode_latency(x, t_max), t_max)


def is_layered(net) -> bool:
    """A layered network: the engine's ``LayeredNet``, a ``LayeredSNN`` or an export of one."""
    from ..convnet import LayeredSNN  # engine (Numba): kept off the export read path
    from ..engine.conv import LayeredNet

    return isinstance(net, (LayeredNet, LayeredSNN, ExportedLayeredNet))


def exported(net, encoder: dict):
    """The export of a trained network: an :class:`ExportedLayeredNet` for a layered one
    (``LayeredSNN`` or ``LayeredNet``), else an :class:`ExportedNet` (``BinarySNN`` or
    ``BinaryNet``)."""
    if is_layered(net):
        return from_layered_net(net, encoder)
    return from_binary_net(net.binary() if hasattr(net, "binary") else net, encoder)


def write_model(net, encoder: dict, fmt: str, out) -> Path:
    """Write a trained network (``BinarySNN``/``BinaryNet`` or ``LayeredSNN``/``LayeredNet``)
    in format ``fmt``: :func:`exported`, then :func:`write`."""
    return write(fmt, exported(net, encoder), out)


def export_footprint(ex) -> dict:
    return layered_footprint(ex) if isinstance(ex, ExportedLayeredNet) else footprint(ex)


def layered_decisions(net, events):
    """The engine's decisions of a layered network (early exit), as :func:`bstdg.metrics.decide`."""
    from ..engine.conv import layered_forward  # engine (Numba): kept off the export read path

    if hasattr(net, "binary"):
        net = net.binary()
    parts = [layered_forward(net, events.take(np.arange(s, min(s + 4096, len(events)))), True, False)
             for s in range(0, len(events), 4096)]
    if not parts:
        return metrics.decide(np.zeros((0, net.arch.n_classes), np.int32),
                              np.zeros((0, net.arch.n_classes), np.int32), net.t_max)
    return metrics.decide(np.concatenate([p.output_times for p in parts]),
                          np.concatenate([p.decision_potential for p in parts]), net.t_max)


def _verify_layered(fmt: str, path, net, events, reference, run_c: bool) -> dict:
    if hasattr(net, "binary"):
        net = net.binary()
    if reference is None:
        reference = layered_decisions(net, events)
    ex = read(fmt, path)
    want = from_layered_net(net, {"t_max": net.t_max})
    same = isinstance(ex, ExportedLayeredNet) and str(ex.arch) == str(net.arch) \
        and ex.arch.input_shape == net.arch.input_shape and ex.t_max == net.t_max and all(
            np.array_equal(a, b) and np.array_equal(c, d)
            for a, b, c, d in zip(ex.bits, want.bits, ex.thresholds, want.thresholds))
    if not same:
        raise ExportError(f"{path}: holds a different network than the model ({net.arch}, t_max {net.t_max})")
    n = verify.compare(f"{fmt} re-run", reference, layered_sim.simulate_layered(ex, events))
    return _file_reruns(fmt, path, events, reference, ex.t_max, run_c, n, arch=str(ex.arch))


def verify_file(fmt: str, path, net, events, reference=None, run_c: bool = True) -> dict:
    """Read ``path`` back with format ``fmt``'s reader, check it holds ``net`` (a
    :class:`~bstdg.engine.BinaryNet`) bit for bit, re-run ``events`` through it with the
    independent simulator (and, for ``c`` when a C compiler exists, the compiled C program)
    and require predictions, ties and decision times identical to the model's.
    ``reference`` is the model's :class:`~bstdg.metrics.Decision` on ``events`` (computed
    with the event engine when not given). ExportError on any difference. A layered
    ``net`` (``LayeredNet``/``LayeredSNN``) is re-run by :mod:`.layered_sim` (and the NIR
    interpreter, the C program) against :func:`layered_decisions`."""
    if is_layered(net):
        return _verify_layered(fmt, path, net, events, reference, run_c)
    if reference is None:
        from ..evaluation import forward_decisions  # the engine (Numba): only without a reference

        _, reference = forward_decisions(net, events)
    ex = read(fmt, path)
    same = ex.sizes == tuple(net.sizes) and ex.t_max == net.t_max and all(
        np.array_equal(b, np.asarray(w).T > 0) and np.array_equal(th, t)
        for b, th, w, t in zip(ex.bits, ex.thresholds, net.weights, net.thresholds))
    if not same:
        raise ExportError(f"{path}: holds a different network than the model "
                          f"({'-'.join(map(str, ex.sizes))}, t_max {ex.t_max})")
    n = verify.compare(f"{fmt} re-run", reference, verify.simulate(ex, events))
    return _file_reruns(fmt, path, events, reference, ex.t_max, run_c, n)


def _file_reruns(fmt: str, path, events, reference, t_max: int, run_c: bool, n: int, **extra) -> dict:
    """After the re-run (``n`` samples agreed): for ``nir`` the graph as NIR defines it, by an
    interpreter of the spec alone; for ``c`` (``run_c``, when a C compiler exists) the
    compiled C program; each must give ``reference``. The report of :func:`verify_file`
    (``extra`` after ``n_samples``)."""
    if fmt == "nir":
        verify.compare("NIR-spec interpreter", reference, nir_spec.run_file(path, events))
    c_ran = None
    if fmt == "c" and run_c:
        c_ran = c_format.c_compiler() is not None and c_format.REFERENCE_SOURCE.is_file()
        if c_ran:
            verify.compare("C reference", reference, c_format.run_c_reference(path, events, t_max))
    return {"format": fmt, "path": str(path), "n_samples": n, **extra,
            "ties": int(np.sum(reference.tie)), "silent": int(np.sum(reference.time >= t_max)),
            "c_reference": c_ran}


def detect_format(path) -> str | None:
    """The export format of ``path``: ``hex`` for a folder holding a hex manifest, ``nir``
    for ``.nir``, ``c`` for ``.h``, ``npz`` for an export ``.npz``; None for anything else
    (a run folder, a trained model's ``model.npz``)."""
    path = Path(path)
    if path.is_dir():
        return "hex" if (path / hex_format.MANIFEST).is_file() else None
    suffix = path.suffix.lower()
    if suffix in (".nir", ".h"):
        return {".nir": "nir", ".h": "c"}[suffix]
    if suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return "npz" if "format" in z.files and str(z["format"]) == npz.FORMAT else None
        except Exception:  # not a readable .npz: the model loader reports it
            return None
    return None


@dataclass(frozen=True)
class ExportedModel:
    """An exported file seen as a model to evaluate: ``sizes``, ``t_max``, ``meta`` (the
    encoder and its dataset) and :meth:`binary`."""

    net: ExportedNet
    path: str

    @property
    def sizes(self) -> tuple:
        return self.net.sizes

    @property
    def t_max(self) -> int:
        return int(self.net.t_max)

    @property
    def meta(self) -> dict:
        return {"dataset": self.net.encoder.get("dataset"), "encoder": self.net.encoder}

    @property
    def arch(self):
        """The architecture of a layered export (None for an fc one)."""
        return getattr(self.net, "arch", None)

    def binary(self):
        """The engine's ``BinaryNet``, or ``LayeredNet`` for a layered export."""
        return to_engine(self.net)[0]


def exported_model(fmt: str, path) -> tuple[ExportedModel, str]:
    """``(model, dataset)`` of an exported file, read with format ``fmt``'s own reader; the
    dataset is the one its encoder definition records (BstdgError when it records none)."""
    if fmt == "nir":
        nir_format.require_nir()
    model = ExportedModel(read(fmt, path), str(path))
    dataset = model.meta["dataset"]
    if not dataset:
        raise BstdgError(f"{path}: its encoder records no dataset, so there is no test split to "
                         f"evaluate on (`bstdg export --verify --random-inputs N` checks it instead)")
    return model, str(dataset)
