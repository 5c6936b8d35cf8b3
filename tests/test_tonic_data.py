"""``tonic:NAME`` on tiny copies in tonic's own on-disk layout (N-MNIST ``.bin`` files, an
SHD HDF5 file), checked against a plain-Python binning of the events the test wrote."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tonic
import tonic.dataset
import tonic.datasets.nmnist
import tonic.download_utils
from helpers import isolated  # noqa: F401 (autouse fixture)

from bstdg.cli import main_cli
from bstdg.data import get_dataset, load_events
from bstdg.data.shd import write_spike_file
from bstdg.errors import DataError

W = H = 34  # N-MNIST's sensor, 2 polarities
REAL = {"train": [3, 2, 2, 1, 2, 2, 2, 2, 2, 3], "test": [1, 2, 1, 1, 1, 1, 1, 1, 1, 2]}  # per class
FILL = 10_000  # tonic's NMNIST wants at least 10,000 .bin files per split


def write_nmnist_bin(path: Path, x, y, p, t) -> None:
    """N-MNIST's 40-bit events: x, y, polarity bit + 23-bit microseconds (big-endian)."""
    raw = np.zeros((len(t), 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (np.asarray(p) << 7) | ((np.asarray(t) >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (np.asarray(t) >> 8) & 0xFF, np.asarray(t) & 0xFF
    path.write_bytes(raw.tobytes())


def make_nmnist(save_to: Path, rng, fill: int = 0, archives: bool = True,
                splits=("train", "test")) -> dict:
    """``save_to/NMNIST/{Train,Test}/<digit>/*.bin`` (tonic's layout) with the samples of
    REAL (random events, not time-sorted, times up to 400 ms) and ``fill`` empty files
    sorted after them (to reach tonic's minimum count: samples without events); returns
    the events written:
    ``raw[split][digit]`` = list of (x, y, p, t) in file order."""
    raw = {}
    folder = save_to / "NMNIST"
    for split in splits:
        tonic_split = split.title()
        raw[split] = {}
        for digit, count in enumerate(REAL[split]):
            d = folder / tonic_split / str(digit)
            d.mkdir(parents=True)
            raw[split][digit] = []
            for k in range(count):
                n = int(rng.integers(0, 40))
                ev = (rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n),
                      rng.integers(0, 400_000, n))
                if n > 3:  # a repeated event (same address and time) is kept twice
                    ev = tuple(np.append(a, a[1]) for a in ev)
                write_nmnist_bin(d / f"a{k:05d}.bin", *ev)
                raw[split][digit].append(ev)
        real = sum(REAL[split])
        empty = (np.zeros(0, np.int64),) * 4
        for k in range(max(fill - real, 0)):  # file order: after the real ones of the class
            (folder / tonic_split / str(k % 10) / f"z{k:05d}.bin").write_bytes(b"")
            raw[split][k % 10].append(empty)
        if archives:
            (folder / f"{split}.zip").write_bytes(b"")
    return raw


def oracle(raw_split: dict, t_max: int, duration_ms: float, downsample=1, merge=False,
           align=False, limit=None):
    """Plain-Python binning: (times, units, ptr, labels) in round-robin class order."""
    order = [(c, raw_split[c][i]) for i in range(max(len(v) for v in raw_split.values()))
             for c in sorted(raw_split) if i < len(raw_split[c])]
    order = order[:limit]
    wd, hd = math.ceil(W / downsample), math.ceil(H / downsample)
    times, units, ptr = [], [], [0]
    for _, (x, y, p, t) in order:
        t0 = int(min(t)) if align and len(t) else 0
        kept = []
        for k in range(len(t)):
            step = math.floor((int(t[k]) - t0) * t_max / (1000 * duration_ms) + 1e-6)
            if 0 <= step < t_max:
                plane = 0 if merge else int(p[k])
                kept.append((step, (plane * hd + int(y[k]) // downsample) * wd + int(x[k]) // downsample))
        kept.sort(key=lambda e: e[0])  # stable: file order within a step
        times += [s for s, _ in kept]
        units += [u for _, u in kept]
        ptr.append(len(times))
    return np.array(times), np.array(units), np.array(ptr), np.array([c for c, _ in order])


PARTIAL = {"complete": False}  # read the samples present (tonic's check wants 10,000 files)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A data root holding ``tonic/NMNIST`` with a few samples and no archives (tonic's
    layout, but not a copy tonic calls complete)."""
    root = tmp_path_factory.mktemp("data")
    return root, make_nmnist(root / "tonic", np.random.default_rng(0), archives=False)


@pytest.fixture
def no_network(monkeypatch):
    """Record every download tonic (or anything) would start."""
    calls = []

    def record(*args, **kwargs):
        calls.append(args)
        raise OSError("no network in tests")

    for module, name in ((tonic.dataset, "download_and_extract_archive"),
                         (tonic.download_utils, "download_and_extract_archive"),
                         (tonic.download_utils, "download_url"), (urllib.request, "urlopen")):
        monkeypatch.setattr(module, name, record)
    return calls


def assert_same(split, expected) -> None:
    times, units, ptr, labels = expected
    np.testing.assert_array_equal(split.events.times, times)
    np.testing.assert_array_equal(split.events.units, units)
    np.testing.assert_array_equal(split.events.ptr, ptr)
    np.testing.assert_array_equal(split.labels, labels)
    assert split.events.times.dtype == np.int32 and split.events.units.dtype == np.int32


@pytest.mark.parametrize("options, kwargs", [
    ({}, {"duration_ms": 300.0}),
    ({"duration_ms": 120.0, "downsample": 3, "merge_polarity": True},
     {"duration_ms": 120.0, "downsample": 3, "merge": True}),
    ({"duration_ms": 250, "align_start": True}, {"duration_ms": 250, "align": True}),
])
def test_binning_matches_plain_python(tiny, options, kwargs):
    root, raw = tiny
    split = load_events("tonic:NMNIST", "train", 16, root, options={**PARTIAL, **options})
    assert_same(split, oracle(raw["train"], 16, **kwargs))  # every sample: no limit
    d = kwargs.get("downsample", 1)
    shape = (1 if kwargs.get("merge") else 2, math.ceil(H / d), math.ceil(W / d))
    assert split.encoder.kind == "tonic-bins" and split.encoder.input_shape == shape
    assert split.events.n_units == int(np.prod(shape)) and split.n_classes == 10
    assert split.encoder.options["duration_ms"] == kwargs["duration_ms"]
    assert split.classes[3] == "3 - three"
    assert split.events.times.max() < 16


def test_limit_takes_classes_round_robin(tiny):
    root, raw = tiny
    split = load_events("tonic:nmnist", "test", 8, root, limit=12, options=PARTIAL)  # any case
    assert split.labels.tolist() == list(range(10)) + [1, 9]
    assert_same(split, oracle(raw["test"], 8, 300.0, limit=12))


def test_complete_copy_reads_only_the_samples_kept(tmp_path, monkeypatch, no_network):
    """The default (complete = true): tonic's own check passes on 10,000 files per split,
    and limit N reads N of them."""
    raw = make_nmnist(tmp_path / "tonic", np.random.default_rng(3), fill=FILL)
    reads = []
    original = tonic.datasets.nmnist.read_mnist_file

    def counting(path, *args, **kwargs):
        reads.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(tonic.datasets.nmnist, "read_mnist_file", counting)
    split = load_events("tonic:NMNIST", "train", 16, tmp_path, limit=13)
    assert split.labels.tolist() == list(range(10)) + [0, 1, 2]
    assert len(reads) == 13
    # class 3 has one real sample: its next one would be a filler (no events)
    assert_same(split, oracle(raw["train"], 16, 300.0, limit=13))
    assert no_network == []


def test_partial_copy_needs_complete_false(tiny, no_network):
    root, raw = tiny
    save_to = root / "tonic"
    with pytest.raises(DataError) as err:
        load_events("tonic:NMNIST", "train", 16, options={"root": str(save_to)})
    message = str(err.value)
    assert "\n" not in message and "tonic:NMNIST not found" in message
    assert f"{save_to / 'NMNIST'}: tonic finds its train files incomplete" in message
    assert "train.zip" in message and "complete = false" in message and "never downloads" in message
    assert no_network == []
    split = load_events("tonic:NMNIST", "train", 16, options={"root": str(save_to), **PARTIAL})
    assert_same(split, oracle(raw["train"], 16, 300.0))
    assert no_network == []


def test_search_skips_a_folder_tonic_cannot_read(tiny, tmp_path, monkeypatch):
    """Roots: --data-dir, BSTDG_DATA, ./datasets; in each, tonic/<NAME>, <NAME>, the root
    itself when named <NAME>. A folder without samples is skipped (and named)."""
    root, _ = tiny
    (tmp_path / "first" / "NMNIST").mkdir(parents=True)
    monkeypatch.setenv("BSTDG_DATA", str(root))
    ds = get_dataset("tonic:NMNIST", PARTIAL)
    found, folders, problems = ds.search(tmp_path / "first")
    assert found == root / "tonic" / "NMNIST"
    assert folders[:2] == [tmp_path / "first" / "tonic" / "NMNIST", tmp_path / "first" / "NMNIST"]
    assert problems == [f"{tmp_path / 'first' / 'NMNIST'}: no train samples"]
    assert ds.locate(root / "tonic" / "NMNIST") == root / "tonic" / "NMNIST"  # the folder itself


def test_missing_copy_is_one_line_error_without_download(tmp_path, no_network):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_events("tonic:DVSGesture", "train", 16, tmp_path / "empty")
    message = str(err.value)
    assert "\n" not in message and "tonic:DVSGesture not found" in message
    assert str(tmp_path / "empty" / "tonic" / "DVSGesture") in message and "never downloads" in message
    (tmp_path / "empty" / "DVSGesture").mkdir()  # the folder, but none of its files
    with pytest.raises(DataError, match="train files incomplete.*ibmGestureTrain") as err:
        load_events("tonic:DVSGesture", "train", 16, tmp_path / "empty")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="DVSGesture: no train samples"):
        load_events("tonic:DVSGesture", "train", 16, tmp_path / "empty", options={"complete": False})
    assert no_network == []


@pytest.mark.parametrize("spec, options, fragment", [
    ("tonic:MNIST-DVS", None, "unknown tonic dataset 'MNIST-DVS'; bstdg reads NMNIST, DVSGesture"),
    ("tonic:CIFAR10DVS", None, "tonic:CIFAR10DVS is not supported"),
    ("tonic:NMNIST", {"duration_ms": -1.0}, "duration_ms must be a positive number"),
    ("tonic:NMNIST", {"duration_ms": float("nan")}, "duration_ms"),
    ("tonic:NMNIST", {"downsample": -2}, "downsample must be 0"),
    ("tonic:NMNIST", {"channels": 10}, "channels is for cochlea sensors"),
    ("tonic:NMNIST", {"merge_polarity": 1}, "option merge_polarity must be bool"),
    ("tonic:NMNIST", {"bins": 3}, "unknown option(s) bins"),
    ("tonic:SHD", {"downsample": 2}, "downsample and merge_polarity are for camera sensors"),
    ("tonic:SHD", {"channels": 701}, "channels must be 1..700"),
    ("tonic:POKERDVS", None, "give duration_ms"),
])
def test_bad_names_and_options_are_one_line_errors(spec, options, fragment):
    with pytest.raises(DataError) as err:
        get_dataset(spec, options)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bad_split_limit_t_max(tiny):
    root, _ = tiny
    ds = get_dataset("tonic:NMNIST", PARTIAL)
    for kwargs, fragment in (({"split": "valid"}, "unknown split"), ({"limit": 0}, "limit"),
                             ({"t_max": 1}, "t_max")):
        args = {"split": "train", "t_max": 16, "data_dir": root, "limit": 3, **kwargs}
        with pytest.raises(DataError, match=fragment):
            ds.load(**args)


@pytest.mark.parametrize("name", ["SHD", "SSC"])  # tonic: SHD(train=True), SSC(split="train")
def test_cochlea_dataset_merges_channels(tmp_path, name):
    """A cochlea dataset (x only): unit = x * channels // 700; times are float32 seconds in
    the HDF5 file (tonic: microseconds)."""
    rng = np.random.default_rng(2)
    folder = tmp_path / "tonic" / name
    samples = {}
    for split, n in (("train", 7), ("test", 4)):
        times = [np.sort(rng.uniform(0, 1.6, k)).astype(np.float32) for k in rng.integers(0, 30, n)]
        units = [rng.integers(0, 700, len(t)) for t in times]
        labels = np.arange(n) % 3
        write_spike_file(folder / f"{name.lower()}_{split}.h5", times, units, labels, 700,
                         keys=["zero", "one", "two"], speakers=np.zeros(n, int))
        (folder / f"{name.lower()}_{split}.h5.zip").write_bytes(b"")
        samples[split] = (times, units, labels)
    split = load_events(f"tonic:{name}", "train", 50, tmp_path,
                        options={"channels": 70, "duration_ms": 1000.0})
    times, units, labels = samples["train"]
    order = [0, 1, 2, 3, 4, 5, 6]  # labels 0,1,2,0,1,2,0: already round-robin
    expected_t, expected_u, ptr = [], [], [0]
    for i in order:
        for t, u in zip(times[i], units[i]):
            step = math.floor(float(t) * 1e6 * 50 / 1e6 + 1e-6)
            if step < 50:
                expected_t.append(step)
                expected_u.append(int(u) * 70 // 700)
        ptr.append(len(expected_t))
    assert_same(split, (np.array(expected_t), np.array(expected_u), np.array(ptr), labels[order]))
    assert split.classes == ("zero", "one", "two") and split.encoder.input_shape == (70,)
    assert split.encoder.options["channels"] == 70


def test_train_from_the_command_line(tiny, tmp_path, capsys):
    """Dataset options come from a --config file; eval re-encodes with the recorded ones."""
    root, _ = tiny
    config = tmp_path / "nmnist.toml"
    config.write_text("complete = false\nduration_ms = 250.0\ndownsample = 2\n")
    out = tmp_path / "runs" / "nmnist"
    status = main_cli(["train", "--dataset", "tonic:NMNIST", "--config", str(config), "--data-dir",
                       str(root), "--hidden", "8", "--t-max", "16", "--epochs", "1", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] == sum(REAL["train"]) and metrics["n_test"] == sum(REAL["test"])
    status = main_cli(["eval", str(out), "--data-dir", str(root)])
    assert status == 0, capsys.readouterr().err
    capsys.readouterr()
    status = main_cli(["train", "--dataset", "tonic:NMNIST", "--data-dir", str(root), "--out", "runs/x"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("bstdg: error: tonic:NMNIST not found") and "train files incomplete" in err
    assert not Path("runs/x").exists()  # nothing created before the data was found
