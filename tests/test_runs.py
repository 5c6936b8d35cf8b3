"""The run folder: refuse / --force / --resume (bit-identical), the lock, atomic writes,
interrupts, settings checked where they enter, run files kept off other commands' outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bstdg import runs
from bstdg.cli import main_cli
from bstdg.errors import BstdgError, Interrupted
from bstdg.files import atomic_write
from bstdg.recipe import TrainConfig
from bstdg.runs import RunFolder, RunInputs, train_run
from bstdg.train import Trainer
from helpers import fake_mnist, isolated, one_line_error  # noqa: F401 (autouse fixture)


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    return fake_mnist(tmp_path / "data" / "mnist", 200, 60)


def inputs(data_dir, **config) -> RunInputs:
    settings = dict(hidden=(16,), t_max=32, epochs=3, seed=4)
    return RunInputs("mnist", TrainConfig(**{**settings, **config}), {}, str(data_dir))



def model_arrays(run: Path) -> dict:
    with np.load(run / "model.npz", allow_pickle=False) as z:
        return {k: z[k] for k in ("w", "theta", "sizes", "t_max")}


def interrupt_at(monkeypatch, epoch: int):
    """Make Trainer.train_epoch raise KeyboardInterrupt when it starts epoch ``epoch`` (1-based)."""
    original = Trainer.train_epoch

    def train_epoch(self, *args, **kwargs):
        if self.epoch + 1 == epoch:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)


@pytest.mark.parametrize("config", [{}, {"optimizer": "adam", "shift": 1}])
def test_resume_is_bit_identical(data_dir, tmp_path, monkeypatch, config):
    whole = train_run(inputs(data_dir, **config), tmp_path / "whole", log=None)
    interrupt_at(monkeypatch, 3)
    with pytest.raises(Interrupted, match="checkpoint of the last complete epoch") as info:
        train_run(inputs(data_dir, **config), tmp_path / "cut", log=None)
    assert info.value.status == 130
    assert (tmp_path / "cut" / "checkpoint.npz").is_file() and not (tmp_path / "cut" / "metrics.json").exists()
    monkeypatch.undo()
    resumed = train_run(None, tmp_path / "cut", resume=True, log=None)
    for key, value in model_arrays(tmp_path / "whole").items():
        np.testing.assert_array_equal(model_arrays(tmp_path / "cut")[key], value)
    timing = ("train_seconds", "train_samples_per_s", "eval_samples_per_s")
    strip = lambda hist: [{k: v for k, v in h.items() if k not in timing} for h in hist]  # noqa: E731
    assert strip(resumed["history"]) == strip(whole["history"])
    for key in ("test_accuracy", "test_ties", "train_accuracy", "mean_decision_time", "config", "inputs"):
        assert resumed[key] == whole[key]
    assert not (tmp_path / "cut" / "checkpoint.npz").exists()  # finished: no checkpoint left


def test_refuse_force_and_resume_from_the_cli(data_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", "--hidden", "8", "--t-max", "16", "--epochs", "1", "--data-dir", str(data_dir), "--out", out]
    assert main_cli(argv) == 0
    before = (tmp_path / "run" / "model.npz").read_bytes()
    capsys.readouterr()
    one_line_error(capsys, main_cli(argv), "already holds a run", "--force", "--resume")
    assert (tmp_path / "run" / "model.npz").read_bytes() == before  # untouched
    assert main_cli([*argv, "--seed", "5", "--force"]) == 0
    assert (tmp_path / "run" / "model.npz").read_bytes() != before
    capsys.readouterr()
    one_line_error(capsys, main_cli(["train", "--resume", out]), "no checkpoint.npz to resume from")
    one_line_error(capsys, main_cli(["train", "--resume", out, "--epochs", "3"]), "drop --epochs")
    one_line_error(capsys, main_cli(["train", "--epochs", "1"]), "--out RUN is required")


def test_lock_refuses_a_second_writer(data_dir, tmp_path, capsys):
    with RunFolder(tmp_path / "run").lock():
        with pytest.raises(BstdgError, match="in use by another bstdg process"):
            RunFolder(tmp_path / "run").lock()
        status = main_cli(["train", "--hidden", "8", "--t-max", "16", "--epochs", "1", "--data-dir",
                           str(data_dir), "--out", str(tmp_path / "run")])
        one_line_error(capsys, status, "in use by another bstdg process")
    RunFolder(tmp_path / "run").lock().unlock()  # released with its holder


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write(path, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(BstdgError, match="No space left on device"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temporary file left behind


def test_sigterm_keeps_the_checkpoint_and_says_how_to_resume(data_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(runs.__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "bstdg.cli", "train", "--hidden", "16", "--t-max", "32",
                             "--epochs", "400", "--data-dir", str(data_dir), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "checkpoint.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and f"bstdg train --resume {out}" in err.strip().splitlines()[-1]
    state, record = RunFolder(out).read_checkpoint()
    assert record["inputs"]["config"]["epochs"] == 400 and state["epoch"] >= 1


@pytest.mark.parametrize("option, value, fragment", [
    ("--t-max", "0", "t_max must be an integer in [2, 16777216]"),
    ("--t-max", "1", "t_max"), ("--t-max", "3000000000", "t_max"),
    ("--epochs", "0", "epochs must be an integer >= 1"), ("--epochs", "-1", "epochs"),
    ("--seed", "-1", "seed"), ("--batch-size", "0", "batch_size"), ("--batch-size", "-1", "batch_size"),
    ("--lr-w", "inf", "lr_w must be a finite number > 0"), ("--lr-w", "nan", "lr_w"),
    ("--lr-w", "-0.1", "lr_w"), ("--lr-theta", "nan", "lr_theta"), ("--margin", "inf", "margin"),
    ("--average", "nan", "average"), ("--average", "1", "average"), ("--theta-out", "nan", "theta_out"),
    ("--theta-out", "-3", "theta_out"), ("--window", "nan", "window"), ("--lr-decay", "-1", "lr_decay"),
    ("--hidden", "0", "expected layer sizes"), ("--hidden-margin", "-2", "hidden_margin"),
    ("--hidden", "1000000000", "hidden"), ("--probes", "0", "probes"), ("--beta", "0", "beta"),
])
def test_settings_are_checked_where_they_enter(data_dir, tmp_path, capsys, option, value, fragment):
    status = main_cli(["train", option, value, "--data-dir", str(data_dir), "--out", str(tmp_path / "r")])
    one_line_error(capsys, status, fragment)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_memory_is_estimated_before_allocating(data_dir, tmp_path, capsys):
    status = main_cli(["train", "--hidden", "1000000,1000000", "--data-dir", str(data_dir),
                       "--out", str(tmp_path / "r")])
    one_line_error(capsys, status, "network needs about", "GiB")


def test_other_commands_never_write_over_run_files(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main_cli(["train", "--hidden", "8", "--t-max", "16", "--epochs", "1", "--data-dir", str(data_dir),
                     "--out", str(run)]) == 0
    metrics = (run / "metrics.json").read_bytes()
    capsys.readouterr()
    one_line_error(capsys, main_cli(["export", str(run), "--format", "npz", "--out", str(run / "metrics.json")]),
                   "would overwrite a file of the run")
    os.link(run / "model.npz", tmp_path / "link.npz")
    one_line_error(capsys, main_cli(["export", str(run), "--format", "npz", "--out", str(tmp_path / "link.npz")]),
                   "hard link")
    one_line_error(capsys, main_cli(["bench", "--model", str(run), "--samples", "8", "--out",
                                     str(run / "model.npz"), "--data-dir", str(data_dir)]),
                   "would overwrite a file of the run")
    assert (run / "metrics.json").read_bytes() == metrics
    assert json.loads(metrics)["inputs"]["limit_train"] is None


def test_training_says_where_the_data_came_from(data_dir, tmp_path, monkeypatch, capsys):
    """An incomplete --data-dir with BSTDG_DATA set: the copy used and the one skipped are named."""
    partial = tmp_path / "partial" / "mnist"
    partial.mkdir(parents=True)
    (partial / "train-images-idx3-ubyte.gz").write_bytes((data_dir / "train-images-idx3-ubyte.gz").read_bytes())
    monkeypatch.setenv("BSTDG_DATA", str(data_dir.parent))
    assert main_cli(["train", "--hidden", "8", "--t-max", "16", "--epochs", "1", "--data-dir",
                     str(tmp_path / "partial"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"data: mnist from {data_dir}" in out


def test_dense_reference_refuses_what_cannot_fit(monkeypatch):
    from bstdg.engine import BinaryNet
    from bstdg.engine import dense
    from bstdg.encoding import times_to_events

    net = BinaryNet((np.ones((64, 2), np.int8),), (np.ones(2, np.int32),), 1 << 24)
    events = times_to_events(np.zeros((3, 64), np.int32), 1 << 24)  # 4 GiB of raster per sample
    monkeypatch.setattr(dense, "available_memory", lambda: 1 << 30)
    with pytest.raises(BstdgError, match="time-stepped reference needs .* per sample"):
        dense.if_network_forward_dense(net, events)
