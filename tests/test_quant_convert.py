"""The quant-threshold and ann-convert baselines: the IF neuron as a quantized ReLU, exact
conversion at large T, threshold tuning, and the synaptic-operation counts (tiny data only)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bstdg import metrics  # noqa: E402
from bstdg.baselines import ann_convert, quant_threshold, ratecode  # noqa: E402
from bstdg.baselines.ratecode import RateNet  # noqa: E402
from bstdg.evaluation import forward_decisions  # noqa: E402

from helpers import random_latency_events, random_net  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def if_counts(m, theta, n_steps, v0):
    s = ratecode.if_spikes(torch.as_tensor(m, dtype=F64), theta, n_steps, v0)
    return s.sum(0).numpy()


@pytest.mark.parametrize("v0", [0.0, 0.5, 0.3])
@pytest.mark.parametrize("n_steps", [1, 2, 3, 4, 7, 8, 32])
def test_if_neuron_with_threshold_is_a_quantized_clipped_relu(v0, n_steps):
    rng = np.random.default_rng(n_steps)
    theta = float(rng.uniform(0.2, 3.0))
    m = rng.uniform(-0.5 * theta, 1.5 * theta, (200, 30))
    u = n_steps * m / theta + v0
    clear = np.abs(u - np.rint(u)) > 1e-9  # away from a rounding boundary (float sums)
    counts = if_counts(m, theta, n_steps, v0)
    closed = np.clip(np.floor(u), 0, n_steps)
    np.testing.assert_array_equal(counts[clear], closed[clear])
    # the rate in activation units is the quantized ReLU theta/T * clip(floor(T m/theta + v0), 0, T)
    rate = theta * counts / n_steps
    np.testing.assert_allclose(rate[clear], ratecode.quantized_relu(m, theta, n_steps, v0)[clear])
    if v0 == 0.0:  # the formula of the issue, literally
        expected = theta / n_steps * np.clip(np.floor(n_steps * m / theta), 0, n_steps)
        np.testing.assert_allclose(rate[clear], expected[clear])


def test_quantized_relu_straight_through_gradients():
    n_steps, v0 = 4, 0.5
    theta = torch.tensor(1.3, dtype=F64, requires_grad=True)
    m = torch.tensor([-0.9, 0.05, 0.31, 0.77, 1.12, 2.5], dtype=F64, requires_grad=True)
    q = ratecode.quantized_relu_ste(m, theta, n_steps, v0)
    np.testing.assert_allclose(q.detach().numpy(),
                               ratecode.quantized_relu(m.detach().numpy(), 1.3, n_steps, v0))
    q.sum().backward()
    u = n_steps * m.detach().numpy() / 1.3 + v0
    inside = (u > 0) & (u < n_steps)
    np.testing.assert_allclose(m.grad.numpy(), inside.astype(float))
    n = np.clip(np.floor(u), 0, n_steps)
    d_theta = np.where(inside, n / n_steps - m.detach().numpy() / 1.3, (u >= n_steps).astype(float))
    assert theta.grad.item() == pytest.approx(d_theta.sum())


def tiny_net(rng, sizes, v0=0.5, thetas=None):
    weights = [rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(0, 0.05, b) for b in sizes[1:]]
    return RateNet(weights, biases, thetas or [1.0] * (len(sizes) - 2), v0)


def test_training_forward_is_the_if_network():
    """The straight-through training pass computes exactly the IF network's logits."""
    rng = np.random.default_rng(1)
    net = tiny_net(rng, (12, 9, 7, 4), thetas=[0.6, 0.4])
    x = rng.random((25, 12))
    w = [torch.tensor(a, requires_grad=True) for a in net.weights]
    b = [torch.tensor(a, requires_grad=True) for a in net.biases]
    th = [torch.tensor(t, dtype=F64, requires_grad=True) for t in net.thetas]
    logits = quant_threshold.forward_train(torch.as_tensor(x), w, b, th, 5, net.v0)
    run = ratecode.snn_forward(net, x, 5, dtype=F64)
    np.testing.assert_allclose(logits.detach().numpy(), run.logits, atol=1e-12)
    logits.sum().backward()
    assert all(t.grad is not None for t in th + w + b)


def test_conversion_is_exact_within_one_over_T_at_large_T():
    """One hidden layer: every IF rate is within theta/(2T) of the ANN activation (v0 = 1/2,
    threshold = the largest activation, so nothing is clipped); logits within |W| theta/(2T)."""
    rng = np.random.default_rng(2)
    net = tiny_net(rng, (20, 16, 5))
    x = rng.random((40, 20))
    _, (a,) = ratecode.ann_forward(net, x, dtype=F64)
    net = net.with_thetas([a.max()])
    ann_logits, _ = ratecode.ann_forward(net, x, dtype=F64)
    for n_steps in (64, 1000):
        run = ratecode.snn_forward(net, x, n_steps, dtype=F64)
        bound = net.thetas[0] / (2 * n_steps) + 1e-9
        assert np.abs(run.rates[0] - a).max() <= bound
        out_bound = np.abs(net.weights[1]).sum(0) * bound
        assert (np.abs(run.logits - ann_logits) <= out_bound).all()
    assert (run.logits.argmax(1) == ann_logits.argmax(1)).all()


def test_conversion_two_hidden_layers_within_bound():
    """Two hidden layers (second layer driven by spike trains, non-negative weights, its
    threshold above any one-step current): |r2 - a2| <= theta2/T + |W2|^T theta1/(2T)."""
    rng = np.random.default_rng(3)
    net = tiny_net(rng, (15, 10, 8, 3))
    net.weights[1] = np.abs(net.weights[1])
    net.biases[1] = np.abs(net.biases[1])
    x = rng.random((30, 15))
    _, acts = ratecode.ann_forward(net, x, dtype=F64)
    theta1 = acts[0].max()
    theta2 = float((theta1 * net.weights[1].sum(0) + net.biases[1]).max()) * 1.01
    net = net.with_thetas([theta1, theta2])
    errors = []
    for n_steps in (50, 2000):
        run = ratecode.snn_forward(net, x, n_steps, dtype=F64)
        bound = theta2 / n_steps + net.weights[1].sum(0) * theta1 / (2 * n_steps) + 1e-9
        assert (np.abs(run.rates[1] - acts[1]) <= bound).all()
        errors.append(np.abs(run.logits - ratecode.ann_forward(net, x, dtype=F64)[0]).max())
    assert errors[1] < errors[0] / 10


def test_threshold_tuning_cuts_measured_conversion_error():
    rng = np.random.default_rng(4)
    net = tiny_net(rng, (30, 24, 16, 5))
    x_cal, x_test = rng.random((200, 30)), rng.random((200, 30))
    ref = net.with_thetas(ann_convert.normalised_thresholds(net, x_cal, 99.99))
    n_steps = 4
    thetas, report = ann_convert.tune_thresholds(ref, x_cal, n_steps, grid=20, dtype=F64)
    assert all(r["mse"] <= r["mse_reference"] for r in report)
    assert report[0]["mse"] < report[0]["mse_reference"]
    assert thetas[0] < ref.thetas[0]
    ann_logits, acts = ratecode.ann_forward(ref, x_test, dtype=F64)

    def err(n):
        run = ratecode.snn_forward(n, x_test, n_steps, dtype=F64)
        return ((run.logits - ann_logits) ** 2).mean(), ((run.rates[0] - acts[0]) ** 2).mean()

    tuned, plain = err(ref.with_thetas(thetas)), err(ref)
    assert tuned[0] < plain[0] and tuned[1] < plain[1]  # on held-out inputs too


def fake_digits(rng, n, n_in=36):
    labels = np.arange(n) % 10
    spots = np.random.default_rng(0).integers(0, n_in, (10, 4))
    x = rng.random((n, n_in)).astype(np.float32) * 0.2
    for i, label in enumerate(labels):
        x[i, spots[label]] = 1.0
    return x, labels.astype(np.int64)


def test_quant_threshold_trains_and_reports():
    rng = np.random.default_rng(5)
    x, y = fake_digits(rng, 48)
    cfg = quant_threshold.QuantThresholdConfig(hidden=(16,), epochs=3, batch_size=8, lr=1e-2)
    result = quant_threshold.run((2, 4), x_train=x, y_train=y, x_test=x, y_test=y, config=cfg)
    assert result["method"] == "quant-threshold" and not result["binary_weights"]
    assert [r["t_steps"] for r in result["rows"]] == [2, 4]
    for row in result["rows"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0
        # one hidden layer with a constant input current: the IF network is the quantized ANN
        assert row["test_accuracy"] == row["quantized_ann_accuracy"]
        (layer,) = row["layers"]
        assert layer["deviation_error"] < 1e-5
        thetas = [h["thetas"][0] for h in row["history"]]
        assert len(set(thetas)) > 1  # the threshold is trained
        assert row["synops_per_sample"] == pytest.approx(row["synops_input"] + row["synops_hidden"])
    assert result["rows"][1]["test_accuracy"] > 0.3


def test_ann_convert_runs_with_and_without_tuning():
    rng = np.random.default_rng(6)
    x, y = fake_digits(rng, 48)
    cfg = ann_convert.ANNConvertConfig(hidden=(16,), epochs=3, batch_size=8, lr=1e-2,
                                       calib_samples=32, grid=10)
    result = ann_convert.run((2, 32), x_train=x, y_train=y, x_test=x, y_test=y, config=cfg)
    assert result["method"] == "ann-convert" and 0.0 <= result["ann_test_accuracy"] <= 1.0
    for row in result["rows"]:
        assert {"test_accuracy", "synops_per_sample", "untuned", "tuning", "layers"} <= set(row)
        assert row["tuning"][0]["mse"] <= row["tuning"][0]["mse_reference"]
        assert "conversion_error" in row["layers"][0]
    # the conversion error shrinks with T
    assert result["rows"][1]["untuned"]["layers"][0]["conversion_error"] < \
        result["rows"][0]["untuned"]["layers"][0]["conversion_error"]


def test_rate_synops_formula():
    rng = np.random.default_rng(7)
    net = tiny_net(rng, (10, 6, 3), thetas=[0.5])
    x = rng.random((8, 10))
    x[:, :4] = 0.0
    run = ratecode.snn_forward(net, x, 4, dtype=F64)
    ops = ratecode.rate_synops(x, run, net.sizes, 4)
    assert ops["synops_input"] == pytest.approx(6 * 6 * 4)  # 6 non-zero pixels x 6 x T
    assert ops["synops_hidden"] == pytest.approx(run.spikes[0].mean() * 3)
    assert ops["synops_input_once"] == pytest.approx(6 * 6 + 6 * 4)


@pytest.mark.parametrize("early_exit", [True, False])
def test_bstdg_synops_counts_spikes_times_fan_out(early_exit):
    rng = np.random.default_rng(8)
    t_max = 16
    bn = random_net(rng, (20, 12, 8, 4), t_max, max_threshold=3)
    events = random_latency_events(rng, 30, 20, t_max)
    result, decision = forward_decisions(bn, events, "dense")
    ops = ratecode.bstdg_synops(result, decision, events, t_max, early_exit)
    limit = decision.time if early_exit else np.full(len(events), t_max)
    expected = 0.0
    for b in range(len(events)):
        times = events.times[events.ptr[b]:events.ptr[b + 1]]
        expected += (times <= limit[b]).sum() * 12
        h1, h2 = result.layer_times(0)[b], result.layer_times(1)[b]
        expected += ((h1 < t_max) & (h1 <= limit[b])).sum() * 8
        expected += ((h2 < t_max) & (h2 <= limit[b])).sum() * 4
    assert ops["synops_per_sample"] == pytest.approx(expected / len(events))
    if early_exit:
        hidden = metrics.hidden_spikes_before_decision(result, decision, t_max).mean()
        assert ops["hidden_spikes_per_sample"] == pytest.approx(hidden)


def write_fake_mnist(folder, n_train=60, n_test=30):
    from bstdg.data.idx import write_idx

    rng = np.random.default_rng(9)
    folder.mkdir(parents=True, exist_ok=True)
    spots = rng.integers(0, 784, (10, 8))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 784), np.uint8)
        for i, label in enumerate(labels):
            images[i, spots[label]] = rng.integers(150, 256, 8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images.reshape(n, 28, 28))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


@pytest.mark.parametrize("method", ["quant-threshold", "ann-convert"])
def test_compare_runs_the_rate_coded_methods(tmp_path, method):
    compare = pytest.importorskip("bstdg.compare")
    from bstdg.compare_run import run_one
    if method not in compare.METHODS:
        pytest.skip(f"{method} not registered in bstdg.compare")
    write_fake_mnist(tmp_path / "data" / "mnist")
    config = compare.MethodRun(method, "mnist", 4, str(tmp_path / "run"), (12,), 2, 0,
                               data_dir=str(tmp_path / "data"))
    result = run_one(config)
    assert set(compare.RESULT_KEYS) <= set(result)
    assert result["mean_decision_time"] == 4.0 and result["binary_weights"] is False
    assert len(result["history"]) == 2 and "test_accuracy" in result["history"][0]
    assert result["synops_per_sample"] > 0
    assert (tmp_path / "run" / "metrics.json").exists()
    net, n_steps = ratecode.load_rate_model(tmp_path / "run" / "model_rate.npz")
    assert n_steps == 4 and net.sizes == (784, 12, 10)
    if method == "ann-convert":
        assert 0.0 <= result["test_accuracy_untuned"] <= 1.0
