"""``bstdg compare`` and ``bstdg report`` on a tiny fake MNIST (60 train / 30 test images)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from bstdg import compare as C
from bstdg.compare_run import RUN_KEYS, run_one
from bstdg.compare_summary import HISTORY_KEYS, key_figures
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
try:
    import snntorch  # noqa: F401
    HAVE_SNNTORCH = HAVE_TORCH
except ImportError:
    HAVE_SNNTORCH = False
METHODS = (["bstdg", "s4nn-rule", "bstdg-s4nn", "bstdg-adam"] + (["bptt", "bptt-binary"] if HAVE_TORCH else [])
           + (["snntorch"] if HAVE_SNNTORCH else []))


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
        for key in C.RESULT_KEYS + RUN_KEYS:
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
    f = key_figures(runs)["64"]
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


# --- held-out selection, early stopping, time to accuracy -----------------------------------


def test_early_stopping_selects_on_the_held_out_accuracy_only():
    """Patience counts epochs since the best held-out accuracy; the test accuracy (best at
    epoch 4 here) never chooses."""
    stop = C.EarlyStopping(max_epochs=10, patience=2)
    val = [0.5, 0.7, 0.7, 0.6, 0.65]
    test = [0.5, 0.6, 0.8, 0.9, 0.7]
    kept = []
    for e, (v, t) in enumerate(zip(val, test)):
        kept.append(stop.update(e + 1, 10.0 * (e + 1), v, t))
        if stop.stop:
            break
    assert kept == [True, True, False, False]  # a tie is not an improvement
    assert stop.stopped_by == "converged" and len(stop.history) == 4  # stopped after epoch 4
    assert stop.best == {"epoch": 2, "wall_s": 20.0, "val_accuracy": 0.7, "test_accuracy": 0.6}
    assert stop.summary()["selected_epoch"] == 2 and not stop.summary()["budgeted"]
    budget = C.EarlyStopping(max_epochs=10, patience=5, budget_s=25.0)
    for e in range(1, 4):
        budget.update(e, 10.0 * e, 0.1 * e, 0.1 * e)
        if budget.stop:
            break
    assert budget.stopped_by == "budget" and e == 3 and budget.summary()["budgeted"]
    fixed = C.EarlyStopping(max_epochs=2)  # no held-out split: the last epoch, max_epochs
    assert fixed.update(1, 1.0, None, 0.9) and not fixed.stop
    assert fixed.update(2, 2.0, None, 0.8) and fixed.stopped_by == "max_epochs"
    assert fixed.best["epoch"] == 2
    with pytest.raises(BstdgError, match="--patience"):
        C.EarlyStopping(3, patience=0)


def test_held_out_split_is_fixed_disjoint_and_independent_of_limit_and_method(data_dir):
    from bstdg.methods import heldout_split, load_fit_val_test
    fit_idx, val_idx = heldout_split(60, 12)
    assert len(val_idx) == 12 and not set(fit_idx) & set(val_idx)
    assert sorted(set(fit_idx) | set(val_idx)) == list(range(60))
    np.testing.assert_array_equal(heldout_split(60, 12)[1], val_idx)  # the same every time
    full = C.get_dataset("mnist").load("train", 8, data_dir)
    splits = {}
    for method, limit, seed in (("bstdg", None, 0), ("bptt", 20, 7)):
        run = C.MethodRun(method, "mnist", 8, "x", (12,), 1, seed, limit, None, str(data_dir), val=12)
        splits[method] = fit, val, test = load_fit_val_test(run)
        np.testing.assert_array_equal(val.labels, full.labels[val_idx])
        np.testing.assert_array_equal(val.events.ptr, full.events.take(val_idx).ptr)
        np.testing.assert_array_equal(fit.labels, full.labels[fit_idx[:limit]])
        assert len(test.labels) == 30
    assert len(splits["bptt"][0].labels) == 20  # --limit-train keeps the first N of the rest
    run = C.MethodRun("bstdg", "mnist", 8, "x", (12,), 1, 0, None, None, str(data_dir), val=None)
    assert len(load_fit_val_test(run)[1].labels) == 6  # default: a tenth (5000 of MNIST's 60,000)
    with pytest.raises(BstdgError, match="--val"):
        load_fit_val_test(C.MethodRun("bstdg", "mnist", 8, "x", (12,), 1, 0, None, None, str(data_dir), val=60))


UC_METHODS = ["bstdg"] + (["bptt"] if HAVE_TORCH else []) + (["snntorch"] if HAVE_SNNTORCH else [])


@pytest.fixture(scope="module")
def converged(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "uc"
    C.compare("mnist", UC_METHODS, [8], hidden=(12,), out=out, data_dir=data_dir, isolate=False,
              log=lambda *_: None, until_converged=True, max_epochs=4, patience=1, val=12)
    return out


def test_until_converged_stops_by_patience_and_reports_the_selected_epoch(converged):
    summary = json.loads((converged / "compare.json").read_text())
    assert summary["until_converged"] and summary["n_val"] == 12 and summary["patience"] == 1
    for r in summary["runs"]:
        h = r["history"]
        assert r["n_train"] == 48 and r["n_val"] == 12 and r["epochs_trained"] == len(h)
        assert all(set(HISTORY_KEYS) <= set(e) for e in h)
        assert [e["epoch"] for e in h] == list(range(1, len(h) + 1))
        assert all(b["wall_s"] > a["wall_s"] > 0 for a, b in zip(h, h[1:]))
        assert h[-1]["wall_s"] == pytest.approx(r["train_wall_s"])
        best = max(e["val_accuracy"] for e in h)
        sel = h[r["selected_epoch"] - 1]
        assert sel["val_accuracy"] == best == r["selected_val_accuracy"]
        assert all(e["val_accuracy"] < best for e in h[:r["selected_epoch"] - 1])  # the first best
        assert r["test_accuracy"] == pytest.approx(sel["test_accuracy"])  # the selected model is kept
        assert r["stopped_by"] in ("converged", "max_epochs")
        if r["stopped_by"] == "converged":
            assert len(h) == r["selected_epoch"] + 1
    assert any(r["stopped_by"] == "converged" for r in summary["runs"])
    tta = summary["key_figures"]["8"]["time_to_accuracy"]
    assert set(tta) == set(UC_METHODS)
    md = (converged / "compare.md").read_text()
    assert "## Accuracy against training time" in md and "](accuracy_vs_time.png)" in md
    assert (converged / "accuracy_vs_time.png").stat().st_size > 5000


def test_budget_stops_a_run_and_marks_it_budgeted(data_dir, tmp_path):
    for method in UC_METHODS:
        run = C.MethodRun(method, "mnist", 8, str(tmp_path / method), (8,), 5, 0, None, None, str(data_dir),
                          val=12, patience=3, budget_s=1e-6)
        r = run_one(run)
        assert r["budgeted"] and r["stopped_by"] == "budget" and r["epochs_trained"] == 1, method
        assert len(r["history"]) == 1 and r["history"][0]["wall_s"] == pytest.approx(r["train_wall_s"])


def test_time_to_accuracy_from_a_hand_made_history():
    from bstdg.methods import time_to_accuracy
    from bstdg.report_tables import convergence_table
    history = [{"epoch": 1, "wall_s": 10.0, "val_accuracy": 0.85, "test_accuracy": 0.88},
               {"epoch": 2, "wall_s": 25.0, "val_accuracy": 0.93, "test_accuracy": 0.951},
               {"epoch": 3, "wall_s": 45.0, "val_accuracy": 0.96, "test_accuracy": 0.94},
               {"epoch": 4, "wall_s": 70.0, "val_accuracy": 0.95, "test_accuracy": 0.97}]
    assert time_to_accuracy(history) == {"time_to_90": 25.0, "time_to_95": 25.0, "time_to_97": 70.0}
    assert time_to_accuracy(history[:3]) == {"time_to_90": 25.0, "time_to_95": 25.0, "time_to_97": None}
    assert time_to_accuracy([]) == {"time_to_90": None, "time_to_95": None, "time_to_97": None}
    run = dict(method="bptt", t_max=64, epoch_s=20.0, epoch_cpu_s=30.0, peak_train_mib=50.0,
               test_accuracy=0.94, history=history, selected_epoch=3, selected_val_accuracy=0.96,
               stopped_by="converged", budgeted=False, train_s_per_epoch=17.5)
    ref = dict(run, method="bstdg", epoch_s=1.0, epoch_cpu_s=1.0, peak_train_mib=1.0, test_accuracy=0.97,
               history=[dict(h, wall_s=h["wall_s"] / 10) for h in history], stopped_by="budget",
               budgeted=True)
    f = key_figures([ref, run])["64"]
    assert f["time_to_accuracy"]["bptt"] == {"time_to_90": 25.0, "time_to_95": 25.0, "time_to_97": 70.0,
                                             "best_accuracy": 0.94, "selected_epoch": 3,
                                             "stopped_by": "converged", "budgeted": False}
    assert f["time_to_accuracy"]["bstdg"]["time_to_97"] == 7.0 and f["time_to_accuracy"]["bstdg"]["budgeted"]
    assert f["best_bptt"] == "bptt" and f["accuracy_gap_points"] == pytest.approx(3.0)
    table = convergence_table({"runs": [run, ref], "methods": ["bstdg", "bptt"], "until_converged": True})
    row = next(line for line in table if line.startswith("| bptt |"))
    assert "| 4 | converged | 3 | 96.00 % | 94.00 % | 25.0 s | 25.0 s | 70.0 s | 70.0 s | 17.5 s |" in row
    row = next(line for line in table if line.startswith("| bstdg |"))
    assert "**budget** (not converged)" in row and "| 7.0 s | 7.0 s |" in row


def test_settings_file_is_read_and_checked(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"settings": {"bptt": {"16": {"lr": 0.01}, "*": {"lr": 0.002}}}}))
    settings = C.read_settings(path)
    assert C.settings_for(settings, "bptt", 16) == {"lr": 0.01}
    assert C.settings_for(settings, "bptt", 64) == {"lr": 0.002}
    assert C.settings_for(settings, "bptt-binary", 64) is None
    for bad, fragment in (({"settings": {"nope": {}}}, "unknown method nope"),
                          ({"settings": {"bptt": {"x": {}}}}, "expected"), ([], "JSON object")):
        path.write_text(json.dumps(bad))
        with pytest.raises(BstdgError, match=fragment):
            C.read_settings(path)


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_settings_reach_the_bptt_run_and_unknown_ones_are_refused(data_dir, tmp_path):
    from bstdg.baselines import apply_settings
    from bstdg.baselines.bptt import FIXED, default_config
    with pytest.raises(BstdgError, match="no setting lr_w"):
        apply_settings(default_config(False), {"lr_w": 1.0}, FIXED)
    with pytest.raises(BstdgError, match="no setting t_max"):
        apply_settings(default_config(False), {"t_max": 4}, FIXED)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"settings": {"bptt": {"8": {"lr": 0.02, "slope": 2.0}}}}))
    C.compare("mnist", ["bptt"], [8], hidden=(12,), out=tmp_path / "s", data_dir=data_dir, isolate=False,
              log=lambda *_: None, bptt_settings=path)
    metrics = json.loads((tmp_path / "s" / "bptt-T8" / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 0.02 and metrics["config"]["slope"] == 2.0
    assert metrics["run_config"]["settings"] == {"lr": 0.02, "slope": 2.0}


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "--methods", "quant-threshold", "--until-converged", "--out", "x"], "cannot select"),
    (["compare", "--patience", "2", "--out", "x"], "need --until-converged"),
    (["compare", "--until-converged", "--val", "-1", "--out", "x"], "--val"),
    (["compare", "--bptt-settings", "nowhere.json", "--out", "x"], "nowhere.json"),
])
def test_until_converged_user_errors_are_one_line(argv, fragment, data_dir, capsys):
    assert main_cli(argv + ["--data-dir", str(data_dir)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bstdg: error: ") and fragment in err[0], err


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_cuda_is_optional_and_refused_without_a_gpu(data_dir, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main_cli(["compare", "--methods", "bptt", "--device", "cuda", "--out", "x",
                     "--data-dir", str(data_dir)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch sees no CUDA GPU" in err[0]


def benchmark_module(name: str):
    """The script ``benchmarks/NAME.py`` loaded as a module (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_lr_sweep_chooses_on_the_held_out_split_and_compare_reads_its_file(data_dir, tmp_path):
    sweep = benchmark_module("bptt_lr_sweep")
    assert sweep.grid_points("bptt-binary", (0.01,), (5.0,)) == [{"lr": 0.01, "slope": 5.0, "lr_theta": 0.1}]
    assert len(sweep.grid_points("bptt")) == 9 and len(sweep.grid_points("snntorch")) == 6
    rows = [{"settings": {"lr": 1}, "val_accuracy": 0.5, "test_accuracy": 0.9},
            {"settings": {"lr": 2}, "val_accuracy": 0.7, "test_accuracy": 0.1},
            {"settings": {"lr": 3}, "val_accuracy": 0.7, "test_accuracy": 0.8}]
    assert sweep.choose(rows) == {"lr": 2}  # held-out only, the first of equals
    doc = sweep.main(["bptt"], [8], hidden=(8,), epochs=1, limit_train=None, limit_test=10, val=12,
                     lrs=(1e-3, 1e-2), slopes=(5.0,), out=tmp_path / "sw", data_dir=data_dir,
                     isolate=False, log=lambda *_: None)
    assert len(doc["results"]) == 2 and all(r["n_val"] == 12 for r in doc["results"])
    best = max(doc["results"], key=lambda r: r["val_accuracy"])
    assert doc["settings"] == {"bptt": {"8": best["settings"]}}
    assert C.settings_for(C.read_settings(tmp_path / "sw" / "bptt_settings.json"), "bptt", 8) == best["settings"]


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_lr_sweep_inherits_the_slope_at_long_time_steps(data_dir, tmp_path):
    sweep = benchmark_module("bptt_lr_sweep")
    assert sweep.per_t((5, 3), (16, 64), "x") == {16: 5, 64: 3} and sweep.per_t(7, (1, 2), "x") == {1: 7, 2: 7}
    with pytest.raises(SystemExit):
        sweep.per_t((1, 2), (1, 2, 3), "epochs")
    doc = sweep.main(["bptt"], [8, 4], hidden=(8,), epochs=(1, 1), limit_train=(20, 10), limit_test=10, val=12,
                     lrs=(1e-2,), slopes=(2.0, 5.0), out=tmp_path / "sw", data_dir=data_dir,
                     isolate=False, inherit_slope_at={8}, log=lambda *_: None)
    at4 = [r for r in doc["results"] if r["t_max"] == 4]
    at8 = [r for r in doc["results"] if r["t_max"] == 8]
    assert len(at4) == 2 and [r["n_train"] for r in at4] == [10, 10]  # one per T, in the order given
    assert len(at8) == 1 and at8[0]["settings"]["slope"] == doc["settings"]["bptt"]["4"]["slope"]
    assert at8[0]["n_train"] == 20


@pytest.mark.parametrize("peak_lr, lrs_tried, chosen_lr", [
    (1e-2, [1e-2, 1e-2 / 3, 3e-2], 1e-2),              # the centre wins: one step each way
    (1e-1, [1e-2, 1e-2 / 3, 3e-2, 9e-2], 9e-2),        # the upper end wins: one more step that way
    (1e-4, [1e-2, 1e-2 / 3, 1e-2 / 9, 3e-2], 1e-2 / 9),  # two steps down, then the other way
])
def test_refine_searches_the_rate_line_then_the_slope_around_an_earlier_choice(peak_lr, lrs_tried, chosen_lr):
    """A hand-made held-out score peaked at ``peak_lr`` (log scale) and at slope 5: the
    rates tried, in order, and the choice; the slope line at the best rate; ``lr_theta`` tied."""
    sweep = benchmark_module("bptt_lr_sweep")
    tried = []

    def score(point):
        tried.append(point)
        acc = 1.0 - abs(math.log(point["lr"] / peak_lr)) / 10 - abs(math.log(point["slope"] / 5.0)) / 10
        return {"settings": point, "val_accuracy": acc}

    rows = sweep.refine("bptt-binary", {"lr": 1e-2, "slope": 10.0, "lr_theta": 0.1}, score)
    lrs = [p["lr"] for p in tried[:-2]]
    assert lrs == pytest.approx(lrs_tried)
    assert [p["slope"] for p in tried[-2:]] == [5.0, 20.0]          # the slope line ...
    assert all(p["lr"] == pytest.approx(chosen_lr) for p in tried[-2:])  # ... at the best rate
    assert all(p["lr_theta"] == pytest.approx(10 * p["lr"]) for p in tried)
    best = sweep.choose(rows)
    assert best["lr"] == pytest.approx(chosen_lr) and best["slope"] == 5.0
    assert len(rows) == len(tried) and rows[0]["settings"] == {"lr": 1e-2, "slope": 10.0, "lr_theta": 0.1}


# --- conv networks (--arch) ------------------------------------------------------------------

CONV_METHODS = ["bstdg"] + (["bptt", "bptt-binary"] if HAVE_TORCH else [])


def test_compare_trains_conv_networks_with_the_methods_that_can(data_dir, tmp_path):
    """``--arch`` with conv layers: bstdg trains the layered net, bptt / bptt-binary the torch
    conv network; the binary one's saved model runs identically on the event engine."""
    out = tmp_path / "conv"
    summary = C.compare("mnist", CONV_METHODS, [8], epochs=1, out=out, data_dir=data_dir, isolate=False,
                        log=lambda *_: None, arch="conv3k5s2,pool2,fc10", limit_test=20)
    assert summary["arch"] == "conv3k5s2,pool2,fc10" and summary["hidden"] == [10]
    for r in summary["runs"]:
        assert r["arch"] == "conv3k5s2,pool2,fc10" and r["sizes"] == [784, 432, 108, 10, 10]
        assert r["peak_train_mib"] >= 0 and r["train_s_per_epoch"] > 0
        metrics = json.loads((out / f"{r['method']}-T8" / "metrics.json").read_text())
        assert metrics["run_config"]["arch"] == "conv3k5s2,pool2,fc10"
    if HAVE_TORCH:
        metrics = json.loads((out / "bptt-binary-T8" / "metrics.json").read_text())
        assert metrics["event_engine_test_accuracy"] == metrics["test_accuracy"]
        assert set(summary["key_figures"]["8"]["memory_ratio"]) == {"bptt", "bptt-binary"}
    assert "784-conv3k5s2-pool2-fc10-10" in (out / "compare.md").read_text()


def test_method_run_keeps_its_arch_through_json():
    run = C.MethodRun("bptt", "mnist", 8, "x", (10,), arch="conv3k5,pool2,fc10")
    assert C.MethodRun.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    old = {k: v for k, v in run.to_dict().items() if k != "arch"}  # a config written before --arch
    assert C.MethodRun.from_dict(old).arch is None


def test_arch_of_fc_layers_is_the_hidden_network():
    assert C.resolve_arch("fc12,8", ["bstdg", "s4nn-rule"]) == ((12, 8), None)
    assert C.resolve_arch("conv4k3, pool2,fc8", ["bstdg"]) == ((8,), "conv4k3,pool2,fc8")


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "--arch", "conv4k3,pool2", "--methods", "bstdg,s4nn-rule,snntorch", "--out", "x"],
     "s4nn-rule, snntorch cannot train conv or pool layers; methods that can: bstdg, bptt, bptt-binary"),
    (["compare", "--arch", "conv4k3,blob", "--out", "x"], "--arch: arch: bad layer 'blob'"),
    (["compare", "--arch", "conv4k3", "--hidden", "30", "--out", "x"], "--hidden and --arch"),
])
def test_arch_user_errors_are_one_line(argv, fragment, data_dir, capsys):
    assert main_cli(argv + ["--data-dir", str(data_dir)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bstdg: error: ") and fragment in err[0], err


def test_the_committed_bptt_settings_cover_every_bptt_method_and_t_and_compare_converged_uses_them():
    """benchmarks/bptt_settings.json (the held-out choices the converged comparison reads by
    default) parses, names every BPTT-trained method at T = 16 / 64 / 256, and each choice is
    a point its own sweep scored, and the best one it scored there."""
    cc = benchmark_module("compare_converged")
    settings = C.read_settings(cc.SETTINGS)
    doc = json.loads(cc.SETTINGS.read_text())
    for method in ("bptt", "bptt-binary", "snntorch"):
        for t_max in (16, 64, 256):
            chosen = C.settings_for(settings, method, t_max)
            scored = [r for r in doc["results"] if r["method"] == method and r["t_max"] == t_max]
            best = max(scored, key=lambda r: r["val_accuracy"])
            assert chosen == best["settings"], (method, t_max)
    argv = cc.argv_for(argparse.Namespace(
        out="o", methods=cc.METHODS, patience=3, val=5000, device="cpu", smoke=False, time_steps="64",
        max_epochs=30, budget_s=0, settings=str(cc.SETTINGS), data_dir=None))
    assert argv[argv.index("--bptt-settings") + 1] == str(cc.SETTINGS) and "--budget-s" not in argv
