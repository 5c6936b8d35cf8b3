"""A dependency-free progress bar for long loops (writes to stderr, only on a terminal
unless forced)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Minimal progress bar: ``with Progress(total, "train") as bar: bar.update(n)``.

    Prints at most ~5 updates per second; ``postfix`` is a short status string shown after
    the counts (e.g. the running accuracy). Silent when ``enabled`` is False.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool | None = None, unit: str = "it"):
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.n = 0
        self.postfix = ""
        self._start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.n += n
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.2 or self.n >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        frac = self.n / self.total if self.total else 1.0
        width = 24
        filled = int(round(frac * width))
        bar = "#" * filled + "-" * (width - filled)
        eta = (self.total - self.n) / rate if rate > 0 else 0.0
        line = (f"\r{self.desc} [{bar}] {self.n}/{self.total} "
                f"{rate:,.0f} {self.unit}/s eta {eta:4.0f}s {self.postfix}")
        sys.stderr.write(line)
        sys.stderr.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._draw(time.perf_counter())
            sys.stderr.write("\n")
            sys.stderr.flush()
