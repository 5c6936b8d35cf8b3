"""Progress bars for long loops: a thin wrapper over ``tqdm`` (on stderr; shown only on a
terminal unless forced), so that the rooms that report progress name one small interface."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """``with Progress(total, "train", unit="samples") as bar: bar.update(n, postfix="acc 0.9")``.

    ``enabled``: None shows the bar only when stderr is a terminal; ``postfix`` is a short
    status string shown after the counts (e.g. the running accuracy). ``unit="B"`` shows
    bytes scaled to kB/MB.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool | None = None, unit: str = "it"):
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self._bar = tqdm(total=max(int(total), 0) or None, desc=desc, unit=unit, file=sys.stderr,
                         disable=not self.enabled, unit_scale=unit == "B", mininterval=0.2,
                         dynamic_ncols=True, leave=True)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        if postfix is not None and self.enabled:
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(n)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
