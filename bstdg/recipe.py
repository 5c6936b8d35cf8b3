"""``TrainConfig``: every setting of a training run, checked where it enters, and the
per-recipe defaults (learning rates, hidden margin, the settings of conv networks).

Each field carries its command-line help in ``metadata["help"]``: ``bstdg train`` builds
its options from these fields (:func:`bstdg.cli.add_dataclass_options`), so a new setting
is one field here plus its docs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .arch import parse_layers
from .checks import SettingError, check_choice, check_int, check_real
from .errors import BstdgError
from .limits import T_MAX_LIMIT, THRESHOLD_MAX
from .learning import LearningRule

OPTIMIZERS = ("sgd", "adam")
DEFAULT_LOSS = {"sgd": "anytime", "adam": "s4nn"}  # when the rule names none
HIDDEN_LIMIT = 1 << 20  # neurons per hidden layer (the memory check comes on top)
DEFAULT_HIDDEN = (600,)
THRESHOLD_MODES = ("channel", "neuron")


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved into ``metrics.json``).

    ``optimizer``: ``sgd`` (default) updates after every sample with plain SGD
    (:mod:`bstdg.online`); ``adam`` sums the rule over mini-batches of ``batch_size`` and
    steps Adam (:meth:`bstdg.train.Trainer.step`). With ``sgd``, ``batch_size`` is only how
    many samples pass between two takes of the running average. The start
    (:func:`bstdg.train.initial_network`) and the default learning rates (``DEFAULT_LR``)
    depend on the recipe: ``anytime`` (sgd with the anytime loss, the default), ``sgd``
    (sgd with the s4nn loss) or ``adam``. Every value is checked here
    (:class:`~bstdg.checks.SettingError`, one line naming the setting and its range).

    ``arch``: the hidden layers as a spec (:mod:`bstdg.arch`: ``convCkK[sS][pP]``,
    ``poolN``, ``fcN``); None: fc layers of the sizes ``hidden``. An arch of fc layers only
    is the same network as ``hidden`` (it is stored as ``hidden``, ``arch`` None, so it
    trains bit-identically through :class:`~bstdg.network.BinarySNN`); with conv or pool
    layers ``hidden`` becomes the sizes of its fc layers and the network is a
    :class:`~bstdg.convnet.LayeredSNN` trained by :class:`~bstdg.conv_train.LayeredTrainer`
    (optimizer sgd with the anytime loss only). The settings ``lr_w_conv``, ``window_conv``,
    ``fire_conv``, ``fire_fc``, ``conv_margin`` and ``threshold_mode`` are those of such
    networks (None: the defaults of ``CONV_DEFAULTS``, chosen on held-out MNIST images;
    BENCHMARKS.md, "Convolutional networks") and an error with an fc network.
    """

    hidden: tuple = field(default=DEFAULT_HIDDEN, metadata=_help(
        "hidden layer sizes: 600 or 600,300 (the shorthand of --arch fc600 or fc600,fc300)"))
    arch: str | None = field(default=None, metadata=_help(
        "hidden layers: convCkK[sS][pP] (C channels, KxK kernel, stride S, padding P), poolN "
        "(NxN earliest-spike pooling), fcN, comma-separated, e.g. conv16k5,pool2,fc128 (default: "
        "fc layers of --hidden)"))
    t_max: int = field(default=256, metadata=_help(f"time steps of the input code (2..{T_MAX_LIMIT})"))
    epochs: int = field(default=10, metadata=_help("passes over the training set"))
    optimizer: str = field(default="sgd", metadata=_help(
        "sgd: update after every sample (default); adam: mini-batches (with the s4nn loss unless "
        "--loss or a config names another)", choices=OPTIMIZERS))
    batch_size: int = field(default=64, metadata=_help(
        "adam: samples per update; sgd: samples between takes of the running average (default 64)"))
    lr_w: float | None = field(default=None, metadata=_help(
        "learning rate of the hidden layers' latent weights (default per recipe)"))
    lr_w_out: float | None = field(default=None, metadata=_help(
        "learning rate of the output layer's latent weights (default per recipe)"))
    lr_theta: float | None = field(default=None, metadata=_help(
        "learning rate of the thresholds (default per recipe; 0: fixed)"))
    lr_decay: float = field(default=0.9, metadata=_help(
        "factor on the learning rates after every epoch, in (0, 1] (default 0.9)"))
    theta_init: float = field(default=20.0, metadata=_help(
        "recipe sgd: the threshold every neuron starts from (default 20)"))
    theta_out: float = field(default=36.0, metadata=_help(
        "recipe anytime: the fixed threshold of every output neuron, how much evidence a "
        "decision needs (default 36)"))
    hidden_margin: int | None = field(default=None, metadata=_help(
        "added to every hidden threshold of the saved network (default: 3 with the anytime "
        "loss, else 0)"))
    average: float = field(default=0.999, metadata=_help(
        "decay of the running average of the parameters that is evaluated and saved, in "
        "[0, 1) (0: the live parameters; default 0.999)"))
    shift: int = field(default=0, metadata=_help(
        "image datasets: move each training image by a random -N..N pixels in x and y, new "
        "every epoch (default 0, off)"))
    seed: int = field(default=0, metadata=_help("random seed (default 0)"))
    lr_w_conv: float | None = field(default=None, metadata=_help(
        "conv networks: learning rate of the conv kernels (a shared weight sums the steps of "
        "every position; default 0.01)"))
    window_conv: float | None = field(default=None, metadata=_help(
        "conv networks: half-width of the potential window of conv neurons (--window is the fc "
        "neurons'; default 4)"))
    fire_conv: float | None = field(default=None, metadata=_help(
        "conv networks: initial conv thresholds, this quantile of the peak potentials on 512 "
        "training samples, in [0, 1] (default 0.8)"))
    fire_fc: float | None = field(default=None, metadata=_help(
        "conv networks: the same for their hidden fc layers (default 0.5)"))
    conv_margin: int | None = field(default=None, metadata=_help(
        "conv networks: added to every conv threshold of the saved network (default 0; "
        "--hidden-margin is the fc layers')"))
    threshold_mode: str | None = field(default=None, metadata=_help(
        "conv networks: conv thresholds per output channel or per neuron (default channel)",
        choices=THRESHOLD_MODES))
    rule: LearningRule = field(default_factory=LearningRule)

    def __post_init__(self):
        hidden = self.hidden
        if isinstance(hidden, (list, tuple)):
            object.__setattr__(self, "hidden", tuple(hidden))
        if not isinstance(self.hidden, tuple) or not (self.hidden or self.arch is not None):
            raise SettingError(f"hidden must be a list of layer sizes like [600], got {hidden!r}", "hidden")
        for size in self.hidden:
            check_int("hidden (each layer size)", size, 1, HIDDEN_LIMIT)
        self._resolve_arch()
        check_int("t_max", self.t_max, 2, T_MAX_LIMIT)
        check_int("epochs", self.epochs, 1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_int("batch_size", self.batch_size, 1)
        check_real("lr_w", self.lr_w, 0, lo_open=True, optional=True)
        check_real("lr_w_out", self.lr_w_out, 0, lo_open=True, optional=True)
        check_real("lr_theta", self.lr_theta, 0, optional=True)
        check_real("lr_decay", self.lr_decay, 0, 1, lo_open=True)
        check_real("theta_init", self.theta_init, 1, THRESHOLD_MAX)
        check_real("theta_out", self.theta_out, 1, THRESHOLD_MAX)
        check_int("hidden_margin", self.hidden_margin, 0, THRESHOLD_MAX, optional=True)
        check_real("average", self.average, 0, 1, hi_open=True)
        check_int("shift", self.shift, 0, 1 << 15)
        check_int("seed", self.seed, 0, 2 ** 63 - 1)
        if not isinstance(self.rule, LearningRule):
            raise SettingError(f"rule must be a LearningRule, got {type(self.rule).__name__}")
        if self.optimizer == "sgd" and (self.loss not in ("anytime", "s4nn") or self.rule.no_futile):
            raise SettingError("optimizer sgd supports the anytime and s4nn losses without no_futile "
                               "only (use optimizer adam for the hinge and ce losses)")
        if self.optimizer == "adam" and self.loss == "anytime":
            raise SettingError("the anytime loss trains with optimizer sgd only (use loss s4nn, "
                               "hinge or ce with adam)")
        self._check_conv_settings()

    def _resolve_arch(self) -> None:
        """Parse ``arch`` (one-line SettingError for a bad spec) and reconcile it with
        ``hidden``: fc layers only become ``hidden`` (``arch`` None); otherwise ``hidden``
        becomes the sizes of the fc layers. A ``hidden`` other than the default that
        disagrees with ``arch`` is an error (give one of them)."""
        if self.arch is None:
            return
        if not isinstance(self.arch, str):
            raise SettingError(f"arch must be a string like 'conv16k5,pool2,fc128', got {self.arch!r}", "arch")
        try:
            layers = parse_layers(self.arch)
        except BstdgError as exc:
            raise SettingError(str(exc), "arch") from None
        fc = tuple(layer.units for layer in layers if layer.kind == "fc")
        for size in fc:
            check_int("arch (each fc layer size)", size, 1, HIDDEN_LIMIT)
        if self.hidden not in (DEFAULT_HIDDEN, fc):
            raise SettingError(f"hidden {list(self.hidden)} and arch {self.arch!r} both name the hidden "
                               f"layers: give one of them (hidden N is the shorthand of arch fcN)", "hidden")
        spec = ",".join(str(layer) for layer in layers)
        object.__setattr__(self, "hidden", fc)
        object.__setattr__(self, "arch", None if all(layer.kind == "fc" for layer in layers) else spec)

    def _check_conv_settings(self) -> None:
        check_real("lr_w_conv", self.lr_w_conv, 0, lo_open=True, optional=True)
        check_real("window_conv", self.window_conv, 0, lo_open=True, optional=True)
        check_real("fire_conv", self.fire_conv, 0, 1, optional=True)
        check_real("fire_fc", self.fire_fc, 0, 1, optional=True)
        check_int("conv_margin", self.conv_margin, 0, THRESHOLD_MAX, optional=True)
        check_choice("threshold_mode", self.threshold_mode, THRESHOLD_MODES, optional=True)
        if self.layered and self.recipe != "anytime":
            raise SettingError(f"arch {self.arch}: networks with conv or pool layers train with optimizer "
                               f"sgd and the anytime loss only (got optimizer {self.optimizer}, loss "
                               f"{self.loss})", "arch")
        given = [name for name in CONV_DEFAULTS if getattr(self, name) is not None]
        if given and not self.layered:
            raise SettingError(f"{given[0]} is a setting of networks with conv layers; this one is fc only "
                               f"({self.arch_spec}): unset it or give an arch with conv layers", given[0])

    @property
    def layered(self) -> bool:
        """The network has conv or pool layers (:class:`~bstdg.convnet.LayeredSNN`)."""
        return self.arch is not None

    @property
    def arch_spec(self) -> str:
        """The hidden layers as an arch spec: ``arch``, or ``fc600,fc300`` from ``hidden``."""
        return self.arch if self.arch is not None else ",".join(f"fc{n}" for n in self.hidden)

    def conv_setting(self, name: str):
        """A conv-network setting (``CONV_DEFAULTS``), its default where unset."""
        value = getattr(self, name)
        return CONV_DEFAULTS[name] if value is None else value

    def margins(self, layers) -> list:
        """Hidden-threshold offsets of the saved layered network, one per hidden layer of
        ``layers``: ``conv_margin`` for conv, the hidden margin for fc, 0 for pool."""
        conv, fc = self.conv_setting("conv_margin"), self.margin()
        return [conv if layer.kind == "conv" else fc if layer.kind == "fc" else 0 for layer in layers]

    @property
    def loss(self) -> str:
        """The output loss: ``rule.loss``, or the optimizer's default when the rule names none."""
        return DEFAULT_LOSS[self.optimizer] if self.rule.loss is None else self.rule.loss

    @property
    def recipe(self) -> str:
        """``anytime`` (sgd + anytime loss), ``sgd`` (sgd + s4nn loss) or ``adam``."""
        return "anytime" if self.loss == "anytime" else self.optimizer

    def learning_rate(self, name: str) -> float:
        """``lr_w``, ``lr_w_out`` or ``lr_theta``, the recipe's default where unset."""
        value = getattr(self, name)
        return DEFAULT_LR[self.recipe][name] if value is None else float(value)

    def margin(self) -> int:
        """``hidden_margin``, the recipe's default where unset."""
        return HIDDEN_MARGIN[self.recipe] if self.hidden_margin is None else int(self.hidden_margin)

    def to_dict(self) -> dict:
        """Plain JSON values, unset learning rates and margin filled in (``metrics.json``)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        for name in DEFAULT_LR[self.recipe]:
            d[name] = self.learning_rate(name)
        d["hidden_margin"] = self.margin()
        if self.layered:
            for name in CONV_DEFAULTS:
                d[name] = self.conv_setting(name)
        d["rule"]["loss"] = self.loss
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The inverse of :meth:`to_dict` (the filled-in defaults become explicit values)."""
        d = dict(d)
        rule = LearningRule(**d.pop("rule", {}))
        return cls(**{**d, "hidden": tuple(d.get("hidden", DEFAULT_HIDDEN))}, rule=rule)


# Learning rates per recipe, in latent units (weights live in [-1, 1]). anytime: the error
# of a hidden neuron carries the window's 1/window, the output layer's does not. sgd (s4nn):
# a hidden neuron's error is one of ~600 entries of a unit vector, an output's one of ~2, so
# the output layer's rate is ~16x smaller for steps of the same size (docs/learning.md).
DEFAULT_LR = {"anytime": {"lr_w": 0.01, "lr_w_out": 0.002, "lr_theta": 0.01},
              "sgd": {"lr_w": 0.4, "lr_w_out": 0.025, "lr_theta": 0.03},
              "adam": {"lr_w": 0.01, "lr_w_out": 0.01, "lr_theta": 0.01}}


# Hidden margin per recipe, in potential units: the trained hidden thresholds are raised by
# this much in the network that is evaluated and saved, so a hidden neuron fires only with
# that much more evidence than during training. anytime: 3, chosen with theta_out on 5,000
# MNIST training images held out from training (docs/learning.md, "Hidden margin"); the
# other recipes keep the figures they were measured with.
HIDDEN_MARGIN = {"anytime": 3, "sgd": 0, "adam": 0}


# Settings of networks with conv layers, their defaults where unset. fire_conv, lr_w_conv:
# chosen on MNIST training images held out from training (BENCHMARKS.md, "Convolutional
# networks", recipe choices); window_conv: conv potentials span a few units
# (docs/learning.md); fire_fc, conv_margin, threshold_mode: the start of that search.
CONV_DEFAULTS = {"lr_w_conv": 0.01, "window_conv": 4.0, "fire_conv": 0.8, "fire_fc": 0.5, "conv_margin": 0,
                 "threshold_mode": "channel"}
