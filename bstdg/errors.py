"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class BstdgError(Exception):
    """An error whose message is meant for the user (no traceback is shown)."""


class DataError(BstdgError):
    """Missing, truncated, corrupt or mismatched data files."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception by the command line (exit status 143)."""


class Interrupted(BstdgError):
    """Work stopped by Ctrl-C (``status`` 130) or SIGTERM (143); the message says what was kept."""

    def __init__(self, message: str, status: int = 130):
        super().__init__(message)
        self.status = status


def interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or :class:`Terminated`) behind ``exc``: itself, or the
    cause of a ``SystemError`` raised when a signal arrived while Numba was dispatching a
    compiled function ("returned a result with an exception set"); None otherwise."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        if not isinstance(exc, SystemError):
            return None
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def first_line(exc: BaseException) -> str:
    """A one-line description of ``exc``: its message's first line, else its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
