"""``sweep.toml``: what a sweep trains, how each trial is scored, and the space searched.

A sweep file is flat TOML: the training settings of ``bstdg train --config``
(:mod:`bstdg.config`: ``dataset``, :class:`~bstdg.recipe.TrainConfig` fields, a ``[rule]``
table, dataset options) plus ``limit_train`` / ``limit_test``, and the keys of the sweep::

    n_val = 5000          # training samples held out to score every trial (required)
    split_seed = 0        # which samples are held out (fixed for the whole sweep)
    seeds = [0, 1, 2]     # every point of the space trains once per seed (default [0])
    search = "grid"       # grid | random | optuna
    samples = 20          # random, optuna: how many points
    search_seed = 0       # random, optuna: the draws of the points
    scheduler = "fifo"    # fifo (every trial runs all its epochs) | asha (stops bad trials early)
    [space]
    hidden_margin = [2, 3, 4]                      # a choice: the values to try
    lr_w = {low = 0.003, high = 0.03, log = true}  # a range (random, optuna): reals ...
    epochs = {low = 5, high = 20}                  # ... or integers, both ends included

A space key is a ``TrainConfig`` field (not ``seed``: use ``seeds``), a learning-rule
field (flat, as on the command line: ``beta``) or a dataset option. Every value is checked
here, before anything runs: every point of a grid or of the random draws, every value of a
choice and both ends of a range for Optuna.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..checks import SettingError, check_choice, check_int
from ..config import (
    RULE_FIELDS,
    TRAIN_FIELDS,
    ParsedConfig,
    options_class,
    resolve,
    split,
)
from ..data import get_dataset
from ..errors import BstdgError
from ..learning import LearningRule
from ..recipe import TrainConfig

SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("fifo", "asha")
SWEEP_KEYS = ("n_val", "split_seed", "seeds", "search", "samples", "search_seed", "scheduler", "space")
LIMIT_KEYS = ("limit_train", "limit_test")
RANGE_KEYS = ("low", "high", "log")
MAX_TRIALS = 100_000  # a grid larger than this is a typo, not a plan


def _plain(value, what: str):
    """A choice value as a hashable plain value: lists become tuples (``hidden``)."""
    if isinstance(value, list):
        return tuple(_plain(v, what) for v in value)
    if isinstance(value, (bool, int, float, str)):
        return value
    raise SettingError(f"{what}: values must be numbers, strings, booleans or lists of them, got {value!r}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Choice:
    """One space entry tried at each of ``values`` (grid: all of them; random, optuna: one
    of them per point)."""

    name: str
    values: tuple

    def __post_init__(self):
        if not isinstance(self.values, (list, tuple)) or not self.values:
            raise SettingError(f"space {self.name}: give a non-empty list of values", self.name)
        object.__setattr__(self, "values", tuple(_plain(v, f"space {self.name}") for v in self.values))
        if len(set(self.values)) != len(self.values):
            raise SettingError(f"space {self.name}: a value is listed twice ({list(self.values)})", self.name)

    def sample(self, rng: np.random.Generator):
        return self.values[int(rng.integers(len(self.values)))]

    def candidates(self) -> tuple:
        """The values each checked on its own (Optuna's points are not known beforehand)."""
        return self.values

    def to_dict(self):
        return [list(v) if isinstance(v, tuple) else v for v in self.values]


@dataclass(frozen=True)
class Range:
    """One space entry drawn from ``[low, high]``: uniformly, or log-uniformly with ``log``;
    integers (both ends included) when ``low`` and ``high`` are both integers."""

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        if not (_number(self.low) and _number(self.high)):
            raise SettingError(f"space {self.name}: low and high must be finite numbers, got "
                               f"{self.low!r} and {self.high!r}", self.name)
        if not isinstance(self.log, bool):
            raise SettingError(f"space {self.name}: log must be true or false, got {self.log!r}", self.name)
        if self.low >= self.high:
            raise SettingError(f"space {self.name}: low {self.low} must be below high {self.high}", self.name)
        if self.log and self.low <= 0:
            raise SettingError(f"space {self.name}: a log range needs low > 0, got {self.low}", self.name)

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def sample(self, rng: np.random.Generator):
        lo, hi = float(self.low), float(self.high)
        if self.integer:  # both ends included
            if self.log:
                value = math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))
            else:
                value = int(rng.integers(self.low, self.high + 1))
            return int(min(max(value, self.low), self.high))
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))) if self.log else rng.uniform(lo, hi))

    def candidates(self) -> tuple:
        return (self.low, self.high)

    def to_dict(self):
        return {"low": self.low, "high": self.high, "log": self.log}


def space_entry(name: str, value, source: str) -> Choice | Range:
    """The Choice (a list) or Range (a ``{low, high, log}`` table) of one ``[space]`` key."""
    try:
        if isinstance(value, list):
            return Choice(name, tuple(value))
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(RANGE_KEYS))
            if unknown or "low" not in value or "high" not in value:
                raise SettingError(f"space {name}: a range is {{low = ..., high = ..., log = false}}"
                                   + (f"; unknown key(s) {', '.join(unknown)}" if unknown else ""))
            return Range(name, value["low"], value["high"], value.get("log", False))
    except SettingError as exc:
        raise BstdgError(f"{source}: {exc}") from None
    raise BstdgError(f"{source}: space {name}: give a list of values ([2, 3, 4]) or a range "
                     f"({{low = 0.001, high = 0.1, log = true}}), got {value!r}")


@dataclass(frozen=True)
class SweepSpec:
    """A checked ``sweep.toml`` (module docstring). ``user``: the training settings as the
    file gives them (they go into ``best.toml``); ``settings``: the dataset's packaged
    config with the file's settings over it (what every trial starts from)."""

    dataset: str
    user: ParsedConfig
    settings: ParsedConfig
    n_val: int
    space: tuple
    seeds: tuple = (0,)
    search: str = "grid"
    samples: int | None = None
    split_seed: int = 0
    search_seed: int = 0
    scheduler: str = "fifo"
    limit_train: int | None = None
    limit_test: int | None = None
    source: str = "sweep.toml"
    data_keys: frozenset = field(default=frozenset(), repr=False)

    def __post_init__(self):
        check_int("n_val", self.n_val, 1)
        check_choice("search", self.search, SEARCHES)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_int("split_seed", self.split_seed, 0, 2 ** 63 - 1)
        check_int("search_seed", self.search_seed, 0, 2 ** 32 - 1)
        check_int("limit_train", self.limit_train, 1, optional=True)
        check_int("limit_test", self.limit_test, 1, optional=True)
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise SettingError("seeds must be a non-empty list of integers like [0, 1, 2]", "seeds")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        for seed in self.seeds:
            check_int("seeds (each)", seed, 0, 2 ** 63 - 1)
        if len(set(self.seeds)) != len(self.seeds):
            raise SettingError(f"seeds: a seed is listed twice ({list(self.seeds)})", "seeds")
        if not self.space:
            raise SettingError("[space] is empty: give at least one setting to vary (a one-value "
                               "list runs one point on every seed: theta_out = [32])", "space")
        known = (TRAIN_FIELDS - {"seed"}) | RULE_FIELDS | self.data_keys
        names = [entry.name for entry in self.space]
        if len(set(names)) != len(names):
            raise SettingError("[space] names a setting twice", "space")
        for entry in self.space:
            if not isinstance(entry, (Choice, Range)):
                raise SettingError(f"space entries are Choice or Range, got {type(entry).__name__}")
            if entry.name == "seed":
                raise SettingError("space seed: list the seeds in `seeds = [...]` instead", "space")
            if entry.name not in known:
                raise SettingError(f"space {entry.name}: not a training, rule or dataset setting "
                                   f"(known: {', '.join(sorted(known))})", entry.name)
        if self.search == "grid":
            ranges = [e.name for e in self.space if isinstance(e, Range)]
            if ranges:
                raise SettingError(f"space {', '.join(ranges)}: grid search takes lists of values; "
                                   f"{{low, high}} ranges need search = \"random\" or \"optuna\"", "search")
            if self.samples is not None:
                raise SettingError("samples applies to search = \"random\" or \"optuna\" (a grid runs "
                                   "every point)", "samples")
        else:
            if self.samples is None:
                raise SettingError(f"search = \"{self.search}\" needs samples = N (how many points)", "samples")
            check_int("samples", self.samples, 1)
        if self.n_trials > MAX_TRIALS:
            raise SettingError(f"the sweep has {self.n_trials:,} trials (points x seeds); at most "
                               f"{MAX_TRIALS:,}", "space")

    @property
    def n_points(self) -> int:
        if self.search == "grid":
            return math.prod(len(e.values) for e in self.space)
        return self.samples

    @property
    def n_trials(self) -> int:
        return self.n_points * len(self.seeds)

    def points(self) -> list[dict]:
        """The points trained (grid: every combination, in the order of ``[space]``; random:
        ``samples`` draws with ``search_seed``). Optuna proposes its points as it goes."""
        if self.search == "grid":
            names = [e.name for e in self.space]
            return [dict(zip(names, values)) for values in itertools.product(*(e.values for e in self.space))]
        if self.search == "random":
            rng = np.random.default_rng(self.search_seed)
            return [{e.name: e.sample(rng) for e in self.space} for _ in range(self.samples)]
        raise BstdgError("optuna proposes its points while the sweep runs")

    def trial_settings(self, point: dict, seed: int) -> tuple[TrainConfig, dict]:
        """``(TrainConfig, dataset options)`` of the trial of ``point`` with ``seed``:
        the point's values over :attr:`settings` (SettingError on a bad value)."""
        train, rule, data = dict(self.settings.train), dict(self.settings.rule), dict(self.settings.data)
        for name, value in point.items():
            value = list(value) if isinstance(value, tuple) else value
            if name in TRAIN_FIELDS:
                train[name] = value
            elif name in RULE_FIELDS:
                rule[name] = value
            else:
                data[name] = value
        if isinstance(train.get("hidden"), int) and not isinstance(train["hidden"], bool):
            train["hidden"] = (train["hidden"],)
        try:
            return TrainConfig(**{**train, "seed": seed}, rule=LearningRule(**rule)), data
        except TypeError as exc:
            raise SettingError(str(exc)) from None

    def check_points(self) -> None:
        """BstdgError naming the point when a trial's settings would be invalid."""
        if self.search == "optuna":  # each value alone over the file's settings
            points = [{e.name: v} for e in self.space for v in e.candidates()]
        else:
            points = self.points()
        checked = set()
        for point in points:
            try:
                _, options = self.trial_settings(point, self.seeds[0])
            except SettingError as exc:
                raise BstdgError(f"{self.source}: point {point_label(point)}: {exc}") from None
            key = repr(sorted(options.items()))
            if any(name in self.data_keys for name in point) and key not in checked:
                checked.add(key)
                get_dataset(self.dataset, options, f"{self.source}: point {point_label(point)}")

    def to_dict(self) -> dict:
        """The spec as plain JSON values (``sweep.json``)."""
        return {"dataset": self.dataset, "n_val": self.n_val, "split_seed": self.split_seed,
                "seeds": list(self.seeds), "search": self.search, "samples": self.samples,
                "search_seed": self.search_seed, "scheduler": self.scheduler,
                "limit_train": self.limit_train, "limit_test": self.limit_test,
                "space": {e.name: e.to_dict() for e in self.space}, "source": self.source}


def point_label(point: dict) -> str:
    """``hidden_margin=3, theta_out=32`` (a point's values, in its order)."""
    def show(v):
        if isinstance(v, (tuple, list)):
            return ",".join(map(str, v))
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{k}={show(v)}" for k, v in point.items()) or "(defaults)"


def parse_sweep(raw: dict, source: str) -> SweepSpec:
    """The checked SweepSpec of a parsed ``sweep.toml`` table; one-line BstdgError naming
    ``source`` on anything wrong."""
    raw = dict(raw)
    sweep = {k: raw.pop(k) for k in SWEEP_KEYS if k in raw}
    limits = {k: raw.pop(k) for k in LIMIT_KEYS if k in raw}
    if "seed" in raw:
        raise BstdgError(f"{source}: seed: a sweep runs every point on each of `seeds = [...]`; "
                         f"give the seeds there")
    if "n_val" not in sweep:
        raise BstdgError(f"{source}: n_val is required: how many training samples are held out "
                         f"to score every trial (e.g. n_val = 5000)")
    space = sweep.pop("space", {})
    if not isinstance(space, dict):
        raise BstdgError(f"{source}: space must be a table: [space] then one setting per line")
    try:
        user = split(raw, source)  # unknown keys and bad training values: one line, naming source
    except BstdgError as exc:
        message = str(exc)
        if "unknown key" in message:
            message += f"; sweep keys: {', '.join(SWEEP_KEYS + LIMIT_KEYS)}"
        raise BstdgError(message) from None
    dataset, settings = resolve(user.dataset, user)
    entries = tuple(space_entry(name, value, source) for name, value in space.items())
    try:
        data_keys = frozenset(f.name for f in dataclasses.fields(options_class(dataset)))
        spec = SweepSpec(dataset, user, settings, space=entries, source=source, data_keys=data_keys,
                         **{k: (tuple(v) if k == "seeds" and isinstance(v, list) else v)
                            for k, v in sweep.items()}, **limits)
    except SettingError as exc:
        raise BstdgError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise BstdgError(f"{source}: {exc}") from None
    spec.check_points()
    return spec
