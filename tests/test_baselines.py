"""The BPTT baselines (torch): the unrolled network against the event engine, the two
unrollings against each other, the surrogate gradient, and a few training steps."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bstdg import metrics
from bstdg.engine.event import if_network_forward
from bstdg.errors import BstdgError

from helpers import random_latency_events, random_multi_spike_events, random_net

torch = pytest.importorskip("torch")
from bstdg.baselines import bptt, bptt_net, bptt_readout  # noqa: E402  (needs torch at call time only)

torch.set_num_threads(1)  # tiny tensors; spinning OpenMP threads only cost time on a shared machine


def torch_net(bn, binary=True, **kw):
    return bptt_net.Net([w.astype(np.float32) for w in bn.weights],
                    [th.astype(np.float32) for th in bn.thresholds], binary, **kw)


def engine(bn, events):
    r = if_network_forward(bn, events)
    return r, metrics.decide(r.output_times, r.decision_potential, bn.t_max)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("unroll", ["scan", "loop"])
def test_fire_once_forward_matches_event_engine(seed, unroll):
    """Spike times of every neuron, output potentials at the decision step and decisions
    of the torch network equal the event engine's, on random binary networks."""
    rng = np.random.default_rng(seed)
    t_max = int(rng.integers(4, 24))
    sizes = (int(rng.integers(5, 40)), *rng.integers(2, 25, seed % 2 + 1), int(rng.integers(2, 8)))
    bn = random_net(rng, sizes, t_max, max_threshold=4)
    events = random_latency_events(rng, 25, sizes[0], t_max)
    if seed == 5:  # inputs that spike several times, several spikes per step
        events = random_multi_spike_events(rng, 25, sizes[0], t_max, mean_spikes=15)
    r, d = engine(bn, events)
    for binary in (True, False):  # ±1 real weights with integer thresholds: same network
        with torch.no_grad():
            spikes, v_out = torch_net(bn, binary).forward(bptt_readout.dense_input(events, t_max), unroll)
        rr, dd = bptt_readout.forward_result(spikes, v_out, binary, t_max)
        np.testing.assert_array_equal(rr.times, r.times)
        np.testing.assert_array_equal(dd.time, d.time)
        np.testing.assert_array_equal(dd.prediction, d.prediction)
        np.testing.assert_array_equal(dd.tie, d.tie)
        if binary:
            np.testing.assert_array_equal(rr.decision_potential, r.decision_potential)


def test_binary_forward_uses_sign_and_ceil_of_latent_values():
    """Latent weights with the engine network's signs (0 counts as +1) and latent
    thresholds just below its integer ones give the engine's spike times."""
    rng = np.random.default_rng(3)
    bn = random_net(rng, (20, 12, 4), 10)
    latent_w = [(np.where(w > 0, rng.uniform(0, 1, w.shape), rng.uniform(-1, -1e-3, w.shape))
                 .astype(np.float32)) for w in bn.weights]
    latent_w[0][bn.weights[0] > 0][:5] = 0.0
    latent_th = [(th - rng.uniform(0, 0.99, th.shape)).astype(np.float32) for th in bn.thresholds]
    events = random_latency_events(rng, 30, 20, 10)
    with torch.no_grad():
        spikes, _ = bptt_net.Net(latent_w, latent_th, True).forward(bptt_readout.dense_input(events, 10))
    np.testing.assert_array_equal(np.concatenate([bptt_readout.spike_times(s) for s in spikes], 1),
                                  engine(bn, events)[0].times)


@pytest.mark.parametrize("binary", [True, False])
def test_scan_and_loop_give_the_same_loss_and_gradients(binary):
    rng = np.random.default_rng(1)
    t_max, sizes = 12, (30, 20, 5)
    bn = random_net(rng, sizes, t_max, max_threshold=4)
    events = random_latency_events(rng, 16, 30, t_max)
    labels = rng.integers(0, 5, 16)
    config = bptt.default_config(binary, t_max=t_max)
    grads = []
    for unroll in ("scan", "loop"):
        net = bptt_net.Net([w * 0.5 for w in bn.weights], [th.astype(np.float32) for th in bn.thresholds],
                       binary, train_theta=binary)
        spikes, v_out = net.forward(bptt_readout.dense_input(events, t_max), unroll)
        loss = bptt.loss_function(spikes[-1], labels, config, v_out, net.effective()[-1][1])
        loss.backward()
        grads.append([float(loss.detach())] + [p.grad.clone() for p in net.parameters()])
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    for a, b in zip(grads[0][1:], grads[1][1:]):
        assert float(a.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_surrogate_gradient_is_the_fast_sigmoid_derivative():
    u = torch.tensor([-2.0, -0.5, 0.0, 0.25, 3.0], requires_grad=True)
    s = bptt_net.spike_function().apply(u, 5.0)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # Heaviside, H(0) = 1 (V >= theta fires)
    s.sum().backward()
    expected = 1.0 / (1.0 + 5.0 * u.detach().abs()) ** 2
    torch.testing.assert_close(u.grad, expected)


def test_fire_once_mask_freezes_a_neuron_after_its_spike():
    """A neuron above threshold at several steps spikes once; the steps after its spike get
    no gradient, the steps before (and at) it do."""
    v = torch.tensor([[[0.0]], [[2.0]], [[3.0]], [[1.0]], [[4.0]]], requires_grad=True)  # (T, 1, 1)
    theta = torch.tensor([2.0])
    s = bptt_net.fire_once(v, theta, 5.0)
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    s.sum().backward()
    g = v.grad.flatten()
    assert g[0] > 0 and g[1] > 0 and g[2:].abs().sum() == 0


def test_soft_first_times_equal_spike_times_and_push_in_the_right_direction():
    rng = np.random.default_rng(0)
    bn = random_net(rng, (25, 15, 6), 16)
    events = random_latency_events(rng, 20, 25, 16)
    spikes, _ = torch_net(bn).forward(bptt_readout.dense_input(events, 16))
    soft = bptt_readout.soft_first_times(spikes[-1])
    np.testing.assert_array_equal(soft.detach().numpy(), bptt_readout.spike_times(spikes[-1].detach()))


def test_order_key_keeps_order_and_equality_of_floats():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 10, 500), [0.0, -0.0, 1.5, 1.5, -3.25, -3.25, 1e-30, -1e-30]]
    k = bptt_readout.order_key(x)
    i, j = rng.integers(0, len(x), (2, 5000))
    assert np.array_equal(k[i] > k[j], x[i] > x[j]) and np.array_equal(k[i] == k[j], x[i] == x[j])
    assert (k > np.iinfo(np.int64).min).all()


def test_dense_input_is_the_raster_of_the_events():
    rng = np.random.default_rng(0)
    events = random_multi_spike_events(rng, 7, 12, 9)
    x = bptt_readout.dense_input(events, 9)
    np.testing.assert_array_equal(x.numpy(), events.rasters(9).transpose(1, 0, 2))


def three_class_problem(t_max: int, n_in: int):
    """48 latency-coded samples of 3 classes, each lighting up its own group of 10 inputs
    early (the rest dim and sparse): ``(events, labels)``."""
    from bstdg.encoding import encode_latency, times_to_events

    rng = np.random.default_rng(0)
    labels = np.arange(48) % 3
    x = rng.uniform(0.0, 0.4, (48, n_in)) * (rng.random((48, n_in)) < 0.5)
    for c in range(3):
        x[labels == c, 10 * c:10 * c + 10] = rng.uniform(0.7, 1.0, ((labels == c).sum(), 10))
    return times_to_events(encode_latency(x, t_max), t_max), labels


@pytest.mark.parametrize("binary", [True, False])
def test_a_few_training_steps_reduce_the_loss(binary):
    """Full-batch Adam on 48 samples of a 3-class problem whose classes light up different
    input groups early: the loss drops and the binary variant keeps its latent ranges."""
    t_max, n_in = 8, 30
    events, labels = three_class_problem(t_max, n_in)
    config = bptt.default_config(binary, hidden=(16,), t_max=t_max, batch_size=48)
    if binary:
        from bstdg.network import BinarySNN
        snn = BinarySNN.initialise((n_in, 16, 3), t_max, events, np.random.default_rng(0))
        net = bptt_net.Net.from_snn(snn, config.slope, train_theta=True)
    else:
        net = bptt_net.Net.gaussian((n_in, 16, 3), np.random.default_rng(0), 1.5, config.slope)
    trainer = bptt.Trainer(net, config)
    losses = [trainer.step(events, labels)[0] for _ in range(25)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
    if binary:
        assert all(float(w.detach().abs().max()) <= 1.0 for w in net.weights)
        assert all(float(th.detach().min()) >= 1.0 for th in net.thresholds)


def test_binary_variant_exports_to_a_model_the_event_engine_runs_identically():
    rng = np.random.default_rng(2)
    from bstdg.evaluation import evaluate as evaluate_event
    from bstdg.network import BinarySNN
    t_max = 12
    events = random_latency_events(rng, 40, 30, t_max)
    labels = rng.integers(0, 4, 40)
    snn = BinarySNN.initialise((30, 20, 4), t_max, events, np.random.default_rng(0))
    net = bptt_net.Net.from_snn(snn, train_theta=True)
    trainer = bptt.Trainer(net, bptt.default_config(True, hidden=(20,), t_max=t_max))
    for _ in range(5):
        trainer.step(events, labels)
    ev, result, decision = bptt.evaluate(net, events, labels, t_max)
    exported = bptt.to_snn(net, t_max, {})
    r, d = engine(exported.binary(), events)
    np.testing.assert_array_equal(result.times, r.times)
    np.testing.assert_array_equal(decision.prediction, d.prediction)
    assert evaluate_event(exported, events, labels).accuracy == ev.accuracy


def test_missing_torch_is_a_one_line_user_error(monkeypatch):
    from bstdg.baselines import require_torch
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BstdgError, match="pip install torch==2.13.0"):
        require_torch()


def test_engine_and_trainer_modules_do_not_import_torch():
    import subprocess
    code = ("import sys, bstdg.train, bstdg.evaluation, bstdg.engine.event, bstdg.compare, bstdg.report, "
            "bstdg.cli; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- the snnTorch baseline ------------------------------------------------------------------


def snntorch_module():
    pytest.importorskip("snntorch")
    from bstdg.baselines import snntorch_baseline
    return snntorch_baseline


def test_snntorch_first_spikes_match_the_event_engine_on_an_equivalent_network():
    """One layer, beta = 1 (no leak), no bias, ±1 weights, threshold theta - 1/2 (snnTorch
    fires at V > thr, bstdg at V >= theta): every output's first spike, the potentials at the
    decision step and the strict-rule decisions equal the event engine's."""
    st = snntorch_module()
    rng = np.random.default_rng(4)
    t_max, sizes = 12, (30, 6)
    bn = random_net(rng, sizes, t_max, max_threshold=1)
    bn = type(bn)(bn.weights, (np.full(6, 3, np.int32),), t_max)
    events = random_latency_events(rng, 40, 30, t_max)
    cfg = st.SnnTorchConfig(hidden=(), t_max=t_max, threshold=2.5)
    model = st.build(sizes, cfg)
    with torch.no_grad():
        model.fc[0].weight.copy_(torch.from_numpy(bn.weights[0].T.astype(np.float32)))
        model.fc[0].bias.zero_()
    ev = st.evaluate(model, events, np.zeros(40, np.int64), cfg)
    r, d = engine(bn, events)
    np.testing.assert_array_equal(ev["result"].times, r.times)
    np.testing.assert_array_equal(ev["decision"].prediction, d.prediction)
    np.testing.assert_array_equal(ev["decision"].tie, d.tie)
    np.testing.assert_array_equal(ev["decision"].time, d.time)


@pytest.mark.parametrize("loss", ["rate", "temporal"])
def test_snntorch_readout_is_snntorchs_own_accuracy(loss):
    st = snntorch_module()
    import snntorch.functional as SF
    rng = np.random.default_rng(0)
    spk = torch.from_numpy((rng.random((9, 200, 5)) < 0.15).astype(np.float32))
    labels = rng.integers(0, 5, 200)
    pred, ties = st.readout(spk, loss)
    own = (SF.accuracy_rate if loss == "rate" else SF.accuracy_temporal)(spk, torch.from_numpy(labels))
    assert (pred == labels).mean() == pytest.approx(own)
    score = spk.sum(0).numpy() if loss == "rate" else -bptt_readout.spike_times(spk)
    np.testing.assert_array_equal(ties, (score == score.max(1, keepdims=True)).sum(1) > 1)
    assert ties.any()


@pytest.mark.parametrize("loss", ["rate", "temporal"])
def test_snntorch_training_steps_reduce_the_loss(loss):
    st = snntorch_module()
    t_max, n_in = 8, 30
    events, labels = three_class_problem(t_max, n_in)
    cfg = st.SnnTorchConfig(hidden=(16,), t_max=t_max, lr=3e-2, loss=loss, batch_size=48)
    trainer = st.Trainer(st.build((n_in, 16, 3), cfg), cfg)
    losses = [trainer.step(events, labels)[0] for _ in range(25)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
    ev = st.evaluate(trainer.model, events, labels, cfg)
    assert ev["test_accuracy"] > 0.6 and 0 <= ev["test_accuracy_first_spike"] <= 1


def test_device_cuda_is_refused_without_a_gpu_and_cpu_is_the_default():
    from bstdg.baselines import torch_device
    assert torch_device().type == "cpu"
    with pytest.raises(BstdgError, match="--device"):
        torch_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BstdgError, match="no CUDA GPU"):
            torch_device("cuda")
