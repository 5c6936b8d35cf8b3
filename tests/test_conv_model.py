"""LayeredSNN: binary view, thresholds per channel or neuron, initialisation, save/load; the
layered trainer and its evaluation on tiny generated images."""

import numpy as np
import pytest

from bstdg.arch import Architecture
from bstdg.conv_train import LayeredTrainer, initial_layered
from bstdg.convnet import LayeredSNN
from bstdg.encoding import encode_latency, times_to_events
from bstdg.engine.conv import layered_forward
from bstdg.engine.dense_conv import layered_forward_dense
from bstdg.errors import BstdgError
from bstdg.evaluation import evaluate
from bstdg.recipe import TrainConfig

from helpers import digit_like_images


def tiny_images(n, seed=0, size=12):
    rng = np.random.default_rng(seed)
    images = digit_like_images(rng, n, size)
    labels = rng.integers(0, 3, n)
    for k, label in enumerate(labels):  # a class-specific bright bar, so there is something to learn
        images[k, 2 + 3 * label, 2:10] = 255
    return times_to_events(encode_latency(images.reshape(n, -1), 32), 32), labels


def test_thresholds_per_channel_and_per_neuron():
    arch = Architecture.parse("conv3k3,pool2,fc4", (1, 6, 6), 2)
    for mode, n_conv in (("channel", 3), ("neuron", 48)):
        n_theta = n_conv + 4 + 2
        net = LayeredSNN(arch, 16, np.zeros(27 + 12 * 4 + 8, np.float32),
                         np.arange(1, n_theta + 1, dtype=np.float32) + 0.5, mode)
        th = net.neuron_thresholds()
        conv = th[:48].reshape(4, 4, 3)  # channel-last
        if mode == "channel":
            np.testing.assert_array_equal(conv, np.broadcast_to([2, 3, 4], (4, 4, 3)))
        else:
            np.testing.assert_array_equal(conv.ravel(), np.arange(2, 50))
        np.testing.assert_array_equal(th[48:60], 1)  # pool outputs
        bn = net.binary()
        assert all((w == 1).all() for w in bn.weights)  # sign(0) = +1
    with pytest.raises(BstdgError, match="threshold mode"):
        LayeredSNN(arch, 16, np.zeros(83, np.float32), np.ones(9, np.float32), "layer")


def test_save_load_round_trip(tmp_path):
    events, _ = tiny_images(40)
    arch = Architecture.parse("conv4k3p1,pool2,fc8", (1, 12, 12), 3)
    net = LayeredSNN.initialise(arch, 32, events, np.random.default_rng(0), "neuron", theta_out=5.0,
                                meta={"dataset": "toy", "encoder": {"t_max": 32, "input_shape": [1, 12, 12]}})
    net.save(tmp_path / "m.npz")
    back = LayeredSNN.load(tmp_path / "m.npz")
    assert back.arch == arch and back.threshold_mode == "neuron" and back.meta == net.meta
    np.testing.assert_array_equal(back.w, net.w)
    np.testing.assert_array_equal(back.theta, net.theta)
    a, b = layered_forward(net.binary(), events), layered_forward(back.binary(), events)
    np.testing.assert_array_equal(a.times, b.times)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert str(z["format"]) == "bstdg-layered-model"
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(BstdgError, match="cannot read the layered model"):
        LayeredSNN.load(tmp_path / "bad.npz")


def test_initialise_fits_thresholds_to_the_data():
    events, _ = tiny_images(60)
    arch = Architecture.parse("conv4k3,pool2,fc8", (1, 12, 12), 3)
    net = LayeredSNN.initialise(arch, 32, events, np.random.default_rng(1), fire_quantiles=[0.5, 0, 0.5, 0.2],
                                theta_out=6.0)
    assert net.w.min() < 0 < net.w.max() and np.abs(net.w).max() <= 0.1
    assert (net.threshold(0) >= 1).all() and len(net.threshold(0)) == 4
    np.testing.assert_array_equal(net.threshold(3), 6.0)
    res = layered_forward(net.binary(), events)
    conv_rate = (res.forward_result().layer_times(0) < 32).mean()
    assert 0.02 < conv_rate < 0.9  # neither silent nor saturated
    assert (res.forward_result().layer_times(2) < 32).any()  # spikes reach the fc layer


def test_with_thresholds_adds_margins_per_layer():
    arch = Architecture.parse("conv2k3,pool2,fc3", (1, 6, 6), 2)
    net = LayeredSNN(arch, 16, np.zeros(18 + 8 * 3 + 6, np.float32), np.ones(2 + 3 + 2, np.float32))
    m = net.with_thresholds([1.0, 0.0, 3.0], theta_out=9.0)
    np.testing.assert_array_equal(m.theta, [2, 2, 4, 4, 4, 9, 9])
    np.testing.assert_array_equal(net.theta, 1)  # a copy


def test_trainer_learns_tiny_images_and_evaluation_matches_the_reference():
    events, labels = tiny_images(300, seed=2)
    recipe = TrainConfig(arch="conv4k3,pool2,fc16", t_max=32, epochs=4, theta_out=4.0, hidden_margin=0,
                         lr_w_conv=0.01, fire_conv=0.7, batch_size=16)
    net = initial_layered(recipe, events, (1, 12, 12), 3)
    trainer = LayeredTrainer(net, recipe)
    start = net.w.copy()
    before = evaluate(trainer.model(), events, labels).accuracy
    for _ in range(recipe.epochs):
        info = trainer.train_epoch(events, labels)
    assert info["train_samples_per_s"] > 0 and np.isfinite(info["loss"])
    assert not np.array_equal(net.w[:net.w_off[1]], start[:net.w_off[1]])  # the conv kernels learned
    model = trainer.model()
    ev = evaluate(model, events, labels).test_metrics()
    assert ev["test_accuracy"] > max(before, 0.5)
    assert set(ev["spikes_per_layer"]) == {"0:conv4k3", "1:pool2", "2:fc16", "3:fc3"}
    # the early-exit figures are those of the time-stepped reference
    from bstdg import metrics
    dense = layered_forward_dense(model.binary(), events)
    d = metrics.decide(dense.output_times, dense.decision_potential, 32)
    assert ev["test_accuracy"] == pytest.approx(metrics.correct(d, labels).mean())
    assert ev["mean_decision_time"] == pytest.approx(d.time.mean())


def test_recipe_rejects_other_losses():
    from bstdg.learning import LearningRule

    with pytest.raises(BstdgError, match="anytime loss only"):
        TrainConfig(arch="conv4k3,pool2,fc16", rule=LearningRule(loss="s4nn"))
    with pytest.raises(BstdgError, match="anytime loss only"):
        TrainConfig(arch="conv4k3,pool2,fc16", optimizer="adam")
