"""One (method, T) run of ``bstdg compare``: the method (:mod:`bstdg.compare_methods`) called
in this process with its figures checked and completed, or in a fresh one.

Each (method, T) runs in a fresh Python process (``python -m bstdg.compare CONFIG.json``):
peak memory is then that run's own, and no method inherits another's allocator state or
thread pools.

**Peak training memory** is the growth of the process's resident set (RSS) during the
training epochs: the kernel's high-water mark (``VmHWM``) is reset through
``/proc/self/clear_refs`` right before each epoch, read right after it, and the RSS just
before the epoch is subtracted. It counts everything training touches (numpy, Numba, torch's
CPU allocator, the per-batch input tensors) and nothing it does not (interpreter, libraries,
the encoded dataset, compiled kernels, which are loaded by a warm-up on a throwaway copy
and 8 samples before); freed heap memory is handed back (``malloc_trim``) before the RSS is
read, so memory an epoch reuses counts too. Where ``clear_refs`` is unavailable the growth of
``ru_maxrss`` is used (a lower
bound); ``memory_method`` in ``compare.json`` says which.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .compare_methods import METHODS, RESULT_KEYS
from .errors import BstdgError
from .files import write_json
from .methods import MethodRun, maxrss_kib
from .runs import RunFolder

# What run_one adds to every method's dict.
RUN_KEYS = ("method", "t_max", "train_s_per_epoch", "train_samples_per_s", "peak_train_mib",
            "process_peak_mib", "memory_method", "run_wall_s", "run_dir")


def run_one(config: MethodRun) -> dict:
    """Run one (method, T) in this process; returns the method's dict plus the RUN_KEYS."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = METHODS[config.method].run(config)
    meter = config.meter
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        raise BstdgError(f"method {config.method} did not return {', '.join(missing)}")
    if not meter.seconds:
        raise BstdgError(f"method {config.method} did not time its training (config.meter.training())")
    per_epoch = float(np.mean(meter.seconds))
    result.update(
        method=config.method, t_max=config.t_max, train_s_per_epoch=per_epoch,
        train_cpu_s_per_epoch=float(np.mean(meter.cpu_seconds)), train_wall_s=float(sum(meter.seconds)),
        train_samples_per_s=result["n_train"] / per_epoch if per_epoch > 0 else float("inf"),
        peak_train_mib=meter.peak_growth_kib / 1024,
        process_peak_mib=maxrss_kib() / 1024, memory_method=meter.method,
        run_wall_s=time.perf_counter() - start, run_dir=str(out), run_config=config.to_dict())
    RunFolder(out).write_metrics(result)
    return result


# Numba's and torch's OpenMP threads sleep instead of spinning at barriers: on a shared,
# loaded machine spinning threads made both 5-10x slower (measured); with nothing else
# running the difference is small. Every run gets the same setting.
OMP_WAIT_POLICY = "PASSIVE"


def run_isolated(config: MethodRun) -> dict:
    """:func:`run_one` in a fresh Python process (its output passes through), with
    ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "run_config.json"
    write_json(spec, config.to_dict())
    (out / "metrics.json").unlink(missing_ok=True)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY)}
    status = subprocess.run([sys.executable, "-m", "bstdg.compare", str(spec)], env=env).returncode
    if status != 0 or not (out / "metrics.json").exists():
        raise BstdgError(f"{config.method} at T={config.t_max} failed (exit status {status}); "
                         f"its output is above")
    return RunFolder(out).read_metrics()


def main(argv=None) -> int:
    """Child process entry: ``python -m bstdg.compare RUN_CONFIG.json`` (:func:`run_isolated`)."""
    argv = sys.argv[1:] if argv is None else argv
    config = MethodRun.from_dict(json.loads(Path(argv[0]).read_text()))
    try:
        run_one(config)
    except BstdgError as exc:
        print(f"bstdg: error: {exc}", file=sys.stderr)
        return 1
    return 0
