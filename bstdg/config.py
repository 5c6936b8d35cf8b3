"""Config files: per-dataset defaults in ``bstdg/configs/<dataset>.toml`` and user files
(``bstdg train --config FILE``).

A config file is flat TOML. Its keys are

* ``dataset`` (optional): the dataset the file is meant for (a built-in name or a spec such
  as ``images:DIR``);
* :class:`~bstdg.recipe.TrainConfig` field names (``hidden``, ``t_max``, ``epochs``,
  ``batch_size``, ``lr_w``, ...); ``rule`` may be a table of
  :class:`~bstdg.learning.LearningRule` fields;
* dataset options: the fields of the dataset's options dataclass
  (:func:`bstdg.data.options_class`, e.g. ``channels`` for SHD or ``height`` for Caltech).

Precedence, lowest first: ``TrainConfig`` defaults, the packaged config of the dataset, a
user config, explicit command line options. ``hidden`` and ``arch`` both name the hidden
layers: a source that sets one of them replaces the other from lower sources
(:func:`merge_train`). Values are checked by the dataclasses they
fill (:mod:`bstdg.checks`), once, where they enter.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .data import get_dataset, options_class
from .errors import BstdgError
from .learning import LearningRule
from .recipe import TrainConfig

CONFIG_PACKAGE = "bstdg"
CONFIG_FOLDER = "configs"
DEFAULT_DATASET = "mnist"
MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; refuse anything huge


@dataclass(frozen=True)
class ParsedConfig:
    """A parsed config: the dataset, TrainConfig fields, LearningRule fields, dataset options."""

    dataset: str | None = None
    train: dict = field(default_factory=dict)
    rule: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    source: str = ""  # where it was read from (for messages)


TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - {"rule"}
RULE_FIELDS = frozenset(f.name for f in dataclasses.fields(LearningRule))


def merge_train(low: dict, high: dict) -> dict:
    """TrainConfig settings ``high`` over ``low``; ``hidden`` and ``arch`` are one setting
    (the hidden layers): when ``high`` gives one of them only, ``low``'s other is dropped."""
    merged = {**low, **high}
    for key, other in (("arch", "hidden"), ("hidden", "arch")):
        if high.get(key) is not None and high.get(other) is None:
            merged.pop(other, None)
    return merged


def packaged_config_path(dataset: str):
    """The packaged config of ``dataset`` (a Traversable), or None when there is none."""
    if not dataset or "/" in dataset or ":" in dataset:
        return None
    path = resources.files(CONFIG_PACKAGE).joinpath(CONFIG_FOLDER, f"{dataset}.toml")
    return path if path.is_file() else None


def packaged_configs() -> list[str]:
    """Names of the packaged configs."""
    folder = resources.files(CONFIG_PACKAGE).joinpath(CONFIG_FOLDER)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def parse_toml(data: bytes, source: str) -> dict:
    """The table of a TOML document; one-line BstdgError if it is not UTF-8 or not TOML."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BstdgError(f"config {source}: not UTF-8 text (byte {exc.start})") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise BstdgError(f"config {source}: not valid TOML ({str(exc)[:150]})") from None


def _data_keys(dataset: str | None) -> set[str] | None:
    if dataset is None:
        return None
    return {f.name for f in dataclasses.fields(options_class(dataset))}


def split(raw: dict, source: str) -> ParsedConfig:
    """Sort the keys of ``raw`` into a ParsedConfig and check the training settings.
    Without a ``dataset`` key, every key that is not a training or rule key is taken as a
    dataset option (checked once the dataset is known)."""
    dataset = raw.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise BstdgError(f"config {source}: 'dataset' must be a string")
    data_keys = _data_keys(dataset)
    train, rule, data = {}, {}, {}
    for key, value in raw.items():
        if key == "dataset":
            continue
        if key == "rule":
            if not isinstance(value, dict):
                raise BstdgError(f"config {source}: 'rule' must be a table of learning rule fields")
            unknown = sorted(set(value) - RULE_FIELDS)
            if unknown:
                raise BstdgError(f"config {source}: unknown rule key(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(RULE_FIELDS))})")
            rule.update(value)
        elif key in TRAIN_FIELDS:
            train[key] = value
        elif data_keys is None or key in data_keys:
            data[key] = value
        else:
            known = sorted(TRAIN_FIELDS | data_keys | {"dataset", "rule"})
            raise BstdgError(f"config {source}: unknown key {key!r} for dataset {dataset} "
                             f"(known: {', '.join(known)})")
    if "hidden" in train and isinstance(train["hidden"], int) and not isinstance(train["hidden"], bool):
        train["hidden"] = (train["hidden"],)
    try:  # every value checked by the dataclasses themselves
        TrainConfig(**train, rule=LearningRule(**rule))
    except (BstdgError, TypeError, ValueError) as exc:
        raise BstdgError(f"config {source}: {exc}") from None
    return ParsedConfig(dataset, train, rule, data, source)


def packaged_config(dataset: str) -> ParsedConfig:
    """The packaged defaults of ``dataset`` (an empty ParsedConfig when it has none)."""
    path = packaged_config_path(dataset)
    if path is None:
        return ParsedConfig(dataset, source=f"(no packaged config for {dataset})")
    source = f"bstdg/configs/{dataset}.toml"
    return split(parse_toml(path.read_bytes(), source), source)


def load_config(path_or_name: str | Path) -> ParsedConfig:
    """Read a user config: a file path, or the name of a packaged config (e.g. ``shd``)."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise BstdgError(f"--config {path}: {path.stat().st_size:,} bytes; a config file "
                                 f"is at most {MAX_CONFIG_BYTES:,}")
            data = path.read_bytes()
        except OSError as exc:
            raise BstdgError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
        return split(parse_toml(data, str(path)), str(path))
    name = str(path_or_name)
    if packaged_config_path(name) is not None:
        return packaged_config(name)
    raise BstdgError(f"--config {path_or_name}: no such file, nor a packaged config "
                     f"({', '.join(packaged_configs())})")


def resolve(dataset: str | None, user: ParsedConfig | None = None) -> tuple[str, ParsedConfig]:
    """The dataset to train on and the merged config (packaged defaults < user config);
    the dataset options are checked against the dataset's options dataclass.

    ``dataset``: given explicitly (wins over the config's ``dataset``); None: the user
    config's, else ``mnist``.
    """
    name = dataset or (user.dataset if user else None) or DEFAULT_DATASET
    base = packaged_config(name)
    if user is not None:
        base = ParsedConfig(name, merge_train(base.train, user.train), {**base.rule, **user.rule},
                            {**base.data, **user.data}, user.source)
    known = _data_keys(name)
    unknown = sorted(set(base.data) - known)
    if unknown:
        raise BstdgError(f"config {base.source}: unknown option(s) {', '.join(unknown)} for dataset "
                         f"{name} (its options: {', '.join(sorted(known)) or 'none'})")
    return name, base


def train_settings(dataset: str | None, config=None, train: dict | None = None,
                   rule: dict | None = None, options: dict | None = None) -> tuple[str, TrainConfig, dict]:
    """``(dataset, TrainConfig, dataset options)``: the packaged config of ``dataset``, the
    ``config`` file (a path, a packaged name, or None) over it, then the ``train`` /
    ``rule`` / dataset ``options`` settings that are not ``None``. One-line BstdgError on
    any bad value."""
    user = load_config(config) if config is not None else None
    dataset, merged = resolve(dataset, user)
    settings = merge_train(merged.train, {k: v for k, v in (train or {}).items() if v is not None})
    rules = {**merged.rule, **{k: v for k, v in (rule or {}).items() if v is not None}}
    data = {**merged.data, **{k: v for k, v in (options or {}).items() if v is not None}}
    given = {k for k, v in {**(train or {}), **(rule or {})}.items() if v is not None}
    try:
        config_obj = TrainConfig(**settings, rule=LearningRule(**rules))
    except (BstdgError, TypeError, ValueError) as exc:
        if getattr(exc, "setting", None) in given:  # an explicit option: name it as typed
            raise BstdgError(f"--{exc.setting.replace('_', '-')}: {exc}") from None
        raise BstdgError(f"bad setting in {merged.source or 'the options'}: {exc}") from None
    get_dataset(dataset, data, f"options of {dataset} ({merged.source or 'defaults'})")
    return dataset, config_obj, data
