"""Small generated networks and inputs shared by the tests (no files, no network)."""

from __future__ import annotations

import numpy as np
import pytest

from bstdg.data.idx import write_idx
from bstdg.encoding import SpikeEvents, encode_latency, times_to_events
from bstdg.engine import BinaryNet
from bstdg.engine.conv import LayeredNet, weight_shape


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No test sees a real dataset: BSTDG_DATA unset, working directory empty. Autouse only
    in the test modules that import it (the CLI and compare tests, which write ``runs/``)."""
    monkeypatch.delenv("BSTDG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)


def random_net(rng, sizes, t_max, max_threshold=5) -> BinaryNet:
    """±1 weights (60 % positive) and thresholds in 1..max_threshold."""
    weights = tuple(np.where(rng.random((a, b)) < 0.6, 1, -1).astype(np.int8)
                    for a, b in zip(sizes[:-1], sizes[1:]))
    thresholds = tuple(rng.integers(1, max_threshold + 1, b).astype(np.int32) for b in sizes[1:])
    return BinaryNet(weights, thresholds, t_max)


def random_latency_events(rng, n_samples, n_inputs, t_max, p_silent=0.3) -> SpikeEvents:
    x = rng.random((n_samples, n_inputs))
    x[x < p_silent] = 0.0
    return times_to_events(encode_latency(x, t_max), t_max)


def random_multi_spike_events(rng, n_samples, n_inputs, t_max, mean_spikes=20) -> SpikeEvents:
    """Audio-like input: a channel may spike many times (several spikes in one step too)."""
    counts = rng.poisson(mean_spikes, n_samples)
    times, units = [], []
    for c in counts:
        t = np.sort(rng.integers(0, t_max, c)).astype(np.int32)
        times.append(t)
        units.append(rng.integers(0, n_inputs, c).astype(np.int32))
    ptr = np.zeros(n_samples + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return SpikeEvents(np.concatenate(times), np.concatenate(units), ptr, n_inputs)


def digit_like_images(rng, n, size=28) -> np.ndarray:
    """uint8 images with MNIST's statistics: mostly black, a thick bright stroke with
    grey anti-aliased edges."""
    images = np.zeros((n, size, size), np.float64)
    yy, xx = np.mgrid[0:size, 0:size]
    for k in range(n):
        for _ in range(rng.integers(2, 4)):
            cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
            ry, rx = rng.uniform(size / 9, size / 3.5, 2)
            ring = np.abs(np.hypot((yy - cy) / ry, (xx - cx) / rx) - 1.0)
            images[k] = np.maximum(images[k], np.clip(1.5 - 6 * ring, 0, 1))
    return np.rint(images * 255).astype(np.uint8)


def fake_mnist(folder, n_train: int, n_test: int, seed: int = 0, spots: int = 8, low: int = 150):
    """Four gzipped IDX files in ``folder``: dark images with ``spots`` bright pixels (values
    ``low..255``) at label-specific places plus 6 random ones, so a network has something to
    learn. Returns ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    places = rng.integers(0, 28 * 28, (10, spots))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 28 * 28), np.uint8)
        for i, label in enumerate(labels):
            images[i, places[label]] = rng.integers(low, 256, spots)
            images[i, rng.integers(0, 28 * 28, 6)] = rng.integers(50, 256, 6)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images.reshape(n, 28, 28))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def assert_one_line_error(status: int, err: str, *fragments: str) -> str:
    """A failed command printed exactly one ``bstdg: error: ...`` line (no traceback) that
    holds every fragment; returns that line."""
    assert status != 0, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bstdg: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def one_line_error(capsys, status: int, *fragments: str) -> str:
    """:func:`assert_one_line_error` on what the command wrote to stderr (pytest's capsys)."""
    return assert_one_line_error(status, capsys.readouterr().err, *fragments)


def untrained_model_run(tmp_path, n_test: int, seed: int = 5):
    """``(run, data)``: a saved 784-24-10 model (``t_max`` 32, random latent values, not
    trained) in ``tmp_path/run`` and a fake MNIST of 8 training and ``n_test`` test images
    (20 % of the pixels lit) in ``tmp_path/data/mnist``."""
    from bstdg.network import BinarySNN

    rng = np.random.default_rng(seed)
    sizes = (784, 24, 10)
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    net = BinarySNN(sizes, 32, rng.uniform(-1, 1, n_w).astype(np.float32),
                    rng.uniform(1, 10, 34).astype(np.float32),
                    {"dataset": "mnist", "encoder": {"kind": "latency", "t_max": 32}})
    run = tmp_path / "run"
    run.mkdir()
    net.save(run / "model.npz")
    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    for prefix, n in (("train", 8), ("t10k", n_test)):
        images = np.zeros((n, 28, 28), np.uint8)
        images.reshape(n, -1)[:, :] = rng.integers(0, 256, (n, 784)) * (rng.random((n, 784)) < 0.2)
        write_idx(data / f"{prefix}-images-idx3-ubyte", images)
        write_idx(data / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))
    return run, data


def random_layered(rng, arch, t_max, p_plus=0.6, max_threshold=5) -> LayeredNet:
    """A layered (conv/pool/fc) network of ``arch`` with random ±1 weights (+1 with
    probability ``p_plus``) and integer thresholds in ``1..max_threshold``."""
    weights, thresholds = [], []
    for l, n in enumerate(arch.sizes[1:]):
        weights.append(np.where(rng.random(weight_shape(arch, l)) < p_plus, 1, -1).astype(np.int8))
        thresholds.append(rng.integers(1, max_threshold + 1, n).astype(np.int32))
    return LayeredNet(arch, tuple(weights), tuple(thresholds), t_max)


def image_events(rng, n, shape, t_max, p_silent=0.4) -> SpikeEvents:
    """Latency-coded random images of ``shape`` (a fraction ``p_silent`` of pixels silent)."""
    x = rng.random((n, int(np.prod(shape))))
    x[x < p_silent] = 0.0
    return times_to_events(encode_latency(x, t_max), t_max)

