"""Load bstdg's NIR export into Norse, snnTorch and sinabs as they install from the registry,
and record per library what matches bstdg's predictions, ties and decision times.

    python benchmarks/nir_importers.py RUN --limit-test 2000 --data-dir ../shared/datasets \\
        --venv norse=/tmp/nirvenv --venv snntorch=/tmp/nirvenv --venv sinabs=/tmp/sinabsvenv \\
        --out runs/nir-importers.json

The main process (bstdg's environment) exports ``RUN`` as NIR (format v2: fire-once by
``v_reset``, the ``integrator`` readout), loads the first N test samples of the model's
dataset, computes bstdg's decisions with the event engine, and starts one worker per library
in that library's virtual environment (``VENV/bin/python`` runs this file with ``--worker``;
the worker imports numpy, torch, nir and the library, never bstdg). Each worker tries three
things on the same input spikes (one raster of ``t_max`` steps per sample):

* ``as installed``: the library's own NIR importer on the file, run for ``t_max`` steps,
  read out as that library usually is (the output with the most spikes; equal counts: a
  tie; decision time: the first output spike). Any exception is recorded (first line).
* ``importer's neurons``: the neuron modules the importer builds for the file's IF nodes
  (leak, reset, spike function as it sets them; per-neuron thresholds kept), wired by hand,
  read out both ways: what the file means to a user who gets past the import error.
* ``fixed``: the library's own neuron model, built from the file's parameters with the
  smallest change that makes it follow the file (named in ``fix``), run for ``t_max`` steps
  with every layer updated in the same step, and read out by bstdg's rule: the first output
  spike, equal steps by the higher output potential (a running sum of the last Linear's
  output: NIR's ``integrator``), then the lower index; no output spike: the highest
  potential at ``t_max``.

The main process compares each variant with bstdg on every sample and writes a JSON file
plus the markdown table of docs/export.md. Not run by CI (the libraries are not bstdg
dependencies; they pin other versions of ``nir``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

LIBRARIES = ("norse", "snntorch", "sinabs")

# --- worker: runs in the library's environment (numpy, torch, nir, the library) -------------


def read_layers(path):
    """``(layers, integrator, how)``: per layer ``(weight (n_out, n_in), v_threshold, v_reset)``
    float32 arrays from the file: with ``nir.read`` when the installed nir can read it, else
    straight from the HDF5 file with h5py (an old nir has no ``IF.v_reset``)."""
    try:
        import nir

        graph = nir.read(str(path))
        nodes = {k: {f: getattr(v, f) for f in ("weight", "v_threshold", "v_reset", "r")
                     if hasattr(v, f)} for k, v in graph.nodes.items()}
        how = f"nir.read (nir {nir.__version__})"
    except Exception as exc:  # noqa: BLE001 - any failure of the installed nir: read HDF5
        import h5py

        with h5py.File(path, "r") as f:
            nodes = {k: {n: np.asarray(v[n]) for n in v if n != "type"} for k, v in f["node/nodes"].items()}
        how = f"h5py (nir.read failed: {type(exc).__name__})"
    layers, l = [], 0
    while f"fc{l}" in nodes:
        fc, neuron = nodes[f"fc{l}"], nodes[f"if{l}"]
        n = len(neuron["v_threshold"])
        layers.append((np.asarray(fc["weight"], np.float32), np.asarray(neuron["v_threshold"], np.float32),
                       np.asarray(neuron.get("v_reset", np.zeros(n)), np.float32)))
        l += 1
    return layers, "integrator" in nodes, how


def rasters(events, start, stop, t_max):
    """Input spike counts ``(t_max, B, n_in)`` float32 of samples ``start..stop-1``."""
    ptr = events["ptr"]
    lo, hi = int(ptr[start]), int(ptr[stop])
    owner = np.repeat(np.arange(stop - start), np.diff(ptr[start:stop + 1]))
    x = np.zeros((t_max, stop - start, int(events["n_units"])), np.float32)
    np.add.at(x, (events["times"][lo:hi], owner, events["units"][lo:hi]), 1.0)
    return x


def rule(spikes, potential):
    """bstdg's prediction rule on output ``spikes`` and ``potential`` ``(T, B, n_out)``:
    ``(prediction, tie, time)``."""
    T = spikes.shape[0]
    fired = spikes.any(axis=2)
    time_ = np.where(fired.any(axis=0), fired.argmax(axis=0), T)
    b = np.arange(spikes.shape[1])
    at = np.minimum(time_, T - 1)
    cand = np.where((time_ < T)[:, None], spikes[at, b] > 0, True)
    score = np.where(cand, potential[at, b].astype(np.float64), -np.inf)
    winners = score == score.max(axis=1, keepdims=True)
    return winners.argmax(axis=1), winners.sum(axis=1) > 1, time_


def count_readout(spikes):
    """The usual readout: the output with the most spikes over the run (equal counts: a tie,
    lower index); decision time: the first output spike."""
    T = spikes.shape[0]
    counts = spikes.sum(axis=0)
    winners = counts == counts.max(axis=1, keepdims=True)
    fired = spikes.any(axis=2)
    time_ = np.where(fired.any(axis=0), fired.argmax(axis=0), T)
    return winners.argmax(axis=1), winners.sum(axis=1) > 1, time_


def running_sum(x):
    return np.cumsum(x, axis=0)


def run_cells(torch, cells, states, x):
    """Step ``(weight, cell)`` pairs whose cells map ``(current, state) -> (spikes, state)``
    over the rasters ``x`` (T, B, n_in): ``(output spikes, running sum of the last layer's
    input)``, both (T, B, n_out)."""
    spikes, drive = [], []
    for t in range(x.shape[0]):
        z = torch.from_numpy(x[t])
        for l, (w, cell) in enumerate(cells):
            current = torch.nn.functional.linear(z, w)
            z, states[l] = cell(current, states[l])
        spikes.append(z.numpy().copy())
        drive.append(current.numpy().copy())
    return np.stack(spikes), running_sum(np.stack(drive))


# Each function: (nir file, rasters (T, B, n_in) numpy) -> (output spikes (T, B, n_out),
# output potentials (T, B, n_out) or None). "as installed" uses the library's importer.


def norse_as_installed(path, x, state):
    import nir
    import norse.torch as nt
    import torch

    if "model" not in state:
        state["model"] = nt.from_nir(nir.read(str(path)))
    model, s, out = state["model"], None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, s = model(torch.from_numpy(x[t]), s)
            out.append(np.asarray(y["output"] if isinstance(y, dict) else y))
    return np.stack(out), None


def norse_fixed(path, x, state):
    """Norse's IAFCell with the file's v_reset (its importer drops it: reset to 0, so a
    neuron fires again), started from v = 0 (IAFCell starts from v_reset), NIR's integrator
    as a running sum (Norse maps no nir.I), the graph wired by hand (from_nir fails)."""
    import norse.torch as nt
    import torch
    from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters

    if "cells" not in state:
        layers, _, state["how"] = read_layers(path)
        state["cells"] = [(torch.from_numpy(w), nt.IAFCell(IAFParameters(
            v_th=torch.from_numpy(th), v_reset=torch.from_numpy(vr)))) for w, th, vr in layers]
    cells = state["cells"]
    with torch.no_grad():
        s = [IAFFeedForwardState(v=torch.zeros(x.shape[1], w.shape[0])) for w, _ in cells]
        return run_cells(torch, cells, s, x)


def snntorch_as_installed(path, x, state):
    import nir
    import torch
    from snntorch.import_nir import import_from_nir

    if "model" not in state:
        state["model"] = import_from_nir(nir.read(str(path)))
    model, out = state["model"], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y = model(torch.from_numpy(x[t]))
            out.append(np.asarray(y[0] if isinstance(y, tuple) else y))
    return np.stack(out), None


def snntorch_fixed(path, x, state):
    """snnTorch's Leaky with beta = 1 (no leak: its importer maps IF to beta 0.9), a
    per-neuron threshold tensor (its importer asserts one threshold per layer), no reset
    and fire-once by hand (snnTorch has no reset-to-value), integrator as a running sum."""
    import snntorch as snn
    import torch

    if "cells" not in state:
        layers, _, state["how"] = read_layers(path)
        state["cells"] = [(torch.from_numpy(w), snn.Leaky(beta=1.0, threshold=torch.from_numpy(th),
                                                          reset_mechanism="none"))
                          for w, th, _ in layers]
    cells = state["cells"]
    B = x.shape[1]
    with torch.no_grad():
        mem = [torch.zeros(B, w.shape[0]) for w, _ in cells]
        done = [torch.zeros(B, w.shape[0]) for w, _ in cells]
        spikes, drive = [], []
        for t in range(x.shape[0]):
            z = torch.from_numpy(x[t])
            for l, (w, cell) in enumerate(cells):
                current = torch.nn.functional.linear(z, w)
                spk, mem[l] = cell(current, mem[l])
                z = spk * (1 - done[l])  # fire once: a neuron that has fired sends nothing more
                done[l] = torch.maximum(done[l], z)
            spikes.append(z.numpy().copy())
            drive.append(current.numpy().copy())
    return np.stack(spikes), running_sum(np.stack(drive))


def sinabs_as_installed(path, x, state):
    import nir
    import sinabs
    import torch

    if "model" not in state:
        state["model"] = sinabs.from_nir(nir.read(str(path)), batch_size=x.shape[1])
    model = state["model"]
    with torch.no_grad():
        y = model(torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2))))
    y = y[0] if isinstance(y, tuple) else y
    return np.asarray(y).transpose(1, 0, 2), None


def sinabs_fixed(path, x, state):
    """sinabs' IAF with per-neuron thresholds, SingleSpike (the default MultiSpike emits
    several spikes per step), a reset to the file's v_reset for the neurons that spiked (its
    MembraneReset adds reset_value to every neuron's potential at every step), no lower
    bound on the potential (its importer sets min_v_mem = -v_threshold), integrator as a
    running sum of the last Linear's output."""
    import sinabs.layers as sl
    import torch
    from sinabs.activation import SingleSpike

    def reset_to(v_reset):
        def reset(spikes, state, spike_threshold):
            new = dict(state)
            new["v_mem"] = torch.where(spikes > 0, v_reset, state["v_mem"])
            return new
        return reset

    if "cells" not in state:
        layers, _, state["how"] = read_layers(path)
        state["cells"] = [(torch.from_numpy(w), sl.IAF(spike_threshold=torch.from_numpy(th),
                                                       spike_fn=SingleSpike,
                                                       reset_fn=reset_to(torch.from_numpy(vr)),
                                                       min_v_mem=None))
                          for w, th, vr in layers]
    z = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))  # (B, T, n_in)
    with torch.no_grad():
        for w, cell in state["cells"]:
            cell.reset_states()
            current = torch.nn.functional.linear(z, w)
            z = cell(current)
    spikes = z.numpy().transpose(1, 0, 2)
    return spikes, running_sum(current.numpy().transpose(1, 0, 2))


def norse_importer_neurons(path, x, state):
    """IAFCell as Norse's importer builds it (v_th only: reset to 0, start at 0)."""
    return _hand_built(path, x, state, "norse")


def snntorch_importer_neurons(path, x, state):
    """Leaky as snnTorch's importer builds it (beta 0.9, reset by subtraction), with
    per-neuron thresholds (the importer would refuse them)."""
    return _hand_built(path, x, state, "snntorch")


def sinabs_importer_neurons(path, x, state):
    """IAF as sinabs' importer builds it (MultiSpike, reset by subtraction,
    min_v_mem = -v_threshold)."""
    return _hand_built(path, x, state, "sinabs")


def _hand_built(path, x, state, library):
    """The neurons each importer would build for the file's IF nodes (where it gets that
    far), wired by hand, with the integrator as a running sum."""
    import torch

    if "cells" not in state:
        layers, _, state["how"] = read_layers(path)
        cells = []
        for w, th, _ in layers:
            if library == "norse":
                import norse.torch as nt
                from norse.torch.functional.iaf import IAFParameters

                cell = nt.IAFCell(IAFParameters(v_th=torch.from_numpy(th)))
            elif library == "snntorch":
                import snntorch as snn

                cell = snn.Leaky(beta=0.9, threshold=torch.from_numpy(th), reset_delay=False)
            else:
                import sinabs.layers as sl

                cell = sl.IAF(spike_threshold=torch.from_numpy(th), min_v_mem=-torch.from_numpy(th))
            cells.append((torch.from_numpy(w), cell))
        state["cells"] = cells
    cells, B = state["cells"], x.shape[1]
    with torch.no_grad():
        if library == "sinabs":
            z = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))
            for w, cell in cells:
                cell.reset_states()
                current = torch.nn.functional.linear(z, w)
                z = cell(current)
            return z.numpy().transpose(1, 0, 2), running_sum(current.numpy().transpose(1, 0, 2))
        s = [torch.zeros(B, w.shape[0]) for w, _ in cells]
        if library == "norse":
            from norse.torch.functional.iaf import IAFFeedForwardState

            s = [IAFFeedForwardState(v=v) for v in s]
        return run_cells(torch, cells, s, x)


VARIANTS = {
    "norse": {"as installed": norse_as_installed, "importer's neurons": norse_importer_neurons,
              "fixed": norse_fixed},
    "snntorch": {"as installed": snntorch_as_installed, "importer's neurons": snntorch_importer_neurons,
                 "fixed": snntorch_fixed},
    "sinabs": {"as installed": sinabs_as_installed, "importer's neurons": sinabs_importer_neurons,
               "fixed": sinabs_fixed},
}


def versions(library):
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in (library, "nir", "nirtorch", "torch", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def worker(library, nir_path, events_path, out_path, batch):
    import torch

    torch.set_num_threads(1)
    with np.load(events_path) as z:
        events = {k: z[k] for k in z.files}
    t_max, n = int(events["t_max"]), len(events["ptr"]) - 1
    result = {"library": library, "versions": versions(library), "variants": {}}
    for name, fn in VARIANTS[library].items():
        state, parts, start = {}, [], time.perf_counter()
        entry = {"what": (fn.__doc__ or "the library's own NIR importer").split("\n\n")[0].strip()}
        try:
            for lo in range(0, n, batch):
                spikes, potential = fn(nir_path, rasters(events, lo, min(lo + batch, n), t_max), state)
                counts = np.asarray(spikes)
                parts.append((*(rule(counts > 0, potential) if potential is not None else (None,) * 3),
                               *count_readout(counts)))
            for i, f in enumerate(("prediction", "tie", "time")):
                if parts[0][i] is not None:
                    entry[f] = np.concatenate([p[i] for p in parts]).astype(int).tolist()
                entry[f"count_{f}"] = np.concatenate([p[3 + i] for p in parts]).astype(int).tolist()
        except Exception as exc:  # noqa: BLE001 - recorded, not raised: that is the finding
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
            entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} ({where})"
        entry["seconds"] = round(time.perf_counter() - start, 1)
        entry["read_with"] = state.get("how")
        result["variants"][name] = entry
    Path(out_path).write_text(json.dumps(result))


# --- main: bstdg's environment --------------------------------------------------------------


def compare(reference, entry, prefix=""):
    """Samples on which the variant's readout (bstdg's rule, or with ``prefix="count_"`` the
    spike count) gives bstdg's prediction, tie flag and decision time."""
    if "error" in entry or prefix + "prediction" not in entry:
        return None
    out = {}
    for field in ("prediction", "tie", "time"):
        ref = np.asarray(getattr(reference, field)).astype(int)
        out[field] = int(np.sum(np.asarray(entry[prefix + field]) == ref))
    return out


def table(results, n):
    rows = ["| library | version (nir) | as installed | fixed: same prediction / tie / decision time "
            f"on {n:,} | the fix |", "|---|---|---|---|---|"]
    for r in results:
        v = r["versions"]
        installed = r["variants"]["as installed"]
        fixed = r["variants"]["fixed"]
        if "error" in installed:
            got = f"fails: `{installed['error']}`"
        else:
            m = installed["match_count_readout"]
            got = (f"runs; spike-count readout: same prediction on {m['prediction']:,}, decision time "
                   f"on {m['time']:,}")
        own = r["variants"]["importer's neurons"]
        if "error" not in own:
            a, c = own["match"], own["match_count_readout"]
            got += (f"; its neurons wired by hand: same prediction on {a['prediction']:,} (bstdg's "
                    f"readout), {c['prediction']:,} (spike count)")
        if "error" in fixed:
            fix = f"fails: `{fixed['error']}`"
        else:
            m = fixed["match"]
            fix = f"{m['prediction']:,} / {m['tie']:,} / {m['time']:,}"
        rows.append(f"| {r['library']} | {v.get(r['library'])} ({v.get('nir')}) | {got} | {fix} | "
                    f"{' '.join(fixed['what'].split())} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", help="trained run folder (RUN/model.npz)")
    p.add_argument("--limit-test", type=int, default=2000, help="first N test samples (2000)")
    p.add_argument("--data-dir", help="datasets folder (else $BSTDG_DATA, ./datasets)")
    p.add_argument("--venv", action="append", default=[], metavar="LIB=DIR",
                   help="the virtual environment a library is installed in (repeat per library)")
    p.add_argument("--work", default="runs/nir-importers", help="folder for the export and inputs")
    p.add_argument("--out", default="runs/nir-importers.json")
    p.add_argument("--batch", type=int, default=64, help="samples per batch in the workers")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per library")
    p.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    p.add_argument("--nir", help=argparse.SUPPRESS)
    p.add_argument("--events", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.nir, args.events, args.result, args.batch)
        return 0
    if not args.run or not args.venv:
        p.error("RUN and at least one --venv LIB=DIR are required")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bstdg.cli import existing_data_dir
    from bstdg.data import load_events, trained_options
    from bstdg.evaluation import forward_decisions
    from bstdg.export import encoder_for_model, from_binary_net, write
    from bstdg.runs import load_model

    net, dataset = load_model(args.run)
    bn = net.binary()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    nir_path = write("nir", from_binary_net(bn, encoder_for_model(net)), work / "export.nir")
    test = load_events(dataset, "test", net.t_max, existing_data_dir(args.data_dir), args.limit_test,
                       options=trained_options(dataset, net.meta))
    ev = test.events
    events_path = work / "events.npz"
    np.savez(events_path, times=ev.times, units=ev.units, ptr=ev.ptr, n_units=ev.n_units, t_max=net.t_max)
    _, reference = forward_decisions(bn, ev)
    n = len(test.labels)
    summary = {"run": str(args.run), "dataset": dataset, "sizes": list(net.sizes), "t_max": net.t_max,
               "n_samples": n, "bstdg": {"ties": int(reference.tie.sum()),
                                         "silent": int((reference.time >= net.t_max).sum()),
                                         "accuracy": float(np.mean((reference.prediction == test.labels)
                                                                   & ~reference.tie))},
               "date": time.strftime("%Y-%m-%d %H:%M"), "libraries": []}
    for item in args.venv:
        library, _, venv = item.partition("=")
        if library not in LIBRARIES:
            p.error(f"--venv {item}: the library must be one of {', '.join(LIBRARIES)}")
        result_path = work / f"{library}.json"
        cmd = [str(Path(venv) / "bin" / "python"), str(Path(__file__).resolve()), "--worker", library,
               "--nir", str(nir_path), "--events", str(events_path), "--result", str(result_path),
               "--batch", str(args.batch)]
        print(f"{library}: {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(result_path.read_text())
        for entry in result["variants"].values():
            entry["match"] = compare(reference, entry)
            entry["match_count_readout"] = compare(reference, entry, "count_")
            for field in ("prediction", "tie", "time"):
                entry.pop(field, None)
                entry.pop("count_" + field, None)
        result["wall_s"] = round(time.perf_counter() - start, 1)
        summary["libraries"].append(result)
        print(json.dumps({k: v for k, v in result.items()}, indent=1), flush=True)
    summary["table"] = table(summary["libraries"], n)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(summary["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
