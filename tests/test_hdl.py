"""The Verilog reference core (hardware/) in an HDL simulator: identical predictions, tie
flags and decision times to the engine on generated networks, latency and multi-spike
inputs; `verilator --lint-only -Wall` clean; `bstdg export --verify-hdl`."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from helpers import random_latency_events, random_multi_spike_events, random_net, untrained_model_run

from bstdg import export as E
from bstdg.cli import main_cli
from bstdg.engine import BinaryNet
from bstdg.evaluation import forward_decisions
from bstdg.export import hdl
from bstdg.export.model import ExportError, latency_encoder

SIMULATOR = hdl.available_simulator()
needs_simulator = pytest.mark.skipif(
    SIMULATOR is None, reason="no HDL simulator (Icarus Verilog or Verilator) installed: "
                              "`make hdl-tools` installs them (Debian packages iverilog, verilator)")
needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None,
                                     reason="Verilator not installed (`make hdl-tools`)")


def export(net: BinaryNet, folder):
    return E.export_hex(net, latency_encoder(net.t_max, (net.sizes[0],), "test"), folder)


def cases():
    """(name, net, events): one and two hidden layers and none, latency and multi-spike
    inputs (several spikes of one input in one step too), tied and silent outputs."""
    rng = np.random.default_rng(18)
    out = []
    for sizes, t_max, multi in (((23, 17, 5), 12, False), ((30, 12, 7, 3), 16, False),
                                ((40, 25, 6), 20, True), ((9, 4), 8, True)):
        net = random_net(rng, sizes, t_max, max_threshold=6)
        events = (random_multi_spike_events(rng, 50, sizes[0], t_max, 30) if multi else
                  random_latency_events(rng, 50, sizes[0], t_max))
        out.append((f"{'-'.join(map(str, sizes))}{'-multi' if multi else ''}", net, events))
    net = random_net(rng, (12, 10, 4), 20)
    w, th = net.weights[1].copy(), net.thresholds[1].copy()
    w[:, 1], th[1] = w[:, 0], th[0]
    out.append(("tied", BinaryNet((net.weights[0], w), (net.thresholds[0], th), 20),
                random_latency_events(rng, 40, 12, 20)))
    out.append(("silent", BinaryNet(net.weights, (net.thresholds[0], np.full(4, 1000, np.int32)), 20),
                random_multi_spike_events(rng, 40, 12, 20, 15)))
    return out


CASES = cases()


def test_the_cases_cover_ties_silence_and_repeated_spikes():
    ties = silent = 0
    for _, net, events in CASES:
        _, ref = forward_decisions(net, events)
        ties += int(ref.tie.sum())
        silent += int((ref.time >= net.t_max).sum())
    assert ties >= 10 and silent >= 40
    assert max(hdl.max_repeats(ev) for _, _, ev in CASES) >= 3


@needs_simulator
@pytest.mark.parametrize("name,net,events", CASES, ids=[c[0] for c in CASES])
def test_the_core_decides_like_the_engine(name, net, events, tmp_path):
    folder = export(net, tmp_path / "hex")
    check = hdl.verify_hdl(folder, net, events)  # raises on the first difference
    assert check["n_samples"] == len(events)
    assert 0 < check["cycles_mean"] <= check["cycles_max"]


@needs_simulator
@pytest.mark.parametrize("k", [1, 3])
def test_few_spikes_per_pass_give_the_same_decisions(k, tmp_path):
    """With K = 1 or 3 spikes per pass a step spans several passes; the threshold test
    still waits for the step's last spike."""
    _, net, events = CASES[2]
    _, ref = forward_decisions(net, events)
    run = hdl.simulate_hdl(export(net, tmp_path / "hex"), events, k=k)
    np.testing.assert_array_equal(run.prediction, ref.prediction)
    np.testing.assert_array_equal(run.tie, ref.tie)
    np.testing.assert_array_equal(run.time, ref.time)


@needs_simulator
def test_a_different_network_is_caught(tmp_path):
    _, net, events = CASES[0]
    other = random_net(np.random.default_rng(7), net.sizes, net.t_max, max_threshold=6)
    with pytest.raises(ExportError, match="HDL simulation: .* differs"):
        hdl.verify_hdl(export(other, tmp_path / "hex"), net, events)


def test_potential_widths_follow_the_fan_in():
    assert hdl.potential_widths((784, 600, 10)) == [11, 11]  # |V| <= 784, <= 600
    assert hdl.potential_widths((40, 25, 6), repeats=5) == [9, 6]  # 200, 25
    rng = np.random.default_rng(0)
    assert hdl.max_repeats(random_latency_events(rng, 5, 20, 10)) == 1


@needs_verilator
def test_the_core_is_lint_clean(tmp_path):
    _, net, _ = CASES[1]
    folder = export(net, tmp_path / "hex")
    top = tmp_path / "bstdg_net.v"
    top.write_text(hdl.top_verilog(json.loads((folder / "manifest.json").read_text()), folder))
    sources = [str(hdl.HARDWARE_DIR / s) for s in hdl.CORE_SOURCES] + [str(top)]
    proc = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", "bstdg_net",
                           *sources], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """A saved 784-24-10 model (t_max 32, not trained) and a fake MNIST of 30 test images."""
    monkeypatch.delenv("BSTDG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    return untrained_model_run(tmp_path, 30)


@needs_simulator
def test_cli_export_verify_hdl(tiny_run, capsys):
    run, data = tiny_run
    status = main_cli(["export", str(run), "--format", "hex", "--out", str(run / "hex"),
                       "--verify-hdl", "--limit-test", "12", "--data-dir", str(data.parent)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "HDL simulation     identical predictions" in printed and "12 mnist test" in printed
    assert "cycles per inference mean" in printed


def test_cli_verify_hdl_needs_hex(tiny_run, capsys):
    run, _ = tiny_run
    status = main_cli(["export", str(run), "--format", "npz", "--out", "x.npz", "--verify-hdl"])
    err = capsys.readouterr().err
    assert status != 0 and "--format hex" in err and len(err.strip().splitlines()) == 1
