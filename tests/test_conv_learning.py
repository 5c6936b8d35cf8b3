"""The anytime rule through conv and pool layers: the fused kernel against a plain numpy
re-implementation (every layer unrolled to an explicit connection matrix), and against the
fc kernel on fc-only networks."""

import numpy as np
import pytest

from bstdg.arch import Architecture, input_order
from bstdg.convnet import LayeredSNN
from bstdg.encoding import encode_latency, times_to_events
from bstdg.engine.conv import routes
from bstdg.engine.dense_conv import layered_forward_dense
from bstdg.learning import SampleOutputs, probe_times
from bstdg.network import BinarySNN
from bstdg.online import AnytimeParams, FcState, anytime_samples
from bstdg.online_conv import LayeredAnytimeParams, LayeredState, anytime_layered_samples

from helpers import random_latency_events


def connections(net: LayeredSNN, l: int) -> np.ndarray:
    """``M[i, h]``: index into ``net.w`` of the weight from pre unit ``i`` to neuron ``h`` of
    layer ``l`` (engine orders), -1 where none; for pool, 0 where ``i`` is in ``h``'s window."""
    arch = net.arch
    layer = arch.layers_all[l]
    n_pre, n_post = arch.sizes[l], arch.sizes[l + 1]
    M = np.full((n_pre, n_post), -1, np.int64)
    if layer.kind == "fc":
        M[:] = net.w_off[l] + np.arange(n_pre * n_post).reshape(n_pre, n_post)
        return M
    cin, hin, win = arch.in_shapes[l]
    cout, hout, wout = arch.shapes[l]
    k = layer.kernel if layer.kind == "conv" else layer.size
    s = layer.stride if layer.kind == "conv" else layer.size
    p = layer.padding if layer.kind == "conv" else 0
    for oy in range(hout):
        for ox in range(wout):
            for co in range(cout):
                h = (oy * wout + ox) * cout + co
                for ky in range(k):
                    for kx in range(k):
                        y, x = oy * s - p + ky, ox * s - p + kx
                        if not (0 <= y < hin and 0 <= x < win):
                            continue
                        if layer.kind == "pool":
                            M[(y * win + x) * cin + co, h] = 0
                        else:
                            for ci in range(cin):
                                M[(y * win + x) * cin + ci, h] = net.w_off[l] + ((ci * k + ky) * k + kx) * cout + co
    return M


def window(u, fired, W):
    u = np.where(fired & (u < 0), 0.0, u)
    return np.maximum(0.0, 1 - np.abs(u + 0.5) / W) / W


def reference_update(net: LayeredSNN, events, label, probes, lr_w, lr_theta, learn_theta, beta, W):
    """One sample of the rule of docs/learning.md ("Convolutional networks"), in plain numpy."""
    bn = net.binary()
    arch, t_max, L = net.arch, net.t_max, net.n_layers
    times = layered_forward_dense(bn, events).times[0]
    post = [times[net.n_off[l]:net.n_off[l + 1]] for l in range(L)]
    th = [t.astype(np.float64) for t in bn.thresholds]
    w_bin = np.where(net.w >= 0, 1.0, -1.0)
    M = [connections(net, l) for l in range(L)]
    B = [np.where(m >= 0, w_bin[np.maximum(m, 0)], 0.0) for m in M]
    pre = [(events.times, input_order(arch)[events.units])]
    for l in range(1, L):
        fired = np.flatnonzero(post[l - 1] < t_max)
        pre.append((post[l - 1][fired], fired))
    kinds = [layer.kind for layer in arch.layers_all]
    V = [np.array([B[l][pre[l][1][pre[l][0] <= T]].sum(axis=0) for T in probes]) for l in range(L)]
    z = beta * (V[-1] - th[-1])
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    err = [None] * L
    err[-1] = np.eye(arch.n_classes)[label] - p
    l = L - 1
    while l > 0:
        sent = err[l] @ B[l].T  # (m, n_pre)
        if kinds[l - 1] == "pool":
            lc = l - 2
            if lc < 0:
                break
            e = np.zeros((len(probes), arch.sizes[lc + 1]))
            for q in range(arch.sizes[l]):  # pool outputs
                members = np.flatnonzero(M[l - 1][:, q] == 0)  # window, scan order (dy, dx)
                tp = post[l - 1][q]
                for j, T in enumerate(probes):
                    if tp <= T:
                        h = members[np.flatnonzero(post[lc][members] == tp)[0]]
                    else:
                        gap = V[lc][j, members] - th[lc][members]
                        h = members[np.argmax(gap)]
                    e[j, h] = sent[j, q] * window(V[lc][j, h] - th[lc][h], post[lc][h] <= T, W)
            err[lc] = e
            l = lc
        else:
            fired_by = post[l - 1][None, :] <= probes[:, None]
            err[l - 1] = sent * window(V[l - 1] - th[l - 1], fired_by, W)
            l -= 1
    w, theta = net.w.astype(np.float64), net.theta.astype(np.float64)
    dw = np.zeros_like(w)
    for l in range(L):
        if err[l] is None or kinds[l] == "pool":
            continue
        for t, unit in zip(*pre[l]):
            step = err[l][probes >= t].sum(axis=0)
            if l < L - 1:
                step = step * (t <= post[l])  # hidden post neurons: causal pairs only
            ok = M[l][unit] >= 0
            np.add.at(dw, M[l][unit][ok], lr_w[l] * step[ok])
        if learn_theta[l]:
            g = np.zeros_like(theta)
            np.add.at(g, net.theta_map[net.n_off[l]:net.n_off[l + 1]], err[l].sum(axis=0))
            seg = slice(net.t_off[l], net.t_off[l + 1])
            theta[seg] = np.maximum(theta[seg] - lr_theta * g[seg], 1.0)
    return np.clip(w + dw, -1, 1), theta, post[-1]


def run_kernel(net, events, label, probes, lr_w, lr_theta, learn, beta, W):
    w_bin = np.where(net.w >= 0, 1, -1).astype(np.int8)
    theta_int = net.integer_thresholds()
    theta_neuron = net.neuron_thresholds()
    out_times = np.empty((1, net.arch.n_classes), np.int32)
    potential = np.empty((1, net.arch.n_classes), np.int32)
    state = LayeredState(routes(net.arch), net.w, w_bin, net.geom, net.n_off, net.theta, theta_int, theta_neuron,
                         net.theta_map)
    params = LayeredAnytimeParams(net.t_max, probes, lr_w, lr_theta, learn, beta, np.full(net.n_layers, W))
    loss = anytime_layered_samples(events.arrays(), np.array([0]), np.array([label]), state, params,
                                   SampleOutputs(out_times, potential))
    np.testing.assert_array_equal(w_bin, np.where(net.w >= 0, 1, -1))
    np.testing.assert_array_equal(theta_int, net.integer_thresholds())
    np.testing.assert_array_equal(theta_neuron, net.neuron_thresholds())
    return out_times[0], loss


CASES = [("conv3k3,pool2,fc6", (1, 8, 8), "channel"),
         ("conv3k3,pool2,fc6", (1, 8, 8), "neuron"),
         ("conv4k3p1,pool2,conv3k2,fc5", (2, 8, 8), "channel"),
         ("conv3k3s2p1,fc6", (1, 9, 9), "neuron"),
         ("conv4k3,conv3k3,pool2", (1, 9, 9), "channel"),
         ("pool2,conv3k2,fc4", (1, 8, 8), "channel")]


@pytest.mark.parametrize("spec, shape, mode", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
@pytest.mark.parametrize("seed", range(3))
def test_conv_kernel_is_the_plain_update(spec, shape, mode, seed):
    t_max = 24
    rng = np.random.default_rng(seed)
    arch = Architecture.parse(spec, shape, 3)
    x = rng.random((1, int(np.prod(shape))))
    x[x < 0.3] = 0
    events = times_to_events(encode_latency(x, t_max), t_max)
    net = LayeredSNN.initialise(arch, t_max, events, rng, mode, w_init=(-0.5, 0.5), theta_out=2.0)
    net.theta[:] += rng.uniform(0, 1.5, net.theta.size).astype(np.float32)  # varied, non-integer
    net.threshold(net.n_layers - 1)[:] = 2.0
    probes = probe_times(t_max, 4)
    lr_w = np.array([0.05] * (net.n_layers - 1) + [0.02])
    learn = np.array([True] * (net.n_layers - 1) + [False])
    label, beta, W, lr_theta = 1, 0.7, 8.0, 0.1
    expected_w, expected_theta, out = reference_update(net, events, label, probes, lr_w, lr_theta, learn, beta, W)
    start_w = net.w.copy()
    out_k, loss = run_kernel(net, events, label, probes, lr_w, lr_theta, learn, beta, W)
    np.testing.assert_array_equal(out_k, out)
    assert loss > 0
    assert not np.array_equal(net.w[:net.w_off[1]], start_w[:net.w_off[1]]) or arch.layers[0].kind == "pool"
    np.testing.assert_allclose(net.w, expected_w, atol=1e-6)
    np.testing.assert_allclose(net.theta, expected_theta, atol=1e-6)


def test_conv_learning_reaches_below_the_pool():
    """Across seeds, the conv layer under a pool learns weights and thresholds (the error
    passed through the pool's winners is not always zero)."""
    moved = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        arch = Architecture.parse("conv3k3,pool2,fc6", (1, 8, 8), 3)
        x = rng.random((1, 64))
        events = times_to_events(encode_latency(x, 24), 24)
        net = LayeredSNN.initialise(arch, 24, events, rng, w_init=(-0.5, 0.5), theta_out=2.0)
        start = net.theta[:3].copy()
        run_kernel(net, events, 0, probe_times(24, 4), np.array([0.05, 0, 0.05, 0.02]), 0.1,
                   np.array([True, False, True, False]), 0.7, 8.0)
        moved += not np.array_equal(net.theta[:3], start)
    assert moved >= 3


@pytest.mark.parametrize("sizes", [(12, 6, 3), (12, 8, 5, 3)])
def test_fc_only_layered_kernel_equals_the_fc_kernel(sizes):
    """An fc-only LayeredSNN trains exactly like BinarySNN with bstdg.online.anytime_samples."""
    t_max = 40
    rng = np.random.default_rng(4)
    events = random_latency_events(rng, 5, sizes[0], t_max)
    labels = rng.integers(0, sizes[-1], 5)
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    theta = np.r_[rng.uniform(1.0, 3.0, sum(sizes[1:-1])), np.ones(sizes[-1])].astype(np.float32)
    fc = BinarySNN(sizes, t_max, rng.uniform(-0.5, 0.5, n_w).astype(np.float32), theta)
    lay = LayeredSNN(Architecture.parse(list(sizes[1:-1]), (sizes[0],), sizes[-1]), t_max, fc.w.copy(),
                     fc.theta.copy())
    probes = probe_times(t_max, 4)
    lr_w = np.array([0.05] * (len(sizes) - 2) + [0.02])
    learn = np.array([True] * (len(sizes) - 2) + [False])
    order = np.arange(5)
    w_bin = np.where(fc.w >= 0, 1, -1).astype(np.int8)
    th_int = fc.integer_thresholds()
    out_fc, pot_fc = np.empty((5, sizes[-1]), np.int32), np.empty((5, sizes[-1]), np.int32)
    loss_fc = anytime_samples(events.arrays(), order, labels,
                              FcState(fc.w, w_bin, fc.w_off, np.asarray(sizes, np.int64), fc.theta, th_int, fc.n_off),
                              AnytimeParams(t_max, probes, lr_w, 0.1, learn, 0.7, 3.0), SampleOutputs(out_fc, pot_fc))
    w_bin2 = np.where(lay.w >= 0, 1, -1).astype(np.int8)
    th_int2, th_n = lay.integer_thresholds(), lay.neuron_thresholds()
    out_l, pot_l = np.empty((5, sizes[-1]), np.int32), np.empty((5, sizes[-1]), np.int32)
    loss_l = anytime_layered_samples(events.arrays(), order, labels,
                                     LayeredState(routes(lay.arch), lay.w, w_bin2, lay.geom, lay.n_off, lay.theta,
                                                  th_int2, th_n, lay.theta_map),
                                     LayeredAnytimeParams(t_max, probes, lr_w, 0.1, learn, 0.7,
                                                          np.full(lay.n_layers, 3.0)),
                                     SampleOutputs(out_l, pot_l))
    np.testing.assert_array_equal(out_l, out_fc)
    np.testing.assert_array_equal(pot_l, pot_fc)
    np.testing.assert_allclose(lay.w, fc.w, atol=1e-6)
    np.testing.assert_allclose(lay.theta, fc.theta, atol=1e-6)
    assert loss_l == pytest.approx(loss_fc)
