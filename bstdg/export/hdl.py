"""Run the Verilog reference core (``hardware/``) on a hex export in an HDL simulator.

The core reads the hex export's memory files with ``$readmemh`` and infers one sample at a
time from its input spike list (time order, one spike offered per clock). This module

* writes the top level ``bstdg_net`` for an export's sizes (:func:`top_verilog`: a spike
  stepper, then per layer a token FIFO and a ``bstdg_layer``; the potential width of a
  layer is derived from its fan-in, see :func:`potential_widths`);
* writes the samples as a spike-list file for the testbench (:func:`write_spike_list`);
* compiles and runs the testbench with Icarus Verilog or Verilator (:func:`simulate_hdl`),
  returning per sample the prediction, tie flag, decision time and clock cycles;
* compares them with the trained model (:func:`verify_hdl`).

Like the other readers of :mod:`bstdg.export`, nothing here imports :mod:`bstdg.engine`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import hex_format, verify
from .model import ExportedNet, ExportError

HARDWARE_DIR = Path(__file__).resolve().parents[2] / "hardware"
CORE_SOURCES = ("bstdg_fifo.v", "bstdg_stepper.v", "bstdg_layer.v")
TESTBENCH = "bstdg_tb.v"
SIMULATORS = ("iverilog", "verilator")
EVENTS_PER_PASS = 16  # K: input spikes added per pass over a layer's neurons
DW = 16  # payload width of the tokens: unit indices and time steps below 2**16
INPUT_FIFO_LOG = 4
# Above this many samples x neurons the default simulator is Verilator (when installed):
# Icarus starts at once, Verilator compiles for seconds but then runs about 10x faster.
LARGE_RUN = 50_000


@dataclass(frozen=True)
class HdlRun:
    prediction: np.ndarray  # int64 (B,)
    tie: np.ndarray  # bool (B,)
    time: np.ndarray  # int64 (B,): first output spike, t_max if none
    cycles: np.ndarray  # int64 (B,): clocks from reset to the decision
    simulator: str = ""


def available_simulator(preferred: str | None = None) -> str | None:
    """``iverilog`` or ``verilator`` (the first installed, or ``preferred`` if installed),
    or None."""
    names = (preferred,) if preferred else SIMULATORS
    for name in names:
        if name not in SIMULATORS:
            raise ExportError(f"unknown HDL simulator {name!r}; expected one of {', '.join(SIMULATORS)}")
        if shutil.which(name) and (name != "iverilog" or shutil.which("vvp")):
            return name
    return None


def max_repeats(events) -> int:
    """The most spikes one input unit emits within one sample (1 for latency codes)."""
    if len(events.times) == 0:
        return 1
    owner = events.owner()
    keys = owner * np.int64(events.n_units) + np.asarray(events.units, np.int64)
    return max(1, int(np.unique(keys, return_counts=True)[1].max()))


def potential_widths(sizes, repeats: int = 1) -> list:
    """Bits of each layer's signed potential: ``|V| <= fan_in`` (each presynaptic neuron
    fires at most once; the inputs of layer 0 at most ``repeats`` times each), so
    ``ceil(log2(fan_in * repeats + 1)) + 1`` bits."""
    bounds = [int(sizes[0]) * int(repeats)] + [int(s) for s in sizes[1:-1]]
    return [int(b).bit_length() + 1 for b in bounds]


def _vstr(path) -> str:
    text = str(Path(path).resolve())
    if '"' in text or "\\" in text:
        raise ExportError(f"{text}: a path with quotes or backslashes cannot go into Verilog")
    return f'"{text}"'


def top_verilog(manifest: dict, folder, repeats: int = 1, k: int = EVENTS_PER_PASS) -> str:
    """Verilog of the module ``bstdg_net`` for the hex export in ``folder`` (its manifest
    already parsed): the memory files are named by absolute path."""
    sizes = [int(s) for s in manifest["sizes"]]
    if max(sizes) >= 2 ** (DW - 1) or int(manifest["t_max"]) >= 2 ** DW:
        raise ExportError(f"the core takes layers below {2 ** (DW - 1)} neurons and t_max below "
                          f"{2 ** DW}; this export has sizes {sizes}, t_max {manifest['t_max']}")
    widths = potential_widths(sizes, repeats)
    n = len(sizes) - 1
    tok = f"[{DW + 1}:0]"
    lines = [
        "// Written by bstdg.export.hdl for the hex export in",
        f"// {Path(folder).resolve()} (sizes {'-'.join(map(str, sizes))}, t_max {manifest['t_max']}).",
        "`default_nettype none",
        "",
        "module bstdg_net (",
        "    input  wire clk, input wire rst,",
        f"    input  wire in_valid, input wire in_end, input wire [{DW - 1}:0] in_time,",
        f"    input  wire [{DW - 1}:0] in_unit, output wire in_ready,",
        (f"    output wire done, output wire [{DW - 1}:0] pred, output wire tie, "
        f"output wire [{DW - 1}:0] dtime"),
        ");",
    ]
    for l in range(n):
        lines.append(f"    wire q{l}_push, q{l}_pop, q{l}_valid;")
        lines.append(f"    wire {tok} q{l}_din, q{l}_dout;")
    # FIFOs after a layer are deep enough never to fill; the output layer sends no tokens.
    lines += ["    wire q0_full;", "    /* verilator lint_off UNUSEDSIGNAL */",
              *[f"    wire q{l}_full;" for l in range(1, n)],
              f"    wire q{n}_push;", f"    wire {tok} q{n}_din;", "    /* verilator lint_on UNUSEDSIGNAL */"]
    lines += [
        (f"    bstdg_stepper #(.DW({DW})) stepper (.clk(clk), .rst(rst), .in_valid(in_valid), "
        ".in_end(in_end),"),
        ("        .in_time(in_time), .in_unit(in_unit), .in_ready(in_ready), .tok_push(q0_push), "
        ".tok(q0_din), .tok_full(q0_full));"),
    ]
    for l in range(n):
        # Between layers: at most one SPIKE per neuron and one STEP per spike, plus END.
        depth_log = INPUT_FIFO_LOG if l == 0 else max(2, int(2 * sizes[l] + 1).bit_length())
        layer = manifest["layers"][l]
        out = l == n - 1
        lines += [
            (f"    bstdg_fifo #(.W({DW + 2}), .DEPTH_LOG({depth_log})) fifo{l} (.clk(clk), .rst(rst), "
            f".push(q{l}_push), .din(q{l}_din),"),
            f"        .full(q{l}_full), .pop(q{l}_pop), .dout(q{l}_dout), .valid(q{l}_valid));",
        ]
        if not out:
            lines.append(f"    /* verilator lint_off UNUSEDSIGNAL */ wire l{l}_done, l{l}_tie; "
                         f"wire [{DW - 1}:0] l{l}_pred, l{l}_dtime; /* verilator lint_on UNUSEDSIGNAL */")
        res = ((".done(done), .pred(pred), .tie(tie), .dtime(dtime)") if out else
               f".done(l{l}_done), .pred(l{l}_pred), .tie(l{l}_tie), .dtime(l{l}_dtime)")
        lines += [
            (f"    bstdg_layer #(.N_IN({sizes[l]}), .N_OUT({sizes[l + 1]}), .PW({widths[l]}), "
            f".K({k}), .IS_OUTPUT({int(out)}), .T_MAX({int(manifest['t_max'])}), .DW({DW}),"),
            f"        .WEIGHTS({_vstr(Path(folder) / layer['weights'])}),",
            f"        .THRESHOLDS({_vstr(Path(folder) / layer['thresholds'])})) layer{l} (",
            f"        .clk(clk), .rst(rst), .in_valid(q{l}_valid), .in_tok(q{l}_dout), .in_pop(q{l}_pop),",
            f"        .out_push(q{l + 1}_push), .out_tok(q{l + 1}_din), {res});",
        ]
    lines += ["endmodule", "", "`default_nettype wire", ""]
    return "\n".join(lines)


def write_spike_list(path, events, limit: int | None = None) -> Path:
    """The samples of ``events`` (a :class:`~bstdg.encoding.SpikeEvents`) as the
    testbench's spike-list file: the sample count, then per sample the spike count and
    ``time unit`` pairs in time order (a stable sort keeps each step's order)."""
    n = len(events) if limit is None else min(limit, len(events))
    ptr = np.asarray(events.ptr, np.int64)
    times, units = np.asarray(events.times, np.int64), np.asarray(events.units, np.int64)
    parts = [f"{n}\n"]
    for b in range(n):
        t, u = times[ptr[b]:ptr[b + 1]], units[ptr[b]:ptr[b + 1]]
        order = np.argsort(t, kind="stable")
        pairs = np.stack([t[order], u[order]], axis=1)
        parts.append(f"{len(pairs)}\n")
        if len(pairs):
            parts.append("\n".join(f"{a} {c}" for a, c in pairs.tolist()) + "\n")
    path = Path(path)
    path.write_text("".join(parts))
    return path


def _run(cmd, cwd, what: str, timeout: float | None):
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{what}: no result within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ExportError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc


def build_and_run(top: str, spikes: Path, results: Path, work: Path, simulator: str,
                  max_events: int, timeout: float | None = None) -> None:
    """Compile the core, ``top`` and the testbench with ``simulator`` in ``work`` and run it
    on the ``spikes`` file, writing ``results``."""
    missing = [s for s in CORE_SOURCES + (TESTBENCH,) if not (HARDWARE_DIR / s).is_file()]
    if missing:
        raise ExportError(f"{HARDWARE_DIR}: missing {', '.join(missing)} (the Verilog core "
                          f"ships with the bstdg source tree)")
    (work / "bstdg_net.v").write_text(top)
    sources = [str(HARDWARE_DIR / s) for s in CORE_SOURCES] + [str(work / "bstdg_net.v"),
                                                               str(HARDWARE_DIR / TESTBENCH)]
    params = {"SPIKES": _vstr(spikes), "RESULTS": _vstr(results), "MAX_EVENTS": str(max_events)}
    if simulator == "iverilog":
        _run(["iverilog", "-g2005", "-s", "bstdg_tb", "-o", str(work / "sim.vvp")]
             + [f"-Pbstdg_tb.{k}={v}" for k, v in params.items()] + sources,
             work, "iverilog", timeout)
        _run(["vvp", "-n", str(work / "sim.vvp")], work, "vvp (the simulation)", timeout)
    else:
        jobs = str(min(4, os.cpu_count() or 1))
        _run(["verilator", "--binary", "-O3", "-Wno-fatal", "-Wno-lint", "-Wno-style",
              "--top-module", "bstdg_tb", "-j", jobs, "--Mdir", str(work / "obj")]
             + [f"-G{k}={v}" for k, v in params.items()] + sources,
             work, "verilator", timeout)
        _run([str(work / "obj" / "Vbstdg_tb")], work, "the Verilator simulation", timeout)


def fc_only(ex, folder):
    """``ex`` if it is an fc network; ExportError (one line) for a layered one: the core
    has no conv or pool layers."""
    if not isinstance(ex, ExportedNet):
        raise ExportError(f"{folder}: holds a conv/pool network ({ex.arch}); the Verilog core in hardware/ "
                          f"runs fc networks only (check this export with --verify)")
    return ex


def simulate_hdl(folder, events, limit: int | None = None, simulator: str | None = None,
                 k: int = EVENTS_PER_PASS, timeout: float | None = None) -> HdlRun:
    """Run the first ``limit`` samples of ``events`` through the core loaded from the hex
    export ``folder`` (read and checked by :func:`~.hex_format.read_hex` first)."""
    ex: ExportedNet = fc_only(hex_format.read_hex(folder), folder)
    manifest = json.loads((Path(folder) / hex_format.MANIFEST).read_text())
    if events.n_units != ex.sizes[0]:
        raise ExportError(f"the samples have {events.n_units} inputs, the exported network "
                          f"{ex.sizes[0]}")
    if len(events.times) and (np.min(events.times) < 0 or np.max(events.times) >= ex.t_max):
        raise ExportError(f"the samples have spike times outside 0..{ex.t_max - 1}")
    n = len(events) if limit is None else min(limit, len(events))
    if simulator is None and n * sum(ex.sizes) > LARGE_RUN and available_simulator("verilator"):
        simulator = "verilator"  # compiles in seconds, then runs many times faster
    name = available_simulator(simulator)
    if name is None:
        raise ExportError("no HDL simulator found: install Icarus Verilog or Verilator "
                          "(Debian: apt-get install iverilog verilator; `make hdl-tools`)")
    counts = np.diff(np.asarray(events.ptr[:n + 1], np.int64))
    with tempfile.TemporaryDirectory(prefix="bstdg-hdl-") as tmp:
        work = Path(tmp)
        spikes = write_spike_list(work / "spikes.txt", events, n)
        results = work / "results.txt"
        top = top_verilog(manifest, folder, repeats=max_repeats(events), k=k)
        build_and_run(top, spikes, results, work, name, max(1, int(counts.max(initial=1))), timeout)
        rows = [line.split() for line in results.read_text().splitlines() if line.strip()]
    if len(rows) != n or any(len(r) != 4 for r in rows):
        raise ExportError(f"the HDL simulation wrote {len(rows)} result lines for {n} samples")
    table = np.array(rows, dtype=np.int64).reshape(n, 4)
    return HdlRun(table[:, 0], table[:, 1] != 0, table[:, 2], table[:, 3], name)


def verify_hdl(folder, net, events, reference=None, limit: int | None = None,
               simulator: str | None = None, timeout: float | None = None) -> dict:
    """Run the core in the simulator on the first ``limit`` samples of ``events`` and
    require every prediction, tie flag and decision time to equal the trained model's
    (``reference``: a :class:`~bstdg.metrics.Decision`; computed from ``net``, a
    :class:`~bstdg.engine.BinaryNet`, with the event engine when not given). ExportError on
    the first difference; returns the counts and the cycles per inference."""
    n = len(events) if limit is None else min(limit, len(events))
    if reference is None:
        from ..evaluation import forward_decisions  # engine (Numba): only without a reference

        _, reference = forward_decisions(net, events.take(np.arange(n)))
    ref = verify.Rerun(*(np.asarray(getattr(reference, f))[:n] for f in ("prediction", "tie", "time")))
    run = simulate_hdl(folder, events, n, simulator, timeout=timeout)
    verify.compare("HDL simulation", ref, run)
    cycles = run.cycles.astype(np.float64)
    return {"n_samples": n, "simulator": run.simulator,
            "ties": int(np.sum(ref.tie)), "silent": int(np.sum(ref.time >= _t_max(folder))),
            "cycles_mean": float(cycles.mean()) if n else 0.0,
            "cycles_max": int(run.cycles.max()) if n else 0,
            "events_per_pass": EVENTS_PER_PASS}


def _t_max(folder) -> int:
    return int(json.loads((Path(folder) / hex_format.MANIFEST).read_text())["t_max"])


def main(argv=None) -> int:
    """``python -m bstdg.export.hdl HEX_DIR [--k K] [--repeats R]``: print the top level
    ``bstdg_net`` for a hex export (used by ``hardware/synth.sh``)."""
    p = argparse.ArgumentParser(prog="python -m bstdg.export.hdl",
                                description="print the Verilog top level for a hex export")
    p.add_argument("folder", help="hex export folder (bstdg export RUN --format hex --out DIR)")
    p.add_argument("--k", type=int, default=EVENTS_PER_PASS, help="input spikes per pass")
    p.add_argument("--repeats", type=int, default=1,
                   help="most spikes of one input unit in one sample (1: latency code)")
    args = p.parse_args(argv)
    try:
        fc_only(hex_format.read_hex(args.folder), args.folder)
        manifest = json.loads((Path(args.folder) / hex_format.MANIFEST).read_text())
        sys.stdout.write(top_verilog(manifest, args.folder, args.repeats, args.k))
    except ExportError as exc:
        print(f"bstdg: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
