"""The anytime loss: its pieces on hand-computed cases, and the fused online kernel against
a plain numpy re-implementation of one update."""

import numpy as np
import pytest

from bstdg.engine.dense import if_network_forward_dense
from bstdg.learning import (LearningRule, SampleOutputs, anytime_output_error, potential_window, probe_potentials,
                            probe_times)
from bstdg.network import BinarySNN
from bstdg.online import AnytimeParams, FcState, anytime_samples
from bstdg.recipe import TrainConfig
from bstdg.train import Trainer, initial_network

from helpers import random_latency_events, random_multi_spike_events


def test_probe_times():
    np.testing.assert_array_equal(probe_times(256, 6), [8, 16, 32, 64, 128, 255])
    np.testing.assert_array_equal(probe_times(16, 6), [0, 1, 2, 4, 8, 15])
    np.testing.assert_array_equal(probe_times(4, 6), [0, 1, 2, 3])  # duplicates dropped
    np.testing.assert_array_equal(probe_times(256, 1), [255])


def test_probe_potentials_by_hand():
    # 3 pre units -> 2 post neurons; spikes: unit 0 at 1, unit 2 at 3, unit 0 again at 5.
    W = np.array([1, -1,   -1, -1,   1, 1], np.int8)  # row-major (unit, post)
    V = np.full((3, 4), 99, np.int32)
    probe_potentials(np.array([1, 3, 5], np.int32), np.array([0, 2, 0], np.int32), W, 0, 2,
                     np.array([0, 3, 9]), V)
    # T = 0: nothing yet; T = 3: units 0 and 2; T = 9: unit 0 twice and unit 2.
    np.testing.assert_array_equal(V[:, :2], [[0, 0], [2, 0], [3, -1]])


def test_anytime_output_error_by_hand():
    U = np.array([[0, 2, 1], [5, 5, 1]], np.int32)  # 2 probes, 3 outputs
    theta = np.array([1, 3, 0], np.int32)
    beta, label = 0.5, 2
    err = np.zeros((2, 3))
    loss = anytime_output_error(U, theta, label, beta, err)
    z = beta * (U - theta)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(err, np.eye(3)[label] - p)
    np.testing.assert_allclose(loss, -np.log(p[:, label]).sum())
    np.testing.assert_allclose(err.sum(axis=1), 0.0, atol=1e-12)  # the CE error is zero-sum


def test_potential_window_by_hand():
    W = 4.0
    # gap u = v - theta: -1 and 0 are the two steps next to the threshold (3.5 / 4 / 4 each)
    assert potential_window(9, 10, False, W) == pytest.approx(3.5 / 16)
    assert potential_window(10, 10, True, W) == pytest.approx(3.5 / 16)
    assert potential_window(7, 10, False, W) == pytest.approx(1.5 / 16)  # u = -3
    assert potential_window(6, 10, False, W) == pytest.approx(0.5 / 16)  # u = -4
    assert potential_window(5, 10, False, W) == 0.0  # u = -5: outside the window
    assert potential_window(13, 10, True, W) == pytest.approx(0.5 / 16)  # u = +3
    assert potential_window(14, 10, True, W) == 0.0  # u = +4
    # a neuron that already fired and has since sunk below threshold counts as u = 0
    assert potential_window(7, 10, True, W) == pytest.approx(3.5 / 16)


def reference_update(net, events, label, probes, lr_w, lr_theta, learn_theta, beta, window):
    """One anytime update of ``net`` on one sample, written plainly with numpy (the docs'
    equations), from the clock-driven reference simulator's spike times."""
    bn = net.binary()
    t_max, n_layers = net.t_max, net.n_layers
    times = if_network_forward_dense(bn, events).times[0]
    post = [times[net.n_off[l]:net.n_off[l + 1]] for l in range(n_layers)]
    pre = [(events.times, events.units)]
    for l in range(1, n_layers):
        fired = np.flatnonzero(post[l - 1] < t_max)
        pre.append((post[l - 1][fired], fired))
    b = [x.astype(np.float64) for x in bn.weights]
    th = [x.astype(np.float64) for x in bn.thresholds]
    V = [np.array([b[l][pre[l][1][pre[l][0] <= T]].sum(axis=0) for T in probes]) for l in range(n_layers)]
    z = beta * (V[-1] - th[-1])
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    err = [None] * n_layers
    err[-1] = np.eye(len(th[-1]))[label] - p
    for l in range(n_layers - 2, -1, -1):
        fired_by = post[l][None, :] <= probes[:, None]
        u = V[l] - th[l]
        u = np.where(fired_by & (u < 0), 0.0, u)
        err[l] = (err[l + 1] @ b[l + 1].T) * np.maximum(0.0, 1 - np.abs(u + 0.5) / window) / window
    w, theta = net.w.astype(np.float64), net.theta.astype(np.float64)
    for l in range(n_layers):
        W = w[net.w_off[l]:net.w_off[l + 1]].reshape(net.sizes[l], net.sizes[l + 1])
        for t, unit in zip(*pre[l]):
            step = err[l][probes >= t].sum(axis=0)
            if l < n_layers - 1:
                step = step * (t <= post[l])  # hidden post neurons: causal pairs only
            W[unit] += lr_w[l] * step
        if learn_theta[l]:
            seg = slice(net.n_off[l], net.n_off[l + 1])
            theta[seg] = np.maximum(theta[seg] - lr_theta * err[l].sum(axis=0), 1.0)
    return np.clip(w, -1, 1), theta, post[-1]


@pytest.mark.parametrize("sizes, multi", [((12, 6, 3), False), ((12, 8, 5, 3), False), ((7, 6, 3), True)],
                         ids=["one-hidden", "two-hidden", "multi-spike-input"])
def test_anytime_kernel_is_the_plain_update(sizes, multi):
    """`bstdg.online.anytime_samples` on one sample moves every latent weight and hidden
    threshold exactly as the numpy re-implementation does, leaves the output thresholds,
    and keeps the signs and integer thresholds in step."""
    t_max = 40
    rng = np.random.default_rng(4)
    events = (random_multi_spike_events(rng, 1, sizes[0], t_max, mean_spikes=30) if multi
              else random_latency_events(rng, 1, sizes[0], t_max))
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    theta = np.r_[rng.uniform(1.0, 3.0, sum(sizes[1:-1])), np.ones(sizes[-1])].astype(np.float32)
    net = BinarySNN(sizes, t_max, rng.uniform(-0.5, 0.5, n_w).astype(np.float32), theta)
    probes = probe_times(t_max, 4)
    lr_w = np.array([0.05] * (len(sizes) - 2) + [0.02])
    learn = np.array([True] * (len(sizes) - 2) + [False])
    label, beta, window, lr_theta = 1, 0.7, 3.0, 0.1
    expected_w, expected_theta, out = reference_update(net, events, label, probes, lr_w, lr_theta, learn,
                                                       beta, window)
    assert (out < t_max).any()
    w_bin = np.where(net.w >= 0, 1, -1).astype(np.int8)
    theta_int = net.integer_thresholds()
    out_times = np.empty((1, sizes[-1]), np.int32)
    potential = np.empty((1, sizes[-1]), np.int32)
    start = net.w.copy()
    anytime_samples(events.arrays(), np.array([0]), np.array([label]),
                    FcState(net.w, w_bin, net.w_off, np.asarray(sizes, np.int64), net.theta, theta_int, net.n_off),
                    AnytimeParams(t_max, probes, lr_w, lr_theta, learn, beta, window),
                    SampleOutputs(out_times, potential))
    np.testing.assert_array_equal(out_times[0], out)
    assert not np.array_equal(net.w[:net.w_off[1]], start[:net.w_off[1]])  # the first layer learned
    np.testing.assert_allclose(net.w, expected_w, atol=1e-6)
    np.testing.assert_array_equal(w_bin, np.where(net.w >= 0, 1, -1))
    np.testing.assert_allclose(net.theta, expected_theta, atol=1e-6)
    np.testing.assert_array_equal(theta_int, net.integer_thresholds())


def test_initial_network_of_the_anytime_recipe():
    """Mixed signs, hidden thresholds fitted to the data, every output threshold theta_out."""
    rng = np.random.default_rng(0)
    events = random_latency_events(rng, 64, 30, 64)
    net = initial_network(TrainConfig(hidden=(20,), t_max=64, theta_out=7.0), events, 3)
    assert net.w.min() < 0 < net.w.max() and np.abs(net.w).max() <= 0.1
    assert len(np.unique(net.threshold(0))) > 1
    np.testing.assert_array_equal(net.threshold(1), 7.0)


def test_anytime_recipe_keeps_output_thresholds_and_learns_hidden_ones():
    rng = np.random.default_rng(1)
    events = random_latency_events(rng, 64, 30, 64)
    labels = rng.integers(0, 3, 64)
    config = TrainConfig(hidden=(20,), t_max=64, theta_out=5.0, lr_decay=1.0)
    net = initial_network(config, events, 3)
    start = net.theta.copy()
    trainer = Trainer(net, config)
    info = trainer.train_epoch(events, labels, progress=False)
    np.testing.assert_array_equal(net.threshold(1), 5.0)
    assert not np.array_equal(net.threshold(0), start[:20])
    assert info["loss"] > 0


def test_anytime_needs_per_sample_sgd():
    with pytest.raises(ValueError, match="anytime loss trains with optimizer sgd"):
        TrainConfig(optimizer="adam", rule=LearningRule(loss="anytime"))
    with pytest.raises(ValueError, match="probes must be an integer"):
        LearningRule(probes=0)
