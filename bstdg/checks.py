"""Checks of settings where they enter (dataclass ``__post_init__``): one line naming the
setting, the allowed range and the value given."""

from __future__ import annotations

import math

import numpy as np

from .errors import BstdgError


class SettingError(BstdgError, ValueError):
    """A setting out of its range or of the wrong type (a ``ValueError`` too, so that code
    catching that keeps working). ``setting``: its name, when one setting is at fault."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, lo: int | None = None, hi: int | None = None,
              optional: bool = False) -> None:
    """``value`` is an integer in ``[lo, hi]`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if not _is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingError(f"{name} must be an integer {_range(lo, hi)}, got {value!r}", name)


def check_real(name: str, value, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False, optional: bool = False) -> None:
    """``value`` is a finite number in the range (open ends where said), or None when
    ``optional``."""
    if value is None and optional:
        return
    ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
          and math.isfinite(value))
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise SettingError(f"{name} must be a finite number {_range(lo, hi, lo_open, hi_open)}, got {value!r}",
                           name)


def check_bool(name: str, value) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise SettingError(f"{name} must be true or false, got {value!r}", name)


def check_choice(name: str, value, choices, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}", name)


def _range(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return ""
