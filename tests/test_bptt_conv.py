"""The BPTT conv baseline (torch) against the event-driven conv engine: the same spike times,
decision potentials and predictions on networks with given ±1 weights and integer
thresholds; round trips to LayeredSNN; a few training steps reduce the loss."""

import numpy as np
import pytest

from bstdg import metrics
from bstdg.arch import Architecture
from bstdg.convnet import LayeredSNN
from bstdg.encoding import encode_latency, times_to_events
from bstdg.engine.conv import layered_forward

torch = pytest.importorskip("torch")
from bstdg.baselines import bptt, bptt_conv  # noqa: E402  (needs torch at call time only)
from helpers import image_events  # noqa: E402

CASES = [
    ("conv3k3,pool2", (1, 8, 8), "channel"),
    ("conv4k3s2p1,fc6", (2, 9, 7), "neuron"),
    ("conv3k2p1,pool3,conv4k2,fc5", (2, 10, 10), "channel"),
    ("pool2,conv2k3", (3, 7, 9), "neuron"),
    ("conv5k3s2,pool2,fc7", (1, 13, 11), "channel"),
    ("fc9,fc6", (1, 5, 5), "channel"),
]


def random_snn(rng, arch, t_max, mode, max_threshold=4) -> LayeredSNN:
    """Latent weights in [-1, 1] (about 60 % positive), integer latent thresholds 1..max."""
    snn = LayeredSNN.initialise(arch, t_max, image_events(rng, 4, arch.input_shape, t_max), rng, mode)
    snn.w[:] = rng.uniform(-0.8, 1.0, snn.w.shape)
    snn.theta[:] = rng.integers(1, max_threshold + 1, snn.theta.shape)
    return snn



@pytest.mark.parametrize("spec, shape, mode", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed", range(2))
def test_torch_forward_equals_the_event_engine(spec, shape, mode, seed):
    """Every neuron's spike time (conv and pool maps channel-last), the decision potentials
    and the decisions of the binary torch network are the engine's."""
    rng = np.random.default_rng(seed)
    t_max = 20
    arch = Architecture.parse(spec, shape, 4)
    snn = random_snn(rng, arch, t_max, mode)
    events = image_events(rng, 30, shape, t_max)
    ref = layered_forward(snn.binary(), events)
    net = bptt_conv.from_layered(snn)
    labels = rng.integers(0, 4, len(events))
    ev, result, decision = bptt.evaluate(net, events, labels, t_max, batch_size=7)
    np.testing.assert_array_equal(result.times, ref.times)
    np.testing.assert_array_equal(result.n_off, ref.n_off)
    np.testing.assert_array_equal(result.decision_potential, ref.decision_potential)
    expected = metrics.decide(ref.output_times, ref.decision_potential, t_max)
    np.testing.assert_array_equal(decision.prediction, expected.prediction)
    np.testing.assert_array_equal(decision.tie, expected.tie)
    assert (ref.times < t_max).any() and (ref.times == t_max).any()  # not trivial


def test_real_variant_with_binary_values_is_the_same_network():
    """The real-weight forward pass (no sign, no ceil) on ±1 weights and integer thresholds."""
    rng = np.random.default_rng(5)
    t_max = 16
    arch = Architecture.parse("conv4k3p1,pool2,fc8", (1, 8, 8), 3)
    snn = random_snn(rng, arch, t_max, "channel")
    binary = bptt_conv.from_layered(snn)
    state = [(torch.where(w >= 0, 1.0, -1.0), torch.ceil(th)) for w, th in binary.effective()]
    real = bptt_conv.ConvNet(arch, [w.numpy() for w, _ in state], [th.numpy() for _, th in state], False)
    events = image_events(rng, 20, (1, 8, 8), t_max)
    ref = layered_forward(snn.binary(), events)
    _, result, _ = bptt.evaluate(real, events, np.zeros(20, np.int64), t_max)
    np.testing.assert_array_equal(result.times, ref.times)


@pytest.mark.parametrize("mode", ["channel", "neuron"])
def test_round_trip_to_layered_snn(mode):
    rng = np.random.default_rng(1)
    arch = Architecture.parse("conv3k3s2p1,pool2,fc5", (2, 9, 9), 3)
    snn = random_snn(rng, arch, 12, mode)
    back = bptt_conv.to_layered(bptt_conv.from_layered(snn), 12, {"x": 1})
    assert back.threshold_mode == mode and back.meta == {"x": 1}
    np.testing.assert_array_equal(back.w, snn.w)
    np.testing.assert_array_equal(back.theta, snn.theta)


def test_pool_fires_once_at_the_first_spike_of_its_window_and_passes_the_gradient():
    arch = Architecture.parse("pool2,fc1", (1, 2, 2), 2)
    x = torch.zeros(4, 1, 4, requires_grad=True)
    with torch.no_grad():
        x[1, 0, 3] = 1.0
        x[2, 0, 0] = 1.0
    net = bptt_conv.gaussian(arch, np.random.default_rng(0))
    spikes, _ = bptt_conv.forward_layers(x, arch, net.effective(), 5.0)
    assert spikes[0][:, 0, 0, 0, 0].tolist() == [0.0, 1.0, 0.0, 0.0]
    spikes[0].sum().backward()
    assert x.grad[1, 0, 3] == 1.0 and x.grad[2, 0, 0] == 0.0


def two_class_images(t_max: int):
    """32 latency-coded 6x6 images: class 0 bright on the left half, class 1 on the right."""
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    x = rng.uniform(0.0, 0.3, (32, 6, 6)) * (rng.random((32, 6, 6)) < 0.5)
    x[labels == 0, :, :3] = rng.uniform(0.7, 1.0, ((labels == 0).sum(), 6, 3))
    x[labels == 1, :, 3:] = rng.uniform(0.7, 1.0, ((labels == 1).sum(), 6, 3))
    return times_to_events(encode_latency(x.reshape(32, -1), t_max), t_max), labels


@pytest.mark.parametrize("binary", [True, False])
def test_a_few_training_steps_reduce_the_loss(binary):
    t_max = 12
    events, labels = two_class_images(t_max)
    arch = Architecture.parse("conv4k3,pool2,fc8", (1, 6, 6), 2)
    config = bptt.default_config(binary, hidden=(8,), t_max=t_max, batch_size=32, lr=1e-2)
    if binary:
        snn = LayeredSNN.initialise(arch, t_max, events, np.random.default_rng(0), theta_out=2.0)
        net = bptt_conv.from_layered(snn, config.slope, train_theta=True)
    else:
        net = bptt_conv.gaussian(arch, np.random.default_rng(0), 1.5, config.slope)
    trainer = bptt.Trainer(net, config)
    losses = [trainer.step(events, labels)[0] for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
    if binary:
        assert all(float(w.detach().abs().max()) <= 1.0 for w in net.weights)
        assert all(float(th.detach().min()) >= 1.0 for th in net.thresholds)
        clone = net.clone()
        assert isinstance(clone, bptt_conv.ConvNet) and clone.arch == net.arch
