"""Argument types and helpers of the command line: one-line usage errors (:class:`Parser`),
options generated from dataclass fields (:func:`add_dataclass_options`), argparse types."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import typing
from pathlib import Path

from ..errors import BstdgError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bstdg: error: <what> (see <prog> --help)``."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class UsageError(BstdgError):
    """A command line that cannot be parsed or is incomplete (exit status 2)."""


def writable_dir(path, option: str = "--out") -> Path:
    """Create folder ``path`` if needed and check a file can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise BstdgError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def existing_data_dir(data_dir):
    """``data_dir`` unchanged; BstdgError when it is given but is not a folder (rather than
    silently falling back to $BSTDG_DATA or ./datasets)."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise BstdgError(f"--data-dir {data_dir}: no such folder")
    return data_dir


def add_dataclass_options(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    """One option ``--field-name`` per field of dataclass ``cls`` whose metadata has a
    ``help`` text: its type from the field's annotation (``int``, ``float``, ``str`` with
    ``choices``, ``tuple``: layer sizes like ``600,300``), default None (not given). The
    values are checked by the dataclass itself, in one place."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata or f.name in skip:
            continue
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kind = args[0]
        flag = "--" + f.name.replace("_", "-")
        if kind is tuple:
            parser.add_argument(flag, dest=f.name, type=hidden_sizes, help=f.metadata["help"])
        elif "choices" in f.metadata:
            parser.add_argument(flag, dest=f.name, choices=f.metadata["choices"], help=f.metadata["help"])
        else:
            parser.add_argument(flag, dest=f.name, type=number(kind), help=f.metadata["help"])


def number(kind):
    """An argparse type: an ``int`` or a ``float`` (range checks are the dataclass's)."""
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def hidden_sizes(text: str) -> tuple:
    """``600`` -> (600,), ``600,300`` -> (600, 300)."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected layer sizes like 600 or 600,300, got {text!r}")
    return sizes


def number_list(kind):
    """An argparse type: comma-separated numbers of ``kind`` (``2,3,4``) as a tuple."""
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values like 2,3,4, got {text!r}") from None
    return parse


def positive(kind, minimum=None):
    """An argparse type: a number of ``kind`` above 0 (at least ``minimum`` when given)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (value > 0 if minimum is None else value >= minimum):
            wanted = f"a positive {kind.__name__}" if minimum is None else f"an {kind.__name__} >= {minimum}"
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return parse
