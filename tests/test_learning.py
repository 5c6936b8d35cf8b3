"""The timing gradients on hand-computed cases, and the training loop's guarantees."""

from dataclasses import replace

import numpy as np
import pytest

from bstdg.encoding import SpikeEvents, times_to_events
from bstdg.errors import BstdgError
from bstdg.learning import (LearningRule, backprop_timing_error, output_error, output_loss, timing_factor,
                            weight_gradient)
from bstdg.network import BinarySNN
from bstdg.recipe import TrainConfig
from bstdg.train import Trainer, hidden_events, initial_network

from helpers import digit_like_images, random_latency_events

T = 10


def test_timing_factor_tables():
    np.testing.assert_allclose(timing_factor(0, 4), np.ones(5))
    np.testing.assert_allclose(timing_factor(2.0, 4), np.exp(-np.arange(5) / 2.0), rtol=1e-6)


def test_s4nn_output_error_by_hand():
    rule = LearningRule(loss="s4nn", margin=2)
    # correct = 0 fires at 5, wrong 1 at 3 (the earliest), wrong 2 at 9, wrong 3 silent.
    delta = output_error(np.array([[5, 3, 9, T]]), np.array([0]), T, rule)
    # t_min = 3: T_0 = 3, T_1 = 3 + 2 = 5, output 2 is late enough, output 3 is silent.
    np.testing.assert_allclose(delta, [[(5 - 3) / T, (3 - 5) / T, 0, 0]])


def test_output_loss_by_hand():
    times, label = np.array([[5, 3, 9, T]]), np.array([0])
    # s4nn, margin 2: targets 3, 5, 9, T -> (2^2 + 2^2) / 2 / T
    np.testing.assert_allclose(output_loss(times, label, T, LearningRule(loss="s4nn", margin=2)),
                               [0.5 * (4 + 4) / T])
    # hinge, margin 2: t_c + 2 = 7 -> max(0, 7 - 3) + max(0, 7 - 9) + max(0, 7 - T) = 4
    np.testing.assert_allclose(output_loss(times, label, T, LearningRule(loss="hinge", margin=2)), [4.0])
    # ce, tau 1: -log(e^-5 / (e^-5 + e^-3 + e^-9 + e^-T))
    p = np.exp(-5.0) / (np.exp(-5.0) + np.exp(-3.0) + np.exp(-9.0) + np.exp(-float(T)))
    np.testing.assert_allclose(output_loss(times, label, T, LearningRule(loss="ce", tau_ce=1.0)), [-np.log(p)])


def test_s4nn_output_error_all_silent_still_pushes_the_correct_output():
    rule = LearningRule(loss="s4nn", margin=2)
    delta = output_error(np.array([[T, T]]), np.array([1]), T, rule)
    np.testing.assert_allclose(delta, [[0, 2 / T]])


def test_hinge_output_error_by_hand():
    rule = LearningRule(loss="hinge", margin=3)
    # correct = 1 at 4; wrong 0 at 6 (< 4 + 3: violates), wrong 2 at 8 (fine), wrong 3 silent.
    delta = output_error(np.array([[6, 4, 8, T]]), np.array([1]), T, rule)
    np.testing.assert_allclose(delta, [[-1, 1, 0, 0]])


def test_weight_gradient_by_hand():
    tau = 3.0
    g = timing_factor(tau, T)
    # pre: unit 0 at t=1, unit 1 at t=4, unit 2 at t=6; post: neuron 0 at 5, neuron 1 silent.
    pre = times_to_events(np.array([[1, 4, 6]]), T)
    post = np.array([[5, T]], np.int32)
    delta = np.array([[2.0, -1.0]], np.float32)
    grad = weight_gradient(pre.times, pre.units, pre.ptr, post, delta, 3, g, 2)
    def e(d):
        return np.exp(-d / tau)
    expected = np.array([[-2 * e(4), 1 * e(9)],
                         [-2 * e(1), 1 * e(6)],
                         [0.0, 1 * e(4)]])  # unit 2 spiked after neuron 0: not causal
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_weight_gradient_sums_over_samples_and_repeated_spikes():
    g = timing_factor(0, T)
    # sample 0: unit 0 spikes twice (t=1, 2); sample 1: unit 0 once at 3. One post neuron.
    pre = SpikeEvents(np.array([1, 2, 3], np.int32), np.array([0, 0, 0], np.int32),
                      np.array([0, 2, 3]), 1)
    post = np.array([[2], [7]], np.int32)
    delta = np.array([[0.5], [1.0]], np.float32)
    grad = weight_gradient(pre.times, pre.units, pre.ptr, post, delta, 1, g, 1)
    np.testing.assert_allclose(grad, [[-(0.5 + 0.5 + 1.0)]])


def test_backprop_timing_error_by_hand():
    h = timing_factor(4.0, T)
    h_anti = 0.5 * timing_factor(2.0, T)
    # hidden: 0 at t=1, 1 at t=7, 2 and 3 silent; outputs: 0 at t=5, 1 silent.
    pre = np.array([[1, 7, T, T]], np.int32)
    post = np.array([[5, T]], np.int32)
    delta = np.array([[2.0, -1.0]], np.float32)
    W = np.array([[1, -1], [-1, 1], [1, 1], [1, -1]], np.int8).ravel()
    got = backprop_timing_error(pre, post, delta, W, 0, 2, T, h, h_anti)
    e = np.exp
    expected = [2 * 1 * e(-4 / 4) + -1 * -1 * e(-9 / 4),       # causal to both
                2 * -1 * 0.5 * e(-2 / 2) + -1 * 1 * e(-3 / 4),  # 2 steps late for output 0
                0.0,  # silent: 2 * 0.5 e^(-5/2) - 1 < 0 would say "fire later", which it cannot
                2 * 1 * 0.5 * e(-5 / 2) + -1 * -1 * 1.0]         # silent, "fire earlier": kept
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)
    before = backprop_timing_error(pre, post, delta, W, 0, 2, T, h, h_anti, True)  # rule before 2026-12
    expected[2] = 2 * 1 * 0.5 * e(-5 / 2) + -1 * 1 * 1.0
    np.testing.assert_allclose(before[0], expected, rtol=1e-6)


def test_hidden_events_lists_only_spikes():
    ev = hidden_events(np.array([[3, T, 0], [T, T, T]], np.int32), T)
    np.testing.assert_array_equal(ev.ptr, [0, 2, 2])
    np.testing.assert_array_equal(ev.units, [0, 2])
    np.testing.assert_array_equal(ev.times, [3, 0])


def tiny_problem(seed=0, n=96, t_max=64):
    """Two classes of digit-like images; labels by which half of the image is brighter."""
    rng = np.random.default_rng(seed)
    images = digit_like_images(rng, n, size=12)
    labels = (images[:, :, :6].sum((1, 2)) > images[:, :, 6:].sum((1, 2))).astype(np.int64)
    from bstdg.encoding import encode_latency
    events = times_to_events(encode_latency(images.reshape(n, -1), t_max), t_max)
    return events, labels


# The three recipes: (TrainConfig fields, LearningRule fields).
ADAM = (dict(optimizer="adam", lr_w=1e-2, lr_w_out=1e-2), dict(loss="s4nn"))
SGD = (dict(optimizer="sgd", theta_init=6.0), dict(loss="s4nn"))  # 144 inputs, ~20 bright: a lower start
ANYTIME = (dict(optimizer="sgd", theta_out=4.0, lr_w=0.05, lr_w_out=0.02), dict(loss="anytime", window=4.0))
RECIPES = pytest.mark.parametrize("optimizer", [ADAM, SGD, ANYTIME], ids=["adam", "sgd", "anytime"])


def train_tiny(seed, epochs=3, optimizer=ADAM, **rule):
    events, labels = tiny_problem()
    fields, rule_fields = optimizer
    config = TrainConfig(hidden=(20,), t_max=64, epochs=epochs, batch_size=16, seed=seed,
                         lr_decay=1.0, rule=LearningRule(**{**rule_fields, **rule}), **fields)
    net = initial_network(config, events, 2)
    trainer = Trainer(net, config)
    for _ in range(epochs):
        trainer.train_epoch(events, labels, progress=False)
    return net, events, labels


@RECIPES
def test_same_seed_gives_bit_identical_training(optimizer):
    a, _, _ = train_tiny(seed=5, optimizer=optimizer)
    b, _, _ = train_tiny(seed=5, optimizer=optimizer)
    np.testing.assert_array_equal(a.w, b.w)
    np.testing.assert_array_equal(a.theta, b.theta)
    c, _, _ = train_tiny(seed=6, optimizer=optimizer)
    assert not np.array_equal(a.w, c.w)


@RECIPES
def test_training_memorises_a_small_set(optimizer):
    """The rule must be able to fit 96 samples of a 2-class problem (the test fails if the
    gradients have the wrong sign or do not reach the weights)."""
    from bstdg.train import evaluate
    net, events, labels = train_tiny(seed=1, epochs=30, optimizer=optimizer, margin=3)
    assert evaluate(net, events, labels).accuracy >= 0.85  # chance is 0.66


@RECIPES
def test_latent_weights_stay_clipped_and_thresholds_at_least_one(optimizer):
    net, _, _ = train_tiny(seed=2, epochs=2, optimizer=optimizer)
    assert net.w.min() >= -1 and net.w.max() <= 1
    assert net.integer_thresholds().min() >= 1


def test_centred_hidden_gradient_has_zero_mean_per_neuron():
    """With ``center_hidden`` every hidden neuron's weight gradient sums to zero over its
    inputs; the output layer's gradient is the same as without centring."""
    events, labels = tiny_problem()
    grads = {}
    for center in (False, True):
        config = TrainConfig(hidden=(20,), t_max=64, batch_size=32, seed=0, optimizer="adam",
                             rule=LearningRule(loss="s4nn", center_hidden=center))
        net = BinarySNN.initialise((144, 20, 2), 64, events, np.random.default_rng(0))
        trainer = Trainer(net, config)
        trainer.step(events.take(np.arange(32)), labels[:32])
        grads[center] = trainer.grad_w.copy()
        hidden = trainer.grad_w[:net.w_off[1]].reshape(144, 20)
    np.testing.assert_allclose(hidden.sum(axis=0), 0.0, atol=1e-6)
    plain = grads[False][:net.w_off[1]].reshape(144, 20)
    assert np.abs(plain.sum(axis=0)).max() > 1e-3  # there was a common mode to remove
    np.testing.assert_allclose(hidden, plain - plain.mean(axis=0), atol=1e-7)
    np.testing.assert_array_equal(grads[True][net.w_off[1]:], grads[False][net.w_off[1]:])


@pytest.mark.parametrize("optimizer", [ADAM, SGD], ids=["adam", "sgd"])
def test_fixed_hidden_thresholds_keep_their_start_while_outputs_learn(optimizer):
    events, labels = tiny_problem()
    fields, rule_fields = optimizer
    config = TrainConfig(hidden=(20,), t_max=64, batch_size=32, seed=0,
                         rule=LearningRule(learn_hidden_thresholds=False, **rule_fields), **fields)
    net = initial_network(config, events, 2)
    start = net.theta.copy()
    trainer = Trainer(net, config)
    for _ in range(3):
        trainer.train_epoch(events, labels, progress=False)
    np.testing.assert_array_equal(net.theta[:20], start[:20])
    assert not np.array_equal(net.theta[20:], start[20:])


def test_averaged_network_is_the_running_mean_of_the_live_parameters():
    """Every ``AVERAGE_EVERY``-th update ``k``, ``Trainer.averaged`` takes in the live
    parameters: ``avg = b * avg + (1 - b) * live`` with ``b = min(average, (1 + k)/(10 + k))
    ** AVERAGE_EVERY``, starting from the initial parameters; with ``average=0`` it is the
    live network."""
    from bstdg.train import AVERAGE_EVERY
    events, labels = tiny_problem()
    beta = 0.3  # below (1 + k)/(10 + k) from k = 4 on
    config = TrainConfig(hidden=(20,), t_max=64, batch_size=4, seed=0, average=beta, optimizer="adam",
                         rule=LearningRule(loss="s4nn"))
    net = BinarySNN.initialise((144, 20, 2), 64, events, np.random.default_rng(0))
    expected_w, expected_theta = net.w.astype(np.float64), net.theta.astype(np.float64)
    trainer = Trainer(net, config)
    for k in range(1, 3 * AVERAGE_EVERY + 2):
        batch = np.arange(4 * (k - 1), 4 * k)
        trainer.step(events.take(batch), labels[batch])
        if k % AVERAGE_EVERY == 0:
            b = min(beta, (1 + k) / (10 + k)) ** AVERAGE_EVERY
            expected_w = b * expected_w + (1 - b) * net.w
            expected_theta = b * expected_theta + (1 - b) * net.theta
    avg = trainer.averaged()
    assert avg is not net and not np.array_equal(avg.w, net.w)
    np.testing.assert_allclose(avg.w, expected_w, atol=1e-6)
    np.testing.assert_allclose(avg.theta, expected_theta, atol=1e-5)
    off = Trainer(net, replace(config, average=0.0))
    assert off.averaged() is net


def test_averaged_network_takes_in_the_last_update_of_an_epoch():
    """An epoch shorter than ``AVERAGE_EVERY`` updates still moves the average: at the end of
    the epoch the pending updates are taken in (decay to the power of their number)."""
    events, labels = tiny_problem()
    config = TrainConfig(hidden=(20,), t_max=64, batch_size=64, seed=0, average=0.999, optimizer="adam",
                         rule=LearningRule(loss="s4nn"))
    net = BinarySNN.initialise((144, 20, 2), 64, events, np.random.default_rng(0))
    start = net.w.astype(np.float64)
    trainer = Trainer(net, config)
    trainer.train_epoch(events, labels, progress=False)  # 96 samples: 2 updates
    b = min(0.999, 3 / 12) ** 2
    np.testing.assert_allclose(trainer.averaged().w, b * start + (1 - b) * net.w, atol=1e-6)


def test_online_update_is_one_sgd_step_of_the_batch_gradients():
    """`bstdg.online.sgd_samples` on one sample moves every latent weight and output
    threshold by exactly ``-lr`` times the gradients the mini-batch kernels give for that
    sample (timing factors on, no clipping at these sizes), and leaves hidden thresholds."""
    from bstdg.engine import PackedFc
    from bstdg.engine.event import if_network_batch
    from bstdg.learning import normalise_rows
    from bstdg.learning import SampleOutputs
    from bstdg.online import FcState, SgdParams, sgd_samples

    t_max, sizes = 40, (12, 6, 3)
    rng = np.random.default_rng(3)
    events = random_latency_events(rng, 1, sizes[0], t_max)
    w = rng.uniform(-0.5, 0.5, 12 * 6 + 6 * 3).astype(np.float32)
    theta = np.r_[np.full(6, 2.0), np.full(3, 1.5)].astype(np.float32)
    net = BinarySNN(sizes, t_max, w.copy(), theta.copy())
    rule = LearningRule(loss="s4nn", margin=3, tau_w=5.0, tau_t=7.0, anti=0.5, tau_anti=3.0)
    g, h = timing_factor(rule.tau_w, t_max), timing_factor(rule.tau_t, t_max)
    h_anti = rule.anti * timing_factor(rule.tau_anti, t_max)
    w_bin = np.where(w >= 0, 1, -1).astype(np.int8)
    label = np.array([2])
    lr_w, lr_theta = np.array([0.05, 0.02]), np.float32(0.1)

    packed = PackedFc(w_bin, net.w_off, np.asarray(sizes, np.int64), net.integer_thresholds(), net.n_off)
    times, _ = if_network_batch(events.arrays(), packed, t_max, False)
    hid, out = times[:, :6], times[:, 6:]
    assert (hid < t_max).any() and (out < t_max).any()
    d_out = normalise_rows(output_error(out, label, t_max, rule))
    spikes = hidden_events(hid, t_max)
    grad_out = weight_gradient(spikes.times, spikes.units, spikes.ptr, out, d_out, 6, g, 1)
    d_hid = normalise_rows(backprop_timing_error(hid, out, d_out, w_bin, net.w_off[1], 3, t_max, h, h_anti))
    grad_hid = weight_gradient(events.times, events.units, events.ptr, hid, d_hid, 12, g, 1)
    expected_w = np.r_[w[:72] - lr_w[0] * grad_hid.ravel(), w[72:] - lr_w[1] * grad_out.ravel()]
    expected_theta = np.r_[theta[:6], np.maximum(theta[6:] - lr_theta * d_out[0], 1.0)]

    theta_int = net.integer_thresholds()
    out_times = np.empty((1, 3), np.int32)
    potential = np.empty((1, 3), np.int32)
    sgd_samples(events.arrays(), np.array([0]), label,
                FcState(net.w, w_bin, net.w_off, np.asarray(sizes, np.int64), net.theta, theta_int, net.n_off),
                SgdParams(t_max, lr_w, lr_theta, np.array([False, True]), float(rule.margin), True, g, h, h_anti),
                SampleOutputs(out_times, potential))
    np.testing.assert_array_equal(out_times, out)
    assert not np.array_equal(net.w, w)
    np.testing.assert_allclose(net.w, expected_w, atol=1e-6)
    np.testing.assert_array_equal(w_bin, np.where(net.w >= 0, 1, -1))
    np.testing.assert_allclose(net.theta, expected_theta, atol=1e-6)
    np.testing.assert_array_equal(theta_int, net.integer_thresholds())


def test_shift_trains_on_moved_copies_and_needs_an_input_shape():
    events, labels = tiny_problem()
    fields, rule = ANYTIME
    config = TrainConfig(hidden=(20,), t_max=64, epochs=1, seed=0, shift=1, rule=LearningRule(**rule),
                         **fields)
    meta = {"dataset": "tiny", "encoder": {"input_shape": [1, 12, 12]}}
    trainer = Trainer(initial_network(config, events, 2, meta), config)
    moved = trainer.shifted(events)
    assert len(moved) == len(events) and not np.array_equal(moved.units, events.units)
    assert len(moved.times) <= len(events.times)  # spikes moved off the image are dropped
    before = trainer.net.w.copy()
    trainer.train_epoch(events, labels, progress=False)
    assert not np.array_equal(trainer.net.w, before)
    with pytest.raises(BstdgError, match="shift 1: shifting needs image inputs, and tiny records no image input shape"):
        Trainer(initial_network(config, events, 2, {"dataset": "tiny"}), config)
    with pytest.raises(ValueError, match="shift must be an integer"):
        TrainConfig(shift=-1)


def test_sgd_refuses_losses_it_does_not_implement():
    """The online kernels implement the anytime and s4nn losses only: asking them for
    another fails loudly instead of silently training with a different one."""
    with pytest.raises(ValueError, match="optimizer sgd supports the anytime and s4nn losses"):
        TrainConfig(rule=LearningRule(loss="hinge"))
    with pytest.raises(ValueError, match="optimizer sgd supports the anytime and s4nn losses"):
        TrainConfig(rule=LearningRule(loss="s4nn", no_futile=True))
    assert TrainConfig(optimizer="adam", rule=LearningRule(loss="ce", no_futile=True)).rule.loss == "ce"


def test_hidden_margin_raises_the_saved_hidden_thresholds_only():
    """``Trainer.model`` is the averaged network with every hidden threshold raised by the
    recipe's margin (3 for anytime, 0 for the s4nn recipes); the live network keeps its own."""
    events, labels = tiny_problem()
    config = TrainConfig(hidden=(20,), t_max=64, average=0.0, theta_out=4.0)
    assert config.margin() == 3 and TrainConfig(rule=LearningRule(loss="s4nn")).margin() == 0
    net = initial_network(config, events, 2)
    trainer = Trainer(net, config)
    trainer.train_epoch(events, labels, progress=False)
    model = trainer.model()
    assert model is not net
    np.testing.assert_array_equal(model.integer_thresholds()[:20], net.integer_thresholds()[:20] + 3)
    np.testing.assert_array_equal(model.integer_thresholds()[20:], net.integer_thresholds()[20:])
    np.testing.assert_array_equal(model.w, net.w)
    assert Trainer(net, replace(config, hidden_margin=0)).model() is net
    # the sweeps' variant: output thresholds set as well, the original untouched
    theta = net.theta.copy()
    swept = net.with_thresholds(-2, theta_out=9.0)
    np.testing.assert_array_equal(swept.theta[:20], theta[:20] - 2)
    np.testing.assert_array_equal(swept.theta[20:], [9.0, 9.0])
    np.testing.assert_array_equal(net.theta, theta)


def test_initial_networks_of_the_two_optimizers():
    """sgd with the s4nn loss starts all-excitatory (latent weights in [0, 1], every
    threshold theta_init); adam from mixed signs with thresholds fitted to the data."""
    events, _ = tiny_problem()
    sgd = initial_network(TrainConfig(hidden=(20,), t_max=64, theta_init=7.0,
                                      rule=LearningRule(loss="s4nn")), events, 2)
    assert sgd.sizes == (144, 20, 2)
    assert sgd.w.min() >= 0.0 and sgd.w.max() <= 1.0 and (sgd.binary().weights[0] == 1).all()
    np.testing.assert_array_equal(sgd.theta, 7.0)
    adam = initial_network(TrainConfig(hidden=(20,), t_max=64, optimizer="adam",
                                       rule=LearningRule(loss="s4nn")), events, 2)
    assert adam.w.min() < 0 < adam.w.max() and np.abs(adam.w).max() <= 0.1
    assert len(np.unique(adam.theta)) > 1
