"""Caltech Face/Motorbike, SHD-layout HDF5 (shd, fsdd-spikes), the FSDD build, configs and
the `bstdg data` commands for them, on tiny files each test writes itself."""

from __future__ import annotations

import json
import sys
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from bstdg import config as config_mod
from bstdg.cli import main_cli
from bstdg.data import DATASET_NAMES, get_dataset, load_events, trained_options
from bstdg.data import caltech, fsdd, images, shd
from bstdg.data import data_list, locate, verify
from bstdg.data import fetch_dataset as fetch
from bstdg.errors import BstdgError, DataError
from helpers import isolated, one_line_error  # noqa: F401 (autouse fixture)



# --- Caltech -----------------------------------------------------------------------------


def picture(label: int, seed: int, size=(48, 32), mode="L") -> Image.Image:
    """A dark image with a bright square (face) or a bright bar (motorbike), jittered."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 40, (size[1], size[0])).astype(np.uint8)
    y, x = rng.integers(4, 10, 2)
    if label == 0:
        a[y:y + 10, x:x + 10] = 230
    else:
        a[y + 5:y + 8, x:x + 30] = 230
    image = Image.fromarray(a, "L")
    return image.convert(mode) if mode != "L" else image


def write_split_folders(root: Path, n: dict | None = None, mode="L") -> Path:
    counts = n or {"train": 4, "test": 3}
    for split, k in counts.items():
        for label, cls in enumerate(caltech.CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(k):
                picture(label, 100 * label + 10 * i + len(split)).convert(mode).save(
                    folder / f"image_{i:04d}.jpg", quality=95)
    return root


SMALL = {"height": 16, "width": 24}


def test_caltech_split_folders(tmp_path):
    root = write_split_folders(tmp_path / "caltech-face-motor")
    split = load_events("caltech-face-motor", "train", 32, tmp_path, options=SMALL)
    # the packaged front end: 4 Gabor orientations, max-pooled over 4 x 4 blocks
    assert split.events.n_units == 4 * 4 * 6 and split.n_classes == 2
    assert list(split.labels) == [0, 1] * 4  # classes interleaved
    assert split.encoder.to_dict()["kind"] == "gabor-latency" and split.encoder.to_dict()["options"]["height"] == 16
    assert split.encoder.to_dict()["input_shape"] == [4, 4, 6]
    assert (np.diff(split.events.ptr) > 0).all()
    assert split.events.times.min() == 0 and split.events.times.max() < 32
    dog = load_events("caltech-face-motor", "train", 32, tmp_path,
                      options={**SMALL, "filter": "dog", "pool": 1})
    assert dog.encoder.to_dict()["kind"] == "dog-latency" and dog.encoder.to_dict()["input_shape"] == [2, 16, 24]
    assert dog.events.n_units == 2 * 16 * 24
    with pytest.raises(DataError, match="filter must be one of none, gabor, dog, got 'sobel'"):
        load_events("caltech-face-motor", "train", 32, tmp_path, options={**SMALL, "filter": "sobel"})
    with pytest.raises(DataError, match=r"pool must be 1\.\.16 for 16x24 images, got 20"):
        load_events("caltech-face-motor", "train", 32, tmp_path, options={**SMALL, "pool": 20})
    limited = load_events("caltech-face-motor", "test", 32, root, limit=3, options=SMALL)
    assert list(limited.labels) == [0, 1, 0]


def test_caltech_rgb_and_gray_mixed(tmp_path):
    """RGB and grayscale JPEGs may be mixed (Caltech101 has both): all become grayscale."""
    root = write_split_folders(tmp_path / "a")
    gray = load_events("caltech-face-motor", "train", 32, root, options=SMALL)
    for path in sorted((root / "train" / "face").glob("*.jpg"))[:2]:
        Image.open(path).convert("RGB").save(path, quality=95)
    mixed = load_events("caltech-face-motor", "train", 32, root, options=SMALL)
    assert mixed.events.n_units == gray.events.n_units
    assert abs(len(mixed.events.times) - len(gray.events.times)) < 0.1 * len(gray.events.times)


def test_caltech_full_download_split(tmp_path):
    base = tmp_path / "101_ObjectCategories"
    for label, sub in enumerate(caltech.FULL_FOLDERS):
        (base / sub).mkdir(parents=True)
        for i in range(6 + label):
            picture(label, i).save(base / sub / f"image_{i + 1:04d}.jpg")
    opts = {**SMALL, "train_per_class": 3, "test_per_class": 2}
    assert locate("caltech-face-motor", tmp_path) == base
    train1, _ = caltech.split_files(base, "train", get_dataset("caltech-face-motor", opts).options)
    test1, _ = caltech.split_files(base, "test", get_dataset("caltech-face-motor", opts).options)
    train2, _ = caltech.split_files(base, "train", get_dataset("caltech-face-motor", opts).options)
    assert train1 == train2 and len(train1) == 6 and len(test1) == 4
    assert not set(train1) & set(test1)
    other, _ = caltech.split_files(base, "train", get_dataset(
        "caltech-face-motor", {**opts, "split_seed": 5}).options)
    assert other != train1
    split = load_events("caltech-face-motor", "test", 16, tmp_path, options=opts)
    assert list(split.labels) == [0, 1, 0, 1]
    with pytest.raises(DataError, match="holds 6 images; the split needs 5 train"):
        load_events("caltech-face-motor", "test", 16, tmp_path, options={**opts, "train_per_class": 5})


def test_dog_filter():
    flat = np.full((1, 20, 20), 0.5)
    assert not images.dog_responses(flat, 1.0, 2.0, 7).any()
    dot = np.zeros((1, 20, 20))
    dot[0, 10, 10] = 1.0
    maps = images.dog_responses(dot, 1.0, 2.0, 7)
    assert maps[0, 0].max() == 1.0 and np.unravel_index(maps[0, 0].argmax(), (20, 20)) == (10, 10)
    assert maps[0, 1, 10, 10] == 0 and maps[0, 1].max() > 0  # the off-centre ring around it


def test_gabor_filter():
    flat = np.full((1, 20, 20), 0.5)
    assert not images.gabor_responses(flat, 7, 5.0, 2.0, 0.5, 4).any()
    kernels = images.gabor_kernels(7, 5.0, 2.0, 0.5, 4)
    assert kernels.shape == (4, 7, 7)
    assert np.allclose(kernels.sum(axis=(1, 2)), 0) and np.allclose(np.abs(kernels).sum(axis=(1, 2)), 1)
    assert np.allclose(kernels[2], kernels[0].T)  # 90 degrees: the 0-degree kernel transposed
    bar = np.zeros((1, 20, 20))
    bar[0, :, 10] = 1.0  # a vertical line: the 0-degree filter (cosine along x) answers it
    maps = images.gabor_responses(bar, 7, 5.0, 2.0, 0.5, 4)
    assert maps.shape == (1, 4, 20, 20) and maps.max() == 1.0
    assert np.unravel_index(maps[0].argmax(), (4, 20, 20))[0] == 0 and maps[0, 0, 10, 10] == 1.0
    assert maps[0, 2].max() < 0.05  # the horizontal filter barely sees it


def test_max_pool():
    maps = np.arange(2 * 5 * 6, dtype=float).reshape(1, 2, 5, 6)
    pooled = images.max_pool(maps, 2)
    assert pooled.shape == (1, 2, 2, 3)  # the odd last row is dropped
    assert pooled[0, 0].tolist() == [[7, 9, 11], [19, 21, 23]]
    assert pooled[0, 1, 0, 0] == 30 + 7
    assert images.max_pool(maps, 1) is maps


def test_caltech_bad_inputs(tmp_path, capsys):
    root = write_split_folders(tmp_path / "caltech-face-motor")
    (root / "train" / "face" / "image_0001.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"image_0001.jpg: not a readable image"):
        load_events("caltech-face-motor", "train", 16, tmp_path, options=SMALL)
    path = root / "train" / "face" / "image_0002.jpg"
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=r"image_0002.jpg: not a readable image"):
        images.read_gray(path, 16, 24)

    partial = write_split_folders(tmp_path / "p" / "caltech-face-motor")
    for f in (partial / "test" / "motorbike").iterdir():
        f.unlink()
    (partial / "test" / "motorbike").rmdir()
    status = main_cli(["train", "--dataset", "caltech-face-motor", "--data-dir", str(tmp_path / "p"),
                       "--out", str(tmp_path / "r")])
    one_line_error(capsys, status, "caltech-face-motor not found", "missing test/motorbike")
    (partial / "test" / "motorbike").mkdir()
    with pytest.raises(DataError, match=r"no .jpg files in test/motorbike"):
        locate("caltech-face-motor", tmp_path / "p")


def test_caltech_verify_counts(tmp_path, monkeypatch):
    root = write_split_folders(tmp_path / "caltech-face-motor")
    checks = verify("caltech-face-motor", root)
    assert not all(checks.values())  # 4/3 images, not the known 200/198
    monkeypatch.setattr(caltech, "KNOWN_SPLIT_COUNTS", {"train/face": 4, "train/motorbike": 4,
                                                        "test/face": 3, "test/motorbike": 3})
    assert all(verify("caltech-face-motor", root).values())


def test_caltech_fetch_from_archive(tmp_path, monkeypatch):
    """The official archive is a zip holding 101_ObjectCategories.tar.gz; fetch keeps only
    Faces and Motorbikes (here from a local file URL: no network)."""
    src = tmp_path / "src" / "101_ObjectCategories"
    for label, sub in enumerate((*caltech.FULL_FOLDERS, "airplanes")):
        (src / sub).mkdir(parents=True)
        for i in range(3):
            picture(min(label, 1), i).save(src / sub / f"image_{i + 1:04d}.jpg")
    with tarfile.open(tmp_path / "101_ObjectCategories.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="101_ObjectCategories")
    with zipfile.ZipFile(tmp_path / "caltech-101.zip", "w") as zf:
        zf.write(tmp_path / "101_ObjectCategories.tar.gz", "caltech-101/101_ObjectCategories.tar.gz")
    monkeypatch.setattr(caltech, "URLS", ((tmp_path / "caltech-101.zip").as_uri(),))
    monkeypatch.setattr(caltech, "KNOWN_FULL_COUNTS", {"Faces": 3, "Motorbikes": 3})
    got = fetch("caltech-face-motor", tmp_path / "datasets", progress=False)
    assert got == tmp_path / "datasets" / "caltech-face-motor" / "101_ObjectCategories"
    assert sorted(p.name for p in got.iterdir()) == ["Faces", "Motorbikes"]
    assert not list((tmp_path / "datasets" / "caltech-face-motor").glob(".fetch-*"))
    assert locate("caltech-face-motor", tmp_path / "datasets") == got


# --- SHD layout ----------------------------------------------------------------------------


def write_official_layout(path: Path, times, units, labels, n_channels=None, **extra) -> Path:
    """An HDF5 file written the way the published SHD files are (vlen datasets)."""
    with h5py.File(path, "w") as f:
        ft = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
        fu = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(zip(times, units)):
            ft[i] = np.asarray(t, np.float32)
            fu[i] = np.asarray(u, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), np.uint16))
        f.create_dataset("extra/keys", data=np.array([f"k{i}".encode() for i in range(20)]))
        if n_channels is not None:
            f.attrs["n_channels"] = n_channels
        for key, value in extra.items():
            f.create_dataset(key, data=value)
    return path


def tiny_shd(folder: Path, n_train=6, n_test=4, seed=0) -> Path:
    """Samples whose label decides which channel block spikes first."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 3
        times, units = [], []
        for label in labels:
            k = int(rng.integers(5, 12))
            t = np.sort(rng.uniform(0, 1.2, k))
            u = (label * 200 + rng.integers(0, 100, k)) % 700
            times.append(t)
            units.append(u)
        write_official_layout(folder / f"shd_{split}.h5", times, units, labels)
    return folder


def test_shd_binning_and_downsampling(tmp_path):
    times = [[0.0, 0.0049, 0.005, 0.005, 0.9999, 1.4, 2.0], [0.3]]
    units = [[3, 699, 3, 3, 10, 5, 6], [0]]
    write_official_layout(tmp_path / "shd_train.h5", times, units, [19, 0])
    write_official_layout(tmp_path / "shd_test.h5", [[0.1]], [[1]], [1])
    split = load_events("shd", "train", 200, tmp_path,
                        options={"duration_s": 1.0, "channels": 140, "time_windows": 1})
    ev = split.events
    assert ev.n_units == 140 and split.n_classes == 20
    assert list(split.labels) == [0, 19]  # round-robin over classes: label 0 first
    # sample 1 (label 19): 5 ms steps, spikes at or after 1.0 s dropped, repeats kept
    s = slice(ev.ptr[1], ev.ptr[2])
    assert list(ev.times[s]) == [0, 0, 1, 1, 199]
    assert list(ev.units[s]) == [0, 139, 0, 0, 2]
    assert split.encoder.to_dict()["kind"] == "spike-bins" and split.encoder.to_dict()["step_s"] == pytest.approx(0.005)
    full = load_events("shd", "train", 200, tmp_path,
                       options={"duration_s": 1.0, "channels": 700, "time_windows": 1})
    assert full.events.n_units == 700


def test_shd_time_windows_split_units_by_time(tmp_path):
    times = [[0.0, 0.0049, 0.005, 0.2651, 0.9999]]
    units = [[3, 699, 3, 10, 10]]
    write_official_layout(tmp_path / "shd_train.h5", times, units, [4])
    write_official_layout(tmp_path / "shd_test.h5", [[0.1]], [[1]], [1])
    opts = {"duration_s": 1.0, "channels": 140, "time_windows": 4}
    ev = load_events("shd", "train", 200, tmp_path, options=opts).events
    # steps 0, 0, 1, 53, 199 -> windows of 50 steps 0, 0, 0, 1, 3; unit = channel + 140 * window
    assert ev.n_units == 560
    assert list(ev.times) == [0, 0, 1, 53, 199]
    assert list(ev.units) == [0, 139, 0, 2 + 140, 2 + 420]
    with pytest.raises(DataError, match=r"time_windows must be at least 1, got 0"):
        load_events("shd", "train", 200, tmp_path, options={**opts, "time_windows": 0})
    with pytest.raises(DataError, match=r"time_windows must be 1..t_max \(200\), got 201"):
        load_events("shd", "train", 200, tmp_path, options={**opts, "time_windows": 201})


def test_shd_unsorted_times_are_sorted(tmp_path):
    write_official_layout(tmp_path / "shd_train.h5", [[0.5, 0.1, 0.3]], [[1, 2, 3]], [0])
    write_official_layout(tmp_path / "shd_test.h5", [[0.1]], [[1]], [0])
    opts = {"duration_s": 1.0, "channels": 700, "time_windows": 1}
    ev = load_events("shd", "train", 10, tmp_path, options=opts).events
    assert list(ev.times) == [1, 3, 5] and list(ev.units) == [2, 3, 1]


@pytest.mark.parametrize("change, message", [
    ("no-units", "missing spikes/units"),
    ("negative", "negative spike time"),
    ("nan", "NaN"),
    ("label", "label 20 out of range; labels must be 0..19"),
    ("unit", "unit 700 out of range"),
    ("count", "2 spike time arrays, 2 unit arrays and 3 labels"),
    ("empty", "no samples"),
    ("channels", r"has 64 channels \(attribute n_channels\), expected 700"),
    ("not-hdf5", "not a readable HDF5 file"),
])
def test_shd_bad_files(tmp_path, capsys, change, message):
    times, units, labels = [[0.1, 0.2], [0.3]], [[1, 2], [3]], [0, 1]
    path = tmp_path / "shd_train.h5"
    write_official_layout(tmp_path / "shd_test.h5", [[0.1]], [[1]], [0])
    kwargs = {}
    if change == "negative":
        times[0][1] = -0.5
    elif change == "nan":
        times[1][0] = np.nan
    elif change == "label":
        labels[1] = 20
    elif change == "unit":
        units[0][0] = 700
    elif change == "count":
        labels = [0, 1, 2]
    elif change == "empty":
        times, units, labels = [], [], []
    elif change == "channels":
        kwargs["n_channels"] = 64
    write_official_layout(path, times, units, labels, **kwargs)
    if change == "no-units":
        with h5py.File(path, "a") as f:
            del f["spikes/units"]
    elif change == "not-hdf5":
        path.write_bytes(b"plain text")
    with pytest.raises(DataError, match=message):
        load_events("shd", "train", 20, tmp_path)
    status = main_cli(["train", "--dataset", "shd", "--data-dir", str(tmp_path), "--out",
                       str(tmp_path / "r")])
    one_line_error(capsys, status, message.split(";")[0].replace("\\", "").split(" (")[0])


def test_shd_train_cli_with_config(tmp_path, capsys):
    data = tiny_shd(tmp_path / "data" / "shd")
    cfg = tmp_path / "my.toml"
    cfg.write_text('dataset = "shd"\nhidden = [12]\nepochs = 3\nt_max = 40\nchannels = 140\n'
                   'time_windows = 2\nbatch_size = 4\n[rule]\nmargin = 2.0\n')
    out = tmp_path / "run"
    status = main_cli(["train", "--config", str(cfg), "--epochs", "1", "--data-dir", str(data),
                       "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "shd" and metrics["sizes"] == [280, 12, 20]
    c = metrics["config"]
    assert c["epochs"] == 1 and c["t_max"] == 40 and c["hidden"] == [12]  # CLI over config
    assert c["batch_size"] == 4 and c["rule"]["margin"] == 2.0
    for key in ("test_accuracy", "train_accuracy", "hidden_spikes_per_sample", "mean_decision_time",
                "train_samples_per_s", "eval_samples_per_s"):
        assert key in metrics
    assert "channels=140" in capsys.readouterr().out


BAD_CONFIGS = [  # (file content, fragments of the one-line error)
    ('dataset = "shd"\nchanels = 140\n', ("unknown key 'chanels'", "channels")),
    ('dataset = "shd"\nchannels = "many"\n', ("option channels must be int",)),
    ('epochs = "ten"\n', ("epochs must be an integer >= 1", "'ten'")),
    ('[rule]\nmargin = "x"\n', ("margin must be a finite number >= 0",)),
    ('lr_w = "fast"\n', ("lr_w must be a finite number > 0",)),
    ('lr_w = nan\n', ("lr_w must be a finite number > 0", "nan")),
    ('hidden = true\n', ("hidden must be a list of layer sizes",)),
    ('epochs = 0\n', ("epochs must be an integer >= 1",)),
    ('optimizer = "rmsprop"\n', ("optimizer must be one of sgd, adam", "rmsprop")),
    ("hidden = [\n", ("not valid TOML",)),
]


def test_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    for text, fragments in BAD_CONFIGS:
        bad.write_text(text)
        status = main_cli(["train", "--config", str(bad), "--out", str(tmp_path / "r")])
        one_line_error(capsys, status, *fragments)
    status = main_cli(["train", "--config", "nope", "--out", str(tmp_path / "r")])
    one_line_error(capsys, status, "--config nope: no such file")


CONV_CONFIGS = ("mnist-conv", "fashion-mnist-conv", "caltech-face-motor-conv")  # tests/test_conv_cli.py


def test_packaged_configs_are_valid():
    assert set(config_mod.packaged_configs()) == set(DATASET_NAMES) | set(CONV_CONFIGS)
    for name in CONV_CONFIGS:
        assert config_mod.load_config(name).dataset == name[:-len("-conv")]
    for name in DATASET_NAMES:
        cfg = config_mod.packaged_config(name)
        assert cfg.dataset == name and cfg.train["epochs"] >= 1 and cfg.train["t_max"] >= 2
        assert config_mod.load_config(name).train == cfg.train  # --config NAME works too
    assert config_mod.packaged_config("mnist").data == {}
    with pytest.raises(BstdgError, match="unknown option"):
        get_dataset("mnist", {"channels": 3})


def test_options_reach_load_events(tmp_path):
    data = tiny_shd(tmp_path / "shd")
    opts = {"channels": 35, "time_windows": 1}
    assert load_events("shd", "test", 20, data, options=opts).events.n_units == 35
    split = load_events("shd", "test", 40, data)  # the packaged options: 140 channels x 28 windows
    assert split.events.n_units == 140 * 28 and split.encoder.to_dict()["options"]["channels"] == 140


def test_shd_fetch_without_tonic(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tonic", None)  # import tonic -> ImportError
    status = main_cli(["data", "fetch", "shd", "--dest", str(tmp_path / "d")])
    one_line_error(capsys, status, "needs the tonic package", "shd_train.h5")


def test_shd_verify_and_list(tmp_path, monkeypatch, capsys):
    data = tiny_shd(tmp_path / "shd")
    checks = verify("shd", data)
    assert any("SHD layout" in k for k in checks) and not all(checks.values())  # 6, not 8156
    monkeypatch.setitem(shd.DATASETS["shd"], "counts", {"train": 6, "test": 4})
    assert main_cli(["data", "verify", "shd", "--data-dir", str(tmp_path)]) == 0
    assert "no published checksums" in capsys.readouterr().out
    rows = {row.name: row for row in data_list(tmp_path)}
    assert set(rows) == set(DATASET_NAMES)
    assert rows["shd"].present and not rows["fsdd-spikes"].present
    assert main_cli(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "caltech-face-motor" in out and "8,156/2,264" in out


# --- FSDD build ----------------------------------------------------------------------------


def stub_cochlea(path, channels, seed):
    """Deterministic fake spikes: the digit (first character of the name) picks the channels."""
    rng = np.random.default_rng(seed)
    digit = int(Path(path).name[0])
    t = np.sort(rng.uniform(0, 0.5, 8)).astype(np.float32)
    u = ((digit * 3 + np.arange(8)) % channels).astype(np.uint16)
    return t, u


def write_wavs(folder: Path, digits=range(3), speakers=("anna", "bob"), indices=range(7)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    import wave
    for d in digits:
        for s in speakers:
            for i in indices:
                with wave.open(str(folder / f"{d}_{s}_{i}.wav"), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(8000)
                    w.writeframes(np.zeros(80, np.int16).tobytes())
    (folder / "README.txt").write_text("not a recording")
    return folder


def test_fsdd_build_and_train_reader(tmp_path, capsys):
    wavs = write_wavs(tmp_path / "recordings")
    written = fsdd.build_fsdd_spikes(wavs, tmp_path / "out", channels=16, jobs=1,
                                     cochlea=stub_cochlea, progress=False, log=lambda *a: None)
    assert {k: v.name for k, v in written.items()} == {"train": "fsdd16_train.h5",
                                                       "test": "fsdd16_test.h5"}
    with h5py.File(written["test"]) as f:
        assert len(f["labels"]) == 3 * 2 * 5  # index 0-4: test
        assert int(f.attrs["n_channels"]) == 16
        assert [x.decode() for x in f["extra/speaker_names"][()]] == ["anna", "bob"]
        files = [x.decode() for x in f["extra/files"][()]]
        assert all(int(name.split("_")[2][0]) < 5 for name in files)
    again = fsdd.build_fsdd_spikes(wavs, tmp_path / "again", channels=16, jobs=2,
                                   cochlea=stub_cochlea, progress=False, log=lambda *a: None)
    with h5py.File(written["train"]) as a, h5py.File(again["train"]) as b:
        assert all(np.array_equal(x, y) for x, y in zip(a["spikes/times"][()], b["spikes/times"][()]))
    opts = {"input_channels": 16, "channels": 16, "duration_s": 0.5}
    split = load_events("fsdd-spikes", "train", 50, tmp_path / "out", options=opts)
    assert split.n_classes == 10 and len(split.labels) == 3 * 2 * 2
    assert list(split.labels[:3]) == [0, 1, 2] and split.events.n_units == 16 * 20  # time_windows 20
    with pytest.raises(DataError, match="holds fsdd16_train.h5 but not fsdd70_train.h5"):
        load_events("fsdd-spikes", "train", 50, tmp_path / "out")


def test_fsdd_build_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lauscher", None)
    wavs = write_wavs(tmp_path / "rec", digits=[1], speakers=["x"], indices=[0])
    status = main_cli(["data", "build", "fsdd-spikes", "--source", str(wavs),
                       "--dest", str(tmp_path / "d")])
    one_line_error(capsys, status, "needs the lauscher cochlea model", "bstdg[audio]")
    status = main_cli(["data", "build", "fsdd-spikes", "--source", str(tmp_path / "nothing")])
    one_line_error(capsys, status, "no such folder")
    status = main_cli(["data", "build", "fsdd-spikes", "--data-dir", str(tmp_path / "rec"),
                       "--dest", str(tmp_path / "d")])
    one_line_error(capsys, status, "no FSDD recordings found", "fsdd/recordings")
    status = main_cli(["train", "--dataset", "fsdd-spikes", "--data-dir", str(tmp_path),
                       "--out", str(tmp_path / "r")])
    one_line_error(capsys, status, "fsdd-spikes not found", "bstdg data build fsdd-spikes")


def fake_tonic(make_files: bool):
    """A stand-in for the tonic package: its SHD dataset 'downloads' a tiny file or fails."""
    import types

    class SHD:
        def __init__(self, save_to, train=True):
            if not make_files:
                raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
            split = "train" if train else "test"
            self.location_on_system = save_to
            write_official_layout(Path(save_to) / f"shd_{split}.h5", [[0.1, 0.2]] * 3,
                                  [[1, 2]] * 3, [0, 1, 2])

    return types.SimpleNamespace(datasets=types.SimpleNamespace(SHD=SHD))


def test_shd_fetch_through_tonic(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tonic", fake_tonic(False))
    with pytest.raises(DataError, match="tonic could not download SHD .*name resolution.*shd_test.h5"):
        fetch("shd", tmp_path / "datasets")
    monkeypatch.setitem(sys.modules, "tonic", fake_tonic(True))
    monkeypatch.setitem(shd.DATASETS["shd"], "counts", {"train": 3, "test": 3})
    got = fetch("shd", tmp_path / "datasets")
    assert sorted(p.name for p in got.iterdir()) == ["shd_test.h5", "shd_train.h5"]
    opts = {"channels": 700, "time_windows": 1}
    assert load_events("shd", "test", 10, tmp_path / "datasets", options=opts).events.n_units == 700


def test_trained_options_complete_earlier_models():
    """A Caltech model saved before the Gabor front end re-encodes with the DoG maps it was
    trained on; a model's own options win; no recorded options: the packaged defaults."""
    old = {"encoder": {"kind": "dog-latency", "options": {"height": 80, "width": 125}}}
    assert trained_options("caltech-face-motor", old) == {"filter": "dog", "pool": 1,
                                                          "height": 80, "width": 125}
    new = {"encoder": {"options": {"filter": "gabor", "pool": 4}}}
    assert trained_options("caltech-face-motor", new) == {"filter": "gabor", "pool": 4}
    assert trained_options("mnist", {"encoder": {"options": {}}}) is None
    assert trained_options("fsdd-spikes", {}) is None
