"""Export formats: every format of every network of one factory re-runs exactly; corrupt,
truncated or mismatched files raise one clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bstdg import export as E
from bstdg.cli import main_cli
from bstdg.encoding import encode_latency, times_to_events
from bstdg.engine import BinaryNet
from bstdg.errors import BstdgError
from bstdg.evaluation import forward_decisions
from bstdg.export import c_format, nir_format, verify
from bstdg.export.model import ExportError, latency_encoder
from bstdg.network import BinarySNN

from helpers import random_latency_events, random_multi_spike_events, random_net, untrained_model_run

FORMATS = list(E.FORMATS)
FILE_NAMES = {"npz": "net.npz", "nir": "net.nir", "c": "net.h", "hex": "hex"}
HAVE_CC = c_format.c_compiler() is not None


def network_factory():
    """Small networks: several shapes (input widths that are not multiples of 8 or 4), one
    or two hidden layers, random thresholds; one with two identical outputs (ties) and one
    whose outputs never fire (decided by the potential at t_max)."""
    rng = np.random.default_rng(42)
    cases = {}
    for sizes, t_max in (([13, 9, 4], 16), ([30, 17, 11, 5], 24), ([8, 8, 3], 12),
                         ([61, 20, 10], 32), ([5, 3, 12, 2], 10)):
        cases["-".join(map(str, sizes))] = random_net(rng, sizes, t_max)
    net = random_net(rng, [12, 10, 4], 20)
    w, th = net.weights[1].copy(), net.thresholds[1].copy()
    w[:, 1], th[1] = w[:, 0], th[0]
    cases["tied-outputs"] = BinaryNet((net.weights[0], w), (net.thresholds[0], th), 20)
    net = random_net(rng, [12, 10, 4], 20)
    cases["silent-outputs"] = BinaryNet(net.weights, (net.thresholds[0], np.full(4, 1000, np.int32)), 20)
    return cases


NETS = network_factory()


def inputs_for(name: str, net: BinaryNet, n: int = 60):
    rng = np.random.default_rng(sum(map(ord, name)))
    return random_latency_events(rng, n, net.sizes[0], net.t_max)


def encoder_for(net: BinaryNet) -> dict:
    return latency_encoder(net.t_max, (net.sizes[0],), "test")


def write(fmt: str, net: BinaryNet, folder: Path) -> Path:
    if fmt == "nir":
        pytest.importorskip("nir")
    return E.write(fmt, E.from_binary_net(net, encoder_for(net)), folder / FILE_NAMES[fmt])


def assert_same_decisions(reference, rerun):
    np.testing.assert_array_equal(rerun.prediction, reference.prediction)
    np.testing.assert_array_equal(rerun.tie, reference.tie)
    np.testing.assert_array_equal(rerun.time, reference.time)


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_exactly(fmt, name, tmp_path):
    net = NETS[name]
    path = write(fmt, net, tmp_path)
    loader = {"npz": E.load_npz, "nir": E.load_nir, "c": E.load_c_header, "hex": E.load_hex}[fmt]
    loaded, encoder = loader(path)
    assert encoder == encoder_for(net) and loaded.t_max == net.t_max
    for a, b in zip(loaded.weights + loaded.thresholds, net.weights + net.thresholds):
        np.testing.assert_array_equal(a, b)
    events = inputs_for(name, net)
    _, reference = forward_decisions(net, events)
    assert_same_decisions(reference, verify.simulate(E.read(fmt, path), events))
    check = E.verify_file(fmt, path, net, events, reference, run_c=False)
    assert check["n_samples"] == len(events)


def test_the_factory_covers_ties_silent_outputs_and_both_depths():
    ties = silent = 0
    for name, net in NETS.items():
        _, d = forward_decisions(net, inputs_for(name, net))
        ties += int(d.tie.sum())
        silent += int((d.time == net.t_max).sum())
    assert ties > 0 and silent > 0
    assert {len(net.weights) for net in NETS.values()} == {2, 3}


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang)")
@pytest.mark.parametrize("name", list(NETS))
def test_c_reference_predicts_like_the_model(name, tmp_path):
    net = NETS[name]
    header = write("c", net, tmp_path)
    events = inputs_for(name, net, 80)
    _, reference = forward_decisions(net, events)
    assert_same_decisions(reference, c_format.run_c_reference(header, events, net.t_max))


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang)")
@pytest.mark.parametrize("name", list(NETS))
def test_c_reference_runs_multi_spike_inputs(name, tmp_path):
    """Inputs that spike many times (several times in one step too), samples format 2:
    the C program predicts, ties and decides at the same step as the engine."""
    net = NETS[name]
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    events = random_multi_spike_events(rng, 120, net.sizes[0], net.t_max, 30)
    assert np.any(np.diff(events.times[:events.ptr[1]]) == 0)  # same-step spikes occur
    _, reference = forward_decisions(net, events)
    header = write("c", net, tmp_path)
    assert_same_decisions(reference, c_format.run_c_reference(header, events, net.t_max))
    check = E.verify_file("c", header, net, events, reference)
    assert check["c_reference"] and check["n_samples"] == 120


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang)")
def test_c_reference_on_random_multi_spike_networks(tmp_path):
    """Random networks (1 to 3 layers, thresholds up to 8, so hidden and output neurons fire
    often) on audio-like inputs: every decision equal, ties and silent samples included."""
    rng = np.random.default_rng(23)
    ties = silent = 0
    for k in range(6):
        n_layers = 1 + k % 3
        sizes = [int(rng.integers(3, 40))] + [int(rng.integers(2, 24)) for _ in range(n_layers)]
        t_max = int(rng.integers(4, 60))
        net = random_net(rng, sizes, t_max, max_threshold=8)
        events = random_multi_spike_events(rng, 150, sizes[0], t_max, int(rng.integers(1, 60)))
        _, reference = forward_decisions(net, events)
        header = write("c", net, tmp_path / str(k))
        assert_same_decisions(reference, c_format.run_c_reference(header, events, t_max))
        ties += int(reference.tie.sum())
        silent += int((reference.time == t_max).sum())
    assert ties > 0 and silent > 0


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang)")
def test_c_reference_still_reads_samples_format_1(tmp_path):
    net = NETS["61-20-10"]
    events = inputs_for("61-20-10", net)
    _, reference = forward_decisions(net, events)
    exe = c_format.compile_reference(write("c", net, tmp_path), tmp_path / "build")
    v1 = c_format.write_samples(tmp_path / "v1.txt", c_format.spike_time_matrix(events, net.t_max),
                                net.t_max)
    v2 = c_format.write_event_samples(tmp_path / "v2.txt", events, net.t_max)
    assert v1.read_text().startswith("bstdg-samples 1 61 32\n")
    assert v2.read_text().startswith("bstdg-samples 2 61 32\n")
    for samples in (v1, v2):
        assert_same_decisions(reference, c_format.run_reference(exe, samples))
        plain = subprocess.run([str(exe), str(samples)], capture_output=True, text=True, check=True)
        np.testing.assert_array_equal(np.array(plain.stdout.split(), np.int64), reference.prediction)


def test_rerun_handles_repeated_input_spikes():
    rng = np.random.default_rng(7)
    net = random_net(rng, [12, 20, 5], t_max=40, max_threshold=8)
    events = random_multi_spike_events(rng, 30, 12, 40)
    _, reference = forward_decisions(net, events)
    assert_same_decisions(reference, verify.simulate(E.from_binary_net(net, encoder_for(net)), events))


def test_rerun_on_a_784_600_10_network_with_digit_like_input():
    rng = np.random.default_rng(3)
    net = random_net(rng, [784, 600, 10], 256, max_threshold=1)
    net = BinaryNet(net.weights, (rng.integers(3, 25, 600).astype(np.int32),
                                  rng.integers(2, 12, 10).astype(np.int32)), 256)
    events = random_latency_events(rng, 16, 784, 256, p_silent=0.8)
    _, reference = forward_decisions(net, events)
    assert_same_decisions(reference, verify.simulate(E.from_binary_net(net, encoder_for(net)), events))


def test_footprint_of_784_600_10():
    net = random_net(np.random.default_rng(0), [784, 600, 10], 256)
    fp = E.footprint(E.from_binary_net(net, encoder_for(net)))
    assert fp["weight_bytes"] == 600 * 98 + 10 * 75  # rows of ceil(n_in / 8) bytes
    assert fp["threshold_bytes"] == 2 * 610
    assert fp["float32_bytes"] == 4 * (784 * 600 + 600 * 10 + 610)


def test_hex_rows_are_msb_first(tmp_path):
    """Input 0 of neuron 0 is the top bit of the first digit; rows pad to whole digits."""
    w = -np.ones((6, 2), np.int8)
    w[0, 0] = w[5, 0] = w[1, 1] = 1
    net = BinaryNet((w,), (np.array([1, 300], np.int32),), 8)
    folder = E.write("hex", E.from_binary_net(net, encoder_for(net)), tmp_path / "hex")
    assert (folder / "layer0_weights.hex").read_text().split() == ["84", "40"]
    assert (folder / "layer0_thresholds.hex").read_text().split() == ["0001", "012c"]


def test_uint8_integer_formula_matches_the_encoder():
    p = np.arange(256)
    for t_max in (2, 16, 32, 64, 255, 256, 1000):
        integer = np.where(p > 0, ((255 - p) * (t_max - 1) * 2 + 255) // 510, t_max)
        np.testing.assert_array_equal(integer, encode_latency(p.astype(np.uint8), t_max))


def test_verify_path_imports_no_engine(tmp_path):
    net = NETS["13-9-4"]
    path = write("npz", net, tmp_path)
    code = f"""
import sys
import numpy as np
from bstdg.encoding import SpikeEvents
from bstdg.export import read_npz, verify
ex = read_npz({str(path)!r})
events = SpikeEvents(np.array([0, 3], np.int32), np.array([1, 2], np.int32),
                     np.array([0, 2], np.int64), 13)
verify.simulate(ex, events)
loaded = [m for m in sys.modules if m.startswith(("bstdg.engine", "bstdg.evaluation", "numba"))]
assert not loaded, loaded
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- corrupt, truncated, mismatched --------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(exc.value)
    assert isinstance(exc.value, BstdgError) and "\n" not in message.strip()
    for fragment in fragments:
        assert fragment in message, message


def rewrite_npz(path: Path, **changes) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_npz_corruption_is_caught(tmp_path):
    net = NETS["61-20-10"]
    path = write("npz", net, tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ExportError) as exc:
        E.read_npz(path)
    one_line(exc, str(path), "truncated or corrupt")
    path.write_text("hello")
    with pytest.raises(ExportError) as exc:
        E.read_npz(path)
    one_line(exc, str(path))

    path.write_bytes(good)
    with np.load(path) as z:
        bits = z["layer0_bits"].copy()
    bits[3, 2] ^= 0x10
    rewrite_npz(path, layer0_bits=bits)
    with pytest.raises(ExportError) as exc:
        E.read_npz(path)
    one_line(exc, "digest")

    path.write_bytes(good)
    bits[3, 2] ^= 0x10
    bits[0, -1] |= 0x01  # 61 inputs: the last 3 bits of a row are padding
    rewrite_npz(path, layer0_bits=bits)
    with pytest.raises(ExportError) as exc:
        E.read_npz(path)
    one_line(exc, "padding")

    for change, fragment in ((dict(format=np.array("other")), "not a bstdg export"),
                             (dict(format_version=np.array(2)), "v2"),
                             (dict(layer1_thresholds=np.zeros(3, np.int32)), "thresholds"),
                             (dict(t_max=np.array(33)), "t_max")):
        path.write_bytes(good)
        rewrite_npz(path, **change)
        with pytest.raises(ExportError) as exc:
            E.read_npz(path)
        one_line(exc, fragment)


def test_nir_corruption_is_caught(tmp_path):
    nir = pytest.importorskip("nir")
    net = NETS["13-9-4"]
    path = write("nir", net, tmp_path)

    def rewritten(edit):
        graph = nir.read(path)
        edit(graph)
        out = tmp_path / "edited.nir"
        nir.write(out, graph)
        return out

    def half_weight(g):
        g.nodes["fc0"].weight[0, 0] = 0.5

    def threshold_plus_one(g):
        g.nodes["if1"].v_threshold[0] += 1

    def integer_threshold(g):
        g.nodes["if0"].v_threshold[0] += 0.5

    def no_metadata(g):
        g.metadata.pop("bstdg_format")

    for edit, fragment in ((half_weight, "-1 or +1"), (threshold_plus_one, "digest"),
                           (integer_threshold, "integer minus 0.5"),
                           (no_metadata, "not a bstdg NIR export")):
        with pytest.raises(ExportError) as exc:
            E.read_nir(rewritten(edit))
        one_line(exc, fragment)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ExportError) as exc:
        E.read_nir(path)
    one_line(exc, "cannot read the NIR file")


def test_hex_corruption_is_caught(tmp_path):
    net = NETS["30-17-11-5"]
    folder = write("hex", net, tmp_path)
    weights = folder / "layer1_weights.hex"
    good = weights.read_text()
    manifest = json.loads((folder / "manifest.json").read_text())

    def with_sha(text: str):
        import hashlib

        weights.write_text(text)
        m = json.loads(json.dumps(manifest))
        m["layers"][1]["sha256"]["weights"] = hashlib.sha256(text.encode()).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(m))

    lines = good.split()
    weights.write_text(good.replace(lines[0], ("1" if lines[0][0] != "1" else "2") + lines[0][1:], 1))
    with pytest.raises(ExportError) as exc:
        E.read_hex(folder)
    one_line(exc, "SHA-256")
    with_sha("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ExportError) as exc:
        E.read_hex(folder)
    one_line(exc, "expected 11 lines of 5 hex digits")
    padded = lines.copy()
    padded[0] = padded[0][:-1] + format(int(padded[0][-1], 16) | 1, "x")  # 17 inputs: 3 pad bits
    with_sha("\n".join(padded) + "\n")
    with pytest.raises(ExportError) as exc:
        E.read_hex(folder)
    one_line(exc, "padding")
    flipped = lines.copy()
    flipped[2] = format(int(flipped[2][0], 16) ^ 8, "x") + flipped[2][1:]
    with_sha("\n".join(flipped) + "\n")
    with pytest.raises(ExportError) as exc:
        E.read_hex(folder)
    one_line(exc, "digest")
    (folder / "manifest.json").unlink()
    with pytest.raises(ExportError) as exc:
        E.read_hex(folder)
    one_line(exc, "manifest.json")


def test_c_header_corruption_is_caught(tmp_path):
    net = NETS["8-8-3"]
    header = write("c", net, tmp_path)
    text = header.read_text()
    start = text.index("bstdg_th0[8] = {\n    ") + len("bstdg_th0[8] = {\n    ")
    corrupt = text[:start] + str(int(text[start]) % 9 + 1) + text[start + 1:]
    bad = tmp_path / "bad.h"
    bad.write_text(corrupt)
    with pytest.raises(ExportError) as exc:
        E.read_c_header(bad)
    one_line(exc, "BSTDG_CRC32")
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(ExportError) as exc:
        E.read_c_header(bad)
    one_line(exc, str(bad))
    if HAVE_CC:  # the C program refuses the corrupt header at start-up
        bad.write_text(corrupt)
        exe = c_format.compile_reference(bad, tmp_path / "build")
        samples = c_format.write_samples(tmp_path / "s.txt", np.zeros((1, 8), np.int64), 12)
        done = subprocess.run([str(exe), str(samples)], capture_output=True, text=True)
        assert done.returncode == 1 and "CRC-32" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang)")
def test_c_reference_rejects_mismatched_samples(tmp_path):
    net = NETS["8-8-3"]
    exe = c_format.compile_reference(write("c", net, tmp_path), tmp_path / "build")
    cases = {"9 inputs": "bstdg-samples 1 9 12\n" + " ".join(["0"] * 9) + "\n",
             "t_max 16": "bstdg-samples 1 8 16\n" + " ".join(["0"] * 8) + "\n",
             "outside 0..T_MAX": "bstdg-samples 1 8 12\n0 0 0 0 0 0 0 13\n",
             "incomplete": "bstdg-samples 1 8 12\n0 1 2 3 4 5 6 7\n0 1 2\n",
             "does not start": "0 1 2 3 4 5 6 7\n",
             "1|2": "bstdg-samples 3 8 12\n0\n",
             "outside 0..T_MAX-1": "bstdg-samples 2 8 12\n1 12 0\n",
             "outside 0..N_INPUTS-1": "bstdg-samples 2 8 12\n2 0 0 1 8\n",
             "out of time order": "bstdg-samples 2 8 12\n0\n3 0 1 5 2 4 3\n",
             "(spike 2)": "bstdg-samples 2 8 12\n3 0 1 2 3\n",
             "number of input spikes": "bstdg-samples 2 8 12\n-1\n"}
    for fragment, text in cases.items():
        samples = tmp_path / "samples.txt"
        samples.write_text(text)
        done = subprocess.run([str(exe), str(samples)], capture_output=True, text=True)
        assert done.returncode == 1 and fragment in done.stderr, (fragment, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


def test_mismatches_are_caught(tmp_path):
    net, other = NETS["13-9-4"], NETS["tied-outputs"]
    path = write("npz", other, tmp_path)
    with pytest.raises(ExportError) as exc:
        E.verify_file("npz", path, net, inputs_for("x", net))
    one_line(exc, "different network")
    with pytest.raises(ExportError) as exc:
        verify.simulate(E.read_npz(path), inputs_for("x", net))
    one_line(exc, "13 inputs", "12")
    with pytest.raises(ExportError) as exc:
        E.from_binary_net(net, latency_encoder(net.t_max + 1, (13,)))
    one_line(exc, "t_max")
    with pytest.raises(ExportError) as exc:
        E.from_binary_net(net, latency_encoder(net.t_max, (4, 4)))
    one_line(exc, "input shape")
    with pytest.raises(ExportError) as exc:
        c_format.spike_time_matrix(random_multi_spike_events(np.random.default_rng(0), 3, 13, 16), 16)
    one_line(exc, "more than once")


def test_a_wrong_prediction_is_reported(tmp_path):
    net = NETS["61-20-10"]
    path = write("npz", net, tmp_path)
    events = inputs_for("61-20-10", net)
    _, reference = forward_decisions(net, events)
    reference.prediction[5] = (reference.prediction[5] + 1) % 10
    with pytest.raises(ExportError) as exc:
        E.verify_file("npz", path, net, events, reference)
    one_line(exc, "prediction differs", "1 of 60", "sample 5")


def test_missing_nir_package_gives_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(BstdgError) as exc:
        nir_format.require_nir()
    one_line(exc, "pip install nir")


# --- NIR as the specification defines it ------------------------------------------------------


@pytest.mark.parametrize("name", list(NETS))
def test_nir_spec_interpreter_reproduces_every_decision(name, tmp_path):
    """The NIR file, run by an interpreter of NIR's node definitions alone (Euler, dt = 1),
    predicts, ties and decides at the same step as the engine: latency and multi-spike."""
    pytest.importorskip("nir")
    from bstdg.export import nir_spec

    net = NETS[name]
    path = write("nir", net, tmp_path)
    rng = np.random.default_rng(len(name))
    for events in (inputs_for(name, net, 80),
                   random_multi_spike_events(rng, 80, net.sizes[0], net.t_max, 25)):
        _, reference = forward_decisions(net, events)
        assert_same_decisions(reference, nir_spec.run_file(path, events, batch_size=32))


def test_nir_fire_once_is_in_the_graph(tmp_path):
    """A spec-following IF fires again after a reset to 0 (format v1); with the exported
    v_reset it cannot: the graph itself says fire-once."""
    nir = pytest.importorskip("nir")
    from bstdg.export import nir_spec

    net = BinaryNet((np.ones((8, 4), np.int8), np.ones((4, 3), np.int8)),
                    (np.full(4, 2, np.int32), np.full(3, 3, np.int32)), 12)  # potentials only rise
    graph = nir_format.to_graph(E.from_binary_net(net, encoder_for(net)))
    machine, spikes = nir_spec.Interpreter(graph), np.zeros(3)
    for _ in range(8):  # every input spikes at every step
        spikes = spikes + machine.step(np.ones((1, 8)))["output"][0]
    assert (spikes == 1).all()
    for node in graph.nodes.values():
        if isinstance(node, nir.IF):
            node.v_reset = np.zeros_like(node.v_reset)
    machine, spikes = nir_spec.Interpreter(graph), np.zeros(3)
    for _ in range(8):
        spikes = spikes + machine.step(np.ones((1, 8)))["output"][0]
    assert spikes.max() > 1


def test_nir_spec_interpreter_is_independent(tmp_path):
    """It imports neither the engine nor bstdg's own NIR reader."""
    pytest.importorskip("nir")
    path = write("nir", NETS["13-9-4"], tmp_path)
    code = f"""
import sys
import numpy as np
from bstdg.encoding import SpikeEvents
from bstdg.export import nir_spec
events = SpikeEvents(np.array([0, 3], np.int32), np.array([1, 2], np.int32),
                     np.array([0, 2], np.int64), 13)
nir_spec.run_file({str(path)!r}, events)
loaded = [m for m in sys.modules if m.startswith(("bstdg.engine", "bstdg.evaluation", "numba"))]
assert not loaded, loaded
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    imports = [line for line in Path(nir_spec_module_file()).read_text().splitlines()
               if line.lstrip().startswith(("import ", "from "))]
    assert not [line for line in imports if "nir_format" in line or "verify" in line], imports


def nir_spec_module_file() -> str:
    from bstdg.export import nir_spec

    return nir_spec.__file__


def test_nir_format_v1_files_are_still_read(tmp_path):
    """v1 (v_reset = 0, no readout integrator): read by read_nir; the interpreter refuses it
    with one line (it has no potentials to decide silent samples)."""
    nir = pytest.importorskip("nir")
    from bstdg.export import nir_spec

    net = NETS["13-9-4"]
    graph = nir_format.to_graph(E.from_binary_net(net, encoder_for(net)))
    for node in graph.nodes.values():
        if isinstance(node, nir.IF):
            node.v_reset = np.zeros_like(node.v_reset)
    nodes = {k: v for k, v in graph.nodes.items() if k not in ("integrator", "potential")}
    edges = [e for e in graph.edges if "integrator" not in e]
    meta = {k: v for k, v in graph.metadata.items() if k != "bstdg_readout"}
    meta["bstdg_format_version"] = 1
    old = tmp_path / "v1.nir"
    nir.write(old, nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta))
    ex = E.read_nir(old)
    assert ex.digest() == E.from_binary_net(net, encoder_for(net)).digest()
    with pytest.raises(ExportError) as exc:
        nir_spec.run_file(old, inputs_for("13-9-4", net))
    one_line(exc, "no readout", "export again")


def test_too_old_nir_gives_one_clear_line(monkeypatch):
    nir = pytest.importorskip("nir")
    monkeypatch.setattr(nir, "__version__", "1.0.4")
    with pytest.raises(BstdgError) as exc:
        nir_format.require_nir()
    one_line(exc, "nir 1.0.4 is too old", "nir>=1.0.6")


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """A saved 784-24-10 model (t_max 32, not trained) and a fake MNIST of 40 test images."""
    monkeypatch.delenv("BSTDG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    return untrained_model_run(tmp_path, 40)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_export_verify(fmt, tiny_run, capsys):
    if fmt == "nir":
        pytest.importorskip("nir")
    run, data = tiny_run
    out = run / FILE_NAMES[fmt]
    status = main_cli(["export", str(run), "--format", fmt, "--out", str(out), "--verify",
                       "--data-dir", str(data.parent)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "identical predictions" in printed and "40 mnist test samples" in printed
    assert "weights            2,382 B" in printed  # 24 rows of 98 bytes, 10 rows of 3
    assert "thresholds         68 B" in printed
    if fmt == "c":
        assert ("compiled and run" if HAVE_CC else "not run") in printed


def test_cli_export_random_inputs_and_errors(tiny_run, capsys):
    run, _ = tiny_run
    status = main_cli(["export", str(run), "--format", "npz", "--out", str(run),
                       "--random-inputs", "25"])
    printed = capsys.readouterr().out
    assert status == 0 and "25 random latency-coded inputs" in printed
    assert E.read_npz(run / "export.npz").sizes == (784, 24, 10)  # a folder gets a default name
    assert BinarySNN.load(run / "model.npz").sizes == (784, 24, 10)  # the model is untouched


def test_cli_export_errors_are_one_line(tiny_run, capsys):
    run, _ = tiny_run
    for argv, fragment in ((["export", "nowhere", "--format", "npz", "--out", "x.npz"], "no model"),
                           (["export", str(run), "--format", "npz", "--out", "x.npz", "--verify"],
                            "mnist"),
                           (["export", str(run), "--format", "npz", "--out", str(run / "model.npz")],
                            "would overwrite the model"),
                           (["export", str(run), "--format", "pdf", "--out", "x"], "invalid choice")):
        status = main_cli(argv)
        err = capsys.readouterr().err
        assert status != 0 and fragment in err, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("bstdg: error: ")


def test_the_documented_reimplementation_matches_the_model(tmp_path):
    """docs/export.md's 20-line inference, run on an exported file, predicts like the model
    on digit-like uint8 images (encoded by the document's integer formula)."""
    from helpers import digit_like_images

    doc = (Path(__file__).resolve().parents[1] / "docs" / "export.md").read_text()
    block = doc.split("<!-- reimplementation -->")[1].split("<!-- /reimplementation -->")[0]
    code = block.split("```python")[1].split("```")[0]
    ns: dict = {}
    exec(compile(code, "docs/export.md", "exec"), ns)
    rng = np.random.default_rng(11)
    t_max = 48
    net = random_net(rng, [784, 40, 10], t_max, max_threshold=1)
    net = BinaryNet(net.weights, (rng.integers(3, 20, 40).astype(np.int32),
                                  rng.integers(1, 6, 10).astype(np.int32)), t_max)
    images = digit_like_images(rng, 12)
    events = times_to_events(encode_latency(images.reshape(12, -1), t_max), t_max)
    _, reference = forward_decisions(net, events)
    path = E.export_npz(net, latency_encoder(t_max, (28, 28), "mnist"), tmp_path / "m.npz")
    layers, doc_t_max, encoder = ns["load"](path)
    assert doc_t_max == t_max and encoder["input_shape"] == [28, 28]
    predictions = [ns["classify"](layers, t_max, ns["encode"](image, t_max)) for image in images]
    np.testing.assert_array_equal(predictions, reference.prediction)
    assert len(set(predictions)) > 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_eval_reads_exported_files(fmt, tiny_run, capsys):
    """`bstdg eval FILE` on every export format gives the model's own figures."""
    if fmt == "nir":
        pytest.importorskip("nir")
    run, data = tiny_run
    out = run / FILE_NAMES[fmt]
    assert main_cli(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    capsys.readouterr()
    figures = []
    for target in (run, out):
        assert main_cli(["eval", str(target), "--data-dir", str(data.parent), "--json"]) == 0
        figures.append(json.loads(capsys.readouterr().out))
    assert figures[1]["export_format"] == fmt and figures[0]["export_format"] is None
    for key in ("test_accuracy", "test_ties", "test_silent", "mean_decision_time"):
        if key in figures[0]:
            assert figures[1][key] == figures[0][key], key


def test_cli_eval_of_an_export_without_dataset_is_one_line(tmp_path, capsys):
    net = NETS["13-9-4"]
    path = E.write("npz", E.from_binary_net(net, latency_encoder(net.t_max, (13,))), tmp_path / "x.npz")
    status = main_cli(["eval", str(path)])
    err = capsys.readouterr().err
    assert status != 0 and "records no dataset" in err and len(err.strip().splitlines()) == 1
