"""``bstdg compare`` and ``bstdg report`` on a tiny fake MNIST (60 train / 30 test images)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bstdg import compare as C
from bstdg.cli import main_cli
from bstdg.errors import BstdgError
from bstdg.report import report
from helpers import fake_mnist, isolated  # noqa: F401 (autouse fixture)

pytest.importorskip("matplotlib")
HAVE_TORCH = True
try:
    import torch  # noqa: F401
except ImportError:
    HAVE_TORCH = False
METHODS = ["bstdg", "s4nn-rule", "bstdg-s4nn", "bstdg-adam"] + (["bptt", "bptt-binary"] if HAVE_TORCH else [])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return fake_mnist(tmp_path_factory.mktemp("data") / "mnist", 60, 30, spots=12, low=120).parent


@pytest.fixture(scope="module")
def compared(data_dir, tmp_path_factory) -> Path:
    """One in-process comparison of every method at T=8 (hidden 12)."""
    out = tmp_path_factory.mktemp("runs") / "cmp"
    C.compare("mnist", METHODS, [8], epochs=1, hidden=(12,), out=out, data_dir=data_dir,
              isolate=False, log=lambda *_: None)
    return out


FIGURES = ("compare_vs_T.png", "decision_times_T8.png", "hidden_spikes_T8.png")
RUN_FIGURES = ("training_curves.png", "parameters.png", "raster.png", "decision_times.png",
               "hidden_spikes.png")


def test_compare_writes_json_markdown_and_plots(compared):
    summary = json.loads((compared / "compare.json").read_text())
    assert [r["method"] for r in summary["runs"]] == METHODS
    for r in summary["runs"]:
        for key in C.RESULT_KEYS + C.RUN_KEYS:
            if key != "history":
                assert key in r, key
        assert r["t_max"] == 8 and r["n_train"] == 60 and r["n_test"] == 30
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["train_s_per_epoch"] > 0
        assert r["peak_train_mib"] >= 0 and r["epoch_s"] > 0 and r["train_cpu_s_per_epoch"] >= 0
        assert 0 <= r["mean_decision_time"] <= 8
    md = (compared / "compare.md").read_text()
    for m in METHODS:
        assert f"| {m} | 8 |" in md
    for name in FIGURES:
        assert (compared / name).stat().st_size > 5000, name
        assert f"]({name})" in md
    for m in METHODS:
        run = compared / f"{m}-T8"
        assert (run / "metrics.json").exists() and (run / "test_outputs.npz").exists()
        for name in RUN_FIGURES:
            assert (run / name).stat().st_size > 5000, (m, name)
        assert f"{m}-T8/report.md" in md


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_bptt_binary_model_runs_identically_on_the_event_engine(compared):
    metrics = json.loads((compared / "bptt-binary-T8" / "metrics.json").read_text())
    assert metrics["event_engine_test_accuracy"] == metrics["test_accuracy"]
    assert metrics["history"][0]["loss"] > 0 and len(metrics["batches"]) == 1


def test_report_regenerates_every_figure_without_retraining(compared, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(compared, copy)
    for png in copy.rglob("*.png"):
        png.unlink()
    before = {p.name: p.read_text() for p in copy.glob("*.json")}
    assert main_cli(["report", str(copy)]) == 0
    for name in FIGURES:
        assert (copy / name).stat().st_size > 5000
    for m in METHODS:
        for name in RUN_FIGURES:
            assert (copy / f"{m}-T8" / name).exists()
    assert {p.name: p.read_text() for p in copy.glob("*.json")} == before  # nothing retrained
    assert (copy / "compare.md").read_text() == (compared / "compare.md").read_text()


def test_report_of_a_train_run_needs_data_only_for_raster_and_histograms(data_dir, tmp_path, capsys):
    run = tmp_path / "tiny"
    assert main_cli(["train", "--hidden", "12", "--t-max", "16", "--epochs", "2", "--data-dir",
                     str(data_dir), "--out", str(run)]) == 0
    result = report(run)  # no data to be found: curves and parameters only, and a note why
    assert set(result["figures"]) == {"training curves", "parameters"}
    assert any("--data-dir" in n for n in result["notes"])
    assert "--data-dir" in (run / "report.md").read_text()
    result = report(run, data_dir)
    assert set(result["figures"]) == {"training curves", "parameters", "raster", "decision times",
                                      "hidden spikes"}
    for name in RUN_FIGURES:
        assert (run / name).stat().st_size > 5000


def test_compare_cli_runs_each_method_in_its_own_process(data_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main_cli(["compare", "--methods", "bstdg", "--time-steps", "8", "--hidden", "8",
                     "--data-dir", str(data_dir), "--limit-train", "40", "--out", str(out)]) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["runs"][0]["n_train"] == 40 and summary["omp_wait_policy"]
    assert json.loads((out / "bstdg-T8" / "run_config.json").read_text())["limit_train"] == 40
    assert "| bstdg | 8 |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "--methods", "bstdg,nope", "--out", "x"], "unknown method nope"),
    (["compare", "--time-steps", "16,x", "--out", "x"], "--time-steps"),
    (["compare", "--limit-train-for", "bptt=many", "--out", "x"], "--limit-train-for"),
    (["report", "."], "not a bstdg run folder"),
    (["report", "nowhere"], "no such run folder"),
])
def test_user_errors_are_one_line(argv, fragment, data_dir, capsys):
    if argv[0] == "compare":
        argv = argv + ["--data-dir", str(data_dir)]
    assert main_cli(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bstdg: error: ") and fragment in err[0], err


def test_meter_measures_the_peak_growth_of_a_training_phase():
    meter = C.Meter()
    with meter.training():
        block = np.ones(40 * 2 ** 20 // 8)  # 40 MiB, touched
        del block
    assert len(meter.seconds) == 1
    if "VmHWM" in meter.method:
        assert 38 * 1024 <= meter.peak_growth_kib <= 60 * 1024
    with meter.training():
        pass
    assert meter.peak_growth_kib >= 38 * 1024  # the largest epoch counts


def test_limit_overrides_and_key_figures():
    assert C.parse_overrides("bptt@256=2000,bptt-binary=500") == {("bptt", 256): 2000,
                                                                  ("bptt-binary", None): 500}
    with pytest.raises(BstdgError):
        C.parse_overrides("bptt@x=1")
    runs = [dict(method="bstdg", t_max=64, epoch_s=1.0, epoch_cpu_s=2.0, peak_train_mib=2.0,
                 test_accuracy=0.90),
            dict(method="bptt", t_max=64, epoch_s=30.0, epoch_cpu_s=50.0, peak_train_mib=50.0,
                 test_accuracy=0.95),
            dict(method="bptt-binary", t_max=64, epoch_s=40.0, epoch_cpu_s=80.0, peak_train_mib=60.0,
                 test_accuracy=0.91)]
    f = C.key_figures(runs)["64"]
    assert f["time_ratio"] == {"bptt": 30.0, "bptt-binary": 40.0}
    assert f["cpu_time_ratio"] == {"bptt": 25.0, "bptt-binary": 40.0}
    assert f["memory_ratio"] == {"bptt": 25.0, "bptt-binary": 30.0}
    assert f["best_bptt"] == "bptt" and f["accuracy_gap_points"] == pytest.approx(-5.0)


def test_registry_is_open_to_new_methods(data_dir, tmp_path):
    """A new method is a function (RunConfig) -> dict that times its training with the meter."""

    @C.register("always-zero", "predicts class 0")
    def run_zero(config):
        train, test = C.load_splits(config)
        with config.meter.training():
            pass
        acc = float((test.labels == 0).mean())
        return {"test_accuracy": acc, "test_ties": 0, "test_silent": 0, "mean_decision_time": 0.0,
                "hidden_spikes_per_sample": 0.0, "eval_samples_per_s": 1.0,
                "train_accuracy_running": 0.0, "n_train": len(train.labels),
                "n_test": len(test.labels), "history": []}

    try:
        summary = C.compare("mnist", ["always-zero"], [4], out=tmp_path / "z", data_dir=data_dir,
                            isolate=False, log=lambda *_: None)
        assert summary["runs"][0]["method"] == "always-zero"
        assert (tmp_path / "z" / "compare_vs_T.png").exists()
    finally:
        del C.METHODS["always-zero"]
