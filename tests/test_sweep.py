"""``bstdg sweep``: the sweep file, the held-out split, one trial, the outputs, and two
short sweeps on a local Ray (a grid of 2 trials, then Optuna) on a tiny generated dataset."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, isolated  # noqa: F401 (autouse fixture)

from bstdg.cli import main_cli
from bstdg.config import load_config, train_settings
from bstdg.data import get_dataset
from bstdg.errors import BstdgError
from bstdg.evaluation import evaluate
from bstdg.harness import sweep_trial
from bstdg.harness.sweep import absolute_dataset, read_sweep, search_algorithm
from bstdg.harness.sweep_output import best_toml, markdown, summarise
from bstdg.harness.sweep_spec import parse_sweep
from bstdg.harness.sweep_trial import TrialSetup, heldout_split, run_trial, subset
from bstdg.train import Trainer, fit, initial_network

N_TRAIN, N_TEST, N_VAL = 120, 40, 40


def tiny_npz(path: Path) -> Path:
    """Two classes of 8x8 images: bright top half (1) or bright bottom half (0), noisy."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 2, n)
        x = (rng.random((n, 8, 8)) * 90).astype(np.uint8)
        for k in range(n):
            rows = slice(0, 4) if y[k] else slice(4, 8)
            x[k, rows] = rng.integers(60, 256, (4, 8))
        return x, y

    (x_train, y_train), (x_test, y_test) = make(N_TRAIN), make(N_TEST)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    return tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


def sweep_text(npz: Path, space: str = "theta_out = [4, 8]", **extra) -> str:
    keys = {"dataset": f'"arrays:{npz}"', "hidden": "[12]", "t_max": 16, "epochs": 2, "n_val": N_VAL, **extra}
    return "\n".join(f"{k} = {v}" for k, v in keys.items()) + "\n[space]\n" + space + "\n"


def spec_of(text: str):
    import tomllib
    return parse_sweep(tomllib.loads(text), "sweep.toml")


def one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status == 1, err
    assert_one_line_error(status, err, *fragments)


# --- the sweep file ------------------------------------------------------------------------


def test_grid_points_seeds_and_settings(npz):
    spec = spec_of(sweep_text(npz, "theta_out = [4, 8]\nbeta = [0.1, 0.2, 0.3]\nhidden = [[12], [8, 4]]",
                              seeds="[0, 1]"))
    assert spec.n_points == 12 and spec.n_trials == 24
    points = spec.points()
    assert points[0] == {"theta_out": 4, "beta": 0.1, "hidden": (12,)}
    assert points[-1] == {"theta_out": 8, "beta": 0.3, "hidden": (8, 4)}
    config, options = spec.trial_settings(points[-1], 1)
    assert (config.theta_out, config.rule.beta, config.hidden, config.seed, config.epochs) == (8, 0.3, (8, 4), 1, 2)
    assert options == {}


def test_random_points_are_drawn_once_and_in_range(npz):
    text = sweep_text(npz, "lr_w = {low = 0.001, high = 0.1, log = true}\nhidden_margin = {low = 0, high = 3}\n"
                           "theta_out = [4, 8]", search='"random"', samples=20, search_seed=5)
    spec = spec_of(text)
    points = spec.points()
    assert points == spec_of(text).points() and len(points) == 20  # the same draws every time
    assert all(0.001 <= p["lr_w"] <= 0.1 and p["hidden_margin"] in range(4) and p["theta_out"] in (4, 8)
               for p in points)
    assert {p["hidden_margin"] for p in points} == {0, 1, 2, 3}  # both ends included


@pytest.mark.parametrize("change, fragment", [
    ({"extra": "colour = 3"}, "unknown key 'colour'"),
    ({"space": ""}, "[space] is empty"),
    ({"space": "lr_w = {low = 0.1, high = 0.01}", "search": '"random"', "samples": 2},
     "low 0.1 must be below high 0.01"),
    ({"space": "lr_w = {low = 0.01, high = 0.01}", "search": '"random"', "samples": 2}, "must be below high"),
    ({"search": '"bayes"'}, "search must be one of grid, random, optuna"),
    ({"space": "lr_w = {low = 0.001, high = 0.1}"}, "grid search takes lists"),
    ({"search": '"random"'}, "needs samples = N"),
    ({"samples": 3}, "samples applies to"),
    ({"space": "colour = [1, 2]"}, "space colour: not a training, rule or dataset setting"),
    ({"space": "seed = [1, 2]"}, "list the seeds in `seeds = [...]`"),
    ({"space": "theta_out = [8, 0]"}, "point theta_out=0: theta_out must be"),
    ({"space": "theta_out = []"}, "non-empty list"),
    ({"space": "lr_w = {low = 0.1, high = 1, step = 2}", "search": '"random"', "samples": 2}, "unknown key(s) step"),
    ({"seeds": "[]"}, "seeds must be a non-empty list"),
    ({"extra": "seed = 3"}, "seed: a sweep runs every point on each of `seeds"),
    ({"n_val": 0}, "n_val must be"),
])
def test_bad_sweep_files_are_one_line_errors(npz, tmp_path, capsys, change, fragment):
    change = dict(change)
    space = change.pop("space", "theta_out = [4, 8]")
    extra_line = change.pop("extra", "")
    text = sweep_text(npz, space, **change).replace("[space]", extra_line + "\n[space]")
    if "n_val" in change:
        text = text.replace(f"n_val = {N_VAL}\n", "")
    (tmp_path / "sweep.toml").write_text(text)
    status = main_cli(["sweep", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out")])
    one_line_error(status, capsys.readouterr().err, fragment)
    assert not (tmp_path / "out" / "sweep-config.toml").exists()


def test_n_val_larger_than_training_set_fails_before_ray(npz, tmp_path, capsys):
    (tmp_path / "sweep.toml").write_text(sweep_text(npz).replace(f"n_val = {N_VAL}", f"n_val = {N_TRAIN}"))
    status = main_cli(["sweep", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out")])
    one_line_error(status, capsys.readouterr().err, f"n_val {N_TRAIN}", f"({N_TRAIN} samples)")
    assert not (tmp_path / "out" / "sweep-config.toml").exists()


def test_unreachable_address_is_one_line_error(npz, tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "sweep.toml").write_text(sweep_text(npz))
    for address in (f"ray://127.0.0.1:{port}", f"127.0.0.1:{port}", "ray://nohost"):
        status = main_cli(["sweep", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out"),
                           "--address", address])
        one_line_error(status, capsys.readouterr().err, f"--address {address}")
    assert not (tmp_path / "out" / "sweep-config.toml").exists()


def test_optuna_missing_is_a_clear_error(npz, monkeypatch):
    pytest.importorskip("ray")
    spec = spec_of(sweep_text(npz, search='"optuna"', samples=2))
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    with pytest.raises(BstdgError, match="needs Optuna"):
        search_algorithm(spec)


def test_relative_dataset_paths_become_absolute(tmp_path):
    assert absolute_dataset("arrays:tiny.npz") == f"arrays:{tmp_path / 'tiny.npz'}"
    assert absolute_dataset("mnist") == "mnist" and absolute_dataset("tonic:NMNIST") == "tonic:NMNIST"


def test_importing_bstdg_and_its_cli_does_not_import_ray():
    code = ("import sys, bstdg, bstdg.cli, bstdg.config, bstdg.runs; bstdg.cli.build_parser(); "
            "bad = [m for m in ('ray', 'optuna') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the held-out split and one trial ------------------------------------------------------


def test_heldout_split_is_fixed_disjoint_and_complete():
    fit_idx, val_idx = heldout_split(100, 30, split_seed=7)
    assert len(val_idx) == 30 and len(fit_idx) == 70
    assert np.array_equal(np.sort(np.concatenate([fit_idx, val_idx])), np.arange(100))
    again = heldout_split(100, 30, split_seed=7)
    assert np.array_equal(again[1], val_idx) and not np.array_equal(heldout_split(100, 30, 8)[1], val_idx)
    with pytest.raises(BstdgError, match="smaller than the training set"):
        heldout_split(30, 30, 0)


def test_trial_trains_without_the_heldout_part_and_reads_test_last(npz, monkeypatch):
    spec = spec_of(sweep_text(npz, epochs=3))
    events = []

    class Spy:  # the dataset, recording which split is read when
        def __init__(self, ds):
            self.ds = ds

        def load(self, split, *args):
            events.append(("load", split))
            return self.ds.load(split, *args)

    monkeypatch.setattr(sweep_trial, "get_dataset", lambda spec, options=None: Spy(get_dataset(spec, options)))
    final = run_trial(TrialSetup(spec, spec.dataset), {"theta_out": 8}, 1, lambda m: events.append(("report", m)))
    assert [e[0] if e[0] == "report" else e for e in events] == [
        ("load", "train"), "report", "report", ("load", "test"), "report"]
    reports = [e[1] for e in events if e[0] == "report"]
    assert all("test_accuracy" not in r for r in reports[:-1]) and reports[-1] is final
    assert [r["epoch"] for r in reports] == [1, 2, 3] and final["final"] and final["n_fit"] == N_TRAIN - N_VAL
    # Oracle: the same training on exactly the non-held-out samples, scored on the held-out ones.
    config, _ = spec.trial_settings({"theta_out": 8}, 1)
    train = get_dataset(spec.dataset).load("train", config.t_max)
    fit_idx, val_idx = heldout_split(N_TRAIN, N_VAL, spec.split_seed)
    fit_split, val = subset(train, fit_idx), subset(train, val_idx)
    trainer = Trainer(initial_network(config, fit_split.events, 2, {"encoder": fit_split.encoder.to_dict()}), config)
    expected = []
    fit(trainer, fit_split, None, log=None, progress=False,
        hooks=(lambda t, model, info: expected.append(evaluate(model, val.events, val.labels).accuracy),))
    assert final["val_history"] == expected and final["val_accuracy"] == expected[-1]


# --- outputs -------------------------------------------------------------------------------


def record(theta, seed, val, test):
    return {"params": {"theta_out": theta}, "seed": seed, "val_accuracy": val, "test_accuracy": test,
            "epochs": 2, "wall_s": 1.0, "val_decision_time": 5.0}


def test_best_point_is_chosen_on_heldout_accuracy_only(npz):
    records = [record(4, 0, 0.90, 0.50), record(4, 1, 0.80, 0.52),  # best held-out, worst test
               record(8, 0, 0.70, 0.99), record(8, 1, 0.76, 0.99)]
    rows = summarise(records)
    assert [r["params"]["theta_out"] for r in rows] == [4, 8]
    assert rows[0]["val_mean"] == pytest.approx(0.85)
    assert rows[0]["val_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert rows[1]["test_mean"] == pytest.approx(0.99) and rows[0]["seeds"] == [0, 1]


def test_the_table_counts_ended_trials_out_of_the_planned_ones(npz):
    """A sweep stopped after one of its two planned trials says "1 of 2", not "1 of 1"."""
    spec = spec_of(sweep_text(npz))
    records = [record(4, 0, 0.90, 0.50)]
    assert "1 of 2 trials ended:" in markdown(spec, summarise(records), N_TRAIN, records)


def test_best_toml_loads_as_a_training_config(npz, tmp_path):
    spec = spec_of(sweep_text(npz, "theta_out = [4, 8]\nbeta = [0.1]\nhidden = [[8, 4]]", seeds="[0, 3]",
                              limit_train=100).replace("[space]", "[rule]\nwindow = 8.0\n[space]"))
    row = {**summarise([record(8, 0, 0.9, 0.8)])[0], "params": {"theta_out": 8, "beta": 0.1, "hidden": (8, 4)}}
    path = tmp_path / "best.toml"
    path.write_text(best_toml(spec, row, N_TRAIN))
    assert load_config(path).train["theta_out"] == 8
    dataset, config, _ = train_settings(None, path)
    assert dataset == f"arrays:{npz}" and config.theta_out == 8 and config.hidden == (8, 4)
    assert config.rule.beta == 0.1 and config.rule.window == 8.0 and config.epochs == 2
    assert "--limit-train 100" in path.read_text()


# --- on a local Ray ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(npz, tmp_path_factory):
    """A 2-trial grid sweep (two output thresholds, one seed) with bstdg's own local Ray."""
    pytest.importorskip("ray")
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "sweep.toml").write_text(sweep_text(npz))
    start = time.perf_counter()
    status = main_cli(["sweep", "--config", str(folder / "sweep.toml"), "--out", str(folder / "out"),
                      "--workers", "2"])
    assert status == 0
    return folder, time.perf_counter() - start


def test_two_trial_sweep_writes_records_table_plot_and_best(swept):
    folder, seconds = swept
    out = folder / "out"
    result = json.loads((out / "sweep.json").read_text())
    trials = result["trials"]
    assert [t["params"] for t in trials] == [{"theta_out": 4}, {"theta_out": 8}]
    for t in trials:
        assert t["seed"] == 0 and t["epochs"] == 2 and t["status"] == "finished" and t["wall_s"] > 0
        assert 0 <= t["val_accuracy"] <= 1 and 0 <= t["test_accuracy"] <= 1 and len(t["val_history"]) == 2
    assert result["n_train"] == N_TRAIN and result["n_fit"] == N_TRAIN - N_VAL
    best = max(trials, key=lambda t: t["val_accuracy"])  # ties: the first point
    assert result["best"]["params"] == best["params"]
    table = (out / "sweep.md").read_text()
    assert "| 1 | **theta_out=" in table and "± 0.00 %" in table and "2 of 2 trials ended:" in table
    assert (out / "sweep.png").stat().st_size > 1000
    _, config, _ = train_settings(None, out / "best.toml")
    assert config.theta_out == best["params"]["theta_out"] and config.hidden == (12,) and config.t_max == 16
    # Every per-epoch report Ray kept for a trial: held-out figures only, the test figure last.
    for progress in (out / "ray").glob("trial_*/result.json"):
        lines = [json.loads(line) for line in progress.read_text().splitlines()]
        assert [line["epoch"] for line in lines] == [1, 2]
        assert "test_accuracy" not in lines[0] and "test_accuracy" in lines[-1]
    assert len(list((out / "ray").glob("trial_*/result.json"))) == 2
    print(f"2-trial sweep: {seconds:.1f} s")


def test_sweep_folder_is_not_overwritten_and_resumes(swept, tmp_path, capsys):
    folder, _ = swept
    out = tmp_path / "out"
    shutil.copytree(folder / "out", out)
    before = json.loads((out / "sweep.json").read_text())["trials"]
    status = main_cli(["sweep", "--config", str(folder / "sweep.toml"), "--out", str(out)])
    one_line_error(status, capsys.readouterr().err, "already holds a sweep", "--resume", "--force")
    (tmp_path / "other.toml").write_text(sweep_text(Path("x.npz")))
    status = main_cli(["sweep", "--resume", "--config", str(tmp_path / "other.toml"), "--out", str(out)])
    one_line_error(status, capsys.readouterr().err, "differs from the file the sweep")
    status = main_cli(["sweep", "--resume", "--out", str(out)])  # nothing left to run: same records
    assert status == 0, capsys.readouterr().err
    after = json.loads((out / "sweep.json").read_text())
    assert after["resumed"] and [t["val_accuracy"] for t in after["trials"]] == [t["val_accuracy"] for t in before]
    assert [t["wall_s"] for t in after["trials"]] == [t["wall_s"] for t in before]  # not trained again


def test_optuna_sweep_runs_each_point_on_every_seed(npz, tmp_path, capsys):
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    (tmp_path / "sweep.toml").write_text(sweep_text(
        npz, "theta_out = {low = 2, high = 12}\nhidden = [[12], [6]]", search='"optuna"', samples=1, seeds="[0, 1]"))
    spec, _ = read_sweep(tmp_path / "sweep.toml")
    assert spec.n_trials == 2
    status = main_cli(["sweep", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out"),
                       "--workers", "2"])
    assert status == 0, capsys.readouterr().err
    trials = json.loads((tmp_path / "out" / "sweep.json").read_text())["trials"]
    assert sorted(t["seed"] for t in trials) == [0, 1]
    assert trials[0]["params"] == trials[1]["params"]  # one point, both seeds
    assert 2 <= trials[0]["params"]["theta_out"] <= 12 and trials[0]["params"]["hidden"] in ([12], [6])
    assert load_config(tmp_path / "out" / "best.toml").train["theta_out"] == trials[0]["params"]["theta_out"]
