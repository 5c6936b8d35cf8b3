"""Exports of layered (conv/pool/fc) networks: the export layout, round-trips of every
format, and the independent re-runs (numpy simulator, NIR-spec interpreter, C program)
against the event engine, prediction for prediction, tie for tie, decision time for time."""

import json

import numpy as np
import pytest

from bstdg import export, metrics
from bstdg.arch import Architecture
from bstdg.engine.conv import LayeredNet, layered_forward, weight_shape
from bstdg.export import layered_sim
from bstdg.export.layered import ExportedLayeredNet, from_layered_net, to_layered_net
from bstdg.export.model import ExportError, latency_encoder

from helpers import image_events, random_layered, random_multi_spike_events

CASES = [
    ("conv3k3,pool2", (1, 8, 8)),
    ("conv4k3s2p1,fc6", (2, 9, 7)),
    ("conv3k2p1,pool3,conv4k2,fc5", (2, 10, 10)),
    ("pool2,conv2k3", (3, 7, 9)),
    ("conv5k3s2,pool2,fc7", (1, 13, 11)),
    ("fc9,fc6", (1, 5, 5)),
    ("conv4k3p2,pool2,fc8", (1, 9, 9)),
]
IDS = [c[0] for c in CASES]




def engine_decision(net: LayeredNet, events, stop=True) -> metrics.Decision:
    r = layered_forward(net, events, stop, False)
    return metrics.decide(r.output_times, r.decision_potential, net.t_max)


def case(spec, shape, seed, t_max=16, n=40, multi=False):
    rng = np.random.default_rng(seed)
    arch = Architecture.parse(spec, shape, 4)
    net = random_layered(rng, arch, t_max, max_threshold=4)
    events = (random_multi_spike_events(rng, n, arch.sizes[0], t_max, 30) if multi
              else image_events(rng, n, shape, t_max))
    ex = from_layered_net(net, latency_encoder(t_max, list(shape), "synthetic"))
    return net, events, ex


def assert_same(reference, rerun):
    np.testing.assert_array_equal(rerun.prediction, reference.prediction)
    np.testing.assert_array_equal(rerun.tie, reference.tie)
    np.testing.assert_array_equal(rerun.time, reference.time)


# --- layout ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, shape", CASES, ids=IDS)
def test_export_layout_round_trips_to_the_engine(spec, shape):
    net, _, ex = case(spec, shape, 0)
    back = to_layered_net(ex)
    for a, b in zip(net.weights, back.weights):
        np.testing.assert_array_equal(a, b)
    for layer, a, b in zip(net.arch.layers_all, net.thresholds, back.thresholds):
        if layer.kind != "pool":  # a pool layer's thresholds are unused (the export has none)
            np.testing.assert_array_equal(a, b)


def test_export_layout_is_channel_first():
    """A hand-checked element: the engine's conv weight [ci, ky, kx, co] is the export's
    [co, ci, ky, kx]; the neuron (c, y, x) is number (c*H + y)*W + x; an fc after a conv
    reads the conv's channel-first order."""
    net, _, ex = case("conv3k2,fc5", (2, 4, 5), 1)
    w0 = net.weights[0]
    assert ex.bits[0][2, 1, 0, 1] == (w0[1, 0, 1, 2] > 0)
    c, y, x = 2, 1, 3  # conv output (3, 3, 4): channel-last index (y*4 + x)*3 + c
    assert ex.thresholds[0][(c * 3 + y) * 4 + x] == net.thresholds[0][(y * 4 + x) * 3 + c]
    j = 4
    assert ex.bits[1][j, (c * 3 + y) * 4 + x] == (net.weights[1][(y * 4 + x) * 3 + c, j] > 0)


def test_exported_layered_net_checks_itself():
    _, _, ex = case("conv3k3,pool2,fc4", (1, 8, 8), 2)
    bad_bits = list(ex.bits)
    bad_bits[0] = bad_bits[0][:2]
    with pytest.raises(ExportError, match="layer 0 .*shape"):
        ExportedLayeredNet(ex.arch, tuple(bad_bits), ex.thresholds, ex.t_max, ex.encoder)
    bad_th = list(ex.thresholds)
    bad_th[2] = bad_th[2] * 0
    with pytest.raises(ExportError, match="thresholds must be in 1"):
        ExportedLayeredNet(ex.arch, ex.bits, tuple(bad_th), ex.t_max, ex.encoder)
    with pytest.raises(ExportError, match="encoder t_max"):
        ExportedLayeredNet(ex.arch, ex.bits, ex.thresholds, ex.t_max + 1, ex.encoder)


# --- the numpy simulator against the engine -------------------------------------------


@pytest.mark.parametrize("spec, shape", CASES, ids=IDS)
@pytest.mark.parametrize("seed", range(3))
def test_simulator_equals_the_engine(spec, shape, seed):
    net, events, ex = case(spec, shape, seed)
    ref = engine_decision(net, events)
    assert_same(ref, layered_sim.simulate_layered(ex, events, batch_size=16))
    assert_same(ref, engine_decision(net, events, stop=False))


@pytest.mark.parametrize("spec, shape", CASES[:4], ids=IDS[:4])
def test_simulator_equals_the_engine_on_multi_spike_inputs(spec, shape):
    net, events, ex = case(spec, shape, 7, multi=True)
    assert_same(engine_decision(net, events), layered_sim.simulate_layered(ex, events))


def test_the_cases_cover_ties_and_silent_samples():
    ties = silent = spiked = 0
    for spec, shape in CASES:
        for seed in range(3):
            net, events, _ = case(spec, shape, seed)
            d = engine_decision(net, events)
            ties += int(d.tie.sum())
            silent += int((d.time == net.t_max).sum())
            spiked += int((d.time < net.t_max).any())
    assert ties > 0 and silent > 0 and spiked >= len(CASES) * 2


def test_simulator_conv_matches_an_explicit_loop():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (2, 3, 7, 6)).astype(np.float32)
    sign = np.where(rng.random((4, 3, 3, 3)) < 0.5, 1, -1).astype(np.int8)
    for stride, pad in ((1, 0), (2, 1), (2, 2)):
        got = layered_sim.conv2d(x, sign, stride, pad)
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        ho, wo = (7 + 2 * pad - 3) // stride + 1, (6 + 2 * pad - 3) // stride + 1
        want = np.zeros((2, 4, ho, wo))
        for b in range(2):
            for co in range(4):
                for oy in range(ho):
                    for ox in range(wo):
                        want[b, co, oy, ox] = np.sum(xp[b, :, oy * stride:oy * stride + 3,
                                                        ox * stride:ox * stride + 3] * sign[co])
        np.testing.assert_array_equal(got, want)


def test_a_changed_weight_is_noticed_by_the_simulator():
    net, events, ex = case("conv3k3,pool2,fc4", (1, 8, 8), 5, n=80)
    ref = engine_decision(net, events)
    bits = list(ex.bits)
    bits[2] = 1 - bits[2]  # every fc sign flipped
    other = ExportedLayeredNet(ex.arch, tuple(bits), ex.thresholds, ex.t_max, ex.encoder)
    with pytest.raises(ExportError, match="differs from the trained model"):
        export.verify.compare("flipped", ref, layered_sim.simulate_layered(other, events))


# --- npz ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, shape", CASES, ids=IDS)
def test_npz_round_trip_and_verify(spec, shape, tmp_path):
    net, events, ex = case(spec, shape, 1)
    path = export.write("npz", ex, tmp_path / "m.npz")
    back = export.read("npz", path)
    assert isinstance(back, ExportedLayeredNet) and back.digest() == ex.digest()
    assert str(back.arch) == str(ex.arch)
    for a, b in zip(back.bits, ex.bits):
        np.testing.assert_array_equal(a, b)
    check = export.verify_file("npz", path, net, events)
    assert check["n_samples"] == len(events)
    assert export.detect_format(path) == "npz"
    model = export.ExportedModel(back, str(path))  # what `bstdg eval FILE` reads
    assert model.arch == net.arch and model.sizes == net.sizes
    assert all(np.array_equal(a, b) for a, b in zip(model.binary().weights, net.weights))


def test_npz_corruption_is_caught(tmp_path):
    _, _, ex = case("conv3k3,pool2,fc4", (1, 8, 8), 3)
    path = export.write("npz", ex, tmp_path / "m.npz")
    with np.load(path) as z:
        arrays = dict(z)

    def broken(**changes):
        bad = {**arrays, **changes}
        p = tmp_path / "bad.npz"
        np.savez(p, **{k: v for k, v in bad.items() if v is not None})
        return p

    flipped = arrays["layer0_bits"].copy()
    flipped[0, 0] ^= 0x80
    for changes, message in (
            ({"layer0_bits": flipped}, "digest"),
            ({"layer2_thresholds": None}, "layer 2 thresholds are nothing"),
            ({"arch": np.array('{"layers": [}')}, "architecture record is malformed"),
            ({"layer0_shape": np.array([3, 1, 2, 2])}, "layer 0 .* shape"),
            ({"kind": np.array("other")}, "kind 'layered'"),
            ({"format_version": np.array(3)}, "v3"),
    ):
        with pytest.raises(ExportError, match=message):
            export.read("npz", broken(**changes))


# --- NIR ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, shape", CASES, ids=IDS)
def test_nir_round_trip_and_spec_interpreter(spec, shape, tmp_path):
    pytest.importorskip("nir")
    from bstdg.export import nir_spec

    net, events, ex = case(spec, shape, 2)
    path = export.write("nir", ex, tmp_path / "m.nir")
    back = export.read("nir", path)
    assert isinstance(back, ExportedLayeredNet) and back.digest() == ex.digest()
    ref = engine_decision(net, events)
    assert_same(ref, nir_spec.run_file(path, events, batch_size=16))
    export.verify_file("nir", path, net, events, reference=ref)


def test_nir_graph_has_conv_pool_flatten_nodes(tmp_path):
    nir = pytest.importorskip("nir")
    _, _, ex = case("conv3k3p1,pool2,fc4", (2, 8, 8), 3)
    graph = nir.read(export.write("nir", ex, tmp_path / "m.nir"))
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds["conv0"] == "Conv2d" and kinds["pool1"] == "SumPool2d" and kinds["flatten2"] == "Flatten"
    assert np.asarray(graph.nodes["conv0"].weight).shape == (3, 2, 3, 3)
    assert np.asarray(graph.nodes["if0"].v_threshold).shape == (3, 8, 8)
    assert (np.asarray(graph.nodes["if1"].v_threshold) == 0.5).all()
    assert list(np.asarray(graph.nodes["input"].input_type["input"])) == [2, 8, 8]


def test_nir_spec_pooling_is_the_earliest_spike(tmp_path):
    """SumPool2d -> IF(0.5, fire-once) relays only the first spike of a window, even when the
    window gets several spikes over several steps: a one-window net whose fc outputs need
    two pool spikes never fire."""
    pytest.importorskip("nir")
    from bstdg.encoding import SpikeEvents
    from bstdg.export import nir_spec

    arch = Architecture.parse("pool2", (1, 2, 2), 2)
    net = LayeredNet(arch, (np.zeros(0, np.int8), np.ones((1, 2), np.int8)),
                     (np.ones(1, np.int32), np.array([2, 2], np.int32)), 8)
    ex = from_layered_net(net, latency_encoder(8, [1, 2, 2]))
    path = export.write("nir", ex, tmp_path / "p.nir")
    # all four pixels, at steps 1, 2, 3, 3: one pool spike (step 1), both outputs at 1: silent
    events = SpikeEvents(np.array([1, 2, 3, 3], np.int32), np.array([0, 1, 2, 3], np.int32),
                         np.array([0, 4]), 4)
    got = nir_spec.run_file(path, events)
    assert got.time.tolist() == [8] and got.prediction.tolist() == [0] and got.tie.tolist() == [True]
    assert_same(engine_decision(net, events), got)


def test_nir_layered_corruption_is_caught(tmp_path):
    nir = pytest.importorskip("nir")
    _, _, ex = case("conv3k3,pool2,fc4", (1, 8, 8), 3)
    graph = nir.read(export.write("nir", ex, tmp_path / "m.nir"))
    graph.nodes["conv0"].weight[0, 0, 0, 0] *= -1
    nir.write(tmp_path / "bad.nir", graph)
    with pytest.raises(ExportError, match="digest"):
        export.read("nir", tmp_path / "bad.nir")
    graph = nir.read(tmp_path / "m.nir")
    graph.nodes["if1"].v_threshold[:] = 1.5
    nir.write(tmp_path / "bad2.nir", graph)
    with pytest.raises(ExportError, match="SumPool2d"):
        export.read("nir", tmp_path / "bad2.nir")


# --- C -----------------------------------------------------------------------------------

needs_cc = pytest.mark.skipif(export.c_format.c_compiler() is None, reason="no C compiler")


@needs_cc
@pytest.mark.parametrize("spec, shape", CASES, ids=IDS)
def test_c_reference_infers_layered_networks(spec, shape, tmp_path):
    net, events, ex = case(spec, shape, 4)
    path = export.write("c", ex, tmp_path / "m.h")
    back = export.read("c", path)
    assert isinstance(back, ExportedLayeredNet) and back.digest() == ex.digest()
    ref = engine_decision(net, events)
    assert_same(ref, export.c_format.run_c_reference(path, events, ex.t_max))
    check = export.verify_file("c", path, net, events, reference=ref)
    assert check["c_reference"] is True


@needs_cc
@pytest.mark.parametrize("spec, shape", CASES[:4], ids=IDS[:4])
def test_c_reference_on_multi_spike_inputs(spec, shape, tmp_path):
    net, events, ex = case(spec, shape, 8, multi=True)
    path = export.write("c", ex, tmp_path / "m.h")
    assert_same(engine_decision(net, events), export.c_format.run_c_reference(path, events, ex.t_max))


@needs_cc
def test_c_reference_notices_a_changed_header(tmp_path):
    net, events, ex = case("conv3k3,pool2,fc4", (1, 8, 8), 5, n=80)
    path = export.write("c", ex, tmp_path / "m.h")
    text = path.read_text()
    start = text.index("0x", text.index("bstdg_w0["))  # the first weight byte of layer 0
    edited = text[:start] + f"0x{int(text[start:start + 4], 16) ^ 0x80:02x}" + text[start + 4:]
    (tmp_path / "bad.h").write_text(edited)
    with pytest.raises(ExportError, match="CRC32|digest|DIGEST|weights"):
        export.read("c", tmp_path / "bad.h")
    with pytest.raises(ExportError, match="C reference failed.*CRC-32"):
        export.c_format.run_c_reference(tmp_path / "bad.h", events, ex.t_max)


# --- hex and the HDL refusal ---------------------------------------------------------------


@pytest.mark.parametrize("spec, shape", CASES, ids=IDS)
def test_hex_round_trip_and_verify(spec, shape, tmp_path):
    net, events, ex = case(spec, shape, 6)
    folder = export.write("hex", ex, tmp_path / "hex")
    back = export.read("hex", folder)
    assert isinstance(back, ExportedLayeredNet) and back.digest() == ex.digest()
    assert export.detect_format(folder) == "hex"
    export.verify_file("hex", folder, net, events)


def test_hex_conv_rows_are_kernels_msb_first(tmp_path):
    _, _, ex = case("conv2k3,fc3", (1, 5, 5), 1)
    folder = export.write("hex", ex, tmp_path / "hex")
    lines = (folder / "layer0_weights.hex").read_text().split()
    assert len(lines) == 2 and all(len(s) == 3 for s in lines)  # 9 bits -> 3 digits
    first = int(lines[1], 16) >> 3  # 12 bits, 3 of padding
    assert [(first >> (8 - i)) & 1 for i in range(9)] == ex.bits[0][1].ravel().tolist()
    assert len((folder / "layer0_thresholds.hex").read_text().split()) == 2 * 3 * 3


def test_hex_layered_corruption_is_caught(tmp_path):
    _, _, ex = case("conv3k3,pool2,fc4", (1, 8, 8), 3)
    folder = export.write("hex", ex, tmp_path / "hex")
    path = folder / "layer0_thresholds.hex"
    path.write_text(path.read_text().replace("0001", "0002", 1) if "0001" in path.read_text()
                    else "0001\n" + path.read_text()[5:])
    with pytest.raises(ExportError, match="SHA-256"):
        export.read("hex", folder)


def test_hdl_refuses_a_conv_export_in_one_line(tmp_path):
    from bstdg.export import hdl

    net, events, ex = case("conv3k3,pool2,fc4", (1, 8, 8), 3)
    folder = export.write("hex", ex, tmp_path / "hex")
    with pytest.raises(ExportError, match="fc networks only") as exc:
        hdl.simulate_hdl(folder, events)
    assert "\n" not in str(exc.value)


# --- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def conv_run(tmp_path, monkeypatch):
    """A saved conv4k5,pool2,fc16 LayeredSNN (t_max 32, random latent values, meta dataset
    mnist) next to the fake MNIST of :func:`helpers.untrained_model_run` (40 test images)."""
    from bstdg.convnet import LayeredSNN
    from helpers import untrained_model_run

    monkeypatch.delenv("BSTDG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    run, data = untrained_model_run(tmp_path, 40)
    rng = np.random.default_rng(9)
    arch = Architecture.parse("conv4k5,pool2,fc16", (1, 28, 28), 10)
    n_w = sum(int(np.prod(weight_shape(arch, l))) for l in range(len(arch.layers_all)))
    n_th = 4 + 16 + 10  # per channel for conv, per neuron for fc
    net = LayeredSNN(arch, 32, rng.uniform(-1, 1, n_w).astype(np.float32),
                     np.concatenate([rng.uniform(1, 6, 4), rng.uniform(1, 12, 16), rng.uniform(1, 6, 10)]
                                    ).astype(np.float32),
                     meta={"dataset": "mnist", "encoder": {"kind": "latency", "t_max": 32,
                                                           "input_shape": [28, 28]}})
    assert net.theta.size == n_th
    net.save(run / "model.npz")
    return run, data


@pytest.mark.parametrize("fmt", ["npz", "nir", "c", "hex"])
def test_cli_export_verify_of_a_conv_model(fmt, conv_run, capsys):
    from bstdg.cli import main_cli

    if fmt == "nir":
        pytest.importorskip("nir")
    run, data = conv_run
    out = run / {"npz": "e.npz", "nir": "e.nir", "c": "m.h", "hex": "hexdir"}[fmt]
    status = main_cli(["export", str(run), "--format", fmt, "--out", str(out), "--verify",
                       "--data-dir", str(data.parent)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "identical predictions" in printed and "40 mnist test samples" in printed
    assert "conv4k5,pool2,fc16 -> 784-2304-576-16-10" in printed
    silent = int(printed.split("silent ")[1].split(")")[0])
    assert silent < 40  # some outputs fire: decision times are compared, not only potentials
    back = export.read(fmt, out)
    assert isinstance(back, ExportedLayeredNet) and str(back.arch) == "conv4k5,pool2,fc16"
    if fmt == "c" and export.c_format.c_compiler() is not None:
        assert "compiled and run" in printed
    # `bstdg eval FILE` reads the export and scores it as the run's own model
    scores = []
    for source in (run, out):
        assert main_cli(["eval", str(source), "--json", "--data-dir", str(data.parent)]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        scores.append({k: result[k] for k in ("test_accuracy", "test_ties", "test_silent",
                                              "mean_decision_time", "hidden_spikes_per_sample")})
    assert scores[0] == scores[1]


def test_cli_verify_hdl_refuses_a_conv_model(conv_run, capsys):
    from bstdg.cli import main_cli

    run, _ = conv_run
    status = main_cli(["export", str(run), "--format", "hex", "--out", str(run / "h"), "--verify-hdl",
                       "--random-inputs", "5"])
    err = capsys.readouterr().err
    assert status == 1 and "fc networks only" in err and len(err.strip().splitlines()) == 1


def test_write_model_takes_a_layered_snn(tmp_path):
    from bstdg.convnet import LayeredSNN

    rng = np.random.default_rng(11)
    arch = Architecture.parse("conv3k3,pool2,fc8", (1, 10, 10), 4)
    n_w = sum(int(np.prod(weight_shape(arch, l))) for l in range(len(arch.layers_all)))
    net = LayeredSNN(arch, 16, rng.uniform(-1, 1, n_w).astype(np.float32),
                     rng.uniform(1, 4, 3 + 8 + 4).astype(np.float32))
    events = image_events(rng, 30, (1, 10, 10), 16)
    for fmt, name in (("npz", "m.npz"), ("c", "m.h"), ("hex", "hex")):
        path = export.write_model(net, latency_encoder(16, [1, 10, 10]), fmt, tmp_path / name)
        assert export.verify_file(fmt, path, net, events)["n_samples"] == 30
