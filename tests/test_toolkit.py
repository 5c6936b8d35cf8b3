"""Bring your own data (arrays:, images:, events:), the Python API and the estimator, on
tiny generated data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bstdg.cli import main_cli
from bstdg.data import get_dataset, load_events
from bstdg.data.idx import read_idx
from bstdg.data.shd import write_spike_file
from bstdg.errors import DataError
from helpers import fake_mnist, isolated, one_line_error  # noqa: F401 (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]


def fake_arrays(n_train=120, n_test=40, seed=0):
    """MNIST-like uint8 images (fake_mnist) as arrays, labels 0..9."""
    folder = fake_mnist(Path.cwd() / "fake", n_train, n_test, seed)
    x = {s: read_idx(folder / f"{p}-images-idx3-ubyte.gz") for s, p in (("train", "train"), ("test", "t10k"))}
    y = {s: read_idx(folder / f"{p}-labels-idx1-ubyte.gz") for s, p in (("train", "train"), ("test", "t10k"))}
    return x["train"], y["train"], x["test"], y["test"]



TRAIN = ["train", "--hidden", "12", "--t-max", "16", "--epochs", "1"]


# --- arrays: ------------------------------------------------------------------------------


def test_arrays_pixels_encode_like_mnist_and_train(tmp_path, capsys):
    x_train, y_train, x_test, y_test = fake_arrays()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    path = tmp_path / "x.npz"
    np.savez(path, x_train=x_train, y_train=names[y_train], x_test=x_test / 255.0, y_test=names[y_test])
    split = load_events(f"arrays:{path}", "train", 16)
    reference = load_events("mnist", "train", 16, Path.cwd() / "fake")  # the same images as IDX files
    np.testing.assert_array_equal(split.events.times, reference.events.times)
    np.testing.assert_array_equal(split.events.units, reference.events.units)
    assert split.classes == tuple(sorted(names)) and split.encoder.input_shape == (28, 28)
    np.testing.assert_array_equal(np.array(split.classes)[split.labels], names[y_train])
    status = main_cli([*TRAIN, "--dataset", f"arrays:{path}", "--out", str(tmp_path / "run")])
    assert status == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["schema"] == "bstdg-run/1" and metrics["n_train"] == 120 and metrics["n_test"] == 40
    assert metrics["inputs"]["dataset"] == f"arrays:{path}" and metrics["classes"] == sorted(names)
    assert main_cli(["eval", str(tmp_path / "run")]) == 0


def test_arrays_events(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 30), ("test", 10)):
        counts = rng.integers(0, 6, n)
        arrays[f"ptr_{split}"] = np.r_[0, np.cumsum(counts)]
        arrays[f"times_{split}"] = rng.integers(0, 24, counts.sum())  # unsorted; some >= t_max 20
        arrays[f"units_{split}"] = rng.integers(0, 7, counts.sum())
        arrays[f"y_{split}"] = rng.integers(0, 3, n)
    path = tmp_path / "ev.npz"
    np.savez(path, n_units=9, **arrays)
    split = load_events(f"arrays:{path}", "train", 20)
    ev = split.events
    assert ev.n_units == 9 and len(ev) == 30
    for b in range(30):  # each sample: its events with step < 20, sorted by time
        lo, hi = arrays["ptr_train"][b], arrays["ptr_train"][b + 1]
        t, u = arrays["times_train"][lo:hi], arrays["units_train"][lo:hi]
        keep = t < 20
        order = np.argsort(t[keep], kind="stable")
        np.testing.assert_array_equal(ev.times[ev.ptr[b]:ev.ptr[b + 1]], t[keep][order])
        np.testing.assert_array_equal(ev.units[ev.ptr[b]:ev.ptr[b + 1]], u[keep][order])
    assert main_cli([*TRAIN, "--t-max", "20", "--dataset", f"arrays:{path}", "--out", str(tmp_path / "r")]) == 0


@pytest.mark.parametrize("arrays, fragment", [
    ({"x_train": np.zeros((4, 3))}, "missing y_train, x_test, y_test"),
    ({"x_train": np.full((4, 3), 2.0), "y_train": [0, 1, 0, 1], "x_test": np.zeros((2, 3)),
      "y_test": [0, 1]}, "float values must be finite and in [0, 1]"),
    ({"x_train": np.full((4, 3), np.nan), "y_train": [0, 1, 0, 1], "x_test": np.zeros((2, 3)),
      "y_test": [0, 1]}, "finite"),
    ({"x_train": np.zeros((4, 3)), "y_train": [0, 0, 0, 0], "x_test": np.zeros((2, 3)),
      "y_test": [0, 0]}, "need at least 2"),
    ({"x_train": np.zeros((4, 3)), "y_train": [0, 1, 0], "x_test": np.zeros((2, 3)),
      "y_test": [0, 1]}, "4 samples but 3 labels"),
    ({"x_train": np.zeros((0, 3)), "y_train": np.zeros(0, int), "x_test": np.zeros((2, 3)),
      "y_test": [0, 1]}, "N >= 1"),
])
def test_arrays_bad_files_one_line(tmp_path, capsys, arrays, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    status = main_cli([*TRAIN, "--dataset", f"arrays:{path}", "--out", str(tmp_path / "r")])
    one_line_error(capsys, status, fragment)


def test_arrays_unreadable_and_missing(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    one_line_error(capsys, main_cli([*TRAIN, "--dataset", f"arrays:{tmp_path / 'junk.npz'}", "--out", "r"]),
                   "cannot read the arrays file")
    one_line_error(capsys, main_cli([*TRAIN, "--dataset", f"arrays:{tmp_path / 'no.npz'}", "--out", "r"]),
                   "no such file")
    one_line_error(capsys, main_cli([*TRAIN, "--dataset", "arrays:", "--out", "r"]), "give a path")
    one_line_error(capsys, main_cli([*TRAIN, "--dataset", "pixels:x", "--out", "r"]), "unknown dataset")


# --- images: ------------------------------------------------------------------------------


def write_image_folders(root: Path, n=4):
    """Two classes of 12x10 images, PNG and JPEG mixed: a bright left or right half."""
    for split in ("train", "test"):
        for c, name in enumerate(("left", "right")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                a = np.full((12, 10), 20, np.uint8)
                a[:, :5] if c == 0 else a[:, 5:]
                a[:, (0 if c == 0 else 5):(5 if c == 0 else 10)] = 200 + i
                Image.fromarray(a).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_images_plain_latency_and_front_ends(tmp_path):
    root = write_image_folders(tmp_path / "imgs")
    split = load_events(f"images:{root}", "train", 32)
    assert split.classes == ("left", "right") and list(split.labels) == [0, 1, 0, 1, 0, 1, 0, 1]
    assert split.encoder.input_shape == (1, 12, 10) and split.encoder.kind == "latency"
    # the first PNG (sample index 2: label 0, file 1.png) is exact: latency code of pixel / 255
    png = np.asarray(Image.open(root / "train" / "left" / "1.png"), np.float64) / 255.0
    expected = np.rint((1 - png) * 31).astype(int).ravel()
    ev = split.events
    times = np.full(120, 32)
    times[ev.units[ev.ptr[2]:ev.ptr[3]]] = ev.times[ev.ptr[2]:ev.ptr[3]]
    np.testing.assert_array_equal(times, expected)
    gabor = load_events(f"images:{root}", "test", 32, options={"filter": "gabor", "height": 12,
                                                                "width": 10, "pool": 2})
    assert gabor.encoder.input_shape == (4, 6, 5) and gabor.encoder.kind == "gabor-latency"


def test_images_train_from_cli_and_errors(tmp_path, capsys):
    root = write_image_folders(tmp_path / "imgs")
    assert main_cli([*TRAIN, "--dataset", f"images:{root}", "--out", str(tmp_path / "r")]) == 0
    one_line_error(capsys, main_cli([*TRAIN, "--dataset", f"images:{tmp_path / 'none'}", "--out", "r"]),
                   "no such folder")
    (tmp_path / "one" / "train" / "a").mkdir(parents=True)
    (tmp_path / "one" / "test" / "a").mkdir(parents=True)
    one_line_error(capsys, main_cli([*TRAIN, "--dataset", f"images:{tmp_path / 'one'}", "--out", "r"]),
                   "need at least 2")
    (root / "train" / "left" / "9.png").write_bytes(b"not a png")
    one_line_error(capsys, main_cli([*TRAIN, "--dataset", f"images:{root}", "--out", "r2"]),
                   "not a readable image")


# --- events: -----------------------------------------------------------------------------


def test_events_folder_trains_and_bins_like_shd(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for split, n in (("train", 24), ("test", 8)):
        times = [np.sort(rng.uniform(0, 0.6, rng.integers(5, 30))) for _ in range(n)]
        units = [rng.integers(0, 16, len(t)) for t in times]
        write_spike_file(tmp_path / "ev" / f"mine_{split}.h5", times, units, rng.integers(0, 3, n), 16)
    spec = f"events:{tmp_path / 'ev'}"
    split = load_events(spec, "train", 50, options={"duration_s": 0.5, "channels": 8})
    assert split.events.n_units == 8 and split.n_classes == 3
    assert (split.events.times < 50).all() and split.encoder.kind == "spike-bins"
    assert get_dataset(spec).options.channels == 16  # 0: every channel of the files
    assert main_cli([*TRAIN, "--dataset", spec, "--out", str(tmp_path / "r")]) == 0
    (tmp_path / "ev" / "other_train.h5").write_bytes(b"")
    one_line_error(capsys, main_cli([*TRAIN, "--dataset", spec, "--out", "r2"]), "2 *_train.h5")
    with pytest.raises(DataError, match="channels must be 0"):
        get_dataset(spec, {"channels": -1})


# --- the estimator and the README example ---------------------------------------------------


def test_estimator_follows_scikit_learn_conventions():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    from bstdg import BinarySNNClassifier

    x_train, y_train, _, _ = fake_arrays(300, 10)
    clf = BinarySNNClassifier(hidden=(40,), epochs=3, t_max=32, theta_out=6)
    assert clone(clf).get_params() == clf.get_params()
    scores = cross_val_score(clf, x_train, y_train, cv=3)
    assert len(scores) == 3 and scores.min() > 0.5, scores  # chance is 0.1
    with pytest.raises(ValueError, match="invalid parameter"):
        clf.set_params(hiden=3)
    assert sklearn.base.is_classifier(clf)


def test_estimator_fit_predict_save_load(tmp_path):
    from bstdg import BinarySNNClassifier, TrainConfig

    x_train, y_train, x_test, y_test = fake_arrays(200, 50)
    names = {k: f"digit{k}" for k in range(10)}
    y_named = np.array([names[k] for k in y_train])
    clf = BinarySNNClassifier(hidden=(30,), epochs=2, t_max=32, theta_out=6, seed=3)
    assert clf.fit(x_train, y_named) is clf and clf.n_features_in_ == 784
    predicted = clf.predict(x_test)
    assert set(predicted) <= set(names.values())
    assert clf.score(x_test, [names[k] for k in y_test]) > 0.4
    assert (clf.decision_times(x_test) <= 32).all()
    clf.save(tmp_path / "m.npz")
    again = BinarySNNClassifier.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.predict(x_test), predicted)
    assert again.get_params() == clf.get_params()
    # the estimator's parameters are TrainConfig's (plus the rule fields and verbose): no drift
    import dataclasses
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"rule"}
    assert fields <= set(clf.get_params())
    with pytest.raises(ValueError, match="lr_w must be a finite number"):
        BinarySNNClassifier(lr_w=float("nan")).fit(x_train, y_train)
    assert main_cli(["eval", str(tmp_path / "m.npz"), "--limit-test", "5"]) != 0  # no dataset to re-read
    assert main_cli(["export", str(tmp_path / "m.npz"), "--format", "c", "--out", str(tmp_path / "m.h"),
                     "--random-inputs", "50"]) == 0


def test_readme_python_example_runs(tmp_path):
    """The Python API example of README.md runs as written (on arrays made here)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md has no api-example block"
    x_train, y_train, x_test, y_test = fake_arrays(200, 50)
    namespace = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    assert 0.0 <= namespace["accuracy"] <= 1.0


def test_import_bstdg_is_light():
    """`import bstdg` (and the CLI's module) load no torch, no Ray and compile nothing."""
    import subprocess
    import sys

    code = ("import sys, bstdg, bstdg.cli; heavy = [m for m in ('torch', 'ray', 'sklearn', 'tonic') "
            "if m in sys.modules]; print(heavy); assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
