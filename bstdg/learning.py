"""Spike-timing-dependent gradients (BSTDG) for binary fire-once IF networks.

Only spike times are used: no membrane trace is stored, so memory does not depend on
``t_max``. Notation for one layer: pre-synaptic spike times ``t_i`` (an input channel may
spike several times; each spike counts as its own pre event), post-synaptic times ``t_j``
(``t_max`` when silent), binary weights ``b_ji = sign(w_ji)``, thresholds ``theta_j``, and
``delta_j = dL/dt_j``. A pair is *causal* when ``t_i <= t_j``; a silent post neuron treats
every pre spike as causal (its pseudo spike time is ``t_max``). With the timing factors
``g(d) = exp(-d / tau_w)`` and ``h(d) = exp(-d / tau_t)`` of ``d = t_j - t_i >= 0``
(``tau = 0`` means the constant factor 1, the S4NN-style indicator):

* weights:     ``dL/dw_ji    = -sum_causal delta_j * g(t_j - t_i)``  (more weight -> earlier spike)
* thresholds:  ``dL/dtheta_j = +delta_j``                            (higher threshold -> later spike)
  (output layer; hidden layers too with ``learn_hidden_thresholds``)
* centring:    mini-batch Adam only: in hidden layers ``dL/dw_ji -= mean_i dL/dw_ji`` per
  neuron ``j``, so the weights change *which* inputs excite ``j`` while its threshold alone
  sets how easily it fires (kept Adam's hidden neurons from drifting to all ``-1``)
* pre times:   ``dL/dt_i     = sum_j delta_j * b_ji * k(t_j - t_i)`` with ``k(d) = h(d)`` for
  causal pairs and ``k(d) = anti * exp(d / tau_anti)`` (``d < 0``) for pre neurons that
  fired too late or not at all; a silent pre neuron keeps only a "fire earlier" error
  (unless ``silent_fire_later``)

The derivation and the output losses are in ``docs/learning.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numba
import numpy as np

from .checks import check_bool, check_choice, check_int, check_real


class SampleOutputs(NamedTuple):
    """Where the per-sample training kernels (:mod:`bstdg.online`, :mod:`bstdg.online_conv`)
    write each sample's outputs as they were *before* its update (for the running accuracy);
    one Numba kernel argument. Row ``q`` belongs to the ``q``-th sample of ``order``."""

    out_times: np.ndarray  # int32 (len(order), n_out), output spike times in steps (t_max: none)
    decision_potential: np.ndarray  # int32 (len(order), n_out), the potentials bstdg.metrics.decide uses


@dataclass(frozen=True)
class LearningRule:
    """Parameters of the timing-dependent learning rule (times in time steps)."""

    # "anytime" (per-sample SGD only, see anytime_output_error), "s4nn" (relative targets),
    # "hinge" (margin) or "ce" (see output_error); None: the optimizer's default (TrainConfig:
    # anytime with sgd, s4nn with adam)
    loss: str | None = field(default=None, metadata={
        "help": "output loss: anytime (the default with sgd), s4nn (the default with adam), hinge, "
                "ce (adam only); docs/learning.md", "choices": ("anytime", "s4nn", "hinge", "ce")})
    # gamma: how many steps the correct output must lead the others
    margin: float = field(default=1.0, metadata={
        "help": "s4nn, hinge: time steps the correct output must lead by (default 1)"})
    tau_ce: float = 10.0  # temperature of the "ce" loss, time steps
    tau_w: float = 0.0  # time constant of the weight factor g (0: constant 1)
    tau_t: float = 0.0  # time constant of the back-propagated factor h (0: constant 1)
    anti: float = 0.0  # scale of the anti-causal (late or silent pre neuron) factor (0: off)
    tau_anti: float = 20.0  # its time constant (0: constant)
    normalise: bool = True  # scale each sample's delta vector to unit L2 norm, per layer
    no_futile: bool = False  # drop "fire earlier" pushes on neurons that fired with their first input
    center_hidden: bool = True  # adam only: remove each hidden neuron's mean weight gradient
    learn_hidden_thresholds: bool = True  # hidden thresholds learn too (with Adam they die; see docs)
    silent_fire_later: bool = False  # True: silent pre neurons also get "fire later" errors
    # (the rule before 2026-12-01; the Adam recipe needs it, see docs/learning.md)
    # anytime: how many probe times (probe_times); the softmax scale per unit of output
    # potential; the half-width of the potential window (potential units)
    probes: int = field(default=6, metadata={"help": "anytime: how many probe times (default 6)"})
    beta: float = field(default=0.2, metadata={
        "help": "anytime: softmax scale per unit of output potential (default 0.2)"})
    window: float = field(default=16.0, metadata={
        "help": "anytime: half-width of the potential window (default 16)"})

    def __post_init__(self):
        check_choice("loss", self.loss, LOSSES, optional=True)
        check_real("margin", self.margin, 0)
        check_real("tau_ce", self.tau_ce, 0, lo_open=True)
        for name in ("tau_w", "tau_t", "tau_anti"):
            check_real(name, getattr(self, name))
        check_real("anti", self.anti, 0)
        for name in ("normalise", "no_futile", "center_hidden", "learn_hidden_thresholds",
                     "silent_fire_later"):
            check_bool(name, getattr(self, name))
        check_int("probes", self.probes, 1, 64)
        check_real("beta", self.beta, 0, lo_open=True)
        check_real("window", self.window, 0, lo_open=True)


LOSSES = ("anytime", "s4nn", "hinge", "ce")


def timing_factor(tau: float, t_max: int) -> np.ndarray:
    """Table ``f[d] = exp(-d / tau)`` for ``d = 0..t_max`` (all ones when ``tau == 0``; a
    negative ``tau`` gives a factor that grows with ``d``, normalised to ``f[t_max] = 1``)."""
    d = np.arange(t_max + 1, dtype=np.float64)
    if tau == 0:
        return np.ones_like(d, dtype=np.float32)
    f = np.exp(-d / tau)
    return (f / f.max()).astype(np.float32)


def output_error(out_times: np.ndarray, labels: np.ndarray, t_max: int, rule: LearningRule) -> np.ndarray:
    """``delta = dL/dt`` for the output layer, float32 ``(B, n_out)``.

    * ``hinge``: ``L = sum_{j != c} max(0, t_c + margin - t_j)``. Every wrong output closer
      than ``margin`` behind the correct one ``c`` pushes ``t_c`` earlier (+1 each) and is
      pushed later itself (-1), unless it is already silent.
    * ``s4nn``: targets ``T_c = min(t_min, t_max - margin)`` and ``T_j = t_min + margin`` for
      wrong outputs firing before that, ``L = 1/2 sum_j (t_j - T_j)^2 / t_max``.
    * ``ce``: cross-entropy of ``softmax(-t / tau_ce)`` (use with ``no_futile``).
    Silent wrong outputs get no error: they cannot fire any later.
    """
    t = out_times.astype(np.float32)
    n, n_out = t.shape
    rows = np.arange(n)
    wrong = np.ones_like(t, dtype=bool)
    wrong[rows, labels] = False
    t_c = t[rows, labels]
    delta = np.zeros_like(t)
    if rule.loss == "hinge":
        violating = wrong & (t_c[:, None] + rule.margin > t)
        delta[rows, labels] = violating.sum(axis=1)
        delta[violating & (t < t_max)] = -1.0
    elif rule.loss == "ce":
        z = -(t - t.min(axis=1, keepdims=True)) / rule.tau_ce
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        delta = -p
        delta[rows, labels] += 1.0
        delta[(t >= t_max) & wrong] = 0.0
    else:
        delta = relative_target_errors(out_times.astype(np.int32), labels.astype(np.int64), t_max,
                                       float(rule.margin))
    return delta


@numba.njit(cache=True)
def relative_target_error(out_times, label, t_max, margin, delta):
    """The ``s4nn`` error of one sample into ``delta`` (n_out,): ``delta_j = (t_j - T_j) / t_max``
    with ``T_c = min(t_min, t_max - margin)`` for the correct output ``c``, ``T_j = t_min +
    margin`` for wrong outputs firing before that, ``T_j = t_j`` (no error) otherwise and for
    silent wrong outputs."""
    t_min = out_times.min()
    for j in range(len(out_times)):
        tj = out_times[j]
        target = tj
        if j == label:
            target = min(t_min, t_max - margin)
        elif tj < t_max and tj < t_min + margin:
            target = t_min + margin
        delta[j] = (tj - target) / t_max


@numba.njit(cache=True)
def relative_target_errors(out_times, labels, t_max, margin):
    """:func:`relative_target_error` of every sample, float32 ``(B, n_out)``."""
    delta = np.zeros(out_times.shape, np.float32)
    for b in range(len(labels)):
        relative_target_error(out_times[b], labels[b], t_max, margin, delta[b])
    return delta


def output_loss(out_times: np.ndarray, labels: np.ndarray, t_max: int, rule: LearningRule) -> np.ndarray:
    """The loss ``L`` of :func:`output_error` per sample, float64 ``(B,)`` (for logging only;
    the trainer follows ``delta``). ``s4nn``: ``1/2 sum_j (t_j - T_j)^2 / t_max`` over the
    outputs that get an error; ``hinge``: ``sum_{j != c} max(0, t_c + margin - t_j)``;
    ``ce``: ``-log softmax(-t / tau_ce)_c``."""
    t = out_times.astype(np.float64)
    rows = np.arange(len(t))
    t_c = t[rows, labels]
    if rule.loss == "hinge":
        gap = np.maximum(t_c[:, None] + rule.margin - t, 0.0)
        gap[rows, labels] = 0.0
        return gap.sum(axis=1)
    if rule.loss == "ce":
        z = -(t - t.min(axis=1, keepdims=True)) / rule.tau_ce
        return np.log(np.exp(z).sum(axis=1)) - z[rows, labels]
    delta = output_error(out_times, labels, t_max, rule).astype(np.float64)
    return 0.5 * t_max * (delta ** 2).sum(axis=1)  # delta = (t - T) / t_max


def drop_futile(delta: np.ndarray, post_times: np.ndarray, first_pre: np.ndarray) -> np.ndarray:
    """Zero the "fire earlier" errors (``delta > 0``) of neurons that fired at the step of
    their layer's first input spike ``first_pre`` (B,): they cannot fire any earlier."""
    futile = (post_times <= first_pre[:, None]) & (delta > 0)
    return np.where(futile, 0.0, delta).astype(np.float32)


def normalise_rows(delta: np.ndarray) -> np.ndarray:
    """Each sample's delta vector scaled to unit L2 norm (zero rows stay zero)."""
    norm = np.sqrt((delta.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    return (delta / np.where(norm > 0, norm, 1.0)).astype(np.float32)


@numba.njit(cache=True, inline="always")
def pre_timing_error(ti, post, delta, W, row, t_max, h, h_anti, silent_fire_later):
    """``dL/dt_i = sum_j delta_j * b_ji * k(t_j - t_i)`` of one pre neuron spiking at ``ti``
    (``t_max``: silent), its weights to the post neurons at ``W[row:row + len(post)]``, with
    ``k(d) = h[d]`` for causal pairs (``d >= 0``) and ``k(d) = h_anti[-d]`` when the pre
    spike came too late (or never). A silent pre neuron keeps only a "fire earlier" error
    (``> 0``) unless ``silent_fire_later``. Shared by the mini-batch and online kernels."""
    acc = 0.0
    for j in range(len(post)):
        tj = post[j]
        k = h[tj - ti] if ti <= tj else h_anti[ti - tj]
        acc += delta[j] * W[row + j] * k
    # A silent neuron cannot fire any later: its "fire later" error (< 0) is futile, and
    # following it would push its weights down until it never fires again.
    return 0.0 if ti >= t_max and acc < 0.0 and not silent_fire_later else acc


@numba.njit(cache=True, parallel=True)
def backprop_timing_error(pre_times, post_times, delta_post, W, w_off, n_post, t_max, h, h_anti,
                          silent_fire_later=False):
    """:func:`pre_timing_error` for every neuron of the hidden layer whose spike times are
    ``pre_times`` (B, n_pre), float32 ``(B, n_pre)``."""
    n_samples, n_pre = pre_times.shape
    delta_pre = np.zeros((n_samples, n_pre), np.float32)
    for b in numba.prange(n_samples):
        for i in range(n_pre):
            delta_pre[b, i] = pre_timing_error(pre_times[b, i], post_times[b], delta_post[b], W,
                                               w_off + i * n_post, t_max, h, h_anti, silent_fire_later)
    return delta_pre


@numba.njit(cache=True, parallel=True)
def weight_gradient(ev_times, ev_units, ev_ptr, post_times, delta_post, n_pre, g, n_chunks):
    """``dL/dw_ji = -sum_b sum_{causal pre spikes i} delta_j * g[t_j - t_i]``, float32
    ``(n_pre, n_post)``. Pre spikes come as a CSR event list (input events, or the spikes
    of the previous layer). For each distinct pre time ``t`` of a sample the row vector
    ``a_j = delta_j * g[t_j - t] * [t <= t_j]`` is built once and added to the rows of all
    pre units spiking at ``t``. Columns are split across threads, so each entry is summed
    in the same order whatever ``n_chunks`` is (bit-reproducible)."""
    n_samples, n_post = post_times.shape
    grad = np.zeros((n_pre, n_post), np.float32)
    n_chunks = max(1, min(n_post, n_chunks))
    has_error = np.zeros(n_samples, np.bool_)  # samples without error (e.g. correct with
    for b in range(n_samples):                  # margin) are skipped
        for j in range(n_post):
            if delta_post[b, j] != 0.0:
                has_error[b] = True
                break
    for c in numba.prange(n_chunks):
        j0 = c * n_post // n_chunks
        j1 = (c + 1) * n_post // n_chunks
        width = j1 - j0
        a = np.empty(width, np.float32)
        for b in range(n_samples):
            if not has_error[b]:
                continue
            t_post = post_times[b, j0:j1]
            d_post = delta_post[b, j0:j1]
            t_prev = -1
            for e in range(ev_ptr[b], ev_ptr[b + 1]):
                ti = ev_times[e]
                if ti != t_prev:
                    t_prev = ti
                    for q in range(width):
                        a[q] = d_post[q] * g[t_post[q] - ti] if ti <= t_post[q] else 0.0
                grad_row = grad[ev_units[e], j0:j1]
                for q in range(width):  # plain range over views: vectorises
                    grad_row[q] -= a[q]
    return grad


# --- the anytime loss: cross-entropy of the output potentials at several probe times --------


def probe_times(t_max: int, n: int) -> np.ndarray:
    """The ``n`` probe times of the ``anytime`` loss, int64 time steps: ``t_max - 1`` and
    ``t_max // 2, t_max // 4, ...`` below it (``t_max`` 256, ``n`` 6: 8, 16, 32, 64, 128,
    255); duplicates of a small ``t_max`` are dropped."""
    ladder = [t_max // 2 ** (n - 1 - j) for j in range(n - 1)] + [t_max - 1]
    return np.unique(np.asarray(ladder, np.int64))


@numba.njit(cache=True, inline="always")
def probe_bucket(t, probes):
    """Index of the first probe time ``>= t`` (``len(probes)`` if none): a spike at ``t``
    counts in the potentials at that probe and every later one."""
    j = 0
    while j < len(probes) and probes[j] < t:
        j += 1
    return j


@numba.njit(cache=True)
def probe_potentials(pre_t, pre_u, W, row0, n_post, probes, V):
    """``V[j, h] = sum_{pre spikes e with pre_t[e] <= probes[j]} W[row0 + pre_u[e] * n_post + h]``:
    the potential of every post neuron at every probe time (fire-once ignored: the sum of
    the binary weights of the pre spikes that arrived), computed from spike times only.
    ``V`` is an int32 array of at least ``(len(probes), n_post)``."""
    m = len(probes)
    V[:m, :n_post] = 0
    for e in range(len(pre_t)):
        j = probe_bucket(pre_t[e], probes)
        if j < m:
            row = row0 + pre_u[e] * n_post
            Vj = V[j, :n_post]
            Wr = W[row:row + n_post]
            for h in range(n_post):  # plain range over views: vectorises
                Vj[h] += Wr[h]
    for j in range(1, m):
        for h in range(n_post):
            V[j, h] += V[j - 1, h]


@numba.njit(cache=True)
def anytime_output_error(U, theta, label, beta, err):
    """Output error of the ``anytime`` loss ``L = sum_j CE(softmax(beta * (U[j] - theta)), label)``:
    ``err[j, k] = -dL/dU[j, k] = y_k - p_jk`` (positive: output ``k`` should have more
    potential at probe ``j``). ``U`` (m, n_out) holds the output potentials at the probe
    times. Returns ``L``."""
    m, n_out = U.shape
    loss = 0.0
    for j in range(m):
        top = -1e300
        for k in range(n_out):
            top = max(top, beta * (U[j, k] - theta[k]))
        z = 0.0
        for k in range(n_out):
            err[j, k] = np.exp(beta * (U[j, k] - theta[k]) - top)
            z += err[j, k]
        loss += np.log(z) - (beta * (U[j, label] - theta[label]) - top)
        for k in range(n_out):
            err[j, k] = (1.0 if k == label else 0.0) - err[j, k] / z
    return loss


@numba.njit(cache=True, inline="always")
def potential_window(v, theta, fired, window):
    """Surrogate derivative of "fired by the probe time" with respect to the potential
    ``v`` there: ``max(0, 1 - |u + 1/2| / window) / window`` of the gap ``u = v - theta``
    (``u >= 0`` forced for a neuron that already fired: it crossed). Largest for neurons
    one step either side of their threshold, zero beyond ``window``: silent neurons near
    threshold learn, saturated ones are left alone."""
    u = v - theta
    if fired and u < 0.0:
        u = 0.0
    f = 1.0 - abs(u + 0.5) / window
    return f / window if f > 0.0 else 0.0
