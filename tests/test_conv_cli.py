"""Conv networks through the one config, the one loop and the CLI: ``bstdg train --arch``
(run folder, metrics.json, --resume), ``bstdg eval`` / ``bstdg bench`` on conv runs, fc-only
arch = ``--hidden``, config errors, the packaged conv configs, the estimator's ``arch``.
Tiny generated images only (``arrays:`` files and a fake MNIST)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bstdg import config as config_mod
from bstdg.cli import main_cli
from bstdg.conv_train import LayeredTrainer
from bstdg.convnet import LayeredSNN
from bstdg.errors import BstdgError, Interrupted
from bstdg.network import BinarySNN
from bstdg.recipe import TrainConfig
from bstdg.runs import RunInputs, load_model, train_run
from helpers import digit_like_images, fake_mnist, isolated, one_line_error  # noqa: F401 (autouse fixture)

ARCH = "conv4k3,pool2,fc16"
CONV = ["--arch", ARCH, "--fire-conv", "0.7"]
TIMING = ("train_seconds", "train_samples_per_s", "eval_samples_per_s")


def tiny_images(n, seed=0, size=12):
    """uint8 images ``(n, size, size)`` and labels 0..2: strokes plus a class-specific bar."""
    rng = np.random.default_rng(seed)
    images = digit_like_images(rng, n, size)
    labels = rng.integers(0, 3, n)
    for k, label in enumerate(labels):
        images[k, 2 + 3 * label, 2:10] = 255
    return images, labels


@pytest.fixture(scope="module")
def images_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    x_train, y_train = tiny_images(240, seed=1)
    x_test, y_test = tiny_images(60, seed=2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def train_argv(images_file, out, *extra) -> list:
    return ["train", "--dataset", f"arrays:{images_file}", "--t-max", "32", "--epochs", "2",
            "--theta-out", "4", "--batch-size", "16", "--seed", "3", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def conv_run(images_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "conv"
    assert main_cli(train_argv(images_file, out, *CONV)) == 0
    return out


def without_timing(metrics: dict) -> dict:
    m = {k: v for k, v in metrics.items() if k not in (*TIMING, "command", "train_wall_s", "date")}
    m["history"] = [{k: v for k, v in h.items() if k not in TIMING} for h in metrics["history"]]
    return m


# --- train and the run folder ---------------------------------------------------------------


def test_train_arch_writes_a_layered_run(conv_run, capsys):
    with np.load(conv_run / "model.npz", allow_pickle=False) as z:
        assert str(z["format"]) == "bstdg-layered-model"
    net, dataset = load_model(conv_run)
    assert isinstance(net, LayeredSNN) and str(net.arch) == ARCH and dataset.startswith("arrays:")
    assert net.arch.input_shape == (1, 12, 12) and net.sizes == (144, 400, 100, 16, 3)
    metrics = json.loads((conv_run / "metrics.json").read_text())
    assert metrics["arch"] == ARCH and metrics["config"]["arch"] == ARCH
    assert metrics["config"]["hidden"] == [16]  # the fc layers of the arch
    assert metrics["config"]["lr_w_conv"] == 0.01 and metrics["config"]["threshold_mode"] == "channel"
    assert metrics["sizes"] == [144, 400, 100, 16, 3] and metrics["epochs"] == 2
    assert list(metrics["spikes_per_layer"]) == ["0:conv4k3", "1:pool2", "2:fc16", "3:fc3"]
    assert metrics["test_accuracy"] > 0.8  # three classes: it learned
    assert not (conv_run / "checkpoint.npz").exists()


def test_eval_and_bench_on_a_conv_run(conv_run, images_file, capsys):
    metrics = json.loads((conv_run / "metrics.json").read_text())
    capsys.readouterr()
    assert main_cli(["eval", str(conv_run), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    for key in ("test_accuracy", "test_ties", "test_silent", "mean_decision_time", "hidden_spikes_per_sample",
                "spikes_per_layer"):
        assert ev[key] == metrics[key], key
    assert ev["arch"] == ARCH
    # the time-stepped reference gives the same figures on the same samples
    assert main_cli(["eval", str(conv_run), "--json", "--limit-test", "20"]) == 0
    event = json.loads(capsys.readouterr().out)
    assert main_cli(["eval", str(conv_run), "--json", "--limit-test", "20", "--engine", "dense"]) == 0
    dense = json.loads(capsys.readouterr().out)
    for key in ("test_accuracy", "test_ties", "test_silent", "mean_decision_time", "hidden_spikes_per_sample",
                "spikes_per_layer"):
        assert dense[key] == event[key], key
    assert set(ev["spike_time_per_layer"]) == set(metrics["spikes_per_layer"])
    assert main_cli(["eval", str(conv_run)]) == 0
    printed = capsys.readouterr().out
    assert "spikes per layer   conv4k3" in printed and "spike time / layer conv4k3" in printed
    assert main_cli(["bench", "--model", str(conv_run), "--samples", "40", "--dense-samples", "8",
                     "--repeats", "1", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["arch"] == ARCH and bench["agree"] and bench["spikes_agree"]
    assert bench["event_vs_dense_ratio"] > 1 and bench["train_samples_per_s"] > 0
    assert bench["accuracy"] == pytest.approx(json.loads(json.dumps(ev))["test_accuracy"], abs=1) \
        and set(bench["spikes_per_layer"]) == set(metrics["spikes_per_layer"])


def test_report_on_a_conv_run_draws_what_it_can(conv_run, capsys):
    assert main_cli(["report", str(conv_run)]) == 0
    assert "a conv network" in capsys.readouterr().out
    assert (conv_run / "report.md").is_file() and (conv_run / "training_curves.png").is_file()


def test_fc_only_arch_is_hidden_bit_for_bit(images_file, tmp_path):
    assert main_cli(train_argv(images_file, tmp_path / "hidden", "--hidden", "12,8")) == 0
    assert main_cli(train_argv(images_file, tmp_path / "arch", "--arch", "fc12,fc8")) == 0
    arrays = []
    for name in ("hidden", "arch"):
        with np.load(tmp_path / name / "model.npz", allow_pickle=False) as z:
            assert str(z["format"]) == "bstdg-model"
            arrays.append({k: z[k] for k in z.files})
    assert arrays[0].keys() == arrays[1].keys()
    for key in arrays[0]:
        np.testing.assert_array_equal(arrays[0][key], arrays[1][key])
    m = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("hidden", "arch")]
    assert without_timing(m[0]) == without_timing(m[1])
    assert m[0]["arch"] == "fc12,fc8" and m[0]["config"]["arch"] is None


def test_conv_resume_is_bit_identical(images_file, tmp_path, monkeypatch):
    config = TrainConfig(arch=ARCH, t_max=32, epochs=3, theta_out=4.0, shift=1, seed=2, batch_size=16)
    inputs = RunInputs(f"arrays:{images_file}", config)
    whole = train_run(inputs, tmp_path / "whole", log=None)
    original = LayeredTrainer.train_epoch

    def train_epoch(self, *args, **kwargs):
        if self.epoch + 1 == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)
    monkeypatch.setattr(LayeredTrainer, "train_epoch", train_epoch)
    with pytest.raises(Interrupted, match="checkpoint of the last complete epoch"):
        train_run(inputs, tmp_path / "cut", log=None)
    assert (tmp_path / "cut" / "checkpoint.npz").is_file()
    monkeypatch.undo()
    resumed = train_run(None, tmp_path / "cut", resume=True, log=None)
    with np.load(tmp_path / "whole" / "model.npz") as a, np.load(tmp_path / "cut" / "model.npz") as b:
        for key in ("w", "theta", "arch", "meta"):
            np.testing.assert_array_equal(a[key], b[key])
    assert without_timing(resumed) == without_timing(whole)


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, fragments", [
    (["--arch", "conv3k3,bogus"], ["--arch", "bad layer 'bogus'", "convCkK"]),
    (["--arch", "conv3k3,,fc10"], ["--arch", "empty layer"]),
    (["--arch", ARCH, "--optimizer", "adam"], ["anytime loss only"]),
    (["--arch", ARCH, "--loss", "s4nn"], ["anytime loss only"]),
    (["--hidden", "12", "--fire-conv", "0.5"], ["--fire-conv", "fire_conv is a setting of networks with conv"]),
    (["--arch", ARCH, "--hidden", "30"], ["both name the hidden layers"]),
    (["--arch", ARCH, "--fire-conv", "1.5"], ["--fire-conv", "fire_conv must be", "[0, 1]"]),
    (["--arch", ARCH, "--lr-w-conv", "0"], ["lr_w_conv must be"]),
    (["--arch", ARCH, "--threshold-mode", "layer"], ["--threshold-mode", "invalid choice"]),
    (["--arch", "conv3k13"], ["kernel larger than its 1x12x12 input"]),
])
def test_conv_setting_errors_are_one_line(images_file, tmp_path, capsys, extra, fragments):
    status = main_cli(train_argv(images_file, tmp_path / "r", *extra))
    one_line_error(capsys, status, *fragments)
    assert not (tmp_path / "r" / "model.npz").exists()


def test_conv_on_inputs_without_an_image_shape(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "flat.npz"
    np.savez(path, x_train=rng.integers(0, 256, (20, 30), dtype=np.uint8), y_train=rng.integers(0, 2, 20),
             x_test=rng.integers(0, 256, (10, 30), dtype=np.uint8), y_test=rng.integers(0, 2, 10))
    status = main_cli(["train", "--dataset", f"arrays:{path}", "--arch", ARCH, "--t-max", "16",
                       "--epochs", "1", "--out", str(tmp_path / "r")])
    one_line_error(capsys, status, "needs an image input")


def test_conv_memory_is_checked_before_allocation(images_file, tmp_path, monkeypatch, capsys):
    import bstdg.conv_train

    monkeypatch.setattr(bstdg.conv_train, "available_memory", lambda: 1 << 20)
    status = main_cli(train_argv(images_file, tmp_path / "r", *CONV))
    one_line_error(capsys, status, f"arch {ARCH} on 1x12x12 inputs needs about", "GiB is available")
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def test_train_config_arch_round_trip_and_hidden_shorthand():
    c = TrainConfig(arch=" Conv3k3 , pool2, 12")
    assert c.arch == "conv3k3,pool2,fc12" and c.hidden == (12,) and c.layered
    back = TrainConfig.from_dict(c.to_dict())
    assert back.to_dict() == c.to_dict() and back.arch == c.arch
    assert (back.lr_w_conv, back.window_conv, back.fire_conv, back.fire_fc, back.conv_margin,
            back.threshold_mode) == (0.01, 4.0, 0.8, 0.5, 0, "channel")  # the defaults, recorded
    assert TrainConfig(arch="fc600,fc300") == TrainConfig(hidden=(600, 300))
    assert TrainConfig(arch="conv3k3,pool2").hidden == ()
    assert TrainConfig().to_dict()["arch"] is None and TrainConfig().arch_spec == "fc600"
    assert c.margins(__import__("bstdg.arch", fromlist=["parse_layers"]).parse_layers(c.arch)) == [0, 0, 3]
    with pytest.raises(BstdgError, match="arch must be a string"):
        TrainConfig(arch=["conv3k3"])


def test_hidden_and_arch_precedence_across_sources(tmp_path):
    user = tmp_path / "c.toml"
    user.write_text('arch = "conv3k3,pool2,fc12"\nfire_conv = 0.7\n')
    _, cfg, _ = config_mod.train_settings("caltech-face-motor", user)  # its packaged hidden [100] gives way
    assert cfg.arch == "conv3k3,pool2,fc12" and cfg.hidden == (12,)
    _, cfg, _ = config_mod.train_settings("mnist", user, {"arch": "conv4k5,pool4"})
    assert cfg.arch == "conv4k5,pool4" and cfg.fire_conv == 0.7
    with pytest.raises(BstdgError, match="fire_conv is a setting of networks with conv"):
        config_mod.train_settings("mnist", user, {"hidden": (20,)})  # --hidden drops the file's arch
    _, cfg, _ = config_mod.train_settings("mnist", None, {"hidden": (20,)})
    assert cfg.hidden == (20,) and cfg.arch is None


# --- the packaged conv configs ----------------------------------------------------------------


def test_packaged_conv_configs():
    _, cfg, options = config_mod.train_settings(None, "mnist-conv")
    assert cfg.arch == "conv32k5,pool2,fc128" and cfg.shift == 0 and cfg.theta_out == 24.0
    assert (cfg.fire_conv, cfg.lr_w_conv, cfg.hidden_margin, cfg.conv_margin) == (0.8, 0.01, 2, 1)
    assert cfg.epochs == 12 and options == {}
    dataset, cfg, _ = config_mod.train_settings(None, "fashion-mnist-conv")
    assert dataset == "fashion-mnist" and cfg.arch == "conv32k5,pool2,fc128"
    assert (cfg.rule.probes, cfg.rule.beta, cfg.theta_out) == (1, 0.08, 64.0)  # chosen on held-out images
    assert (cfg.fire_conv, cfg.hidden_margin, cfg.conv_margin, cfg.hidden) == (0.95, 2, 0, (128,))  # arch, not fc1000
    dataset, cfg, options = config_mod.train_settings(None, "caltech-face-motor-conv")
    assert dataset == "caltech-face-motor" and cfg.layered
    assert options["filter"] == "none" and options["pool"] == 1  # plain pixels, no Gabor front end


def test_train_with_the_mnist_conv_config(tmp_path, capsys):
    data = fake_mnist(tmp_path / "data" / "mnist", 24, 12)
    status = main_cli(["train", "--config", "mnist-conv", "--epochs", "1", "--t-max", "32",
                       "--limit-train", "24", "--limit-test", "12", "--data-dir", str(data),
                       "--out", str(tmp_path / "r")])
    assert status == 0
    out = capsys.readouterr().out
    assert "arch conv32k5,pool2,fc128" in out and "spikes per layer" in out
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["arch"] == "conv32k5,pool2,fc128" and metrics["config"]["conv_margin"] == 1
    assert metrics["sizes"] == [784, 18432, 4608, 128, 10]


def test_train_help_lists_the_conv_options(capsys):
    assert main_cli(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--arch", "--lr-w-conv", "--window-conv", "--fire-conv", "--fire-fc", "--conv-margin",
                   "--threshold-mode"):
        assert option in text


# --- the estimator ----------------------------------------------------------------------------


def test_estimator_trains_a_conv_network(tmp_path):
    from bstdg import BinarySNNClassifier

    x, y = tiny_images(240, seed=1)
    x_test, y_test = tiny_images(60, seed=2)
    clf = BinarySNNClassifier(arch=ARCH, epochs=2, t_max=32, theta_out=4.0, seed=3, fire_conv=0.7,
                              batch_size=16).fit(x, y)
    assert isinstance(clf.model_, LayeredSNN) and clf.input_shape_ == (12, 12)
    assert clf.score(x_test, y_test) > 0.8
    clf.save(tmp_path / "m.npz")
    back = BinarySNNClassifier.load(tmp_path / "m.npz")
    assert back.arch == ARCH and isinstance(back.model_, LayeredSNN)
    np.testing.assert_array_equal(back.predict(x_test), clf.predict(x_test))
    fc = BinarySNNClassifier(hidden=(12,), epochs=1, t_max=32, seed=3).fit(x, y)
    assert isinstance(fc.model_, BinarySNN)
