"""``bstdg report RUN``: regenerate the figures and a Markdown report of a run folder from
what it saved, without retraining.

* a training run (``metrics.json``, ``model.npz``; from ``bstdg train`` or one run of a
  comparison): training curves, spike raster of one test sample, decision-time and
  hidden-spike histograms, threshold and latent-weight distributions -> ``report.md``;
* a comparison (``compare.json``): accuracy / time per epoch / peak memory against T, the
  histograms of all methods per T, and every run's own report -> ``compare.md``.

This module draws the figures (:mod:`bstdg.plots`) and writes the reports; what it reads is
checked in :mod:`bstdg.report_inputs`, the Markdown is written by :mod:`bstdg.report_tables`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import plots
from .errors import BstdgError
from .files import atomic_write
from .report_inputs import (check_compare, check_metrics, layered_model, parameters, read_json, read_test_outputs,
                            test_outputs)
from .report_tables import compare_markdown, run_markdown


def report(run, data_dir=None, log=print) -> dict:
    """Regenerate the figures and the Markdown report of ``run`` (see module docstring)."""
    run = Path(run)
    if not run.is_dir():
        raise BstdgError(f"{run}: no such run folder")
    for name, make in (("compare.json", compare_report), ("metrics.json", run_report)):
        if (run / name).exists():
            try:
                return make(run, data_dir, log)
            except MALFORMED as exc:  # a value of an unexpected kind that the checks let pass
                raise BstdgError(f"{run}: {name} or a file beside it is malformed "
                                 f"({type(exc).__name__}: {' '.join(str(exc).split())[:150]})") from None
    raise BstdgError(f"{run}: neither compare.json nor metrics.json found (not a bstdg run folder)")


# What formatting and plotting raise on values of the wrong kind (the last line of defence
# behind check_metrics, check_compare and check_test_outputs).
MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError)


# --- one training run ----------------------------------------------------------------------


def layer_split(times: np.ndarray, sizes) -> list:
    offsets = np.cumsum([0, *sizes[1:]])
    return [times[offsets[l]:offsets[l + 1]] for l in range(len(sizes) - 1)]


def run_report(run, data_dir=None, log=print, title: str | None = None) -> dict:
    """Figures and ``report.md`` of one training run."""
    run = Path(run)
    metrics = check_metrics(read_json(run / "metrics.json"), run / "metrics.json")
    name = title or metrics.get("method") or run.name
    t_max = metrics.get("t_max") or metrics.get("config", {}).get("t_max")
    figures, notes = {}, []
    history = metrics.get("history") or []
    if history:
        figures["training curves"] = plots.training_curves(
            history, run / "training_curves.png", f"{name}: training curves", metrics.get("batches"))
    else:
        notes.append("metrics.json has no per-epoch history: no training curves")
    layered = layered_model(run)
    if layered:  # a conv network: training curves and the metrics table only
        notes.append("a conv network (metrics.json arch): its parameter distributions and per-sample test "
                     "figures are not drawn yet (`bstdg eval RUN` prints its figures)")
    params = None if layered else parameters(run)
    if params is not None:
        weights, thresholds, latent = params
        figures["parameters"] = plots.parameter_distributions(
            weights, thresholds, run / "parameters.png",
            f"{name}: {'latent weights' if latent else 'weights'} and thresholds", latent)
    elif not layered:
        notes.append("no model file (model.npz / model_real.npz): no parameter distributions")
    outputs, why = (None, None) if layered else test_outputs(run, data_dir)
    if outputs is None:
        if why:
            notes.append(why)
    else:
        t_max = int(outputs["t_max"])
        sizes = [int(s) for s in outputs["sizes"]]
        label, pred = int(outputs["label"][0]), int(outputs["prediction"][0])
        figures["raster"] = plots.raster(
            outputs["raster_input_times"], layer_split(outputs["raster_times"], sizes), t_max,
            run / "raster.png", label, pred, int(outputs["decision_time"][0]),
            f"{name}: test sample 0")
        figures["decision times"] = plots.histograms(
            {name: outputs["decision_time"]}, run / "decision_times.png",
            "decision time (time step of the first output spike)",
            f"{name}: decision times on {len(outputs['label']):,} test samples",
            bins=np.arange(0, t_max + 2) - 0.5 if t_max <= 64 else np.linspace(0, t_max + 1, 65), t_max=t_max)
        figures["hidden spikes"] = plots.histograms(
            {name: outputs["hidden_spikes"]}, run / "hidden_spikes.png",
            "hidden spikes per sample (up to the decision)", f"{name}: hidden spikes per test sample")
    path = run / "report.md"
    atomic_write(path, run_markdown(name, metrics, figures, notes).encode())
    for note in notes:
        log(f"note: {run}: {note}")
    log(f"wrote {path} and {len(figures)} figures")
    return {"report": str(path), "figures": {k: str(v) for k, v in figures.items()}, "notes": notes}


# --- a comparison --------------------------------------------------------------------------


def compare_report(run, data_dir=None, log=print) -> dict:
    """Figures and ``compare.md`` of a ``bstdg compare`` folder (and every run's report)."""
    run = Path(run)
    summary = check_compare(read_json(run / "compare.json"), run / "compare.json")
    rows = summary["runs"]
    figures = {"accuracy, time and memory against T": plots.compare_vs_t(
        rows, run / "compare_vs_T.png", summary.get("epoch_samples"),
        f"{summary.get('dataset', '')} {'-'.join(str(s) for s in [784, *summary.get('hidden', []), 10])}: "
        f"{summary.get('epochs', 1)} epoch(s)")}
    timed = [r for r in rows if any(h.get("wall_s") is not None for h in r.get("history", []))]
    if timed:
        figures["test accuracy against training wall time"] = plots.accuracy_vs_time(
            timed, run / "accuracy_vs_time.png",
            f"{summary.get('dataset', '')}: test accuracy against cumulative training wall time")
    sub_reports = {}
    for t_max in summary["time_steps"]:
        decision, hidden = {}, {}
        for r in rows:
            if r["t_max"] != t_max:
                continue
            saved = run / Path(r["run_dir"]).name  # runs live inside the comparison folder
            if (saved / "test_outputs.npz").exists():
                z = read_test_outputs(saved / "test_outputs.npz", ("decision_time", "hidden_spikes"))
                decision[r["method"]] = z["decision_time"]
                hidden[r["method"]] = z["hidden_spikes"]
            if (saved / "metrics.json").exists():
                sub_reports[(r["method"], t_max)] = run_report(saved, data_dir, lambda *_: None,
                                                               f"{r['method']}, T={t_max}")
        if decision:
            figures[f"decision times, T={t_max}"] = plots.histograms(
                decision, run / f"decision_times_T{t_max}.png",
                "decision time (time step of the first output spike)",
                f"decision times on the test set, T={t_max}",
                bins=np.arange(0, t_max + 2) - 0.5 if t_max <= 64 else np.linspace(0, t_max + 1, 65),
                t_max=t_max)
            figures[f"hidden spikes per sample, T={t_max}"] = plots.histograms(
                hidden, run / f"hidden_spikes_T{t_max}.png", "hidden spikes per sample (up to the decision)",
                f"hidden spikes per test sample, T={t_max}")
    path = run / "compare.md"
    atomic_write(path, compare_markdown(summary, figures, sub_reports, run).encode())
    log(f"wrote {path}, {len(figures)} comparison figures and {len(sub_reports)} run reports")
    return {"report": str(path), "figures": {k: str(v) for k, v in figures.items()},
            "runs": {f"{m}@{t}": v["report"] for (m, t), v in sub_reports.items()}}
