"""``bstdg compare``: train several methods at several T on the same data, side by side.

This module runs the comparison: the checks of its settings, the loop over (method, T), the
summary (``compare.json``) and the report. The methods and their registry are in
:mod:`bstdg.compare_methods` (``register``, ``RESULT_KEYS``, ``TRAIN_CONFIGS`` and what a
method uses stay importable from here), one run of a method in :mod:`bstdg.compare_run`
(``python -m bstdg.compare CONFIG.json`` is its child process), the key figures in
:mod:`bstdg.compare_summary`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .arch import parse_layers
from .baselines import require_torch, torch_device
from .baselines.snntorch_baseline import require_snntorch
from .compare_methods import METHODS, RESULT_KEYS, TRAIN_CONFIGS, register  # noqa: F401  (documented here)
from .compare_run import OMP_WAIT_POLICY, main, run_isolated, run_one
from .compare_summary import HISTORY_KEYS, key_figures, machine
from .data import get_dataset
from .errors import BstdgError
from .files import write_json
from .methods import (EarlyStopping, Meter, MethodRun, load_fit_val_test, load_splits,  # noqa: F401
                      maxrss_kib, model_meta, time_to_accuracy)  # (what a method uses)
from .report import compare_report
from .report_inputs import read_json
from .runs import save_test_outputs  # noqa: F401  (what a method uses)


def parse_overrides(text) -> dict:
    """``bptt@256=2000,bptt-binary=5000`` -> {("bptt", 256): 2000, ("bptt-binary", None): 5000}."""
    overrides = {}
    for part in filter(None, (text or "").split(",")):
        try:
            key, n = part.split("=")
            method, _, t = key.partition("@")
            overrides[(method.strip(), int(t) if t else None)] = int(n)
        except ValueError:
            raise BstdgError(f"--limit-train-for: expected METHOD[@T]=N, got {part!r}") from None
    return overrides


def read_settings(path) -> dict:
    """The hyper-parameters of ``--bptt-settings FILE`` (written by
    ``benchmarks/bptt_lr_sweep.py``): ``{"settings": {METHOD: {T: {name: value}}}}``, T a
    number as text or ``"*"`` (any T). BstdgError (one line) when it is not such a file or
    names an unknown method."""
    path = Path(path)
    doc = read_json(path)
    settings = doc.get("settings")
    ok = isinstance(settings, dict) and all(
        isinstance(per_t, dict) and all(isinstance(v, dict) and (k == "*" or k.isdigit()) for k, v in per_t.items())
        for per_t in settings.values())
    if not ok:
        raise BstdgError(f"{path}: expected {{\"settings\": {{METHOD: {{T: {{NAME: VALUE}}}}}}}} "
                         f"(see benchmarks/bptt_lr_sweep.py)")
    unknown = [m for m in settings if m not in METHODS]
    if unknown:
        raise BstdgError(f"{path}: unknown method {', '.join(unknown)}; known: {', '.join(METHODS)}")
    return settings


def settings_for(settings: dict | None, method: str, t_max: int) -> dict | None:
    per_t = (settings or {}).get(method) or {}
    return per_t.get(str(t_max), per_t.get("*"))


# --until-converged defaults: at most MAX_EPOCHS epochs, stop after PATIENCE epochs without
# a better held-out accuracy.
MAX_EPOCHS, PATIENCE = 50, 3


def compare(dataset: str = "mnist", methods=("bstdg", "s4nn-rule", "bptt", "bptt-binary"),
            time_steps=(16, 64, 256), epochs: int = 1, limit_train=None, limit_test=None,
            hidden=(600,), out="runs/compare", data_dir=None, seed: int = 0,
            limit_train_for=None, isolate: bool = True, log=print, *, until_converged: bool = False,
            max_epochs: int | None = None, patience: int | None = None, budget_s: float | None = None,
            val: int | None = None, device: str = "cpu", bptt_settings=None, arch=None) -> dict:
    """Train every method at every T, write ``out/compare.json``, ``out/compare.md`` and the
    plots, and return the summary. ``limit_train_for`` ({(method, T or None): N}) gives
    some runs fewer training samples (their time per epoch is then extrapolated per sample
    to the others' count, and flagged).

    ``until_converged``: every run trains on the training set minus a fixed held-out split
    of ``val`` samples (None: :func:`bstdg.methods.default_val_size`) until its held-out
    accuracy has not improved for ``patience`` epochs (default 3), or ``max_epochs``
    (default 50), or its training wall time reaches ``budget_s`` (then it is marked
    ``budgeted``); the reported figures are those of the epoch with the best held-out
    accuracy. Without it ``epochs`` epochs are trained; ``val`` > 0 then still selects the
    epoch on the held-out split (default 0: none, the last epoch). ``device``: where the
    torch methods train (``cpu`` or ``cuda``). ``bptt_settings``: a ``--bptt-settings``
    file (:func:`read_settings`). ``arch``: the hidden layers as a spec (:mod:`bstdg.arch`)
    instead of ``hidden``; fc layers only are the same as ``hidden``; with conv or pool
    layers only the methods registered with ``conv=True`` run (:func:`resolve_arch`)."""
    methods, time_steps = list(methods), [int(t) for t in time_steps]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BstdgError(f"unknown method {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if arch is not None:
        hidden, arch = resolve_arch(arch, methods)
    if until_converged:
        epochs = max_epochs or MAX_EPOCHS
        patience = patience or PATIENCE
    elif max_epochs is not None or patience is not None:
        raise BstdgError("--max-epochs and --patience need --until-converged (else --epochs is trained)")
    else:
        val = val or 0
    if val is not None and val < 0:
        raise BstdgError(f"--val must be 0 or more, got {val}")
    selecting = val != 0 or budget_s is not None
    cannot = [m for m in methods if selecting and not METHODS[m].selects]
    if cannot:
        raise BstdgError(f"{', '.join(cannot)} cannot select on a held-out split or stop early "
                         f"(--until-converged, --val, --budget-s); selecting methods: "
                         f"{', '.join(m for m in METHODS if METHODS[m].selects)}")
    torch_methods = [m for m in methods if METHODS[m].needs_torch]
    if torch_methods:
        require_torch()
        if "snntorch" in torch_methods:
            require_snntorch()
    if device != "cpu":
        torch_device(device)  # cuda without a GPU: fail before any work
    if min(time_steps) < 2:
        raise BstdgError("--time-steps: every T must be at least 2")
    settings = read_settings(bptt_settings) if bptt_settings else None
    get_dataset(dataset).locate(data_dir)  # missing data: fail before any work
    overrides = limit_train_for or {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    started = time.perf_counter()
    for t_max in time_steps:
        for m in methods:
            n = overrides.get((m, t_max), overrides.get((m, None), limit_train))
            config = MethodRun(m, dataset, t_max, str(out / f"{m}-T{t_max}"), tuple(hidden), epochs, seed,
                               n, limit_test, str(data_dir) if data_dir else None, val=val,
                               patience=patience, budget_s=budget_s,
                               device=device if METHODS[m].needs_torch else "cpu",
                               settings=settings_for(settings, m, t_max), arch=arch)
            what = (f"until converged (patience {patience}, at most {epochs} epochs"
                    + (f", budget {budget_s:,.0f} s" if budget_s else "") + ")"
                    if until_converged else f"{epochs} epoch(s)")
            log(f"== {m}, T={t_max}: {what}, {n or 'all'} training samples"
                + (f", held out {val if val is not None else 'default'}" if val != 0 else "")
                + (f", settings {config.settings}" if config.settings else "") + f" -> {config.out}")
            result = run_isolated(config) if isolate else run_one(config)
            rows.append(result)
            log(f"   test accuracy {result['test_accuracy']:.4f}"
                + (f" (epoch {result['selected_epoch']} of {result['epochs_trained']}, "
                   f"stopped by {result['stopped_by']})" if result.get("selected_epoch") else "")
                + f", {result['train_s_per_epoch']:.2f} s/epoch "
                f"({result['train_samples_per_s']:,.0f} samples/s), peak training memory "
                f"{result['peak_train_mib']:.1f} MiB")
    n_epoch = max(r["n_train"] for r in rows)
    for r in rows:
        r["epoch_s"] = n_epoch / r["train_samples_per_s"]
        r["epoch_cpu_s"] = r["train_cpu_s_per_epoch"] * n_epoch / r["n_train"]
        r["epoch_extrapolated"] = r["n_train"] != n_epoch
    summary = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": " ".join(sys.argv),
        "dataset": dataset, "methods": methods, "time_steps": time_steps, "epochs": epochs,
        "hidden": list(hidden), "arch": arch, "seed": seed, "limit_train": limit_train, "limit_test": limit_test,
        "until_converged": until_converged, "patience": patience, "budget_s": budget_s,
        "val": val, "device": device, "bptt_settings": str(bptt_settings) if bptt_settings else None,
        "n_val": max(r.get("n_val", 0) for r in rows),
        "epoch_samples": n_epoch, "memory_method": rows[0]["memory_method"],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY) if isolate else
        os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "total_wall_s": time.perf_counter() - started,
        "descriptions": {m: METHODS[m].description for m in methods},
        "runs": [{**{k: v for k, v in r.items() if k not in ("history", "config", "run_config", "batches")},
                  "history": [{k: h.get(k) for k in HISTORY_KEYS} for h in r.get("history", [])]}
                 for r in rows],
    }
    summary["key_figures"] = key_figures(summary["runs"])
    write_json(out / "compare.json", summary)
    compare_report(out, log=log)
    return summary


def resolve_arch(spec: str, methods) -> tuple[tuple, str | None]:
    """``(hidden, arch)`` of ``--arch spec``: the fc sizes and the spec when it has conv or
    pool layers, else ``(fc sizes, None)`` (the ``--hidden`` networks). One-line BstdgError
    for a bad spec, or when a method cannot train conv layers (listing those that can)."""
    try:
        layers = parse_layers(spec)
    except BstdgError as exc:
        raise BstdgError(f"--arch: {exc}") from None
    hidden = tuple(layer.units for layer in layers if layer.kind == "fc")
    if all(layer.kind == "fc" for layer in layers):
        return hidden, None
    spec = ",".join(str(layer) for layer in layers)
    cannot = [m for m in methods if not METHODS[m].conv]
    if cannot:
        raise BstdgError(f"--arch {spec}: {', '.join(cannot)} cannot train conv or pool layers; methods "
                         f"that can: {', '.join(m for m in METHODS if METHODS[m].conv)}")
    return hidden, spec


if __name__ == "__main__":
    sys.exit(main())
