"""The key figures of a ``bstdg compare`` summary (``compare.json``): what it keeps of each
run's history, time to accuracy, the BPTT / BSTDG ratios, and the machine it ran on."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from .methods import time_to_accuracy


# What compare.json keeps of each run's history (the time-to-accuracy curves).
HISTORY_KEYS = ("epoch", "wall_s", "val_accuracy", "test_accuracy")
# The methods trained by backpropagation through time (the "BPTT" side of the ratios).
BPTT_METHODS = ("bptt", "bptt-binary", "snntorch")
ACCURACY_LEVELS = (0.90, 0.95, 0.97)


def key_figures(runs: list) -> dict:
    """Per T: ``time_to_accuracy`` of every method (:func:`bstdg.methods.time_to_accuracy`
    on its history: training wall time to the first epoch with a test accuracy of 90 / 95 /
    97 %, and the held-out-selected accuracy) and, when ``bstdg`` and a BPTT-trained method
    ran, the ratios: BPTT time / BSTDG time, BPTT memory / BSTDG memory, and BSTDG accuracy
    minus the best BPTT-trained method's."""
    figures = {}
    by = {(r["method"], r["t_max"]): r for r in runs}
    for t_max in sorted({r["t_max"] for r in runs}):
        here = [r for r in runs if r["t_max"] == t_max]
        entry = figures[str(t_max)] = {"time_to_accuracy": {
            r["method"]: {**time_to_accuracy(r.get("history") or [], ACCURACY_LEVELS),
                          "best_accuracy": r["test_accuracy"], "selected_epoch": r.get("selected_epoch"),
                          "stopped_by": r.get("stopped_by"), "budgeted": bool(r.get("budgeted"))}
            for r in here}}
        ref = by.get(("bstdg", t_max))
        bptt = [r for r in here if r["method"] in BPTT_METHODS]
        if ref is None or not bptt:
            continue
        best = max(bptt, key=lambda r: r["test_accuracy"])
        entry.update({
            "time_ratio": {r["method"]: r["epoch_s"] / ref["epoch_s"] for r in bptt},
            "cpu_time_ratio": {r["method"]: r["epoch_cpu_s"] / ref["epoch_cpu_s"] for r in bptt},
            # None: BSTDG's training did not raise the RSS by one page
            "memory_ratio": {r["method"]: r["peak_train_mib"] / ref["peak_train_mib"]
                             if ref["peak_train_mib"] > 0 else None for r in bptt},
            "best_bptt": best["method"],
            "accuracy_gap_points": 100 * (ref["test_accuracy"] - best["test_accuracy"]),
        })
    return figures


def machine() -> str:
    cpu = ""
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else ""
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{cores}-core {cpu or platform.processor() or platform.machine()}, {platform.platform()}"
