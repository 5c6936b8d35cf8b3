"""Run configuration files: per-dataset defaults in ``bstdg/configs/<dataset>.toml``.

A config file is flat TOML. Its keys are

* ``dataset`` (optional): the dataset the file is meant for;
* :class:`~bstdg.train.TrainConfig` field names (``hidden``, ``t_max``, ``epochs``,
  ``batch_size``, ``lr_w``, ...); ``rule`` may be a table of
  :class:`~bstdg.learning.LearningRule` fields;
* dataset options (how the data is encoded, e.g. ``channels`` or ``height``): exactly the
  other keys of the dataset's packaged config, which also holds their defaults.

Precedence, lowest first: ``TrainConfig`` defaults, the packaged config of the dataset, a
user config (``bstdg train --config FILE``), explicit command line options.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import BstdgError

CONFIG_PACKAGE = "bstdg"
CONFIG_FOLDER = "configs"


@dataclass(frozen=True)
class RunConfig:
    """A parsed config: the dataset, TrainConfig fields, LearningRule fields, data options."""

    dataset: str | None = None
    train: dict = field(default_factory=dict)
    rule: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    source: str = ""  # where it was read from (for messages)


def _train_fields() -> set[str]:
    from .train import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)} - {"rule"}


def _same_kind(value, default, text: bool = False) -> bool:
    """TOML ``value`` fits a setting whose default is ``default`` (an int is a float too;
    ``text``: an optional setting that is a string)."""
    if default is None and text:  # an optional string (the loss, which defaults per optimizer)
        return isinstance(value, str)
    if default is None:  # an optional number (e.g. a learning rate that defaults per optimizer)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))


def _check_kinds(values: dict, defaults, source: str, what: str) -> None:
    types = {f.name: str(f.type) for f in dataclasses.fields(defaults)}
    for key, value in values.items():
        default = getattr(defaults, key)
        text = "str" in types[key]
        if not _same_kind(value, default, text):
            kind = ("a string" if text else "a number") if default is None else type(default).__name__
            raise BstdgError(f"config {source}: {what}{key} must be {kind}, got {value!r}")


def _rule_fields() -> set[str]:
    from .learning import LearningRule

    return {f.name for f in dataclasses.fields(LearningRule)}


def packaged_config_path(dataset: str):
    """The packaged config of ``dataset`` (a Traversable), or None when there is none."""
    path = resources.files(CONFIG_PACKAGE).joinpath(CONFIG_FOLDER, f"{dataset}.toml")
    return path if path.is_file() else None


def packaged_configs() -> list[str]:
    """Names of the datasets with a packaged config."""
    folder = resources.files(CONFIG_PACKAGE).joinpath(CONFIG_FOLDER)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise BstdgError(f"config {source}: not valid TOML ({str(exc)[:150]})") from None


def _split(raw: dict, source: str, data_keys: set[str] | None) -> RunConfig:
    """Sort the keys of ``raw`` into a RunConfig. ``data_keys``: the allowed dataset options
    (None: every key that is not a train/rule key is a dataset option)."""
    train_fields, rule_fields = _train_fields(), _rule_fields()
    dataset = raw.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise BstdgError(f"config {source}: 'dataset' must be a string")
    train, rule, data = {}, {}, {}
    for key, value in raw.items():
        if key == "dataset":
            continue
        if key == "rule":
            if not isinstance(value, dict):
                raise BstdgError(f"config {source}: 'rule' must be a table of learning rule fields")
            unknown = sorted(set(value) - rule_fields)
            if unknown:
                raise BstdgError(f"config {source}: unknown rule key(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(rule_fields))})")
            rule.update(value)
        elif key in train_fields:
            train[key] = tuple(value) if key == "hidden" and isinstance(value, list) else value
        elif data_keys is None or key in data_keys:
            data[key] = value
        else:
            known = sorted(train_fields | set(data_keys) | {"dataset", "rule"})
            raise BstdgError(f"config {source}: unknown key {key!r}"
                             f"{f' for dataset {dataset}' if dataset else ''} "
                             f"(known: {', '.join(known)})")
    from .learning import LearningRule
    from .train import TrainConfig

    _check_kinds({k: v for k, v in train.items() if k != "hidden"}, TrainConfig(), source, "")
    _check_kinds(rule, LearningRule(), source, "rule.")
    if "hidden" in train:
        hidden = train["hidden"]
        if isinstance(hidden, int):
            hidden = (hidden,)
        if not (isinstance(hidden, tuple) and hidden and all(isinstance(h, int) and h > 0 for h in hidden)):
            raise BstdgError(f"config {source}: 'hidden' must be a positive integer or a list of them")
        train["hidden"] = hidden
    try:  # values the dataclasses reject (e.g. an unknown optimizer or loss)
        TrainConfig(**train, rule=LearningRule(**rule))
    except ValueError as exc:
        raise BstdgError(f"config {source}: {exc}") from None
    return RunConfig(dataset, train, rule, data, source)


def packaged_config(dataset: str) -> RunConfig:
    """The packaged defaults of ``dataset`` (an empty RunConfig when it has none)."""
    path = packaged_config_path(dataset)
    if path is None:
        return RunConfig(dataset, source=f"(no packaged config for {dataset})")
    return _split(_read_toml(path.read_text(), f"bstdg/configs/{dataset}.toml"),
                  f"bstdg/configs/{dataset}.toml", None)


def default_data_options(dataset: str) -> dict:
    """The dataset options of ``dataset`` with their packaged defaults."""
    return dict(packaged_config(dataset).data)


def check_data_options(dataset: str, options: dict, source: str = "options") -> dict:
    """``options`` merged over the defaults; BstdgError naming unknown keys or wrong types."""
    defaults = default_data_options(dataset)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise BstdgError(f"{source}: unknown option(s) {', '.join(unknown)} for dataset "
                         f"{dataset} (its options: {known})")
    merged = dict(defaults)
    for key, value in options.items():
        default = defaults[key]
        if not _same_kind(value, default):
            raise BstdgError(f"{source}: option {key} of {dataset} must be "
                             f"{type(default).__name__}, got {value!r}")
        merged[key] = float(value) if isinstance(default, float) else value
    return merged


def load_config(path_or_name: str | Path) -> RunConfig:
    """Read a user config: a file path, or the name of a packaged config (e.g. ``shd``)."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        try:
            text = path.read_text()
        except OSError as exc:
            raise BstdgError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise BstdgError(f"--config {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                             f"TOML files are UTF-8") from None
        raw = _read_toml(text, str(path))
        source = str(path)
    elif packaged_config_path(str(path_or_name)) is not None:
        name = str(path_or_name)
        raw = _read_toml(packaged_config_path(name).read_text(), f"bstdg/configs/{name}.toml")
        source = f"bstdg/configs/{name}.toml"
    else:
        raise BstdgError(f"--config {path_or_name}: no such file, nor a packaged config "
                         f"({', '.join(packaged_configs())})")
    dataset = raw.get("dataset")
    data_keys = set(default_data_options(dataset)) if isinstance(dataset, str) else None
    return _split(raw, source, data_keys)


def resolve(dataset: str | None, user: RunConfig | None = None) -> tuple[str, RunConfig]:
    """The dataset to train on and the merged config (packaged defaults < user config).

    ``dataset``: given explicitly (wins over the config's ``dataset``); None: the user
    config's, else ``mnist``.
    """
    name = dataset or (user.dataset if user else None) or "mnist"
    base = packaged_config(name)
    if user is None:
        return name, base
    data = check_data_options(name, user.data, f"config {user.source}")
    data = {k: v for k, v in data.items() if k in user.data}
    return name, RunConfig(name, {**base.train, **user.train}, {**base.rule, **user.rule},
                           {**base.data, **data}, user.source)
