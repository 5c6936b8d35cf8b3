"""``bstdg report RUN``: regenerate the figures and a Markdown report of a run folder from
what it saved, without retraining.

* a training run (``metrics.json``, ``model.npz``; from ``bstdg train`` or one run of a
  comparison): training curves, spike raster of one test sample, decision-time and
  hidden-spike histograms, threshold and latent-weight distributions -> ``report.md``;
* a comparison (``compare.json``): accuracy / time per epoch / peak memory against T, the
  histograms of all methods per T, and every run's own report -> ``compare.md``.

The raster and the histograms come from ``test_outputs.npz`` when the run saved one
(``bstdg compare`` does); otherwise the model is run on the test split of its dataset, which
then has to be found (``--data-dir``, ``$BSTDG_DATA``, ``./datasets``); without it those
figures are skipped and the report says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import plots
from .errors import BstdgError, DataError


def report(run, data_dir=None, log=print) -> dict:
    """Regenerate the figures and the Markdown report of ``run`` (see module docstring)."""
    run = Path(run)
    if not run.is_dir():
        raise BstdgError(f"{run}: no such run folder")
    if (run / "compare.json").exists():
        return compare_report(run, data_dir, log)
    if (run / "metrics.json").exists():
        return run_report(run, data_dir, log)
    raise BstdgError(f"{run}: neither compare.json nor metrics.json found (not a bstdg run folder)")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BstdgError(f"cannot read {path}: {exc}") from None


# --- one training run ----------------------------------------------------------------------


def test_outputs(run: Path, data_dir=None) -> tuple[dict | None, str | None]:
    """The per-sample test figures of ``run`` (saved, or computed from its model and the
    test data); ``(None, why)`` when neither is possible."""
    saved = run / "test_outputs.npz"
    if saved.exists():
        with np.load(saved, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}, None
    if not (run / "model.npz").exists():
        return None, "no test_outputs.npz and no model.npz in the run folder"
    from .data import load_events
    from .engine.event import if_network_forward
    from .evaluation import forward_decisions
    from .metrics import hidden_spikes_before_decision
    from .network import BinarySNN

    net = BinarySNN.load(run / "model.npz")
    dataset = net.meta.get("dataset")
    if not dataset:
        return None, "the model does not name its dataset"
    try:
        test = load_events(dataset, "test", net.t_max, data_dir)
    except DataError as exc:
        return None, (f"the {dataset} test split was not found ({exc}); pass --data-dir to draw "
                      f"the raster and the histograms")
    if test.events.n_units != net.sizes[0]:
        return None, f"the {dataset} test inputs have {test.events.n_units} units, the model {net.sizes[0]}"
    bn = net.binary()
    result, decision = forward_decisions(bn, test.events, "event")
    full = if_network_forward(bn, test.events.take(np.arange(1)))
    return {"decision_time": decision.time, "prediction": decision.prediction, "tie": decision.tie,
            "label": test.labels, "t_max": np.array(net.t_max), "sizes": np.array(net.sizes),
            "hidden_spikes": hidden_spikes_before_decision(result, decision, net.t_max),
            "raster_input_times": test.events.first_times(0, net.t_max),
            "raster_times": full.times[0]}, None


def layer_split(times: np.ndarray, sizes) -> list:
    offsets = np.cumsum([0, *sizes[1:]])
    return [times[offsets[l]:offsets[l + 1]] for l in range(len(sizes) - 1)]


def run_report(run, data_dir=None, log=print, title: str | None = None) -> dict:
    """Figures and ``report.md`` of one training run."""
    run = Path(run)
    metrics = read_json(run / "metrics.json")
    name = title or metrics.get("method") or run.name
    t_max = metrics.get("t_max") or metrics.get("config", {}).get("t_max")
    figures, notes = {}, []
    history = metrics.get("history") or []
    if history:
        figures["training curves"] = plots.training_curves(
            history, run / "training_curves.png", f"{name}: training curves", metrics.get("batches"))
    else:
        notes.append("metrics.json has no per-epoch history: no training curves")
    params = parameters(run)
    if params is not None:
        weights, thresholds, latent = params
        figures["parameters"] = plots.parameter_distributions(
            weights, thresholds, run / "parameters.png",
            f"{name}: {'latent weights' if latent else 'weights'} and thresholds", latent)
    else:
        notes.append("no model file (model.npz / model_real.npz): no parameter distributions")
    outputs, why = test_outputs(run, data_dir)
    if outputs is None:
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
    path.write_text(run_markdown(name, metrics, figures, notes))
    for note in notes:
        log(f"note: {run}: {note}")
    log(f"wrote {path} and {len(figures)} figures")
    return {"report": str(path), "figures": {k: str(v) for k, v in figures.items()}, "notes": notes}


def parameters(run: Path):
    """(weights per layer, thresholds per layer, latent?) from the run's model file."""
    if (run / "model.npz").exists():
        from .network import BinarySNN

        net = BinarySNN.load(run / "model.npz")
        return ([net.weight(l) for l in range(net.n_layers)],
                [net.threshold(l) for l in range(net.n_layers)], True)
    if (run / "model_real.npz").exists():
        with np.load(run / "model_real.npz", allow_pickle=False) as z:
            n = sum(1 for k in z.files if k.startswith("w"))
            return [z[f"w{l}"] for l in range(n)], [z[f"theta{l}"] for l in range(n)], False
    return None


RUN_ROWS = (
    ("test accuracy", "test_accuracy", "{:.4f}"),
    ("test ties / silent", None, None),
    ("train accuracy (running, last epoch)", "train_accuracy_running", "{:.4f}"),
    ("train accuracy (full pass after training)", "train_accuracy", "{:.4f}"),
    ("mean decision time (steps)", "mean_decision_time", "{:.1f}"),
    ("hidden spikes per sample (to the decision)", "hidden_spikes_per_sample", "{:.1f}"),
    ("training samples/s", "train_samples_per_s", "{:,.0f}"),
    ("train wall time per epoch (s)", "train_s_per_epoch", "{:.2f}"),
    ("peak training memory (MiB, RSS growth)", "peak_train_mib", "{:.1f}"),
    ("inference samples/s", "eval_samples_per_s", "{:,.0f}"),
    ("epochs", "epochs", "{}"),
)


def run_markdown(name: str, metrics: dict, figures: dict, notes: list) -> str:
    lines = [f"# {name}", ""]
    sizes = "-".join(str(s) for s in metrics.get("sizes", []))
    t_max = metrics.get("t_max") or metrics.get("config", {}).get("t_max")
    lines += [f"Dataset {metrics.get('dataset', '?')}, network {sizes}, T = t_max = {t_max}.", ""]
    lines += ["| figure | value |", "|---|---|"]
    for label, key, fmt in RUN_ROWS:
        if key is None:
            if "test_ties" in metrics:
                lines.append(f"| {label} | {metrics['test_ties']} / {metrics.get('test_silent', '?')} |")
        elif key in metrics:
            lines.append(f"| {label} | {fmt.format(metrics[key])} |")
    if "inference" in metrics:
        lines.append(f"| inference | {metrics['inference']} |")
    lines.append("")
    for title, path in figures.items():
        lines += [f"## {title}", "", f"![{title}]({Path(path).name})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


# --- a comparison --------------------------------------------------------------------------


def compare_report(run, data_dir=None, log=print) -> dict:
    """Figures and ``compare.md`` of a ``bstdg compare`` folder (and every run's report)."""
    run = Path(run)
    summary = read_json(run / "compare.json")
    rows = summary["runs"]
    figures = {"accuracy, time and memory against T": plots.compare_vs_t(
        rows, run / "compare_vs_T.png", summary.get("epoch_samples"),
        f"{summary.get('dataset', '')} {'-'.join(str(s) for s in [784, *summary.get('hidden', []), 10])}: "
        f"{summary.get('epochs', 1)} epoch(s)")}
    sub_reports = {}
    for t_max in summary["time_steps"]:
        decision, hidden = {}, {}
        for r in rows:
            if r["t_max"] != t_max:
                continue
            saved = run / Path(r["run_dir"]).name  # runs live inside the comparison folder
            if (saved / "test_outputs.npz").exists():
                with np.load(saved / "test_outputs.npz", allow_pickle=False) as z:
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
    path.write_text(compare_markdown(summary, figures, sub_reports, run))
    log(f"wrote {path}, {len(figures)} comparison figures and {len(sub_reports)} run reports")
    return {"report": str(path), "figures": {k: str(v) for k, v in figures.items()},
            "runs": {f"{m}@{t}": v["report"] for (m, t), v in sub_reports.items()}}


def compare_table(summary: dict) -> list:
    """The Markdown table of a comparison (also pasted into BENCHMARKS.md)."""
    n = summary.get("epoch_samples")
    lines = [f"| method | T | test accuracy | train time / epoch ({n:,} samples) | train samples/s | "
             f"peak training memory | hidden spikes / sample | mean decision time (steps) | "
             f"inference samples/s | synaptic ops / sample |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    dagger = False
    for r in sorted(summary["runs"], key=lambda r: (r["t_max"], summary["methods"].index(r["method"])
                                                     if r["method"] in summary["methods"] else 99)):
        star = "*" if r.get("epoch_extrapolated") else ""
        acc = f"{100 * r['test_accuracy']:.2f} %" + (f" ({r['n_train']:,} train)" if star else "")
        if "test_accuracy_untuned" in r:  # ann-convert: tuned thresholds, then the normalised ones
            acc += f" (untuned {100 * r['test_accuracy_untuned']:.2f} %)"
        name = r["method"]
        if r.get("binary_weights") is False:  # the rate-coded baselines: real weights, rate code
            name += " †"
            dagger = True
        ops = f"{r['synops_per_sample']:,.0f}" if "synops_per_sample" in r else "—"
        lines.append(
            f"| {name} | {r['t_max']} | {acc} | {r['epoch_s']:.2f} s{star} | "
            f"{r['train_samples_per_s']:,.0f} | {r['peak_train_mib']:.1f} MiB | "
            f"{r['hidden_spikes_per_sample']:.1f} | {r['mean_decision_time']:.1f} | "
            f"{r['eval_samples_per_s']:,.0f} | {ops} |")
    if dagger:
        lines += ["", "† real (not binary) weights, not required for these baselines; T = time steps "
                      "of a rate code with the analog pixel as a constant input current, all T steps "
                      "computed (see docs/baselines-quant-convert.md). Synaptic ops / sample: spikes "
                      "(events) × fan-out summed over layers and steps; BSTDG up to its early-exit "
                      "decision, the rate-coded input counted as non-zero pixels × n_1 × T "
                      "multiply-accumulates."]
    return lines


def key_figure_lines(summary: dict) -> list:
    lines = []
    for t_max, f in (summary.get("key_figures") or {}).items():
        times = ", ".join(f"{m} {x:.1f}×" for m, x in f["time_ratio"].items())
        if "cpu_time_ratio" in f:
            times += " (CPU time: " + ", ".join(f"{m} {x:.1f}×" for m, x in f["cpu_time_ratio"].items()) + ")"
        mem = ", ".join(f"{m} {x:.1f}×" if x is not None else f"{m} ∞ (BSTDG: no measurable growth)"
                        for m, x in f["memory_ratio"].items())
        gap = f["accuracy_gap_points"]
        lines.append(f"- T={t_max}: BPTT time per epoch / BSTDG: {times}; BPTT peak training memory / "
                     f"BSTDG: {mem}; BSTDG accuracy {'+' if gap >= 0 else '−'}{abs(gap):.2f} points "
                     f"vs the best BPTT variant ({f['best_bptt']}).")
    return lines


def compare_markdown(summary: dict, figures: dict, sub_reports: dict, run: Path) -> str:
    hidden = "-".join(str(s) for s in [784, *summary.get("hidden", []), 10])
    lines = [f"# Comparison on {summary.get('dataset')} ({hidden})", "",
             f"Date {summary.get('date')}, machine: {summary.get('machine')}.", "",
             f"Command: `{summary.get('command')}`", "",
             f"{summary.get('epochs')} epoch(s) per run; training samples: "
             f"{summary.get('limit_train') or 'all'} (runs marked * used fewer; their time per epoch "
             f"is extrapolated per sample); test samples: {summary.get('limit_test') or 'all'}. "
             f"Every (method, T) ran in a fresh process.", "",
             f"Peak training memory: {summary.get('memory_method')}, over the training epochs only "
             f"(not the interpreter, libraries, the encoded dataset or evaluation). Inference "
             f"samples/s: BSTDG methods on the event-driven engine with early exit, BPTT methods "
             f"as torch time-stepped over all T steps.", "",
             *compare_table(summary), ""]
    key = key_figure_lines(summary)
    if key:
        lines += ["## Key figures", "", *key, ""]
    lines += ["## Methods", ""] + [f"- `{m}`: {d}" for m, d in (summary.get("descriptions") or {}).items()]
    lines.append("")
    for title, path in figures.items():
        lines += [f"## {title}", "", f"![{title}]({Path(path).name})", ""]
    if sub_reports:
        lines += ["## Runs", ""]
        for (m, t), rep in sub_reports.items():
            rel = Path(rep["report"]).relative_to(run) if Path(rep["report"]).is_relative_to(run) else rep["report"]
            lines.append(f"- [{m}, T={t}]({rel})")
        lines.append("")
    return "\n".join(lines)
