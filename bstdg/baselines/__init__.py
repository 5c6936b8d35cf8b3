"""Baselines trained with backpropagation through time (torch), for ``bstdg compare``.

Everything here imports torch lazily: ``import bstdg.baselines`` works without torch, and
:func:`require_torch` turns a missing torch into a one-line :class:`~bstdg.errors.BstdgError`.
The engine and the BSTDG trainer never import this package. How the baselines are set up
is documented in ``docs/baselines.md``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import fields, replace

from ..errors import BstdgError

TORCH_VERSION = "2.13.0"


def require_torch():
    """The ``torch`` module; BstdgError with the install command when it is missing."""
    try:
        import torch  # optional: the baselines extra
    except ImportError:
        raise BstdgError(f"the BPTT baselines need torch: pip install torch=={TORCH_VERSION} "
                         f"(the 'baselines' extra)") from None
    return torch


DEVICES = ("cpu", "cuda")


def torch_device(name: str = "cpu"):
    """The ``torch.device`` a torch method trains on; BstdgError for an unknown name or for
    ``cuda`` where torch sees no GPU (nothing needs one: ``cpu`` is the default)."""
    t = require_torch()
    if name not in DEVICES:
        raise BstdgError(f"--device: expected {' or '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not t.cuda.is_available():
        raise BstdgError("--device cuda: torch sees no CUDA GPU on this machine "
                         "(torch.cuda.is_available() is False); use --device cpu")
    return t.device(name)


@contextmanager
def timed_epoch(meter, device, gpu_peaks: list):
    """One training epoch inside ``meter.training()``; on a GPU the epoch ends with a
    ``torch.cuda.synchronize`` inside the meter (so the wall time holds the queued kernels)
    and its peak allocated GPU memory (MiB) is appended to ``gpu_peaks``."""
    t = require_torch()
    cuda = device.type == "cuda"
    if cuda:
        t.cuda.reset_peak_memory_stats(device)
    with meter.training():
        yield
        if cuda:
            t.cuda.synchronize(device)
    if cuda:
        gpu_peaks.append(t.cuda.max_memory_allocated(device) / 2 ** 20)


def apply_settings(config, settings: dict | None, fixed=("hidden", "t_max", "epochs", "seed")):
    """``config`` (a frozen dataclass) with the hyper-parameters of ``settings`` (from
    ``--bptt-settings``) replacing its own; BstdgError for a key it does not have or one
    the run sets itself (``fixed``)."""
    if not settings:
        return config
    names = {f.name for f in fields(config)} - set(fixed)
    unknown = sorted(set(settings) - names)
    if unknown:
        raise BstdgError(f"--bptt-settings: {type(config).__name__} has no setting "
                         f"{', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    try:
        return replace(config, **settings)
    except (TypeError, ValueError) as exc:
        raise BstdgError(f"--bptt-settings: {exc}") from None
