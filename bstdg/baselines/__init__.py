"""Baselines trained with backpropagation through time (torch), for ``bstdg compare``.

Everything here imports torch lazily: ``import bstdg.baselines`` works without torch, and
:func:`require_torch` turns a missing torch into a one-line :class:`~bstdg.errors.BstdgError`.
The engine and the BSTDG trainer never import this package. How the baselines are set up
is documented in ``docs/baselines.md``.
"""

from __future__ import annotations

from ..errors import BstdgError

TORCH_VERSION = "2.13.0"


def require_torch():
    """The ``torch`` module; BstdgError with the install command when it is missing."""
    try:
        import torch
    except ImportError:
        raise BstdgError(f"the BPTT baselines need torch: pip install torch=={TORCH_VERSION} "
                         f"(the 'baselines' extra)") from None
    return torch
