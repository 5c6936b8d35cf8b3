"""Network architectures: a comma-separated layer spec, one frozen dataclass per layer kind.

Spec grammar (``--arch``; layers separated by commas, the output layer is added from the
number of classes):

* ``convCkK`` — ``C`` channels, ``K x K`` kernel, stride 1, no padding; optional suffixes
  ``sS`` (stride ``S``) and ``pP`` (``P`` zero pixels on each side), in that order:
  ``conv16k5``, ``conv32k3p1``, ``conv8k3s2p1``;
* ``poolN`` — ``N x N`` earliest-spike pooling, stride ``N`` (non-overlapping windows; rows
  and columns that do not fill a window are dropped);
* ``fcN`` — a fully connected layer of ``N`` neurons; a bare number ``N`` means ``fcN``, so
  ``600`` and ``600,300`` (the ``--hidden`` shorthand) read as ``fc600`` and ``fc600,fc300``.

Shapes are ``(C, H, W)`` for image layers and ``(N,)`` for fc layers. Output sizes:
conv ``H' = (H + 2P - K) // S + 1``; pool ``H' = H // N``. Neurons of conv and pool layers
are numbered channel-last, ``(y * W' + x) * C' + c``; an fc layer after them reads that
order (the encoders' inputs are channel-first, ``(c * H + y) * W + x``, and are reordered by
the engine when they feed a conv or pool layer; :func:`input_order`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import BstdgError

SPEC_HELP = "expected convCkK[sS][pP], poolN or fcN separated by commas (e.g. conv16k5,pool2,fc600)"


@dataclass(frozen=True)
class Conv:
    """A binary convolution: ``channels`` output maps, ``kernel x kernel`` receptive fields."""

    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    kind: ClassVar[str] = "conv"

    def __post_init__(self):
        for name in ("channels", "kernel", "stride"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise BstdgError(f"arch layer {self}: {name} must be a positive integer")
        if not isinstance(self.padding, int) or not 0 <= self.padding < self.kernel:
            raise BstdgError(f"arch layer {self}: padding must be 0..kernel-1")

    def __str__(self) -> str:
        return (f"conv{self.channels}k{self.kernel}" + (f"s{self.stride}" if self.stride != 1 else "")
                + (f"p{self.padding}" if self.padding else ""))

    def out_shape(self, shape: tuple) -> tuple:
        if len(shape) != 3:
            raise BstdgError(f"arch layer {self}: needs an image input (C, H, W), got {_shape(shape)}")
        c, h, w = shape
        ho = (h + 2 * self.padding - self.kernel) // self.stride + 1
        wo = (w + 2 * self.padding - self.kernel) // self.stride + 1
        if ho < 1 or wo < 1:
            raise BstdgError(f"arch layer {self}: kernel larger than its {_shape(shape)} input")
        return (self.channels, ho, wo)

    def to_dict(self) -> dict:
        return {"type": self.kind, "channels": self.channels, "kernel": self.kernel,
                "stride": self.stride, "padding": self.padding}


@dataclass(frozen=True)
class Pool:
    """Earliest-spike (TTFS max) pooling over ``size x size`` windows, stride ``size``."""

    size: int
    kind: ClassVar[str] = "pool"

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 1:
            raise BstdgError(f"arch layer {self}: size must be a positive integer")

    def __str__(self) -> str:
        return f"pool{self.size}"

    def out_shape(self, shape: tuple) -> tuple:
        if len(shape) != 3:
            raise BstdgError(f"arch layer {self}: needs an image input (C, H, W), got {_shape(shape)}")
        c, h, w = shape
        if h < self.size or w < self.size:
            raise BstdgError(f"arch layer {self}: window larger than its {_shape(shape)} input")
        return (c, h // self.size, w // self.size)

    def to_dict(self) -> dict:
        return {"type": self.kind, "size": self.size}


@dataclass(frozen=True)
class FC:
    """A fully connected layer of ``units`` neurons (flattens an image input channel-last)."""

    units: int
    kind: ClassVar[str] = "fc"

    def __post_init__(self):
        if not isinstance(self.units, int) or self.units < 1:
            raise BstdgError(f"arch layer {self}: units must be a positive integer")

    def __str__(self) -> str:
        return f"fc{self.units}"

    def out_shape(self, shape: tuple) -> tuple:
        return (self.units,)

    def to_dict(self) -> dict:
        return {"type": self.kind, "units": self.units}


LAYER_TYPES = {cls.kind: cls for cls in (Conv, Pool, FC)}
_CONV = re.compile(r"conv(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?")
_POOL = re.compile(r"pool(\d+)")
_FC = re.compile(r"(?:fc)?(\d+)")


def parse_layer(token: str):
    """One spec token as a layer dataclass; BstdgError when it is not one."""
    tok = token.strip().lower()
    if m := _CONV.fullmatch(tok):
        c, k, s, p = m.groups()
        return Conv(int(c), int(k), int(s or 1), int(p or 0))
    if m := _POOL.fullmatch(tok):
        return Pool(int(m.group(1)))
    if m := _FC.fullmatch(tok):
        return FC(int(m.group(1)))
    raise BstdgError(f"arch: bad layer {token.strip()!r}; {SPEC_HELP}")


def parse_layers(spec) -> tuple:
    """The hidden layers of ``spec``: a string (``"conv16k5,pool2,fc600"``, ``"600,300"``),
    a sequence of ints (``--hidden``) or of layer dataclasses."""
    if isinstance(spec, str):
        tokens = [t for t in spec.split(",")]
        if not spec.strip() or any(not t.strip() for t in tokens):
            raise BstdgError(f"arch: empty layer in {spec!r}; {SPEC_HELP}")
        return tuple(parse_layer(t) for t in tokens)
    layers = []
    for item in spec:
        if isinstance(item, (Conv, Pool, FC)):
            layers.append(item)
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            layers.append(FC(int(item)))
        elif isinstance(item, str):
            layers.append(parse_layer(item))
        else:
            raise BstdgError(f"arch: bad layer {item!r}; {SPEC_HELP}")
    return tuple(layers)


@dataclass(frozen=True)
class Architecture:
    """A resolved network: hidden ``layers``, the ``input_shape`` (``(N,)``, ``(C, H, W)``, or
    ``(H, W)`` read as one channel) and ``n_classes`` (the fc output layer). ``str`` gives the
    spec of the hidden layers; ``layers_all`` includes the output layer; ``shapes[l]`` is the
    output shape of ``layers_all[l]``."""

    layers: tuple
    input_shape: tuple
    n_classes: int

    def __post_init__(self):
        object.__setattr__(self, "layers", parse_layers(self.layers))
        shape = tuple(int(n) for n in self.input_shape)
        if len(shape) == 2:  # (H, W), as the MNIST encoder records it: one channel
            shape = (1, *shape)
        object.__setattr__(self, "input_shape", shape)
        if len(shape) not in (1, 3) or min(shape, default=0) < 1:
            raise BstdgError(f"arch: input shape {list(shape)} must be (N,) or (C, H, W) with positive sizes")
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise BstdgError(f"arch: need at least 2 classes, got {self.n_classes}")
        for a, b in zip(self.layers, self.layers[1:]):
            if a.kind == "pool" and b.kind == "pool":
                raise BstdgError(f"arch {self}: two pooling layers in a row (use one larger pool)")
        shapes = []
        for layer in self.layers_all:
            shape = layer.out_shape(shape)
            shapes.append(shape)
        object.__setattr__(self, "_shapes", tuple(shapes))

    @classmethod
    def parse(cls, spec, input_shape, n_classes: int) -> "Architecture":
        return cls(parse_layers(spec), tuple(input_shape), int(n_classes))

    @property
    def layers_all(self) -> tuple:
        return self.layers + (FC(self.n_classes),)

    @property
    def shapes(self) -> tuple:
        return self._shapes

    @property
    def in_shapes(self) -> tuple:
        """The input shape of every layer of ``layers_all``."""
        return (self.input_shape,) + self._shapes[:-1]

    @property
    def sizes(self) -> tuple:
        """Neurons per layer, input first: ``(n_in, n_1, ..., n_out)``."""
        return (int(np.prod(self.input_shape)),) + tuple(int(np.prod(s)) for s in self._shapes)

    @property
    def is_fc(self) -> bool:
        """Only fc layers (a network :class:`bstdg.network.BinarySNN` can hold too)."""
        return all(layer.kind == "fc" for layer in self.layers)

    def __str__(self) -> str:
        return ",".join(str(layer) for layer in self.layers)

    def describe(self) -> str:
        """One line per layer with its output shape."""
        rows = [f"input {_shape(self.input_shape)}"]
        for layer, shape in zip(self.layers_all, self._shapes):
            rows.append(f"{layer} -> {_shape(shape)}")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {"arch": str(self), "layers": [layer.to_dict() for layer in self.layers],
                "input_shape": list(self.input_shape), "n_classes": self.n_classes}

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        try:
            layers = []
            for item in d["layers"]:
                item = dict(item)
                kind = item.pop("type")
                if kind not in LAYER_TYPES:
                    raise BstdgError(f"arch: unknown layer type {kind!r}; expected conv, pool or fc")
                layers.append(LAYER_TYPES[kind](**item))
            return cls(tuple(layers), tuple(d["input_shape"]), int(d["n_classes"]))
        except (KeyError, TypeError) as exc:
            raise BstdgError(f"arch: malformed architecture record ({exc})") from None


def input_order(arch: Architecture) -> np.ndarray:
    """``perm[u]``: the engine's index of encoder input unit ``u``. Identity unless the first
    layer is conv or pool on a ``(C, H, W)`` input, where the channel-first encoder order
    ``(c * H + y) * W + x`` becomes channel-last ``(y * W + x) * C + c``."""
    n = arch.sizes[0]
    if arch.layers_all[0].kind == "fc" or len(arch.input_shape) != 3:
        return np.arange(n, dtype=np.int32)
    c, h, w = arch.input_shape
    return np.arange(n, dtype=np.int32).reshape(h, w, c).transpose(2, 0, 1).ravel().copy()


def _shape(shape) -> str:
    return "x".join(str(int(n)) for n in shape)
