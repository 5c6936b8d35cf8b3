"""``BinarySNN``: latent real weights and thresholds behind a binary fire-once IF network."""

from __future__ import annotations

import json

import numpy as np

from .encoding import SpikeEvents, times_to_events
from .engine import BinaryNet
from .engine.event import if_network_forward
from .errors import BstdgError
from .limits import T_MAX_LIMIT, THRESHOLD_MAX
from .files import save_npz
from .npzio import read_arrays, scalar

FORMAT = "bstdg-model"
FORMAT_VERSION = 1


class BinarySNN:
    """A multi-layer binary single-spike network with trainable latent state.

    ``w`` holds every layer's latent weights in one flat float32 vector (layer ``l`` is
    ``w[w_off[l]:w_off[l+1]]`` reshaped to ``(n_in, n_out)``), clipped to ``[-1, 1]``; the
    forward pass uses ``sign(w)`` (0 counts as +1). ``theta`` holds the latent thresholds
    (>= 1); the forward pass uses ``ceil(theta)``, the smallest integer potential that fires.
    """

    def __init__(self, sizes, t_max: int, w: np.ndarray, theta: np.ndarray, meta: dict | None = None):
        self.sizes = tuple(int(s) for s in sizes)
        self.t_max = int(t_max)
        self.w_off = np.zeros(len(self.sizes), np.int64)
        np.cumsum([a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])], out=self.w_off[1:])
        self.n_off = np.zeros(len(self.sizes), np.int64)
        np.cumsum(self.sizes[1:], out=self.n_off[1:])
        if w.shape != (self.w_off[-1],) or theta.shape != (self.n_off[-1],):
            raise ValueError("flat weights/thresholds do not match the layer sizes")
        self.w = np.ascontiguousarray(w, np.float32)
        self.theta = np.ascontiguousarray(theta, np.float32)
        self.meta = dict(meta or {})

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def weight(self, l: int) -> np.ndarray:
        """Latent weights of layer ``l`` as a ``(n_in, n_out)`` view."""
        return self.w[self.w_off[l]:self.w_off[l + 1]].reshape(self.sizes[l], self.sizes[l + 1])

    def threshold(self, l: int) -> np.ndarray:
        return self.theta[self.n_off[l]:self.n_off[l + 1]]

    def copy(self) -> "BinarySNN":
        return BinarySNN(self.sizes, self.t_max, self.w.copy(), self.theta.copy(), self.meta)

    def with_thresholds(self, hidden_offset: float = 0, theta_out: float | None = None) -> "BinarySNN":
        """A copy with every hidden threshold raised by ``hidden_offset`` and, unless
        ``theta_out`` is None, every output threshold set to it (the hidden margin and the
        output threshold of docs/learning.md)."""
        net = self.copy()
        net.theta[:self.n_off[-2]] += hidden_offset
        if theta_out is not None:
            net.threshold(self.n_layers - 1)[:] = theta_out
        return net

    def integer_thresholds(self) -> np.ndarray:
        return np.maximum(np.ceil(self.theta - 1e-4), 1).astype(np.int32)

    def binary(self) -> BinaryNet:
        """The inference view: int8 ±1 weights and int32 thresholds."""
        th = self.integer_thresholds()
        return BinaryNet(
            tuple(np.where(self.weight(l) >= 0, 1, -1).astype(np.int8) for l in range(self.n_layers)),
            tuple(th[self.n_off[l]:self.n_off[l + 1]] for l in range(self.n_layers)),
            self.t_max)

    # ------------------------------------------------------------------ creation
    @classmethod
    def initialise(cls, sizes, t_max: int, events: SpikeEvents, rng: np.random.Generator,
                   fire_quantiles=None, w_init=(-0.1, 0.1), meta: dict | None = None) -> "BinarySNN":
        """Mixed-sign random latent weights, thresholds fitted to data.

        Latent weights are uniform in ``w_init`` (default ``[-0.1, 0.1]``: balanced ±1
        weights whose sign flips happen independently). Layer by layer, each neuron's threshold is set to
        the ``q``-quantile of its peak potential over the sample ``events``, so it fires on
        about ``1 - q`` of the samples; ``fire_quantiles`` gives ``q`` per layer (default 0.5
        for hidden layers, 0.2 for the output layer).
        """
        sizes = tuple(int(s) for s in sizes)
        n_layers = len(sizes) - 1
        if fire_quantiles is None:
            fire_quantiles = [0.5] * (n_layers - 1) + [0.2]
        n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        w = rng.uniform(w_init[0], w_init[1], n_w).astype(np.float32)
        net = cls(sizes, t_max, w, np.ones(sum(sizes[1:]), np.float32), meta)
        layer_in = events
        for l in range(n_layers):
            b = net.binary().weights[l]
            peak = peak_potential(layer_in, b)
            net.threshold(l)[:] = np.maximum(np.quantile(peak, fire_quantiles[l], axis=0), 1.0)
            if l < n_layers - 1:
                layer = BinaryNet((b,), (net.binary().thresholds[l],), t_max)
                layer_in = times_to_events(if_network_forward(layer, layer_in).times, t_max)
        return net

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict:
        """The arrays of a model file (readable with ``allow_pickle=False``)."""
        return dict(format=np.array(FORMAT), format_version=np.array(FORMAT_VERSION),
                    sizes=np.array(self.sizes, np.int64), t_max=np.array(self.t_max),
                    w=self.w, theta=self.theta, meta=np.array(json.dumps(self.meta)))

    def save(self, path) -> None:
        """Write an ``.npz`` readable with ``allow_pickle=False``, atomically
        (:func:`bstdg.files.atomic_write`)."""
        save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path) -> "BinarySNN":
        """The model saved at ``path``, validated (see :func:`check_model_arrays`); every
        problem (missing, truncated or damaged file, pickles, wrong keys, dtypes or shapes,
        non-finite or out-of-range values, malformed ``meta``) is one :class:`BstdgError`."""
        source = str(path)
        arrays = read_arrays(path, "model file")
        sizes, t_max, w, theta, meta = check_model_arrays(arrays, source)
        return cls(sizes, t_max, w, theta, meta)


# A saved model's limits (docs/reliability.md): THRESHOLD_MAX (the export formats' int16) and
# T_MAX_LIMIT (2^24: spike times exact in int32 and float32) come from bstdg.limits.
# Thresholds below 1 by float32 rounding of a running average act as 1 (integer_thresholds).
THRESHOLD_TOLERANCE = 1e-3


def check_model_arrays(arrays: dict, source: str):
    """``(sizes, t_max, w, theta, meta)`` from the arrays of a model file, or BstdgError:
    ``format`` ``bstdg-model`` of a version this bstdg reads; ``sizes`` >= 2 positive
    integers; ``t_max`` an integer in ``2..T_MAX_LIMIT``; ``w`` / ``theta`` real 1-d arrays of
    the lengths ``sizes`` gives, every weight finite in ``[-1, 1]``, every threshold finite
    in ``[1, THRESHOLD_MAX]``; ``meta`` a JSON object (``dataset`` a string, ``encoder`` an
    object whose ``options`` is an object, ``t_max`` an integer, ``input_shape`` a list of
    positive integers, when present)."""
    if "format" not in arrays or arrays["format"].dtype.kind != "U" \
            or scalar(arrays, "format", "str", source) != FORMAT:
        raise BstdgError(f"{source}: not a bstdg model file (no format '{FORMAT}'; "
                         f"`bstdg train` writes RUN/model.npz)")
    version = scalar(arrays, "format_version", "int", source)
    if not 1 <= version <= FORMAT_VERSION:
        raise BstdgError(f"{source}: model format v{version}; this bstdg reads v1..v{FORMAT_VERSION}")
    sizes = arrays.get("sizes")
    if sizes is None or sizes.ndim != 1 or sizes.dtype.kind not in "iu" or len(sizes) < 2 \
            or (sizes < 1).any():
        raise BstdgError(f"{source}: 'sizes' must be 2 or more positive integers, found "
                         f"{'nothing' if sizes is None else f'{sizes.dtype} {sizes.tolist()}'[:120]}")
    sizes = tuple(int(s) for s in sizes)
    t_max = scalar(arrays, "t_max", "int", source)
    if not 2 <= t_max <= T_MAX_LIMIT:
        raise BstdgError(f"{source}: t_max {t_max} is out of range (2..{T_MAX_LIMIT})")
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    n_theta = sum(sizes[1:])
    values = {}
    for key, n, lo, hi in (("w", n_w, -1.0, 1.0), ("theta", n_theta, 1.0 - THRESHOLD_TOLERANCE,
                                                     float(THRESHOLD_MAX))):
        a = arrays.get(key)
        if a is None or a.dtype.kind not in "fiu" or a.shape != (n,):
            found = "nothing" if a is None else f"{a.dtype} {a.shape}"
            raise BstdgError(f"{source}: {key!r} must be {n} real numbers for sizes "
                             f"{'-'.join(map(str, sizes))}, found {found}")
        with np.errstate(over="ignore", invalid="ignore"):  # out of float32 range: inf, refused below
            a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise BstdgError(f"{source}: {key!r} holds NaN or infinite values (damaged model)")
        if n and (a.min() < lo or a.max() > hi):
            what = "latent weights" if key == "w" else "thresholds"
            raise BstdgError(f"{source}: {what} must be in [{lo:g}, {hi:g}], found "
                             f"{a.min():g}..{a.max():g} (damaged model)")
        values[key] = a
    meta = check_meta(scalar(arrays, "meta", "str", source) if "meta" in arrays else "{}", source)
    return sizes, t_max, values["w"], values["theta"], meta


def check_meta(text: str, source: str) -> dict:
    """The model's ``meta`` JSON text as a dict, or BstdgError (see check_model_arrays)."""
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BstdgError(f"{source}: 'meta' is not valid JSON ({str(exc)[:100]})") from None
    if not isinstance(meta, dict):
        raise BstdgError(f"{source}: 'meta' must be a JSON object, found {type(meta).__name__}")
    if meta.get("dataset") is not None and not isinstance(meta["dataset"], str):
        raise BstdgError(f"{source}: meta 'dataset' must be a string, found {meta['dataset']!r:.60}")
    encoder = meta.get("encoder")
    if encoder is None:
        return meta
    if not isinstance(encoder, dict):
        raise BstdgError(f"{source}: meta 'encoder' must be a JSON object, found {type(encoder).__name__}")
    if encoder.get("options") is not None and not isinstance(encoder["options"], dict):
        raise BstdgError(f"{source}: meta encoder 'options' must be a JSON object")
    if "t_max" in encoder and (not isinstance(encoder["t_max"], int) or isinstance(encoder["t_max"], bool)):
        raise BstdgError(f"{source}: meta encoder 't_max' must be an integer, found {encoder['t_max']!r:.60}")
    shape = encoder.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and shape and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 2 ** 31 for s in shape)):
        raise BstdgError(f"{source}: meta encoder 'input_shape' must be a list of positive "
                         f"integers, found {shape!r:.60}")
    return meta


def peak_potential(events: SpikeEvents, b: np.ndarray) -> np.ndarray:
    """Largest potential each neuron reaches per sample, ``(B, n_out)``, when nothing fires
    (potential evaluated at the end of every time step)."""
    peaks = np.zeros((len(events), b.shape[1]), np.int32)
    for s in range(len(events)):
        lo, hi = events.ptr[s], events.ptr[s + 1]
        if hi == lo:
            continue
        v = np.cumsum(b[events.units[lo:hi]], axis=0, dtype=np.int32)
        step_end = np.r_[events.times[lo + 1:hi] != events.times[lo:hi - 1], True]
        peaks[s] = np.maximum(v[step_end].max(axis=0), 0)
    return peaks
