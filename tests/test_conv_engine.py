"""The event-driven conv/pool/fc engine against the time-stepped reference, spike for spike,
and the reference's convolution against an explicit loop."""

import numpy as np
import pytest

from bstdg import metrics
from bstdg.arch import Architecture
from bstdg.encoding import encode_latency, times_to_events
from bstdg.engine.conv import INT16_FAN_IN, LayeredNet, geometry, layered_batch, layered_forward, potential_dtype
from bstdg.engine.dense_conv import conv_step, layered_forward_dense

from helpers import digit_like_images, image_events, random_latency_events, random_layered




CASES = [
    ("conv3k3,pool2", (1, 8, 8)),
    ("conv4k3s2p1,fc6", (2, 9, 7)),
    ("conv3k2p1,pool3,conv4k2,fc5", (2, 10, 10)),
    ("pool2,conv2k3", (3, 7, 9)),
    ("conv5k3s2,pool2,fc7", (1, 13, 11)),
    ("fc9,fc6", (1, 5, 5)),
]


@pytest.mark.parametrize("spec, shape", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed", range(3))
def test_event_equals_dense_on_random_conv_networks(spec, shape, seed):
    rng = np.random.default_rng(seed)
    t_max = 20
    arch = Architecture.parse(spec, shape, 4)
    net = random_layered(rng, arch, t_max, max_threshold=4)
    events = image_events(rng, 30, shape, t_max)
    ev, dense = layered_forward(net, events), layered_forward_dense(net, events)
    np.testing.assert_array_equal(ev.times, dense.times)
    np.testing.assert_array_equal(ev.decision_potential, dense.decision_potential)
    np.testing.assert_array_equal(ev.output_times, dense.output_times)
    assert (ev.times < t_max).any() and (ev.times == t_max).any()  # not trivial
    # every layer's spike count is what the kernel reports
    counts = np.stack([(ev.forward_result().layer_times(l) < t_max).sum(1) for l in range(len(arch.layers_all))], 1)
    np.testing.assert_array_equal(ev.spikes, counts)


def test_event_equals_dense_on_digit_images_with_early_exit():
    rng = np.random.default_rng(3)
    t_max = 64
    images = digit_like_images(rng, 12)
    events = times_to_events(encode_latency(images.reshape(12, -1), t_max), t_max)
    arch = Architecture.parse("conv6k5,pool2,conv8k3p1,pool2,fc20", (1, 28, 28), 10)
    net = random_layered(rng, arch, t_max, p_plus=0.55, max_threshold=1)
    th = [rng.integers(lo, hi, n).astype(np.int32) for (lo, hi), n in
          zip([(4, 10), (1, 2), (3, 9), (1, 2), (3, 8), (2, 6)], arch.sizes[1:])]
    net = LayeredNet(arch, net.weights, tuple(th), t_max)
    ev = layered_forward(net, events)
    dense = layered_forward_dense(net, events)
    np.testing.assert_array_equal(ev.times, dense.times)
    np.testing.assert_array_equal(ev.decision_potential, dense.decision_potential)
    for l in range(len(arch.layers_all)):
        assert (dense.layer_times(l) < t_max).any(), l  # spikes reach every layer

    early = layered_forward(net, events, stop_at_decision=True, keep_times=False)
    d_early = metrics.decide(early.output_times, early.decision_potential, t_max)
    d_dense = metrics.decide(dense.output_times, dense.decision_potential, t_max)
    np.testing.assert_array_equal(d_early.prediction, d_dense.prediction)
    np.testing.assert_array_equal(d_early.tie, d_dense.tie)
    np.testing.assert_array_equal(d_early.time, d_dense.time)
    # early exit computes exactly the spikes up to the decision step
    up_to = np.stack([((dense.layer_times(l) <= d_dense.time[:, None]) & (dense.layer_times(l) < t_max)).sum(1)
                      for l in range(len(arch.layers_all))], 1)
    np.testing.assert_array_equal(early.spikes, up_to)


def test_fc_only_layered_equals_the_fc_engine():
    from bstdg.engine import BinaryNet
    from bstdg.engine.event import if_network_forward

    rng = np.random.default_rng(5)
    arch = Architecture.parse("fc12,fc7", (20,), 3)
    net = random_layered(rng, arch, 24)
    events = random_latency_events(rng, 40, 20, 24)
    fc = if_network_forward(BinaryNet(net.weights, net.thresholds, 24), events)
    ev = layered_forward(net, events)
    np.testing.assert_array_equal(ev.times, fc.times)
    np.testing.assert_array_equal(ev.decision_potential, fc.decision_potential)


def test_conv_step_is_the_explicit_sum():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (2, 7, 6, 3)).astype(np.float32)
    kernel = rng.choice([-1.0, 1.0], (3, 3, 3, 4)).astype(np.float32)
    for stride, pad in [(1, 0), (2, 1), (1, 2)]:
        out = conv_step(x, kernel, stride, pad)
        ho, wo = (7 + 2 * pad - 3) // stride + 1, (6 + 2 * pad - 3) // stride + 1
        assert out.shape == (2, ho, wo, 4)
        expected = np.zeros_like(out)
        for b in range(2):
            for oy in range(ho):
                for ox in range(wo):
                    for ky in range(3):
                        for kx in range(3):
                            y, xx = oy * stride - pad + ky, ox * stride - pad + kx
                            if 0 <= y < 7 and 0 <= xx < 6:
                                expected[b, oy, ox] += x[b, y, xx] @ kernel[:, ky, kx]
        np.testing.assert_array_equal(out, expected)


def test_pool_passes_the_earliest_spike_of_each_window():
    """One channel, 4x4 input through pool2: hand-made spike times."""
    t_max = 10
    arch = Architecture.parse("pool2", (1, 4, 4), 2)
    times = np.full((1, 16), t_max)
    times[0, [0, 5]] = [7, 3]  # window (0, 0): pixels (0,0) at 7, (1,1) at 3
    times[0, 15] = 6  # window (1, 1)
    net = LayeredNet(arch, (np.zeros(0, np.int8), np.ones((4, 2), np.int8)),
                     (np.ones(4, np.int32), np.array([2, 3], np.int32)), t_max)
    res = layered_forward(net, times_to_events(times, t_max))
    np.testing.assert_array_equal(res.times[0, :4], [3, t_max, t_max, 6])
    # output 0 (threshold 2) fires at 6 with both pool spikes, output 1 (threshold 3) never
    np.testing.assert_array_equal(res.output_times[0], [6, t_max])
    np.testing.assert_array_equal(res.decision_potential[0], [2, 2])


def test_layered_net_checks_shapes():
    arch = Architecture.parse("conv2k3", (1, 5, 5), 2)
    with pytest.raises(ValueError, match="do not match"):
        LayeredNet(arch, (np.ones((1, 3, 3, 3), np.int8), np.ones((18, 2), np.int8)),
                   (np.ones(18, np.int32), np.ones(2, np.int32)), 10)


@pytest.mark.parametrize("spec, shape", CASES[:3] + CASES[-1:], ids=[c[0] for c in CASES[:3] + CASES[-1:]])
def test_layer_spike_times_against_the_reference_spike_times(spec, shape):
    """Per layer, the mean step of the spikes up to the decision and of the first such spike,
    from the early-exit engine in chunks, equal the same figures computed in numpy from the
    time-stepped reference's full spike times."""
    from bstdg.evaluation import layer_spike_times

    rng = np.random.default_rng(7)
    t_max = 20
    arch = Architecture.parse(spec, shape, 4)
    net = random_layered(rng, arch, t_max, max_threshold=4)
    events = image_events(rng, 40, shape, t_max)
    got = layer_spike_times(net, events, chunk=16)
    dense = layered_forward_dense(net, events)
    decision = metrics.decide(dense.output_times, dense.decision_potential, t_max).time
    fr = dense  # the reference gives a ForwardResult with every spike time
    assert list(got) == [f"{l}:{layer}" for l, layer in enumerate(arch.layers_all)]
    for l, key in enumerate(got):
        t = fr.layer_times(l).astype(float)
        fired = (t <= decision[:, None]) & (t < t_max)
        mean = t[fired].mean() if fired.any() else None
        has = fired.any(1)
        first = np.where(fired, t, np.inf).min(1)[has].mean() if has.any() else None
        assert got[key]["mean"] == pytest.approx(mean) and got[key]["first"] == pytest.approx(first), key


@pytest.mark.parametrize("n_in", [INT16_FAN_IN, INT16_FAN_IN + 1])
def test_potentials_at_the_int16_fan_in_limit(n_in):
    """At the largest fan-in int16 potentials allow (and one past it, int32): a neuron that
    needs every input, one that fires at the first and then takes all the others, one driven
    to -fan-in; both dtypes give the reference's spikes and decision potentials."""
    t_max = 12
    arch = Architecture.parse("fc3", (1, 1, n_in), 2)
    assert potential_dtype(geometry(arch)) == (np.int16 if n_in <= INT16_FAN_IN else np.int32)
    w = np.ones((n_in, 3), np.int8)
    w[:, 2] = -1
    out = np.array([[1, -1], [1, 1], [-1, 1]], np.int8)
    net = LayeredNet(arch, (w, out), (np.array([n_in, 1, 1], np.int32), np.array([2, 2], np.int32)), t_max)
    rng = np.random.default_rng(0)
    times = rng.integers(0, t_max - 2, (3, n_in)).astype(np.int32)
    times[1, :] = t_max  # a silent sample: decided by the potentials at t_max
    times[2, -1] = t_max - 1  # the last input arrives late
    events = times_to_events(times, t_max)
    dense = layered_forward_dense(net, events)
    for kind in (np.int16, np.int32):
        got = layered_batch(events.arrays(), net.packed(), t_max, False, True, 2, np.empty(0, kind))
        np.testing.assert_array_equal(got[0], dense.times)
        np.testing.assert_array_equal(got[2], dense.decision_potential)
    for b in (0, 2):  # not trivial: every input counts, the late one decides neuron 0
        assert list(dense.times[b, :3]) == [times[b].max(), times[b].min(), t_max]
    assert (dense.times[1] == t_max).all()
    ev = layered_forward(net, events)  # the dtype layered_forward picks
    np.testing.assert_array_equal(ev.times, dense.times)
