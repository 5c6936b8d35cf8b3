"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class BstdgError(Exception):
    """An error whose message is meant for the user (no traceback is shown)."""


class DataError(BstdgError):
    """Missing, truncated, corrupt or mismatched data files."""
