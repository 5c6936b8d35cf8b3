"""The ``bstdg`` command line on a tiny fake MNIST (300 train / 100 test images)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bstdg
from bstdg.cli import main_cli
from bstdg.data import fetch as fetch_mod
from bstdg.data.idx import read_decompressed
from helpers import assert_one_line_error, fake_mnist, isolated  # noqa: F401 (autouse fixture)

N_TRAIN, N_TEST = 300, 100


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return fake_mnist(tmp_path_factory.mktemp("data") / "mnist", N_TRAIN, N_TEST)


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory) -> Path:
    """One tiny training run shared by the eval and bench tests."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    status = main_cli(["train", "--dataset", "mnist", "--hidden", "16", "--t-max", "32",
                       "--epochs", "1", "--data-dir", str(data_dir), "--out", str(out)])
    assert status == 0
    return out



# --- train / eval / bench ----------------------------------------------------------------


def test_train_writes_model_and_metrics(run_dir, capsys):
    with np.load(run_dir / "model.npz", allow_pickle=False) as z:
        assert list(z["sizes"]) == [784, 16, 10] and int(z["t_max"]) == 32
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "train_accuracy", "epochs", "train_samples_per_s",
                "eval_samples_per_s", "hidden_spikes_per_sample", "mean_decision_time", "config"):
        assert key in metrics
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_accuracy"] <= 1.0
    config = metrics["config"]
    assert config["hidden"] == [16] and config["t_max"] == 32 and config["epochs"] == 1
    assert config["batch_size"] == 64 and config["seed"] == 0  # TrainConfig's own defaults


def test_train_prints_final_metrics(data_dir, tmp_path, capsys):
    status = main_cli(["train", "--hidden", "8,8", "--t-max", "16", "--epochs", "1",
                       "--limit-train", "64", "--limit-test", "32", "--batch-size", "32",
                       "--seed", "3", "--data-dir", str(data_dir), "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert status == 0
    for fragment in ("test accuracy", "train accuracy", "ties", "decision time",
                     "hidden spikes", "samples/s", "wall time"):
        assert fragment in out
    config = json.loads((tmp_path / "r" / "metrics.json").read_text())["config"]
    assert config["hidden"] == [8, 8] and config["batch_size"] == 32 and config["seed"] == 3
    assert config["optimizer"] == "sgd" and config["lr_w"] == 0.01  # unset rates: the recipe's
    assert config["rule"]["loss"] == "anytime" and config["hidden_margin"] == 3


def test_train_shift_augments_images_only(data_dir, tmp_path, capsys):
    status = main_cli(["train", "--hidden", "8", "--t-max", "16", "--epochs", "1", "--shift", "2",
                       "--limit-train", "64", "--limit-test", "32", "--data-dir", str(data_dir),
                       "--out", str(tmp_path / "r")])
    assert status == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["config"]["shift"] == 2
    with np.load(tmp_path / "r" / "model.npz", allow_pickle=False) as z:
        encoder = json.loads(str(z["meta"]))["encoder"]
    assert encoder["input_shape"] == [28, 28]
    capsys.readouterr()
    status = main_cli(["train", "--epochs", "1", "--shift", "-1", "--data-dir", str(data_dir),
                       "--out", str(tmp_path / "s")])
    assert status != 0 and "--shift" in capsys.readouterr().err


def test_train_optimizer_and_learning_rates(data_dir, tmp_path, capsys):
    status = main_cli(["train", "--hidden", "8", "--t-max", "16", "--epochs", "1", "--limit-train", "64",
                       "--limit-test", "32", "--optimizer", "adam", "--lr-w-out", "0.02",
                       "--data-dir", str(data_dir), "--out", str(tmp_path / "r")])
    assert status == 0
    assert "adam, batch 64" in capsys.readouterr().out
    config = json.loads((tmp_path / "r" / "metrics.json").read_text())["config"]
    assert config["optimizer"] == "adam" and config["lr_w_out"] == 0.02
    assert config["lr_w"] == 0.01 and config["lr_theta"] == 0.01  # adam's defaults filled in
    assert config["rule"]["loss"] == "s4nn" and config["hidden_margin"] == 0  # adam's loss


def eval_json(run_dir, data_dir, capsys, *extra) -> dict:
    capsys.readouterr()
    status = main_cli(["eval", str(run_dir), "--data-dir", str(data_dir), "--json", *extra])
    out = capsys.readouterr().out
    assert status == 0
    assert len(out.strip().splitlines()) == 1  # one JSON object on one line
    return json.loads(out)


def test_eval_event_and_dense_agree(run_dir, data_dir, capsys):
    event = eval_json(run_dir, data_dir, capsys)
    dense = eval_json(run_dir, data_dir, capsys, "--engine", "dense")
    for key in ("test_accuracy", "test_ties", "test_silent", "mean_decision_time",
                "hidden_spikes_per_sample", "eval_samples_per_s", "engine", "n_samples"):
        assert key in event and key in dense
    assert (event["engine"], dense["engine"]) == ("event", "dense")
    assert event["n_samples"] == dense["n_samples"] == N_TEST
    for key in ("test_accuracy", "test_ties", "test_silent", "mean_decision_time",
                "hidden_spikes_per_sample"):
        assert event[key] == dense[key], key
    assert eval_json(run_dir, data_dir, capsys, "--limit-test", "10")["n_samples"] == 10


BENCH_KEYS = ("event_samples_per_s", "event_full_samples_per_s", "dense_samples_per_s",
              "event_vs_dense_ratio", "train_samples_per_s", "threads", "samples", "repeats",
              "processor", "cpu_count", "agree")


@pytest.mark.parametrize("with_model", [True, False], ids=["trained", "fresh-784-600-10"])
def test_bench_json(with_model, run_dir, data_dir, tmp_path, capsys):
    model = ["--model", str(run_dir)] if with_model else []
    out_file = tmp_path / "bench" / "bench.json"
    status = main_cli(["bench", *model, "--samples", "40", "--dense-samples", "12",
                       "--repeats", "2", "--data-dir", str(data_dir), "--json",
                       "--out", str(out_file)])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads(out_file.read_text()) == result
    for key in BENCH_KEYS:
        assert key in result, key
    assert result["agree"] is True and result["spikes_agree"] is True
    assert result["samples"] == 40 and result["dense_samples"] == 12 and result["repeats"] == 2
    assert result["sizes"] == ([784, 16, 10] if with_model else [784, 600, 10])
    assert result["event_vs_dense_ratio"] == pytest.approx(
        result["event_samples_per_s"] / result["dense_samples_per_s"])
    assert min(result[key] for key in BENCH_KEYS[:5]) > 0


# --- data --------------------------------------------------------------------------------


def test_data_list_and_verify(data_dir, capsys):
    assert main_cli(["data", "list", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    mnist_row = next(line for line in out.splitlines() if line.startswith("mnist "))
    assert "yes" in mnist_row and str(data_dir) in mnist_row
    # the fake files are not the real MNIST: verification fails, with one line
    status = main_cli(["data", "verify", "mnist", "--data-dir", str(data_dir)])
    assert_one_line_error(status, capsys.readouterr().err, "fail verification")


def test_data_fetch_does_nothing_when_verified_data_is_found(data_dir, monkeypatch, capsys):
    checksums = {f: hashlib.sha256(read_decompressed(fetch_mod.find_file(data_dir, f))).hexdigest()
                 for f in fetch_mod.IDX_SPECS["mnist"].files}
    monkeypatch.setitem(fetch_mod.IDX_SPECS, "mnist",
                        dataclasses.replace(fetch_mod.IDX_SPECS["mnist"], files=checksums))

    def no_download(*args, **kwargs):
        raise AssertionError("fetch must not download when verified data is present")
    monkeypatch.setattr(fetch_mod, "fetch_idx", no_download)
    monkeypatch.setenv("BSTDG_DATA", str(data_dir))
    assert main_cli(["data", "fetch", "mnist"]) == 0
    assert "already present and verified" in capsys.readouterr().out
    assert not Path("datasets").exists()


# --- errors ------------------------------------------------------------------------------


def test_missing_data_dir(tmp_path, capsys):
    status = main_cli(["train", "--data-dir", str(tmp_path / "nowhere"), "--out", "runs/x"])
    assert_one_line_error(status, capsys.readouterr().err, "--data-dir", "no such folder")
    (tmp_path / "empty").mkdir()
    status = main_cli(["train", "--data-dir", str(tmp_path / "empty"), "--out", "runs/x"])
    assert_one_line_error(status, capsys.readouterr().err, "mnist not found",
                          "bstdg data fetch mnist")
    assert not Path("runs").exists()  # nothing created before the data was found


def test_unwritable_out(data_dir, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    status = main_cli(["train", "--data-dir", str(data_dir), "--out",
                       str(tmp_path / "a-file" / "run")])
    assert_one_line_error(status, capsys.readouterr().err, "--out", "cannot write")


def test_unknown_dataset(data_dir, capsys):
    status = main_cli(["train", "--dataset", "cifar-10", "--data-dir", str(data_dir),
                       "--out", "runs/x"])
    assert_one_line_error(status, capsys.readouterr().err, "unknown dataset 'cifar-10'", "arrays:")


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--hidden", "600,x", "--out", "r"], "--hidden"),
    (["train", "--epochs", "0", "--out", "r"], "--epochs"),
    (["train", "--t-max", "1", "--out", "r"], "--t-max"),
    (["train", "--lr-w", "-1e-3", "--out", "r"], "--lr-w"),
    (["train", "--hidden", "16"], "--out"),
    (["eval", "runs/none"], "no model at"),
    (["eval", "r", "--engine", "gpu"], "--engine"),
    (["data", "fetch", "imagenet"], "unknown dataset"),
    (["frobnicate"], "invalid choice"),
    ([], "missing COMMAND"),
])
def test_bad_arguments(argv, fragment, capsys):
    assert_one_line_error(main_cli(argv), capsys.readouterr().err, fragment)


def test_console_entry_point(tmp_path):
    """The installed ``bstdg`` script (``python -m bstdg.cli`` when bstdg is not installed
    next to this Python): one line, no traceback."""
    script = Path(sys.executable).with_name("bstdg")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "bstdg.cli"]
    env = {**os.environ, "PYTHONPATH": str(Path(bstdg.__file__).parents[1])}
    proc = subprocess.run([*command, "eval", str(tmp_path / "no-run")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 1
    assert_one_line_error(proc.returncode, proc.stderr, "no model at")
    assert proc.stdout == ""


def test_number_list_parses_comma_separated_values():
    import argparse

    from bstdg.cli import number_list
    assert number_list(int)("2,3,4") == (2, 3, 4)
    assert number_list(float)("8") == (8.0,)
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated int values like 2,3,4, got '2,x'"):
        number_list(int)("2,x")
