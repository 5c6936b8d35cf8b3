"""The event-driven engine against the time-stepped reference, spike for spike."""

import numpy as np
import pytest

from bstdg import metrics
from bstdg.encoding import encode_latency, times_to_events
from bstdg.engine import BinaryNet
from bstdg.engine.dense import if_network_forward_dense
from bstdg.engine.event import if_network_forward

from helpers import digit_like_images, random_latency_events, random_multi_spike_events, random_net


@pytest.mark.parametrize("seed", range(6))
def test_event_equals_dense_on_random_networks(seed):
    rng = np.random.default_rng(seed)
    t_max = 24
    depth = 2 + seed % 2  # one or two hidden layers
    sizes = [int(rng.integers(5, 40))] + [int(rng.integers(3, 25)) for _ in range(depth - 1)] + [4]
    net = random_net(rng, sizes, t_max)
    events = random_latency_events(rng, 40, sizes[0], t_max)
    ev, dense = if_network_forward(net, events), if_network_forward_dense(net, events)
    np.testing.assert_array_equal(ev.times, dense.times)
    np.testing.assert_array_equal(ev.decision_potential, dense.decision_potential)
    assert (ev.times < t_max).any() and (ev.times == t_max).any()  # the case is not trivial


def test_event_equals_dense_with_repeated_input_spikes():
    rng = np.random.default_rng(7)
    net = random_net(rng, [12, 20, 5], t_max=40, max_threshold=8)
    events = random_multi_spike_events(rng, 30, 12, 40)
    ev, dense = if_network_forward(net, events), if_network_forward_dense(net, events)
    np.testing.assert_array_equal(ev.times, dense.times)
    np.testing.assert_array_equal(ev.decision_potential, dense.decision_potential)


def test_event_equals_dense_on_digit_images():
    """784-600-10 at t_max 256 on MNIST-like images, both with and without early exit."""
    rng = np.random.default_rng(3)
    t_max = 256
    images = digit_like_images(rng, 24)
    events = times_to_events(encode_latency(images.reshape(24, -1), t_max), t_max)
    net = random_net(rng, [784, 600, 10], t_max, max_threshold=1)
    net = BinaryNet(net.weights, (rng.integers(3, 25, 600).astype(np.int32),
                                  rng.integers(2, 12, 10).astype(np.int32)), t_max)
    ev = if_network_forward(net, events)
    dense = if_network_forward_dense(net, events)
    np.testing.assert_array_equal(ev.times, dense.times)
    np.testing.assert_array_equal(ev.decision_potential, dense.decision_potential)

    early = if_network_forward(net, events, stop_at_decision=True)
    d_early = metrics.decide(early.output_times, early.decision_potential, t_max)
    d_dense = metrics.decide(dense.output_times, dense.decision_potential, t_max)
    np.testing.assert_array_equal(d_early.prediction, d_dense.prediction)
    np.testing.assert_array_equal(d_early.tie, d_dense.tie)
    np.testing.assert_array_equal(d_early.time, d_dense.time)
    np.testing.assert_array_equal(metrics.hidden_spikes_before_decision(early, d_early, t_max),
                                  metrics.hidden_spikes_before_decision(dense, d_dense, t_max))
    # Early exit computes no spike after the decision.
    assert (early.times[early.times < t_max] <= np.repeat(d_early.time, (early.times < t_max).sum(1))).all()


def test_hand_computed_two_layer_case():
    """2 inputs -> 2 hidden -> 1 output, worked out by hand."""
    t_max = 10
    net = BinaryNet((np.array([[1, 1], [1, -1]], np.int8), np.array([[1], [1]], np.int8)),
                    (np.array([2, 1], np.int32), np.array([2], np.int32)), t_max)
    # input 0 spikes at 2, input 1 at 5.
    events = times_to_events(np.array([[2, 5]]), t_max)
    res = if_network_forward(net, events)
    # hidden 0: V=1 at t=2, 2 at t=5 -> fires at 5; hidden 1: V=1 at t=2 -> fires at 2.
    # output: V=1 at t=2 (hidden 1), 2 at t=5 (hidden 0) -> fires at 5, no delay.
    np.testing.assert_array_equal(res.times, [[5, 2, 5]])
    np.testing.assert_array_equal(res.decision_potential, [[2]])


def test_simultaneous_inputs_are_summed_before_the_threshold_check():
    """+1 and -1 arriving in the same step cancel: the neuron must not fire."""
    t_max = 8
    net = BinaryNet((np.array([[1], [-1]], np.int8),), (np.array([1], np.int32),), t_max)
    events = times_to_events(np.array([[3, 3]]), t_max)
    assert if_network_forward(net, events).times[0, 0] == t_max
    assert if_network_forward_dense(net, events).times[0, 0] == t_max


def test_rejects_mismatched_input_size():
    rng = np.random.default_rng(0)
    net = random_net(rng, [5, 3, 2], 10)
    with pytest.raises(ValueError, match="input units"):
        if_network_forward(net, random_latency_events(rng, 2, 6, 10))


def test_layer0_probe_snapshots_are_the_potentials_and_change_no_spike():
    """With probe times, ``if_network_sample`` records layer 0's potentials at the end of each
    probe step (what ``probe_potentials`` sums from the input events), also for neurons that
    fired long before, and gives the same spike times as without."""
    from bstdg.engine.event import if_network_sample
    from bstdg.learning import probe_potentials

    rng = np.random.default_rng(11)
    t_max, sizes = 30, (16, 12, 3)
    net = random_net(rng, sizes, t_max, max_threshold=2)  # most hidden neurons fire early
    W, w_off, sz, theta, n_off = net.packed()
    events = random_multi_spike_events(rng, 5, sizes[0], t_max, mean_spikes=40)
    probes = np.array([0, 3, 9, 29], np.int64)
    plain = if_network_forward(net, events)
    for s in range(len(events)):
        lo, hi = events.ptr[s], events.ptr[s + 1]
        times, potential = np.empty(15, np.int32), np.empty(3, np.int32)
        snap = np.full((4, 12), -99, np.int32)
        if_network_sample(events.times, events.units, lo, hi, W, w_off, sz, theta, n_off, t_max, False,
                          times, potential, probes, snap)
        np.testing.assert_array_equal(times, plain.times[s])
        expected = np.zeros((4, 12), np.int32)
        probe_potentials(events.times[lo:hi], events.units[lo:hi], W, 0, 12, probes, expected)
        np.testing.assert_array_equal(snap, expected)
    assert (plain.layer_times(0) < 5).mean() > 0.5  # the spent-layer shortcut would have applied
