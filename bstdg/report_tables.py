"""The Markdown of ``bstdg report``: the figures table and ``report.md`` of one training run,
the tables and ``compare.md`` of a comparison (text only, from the values in ``metrics.json``
and ``compare.json``; the figures are drawn by :mod:`bstdg.plots`, the files written by
:mod:`bstdg.report`).
"""

from __future__ import annotations

from pathlib import Path


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


def _seconds(s) -> str:
    if s is None:
        return "—"
    return f"{s:,.0f} s" if s >= 100 else f"{s:.1f} s"


def convergence_table(summary: dict) -> list:
    """Per (method, T): how the run stopped, the held-out-selected epoch and accuracy, the
    training wall time to 90 / 95 / 97 % test accuracy, the total training time, the time
    per epoch and the peak training memory (from each run's history and
    :func:`bstdg.methods.time_to_accuracy`)."""
    from .methods import time_to_accuracy  # heavy: methods loads the data registry (tqdm)

    levels = (0.90, 0.95, 0.97)
    lines = ["| method | T | device | epochs trained | stopped by | selected epoch | held-out accuracy | "
             "test accuracy (selected) | time to 90 % | time to 95 % | time to 97 % | total train time | "
             "time / epoch | peak training memory |", "|---" * 14 + "|"]
    for r in sorted(summary["runs"], key=lambda r: (r["t_max"], summary["methods"].index(r["method"])
                                                     if r["method"] in summary["methods"] else 99)):
        history = r.get("history") or []
        tta = time_to_accuracy(history, levels)
        val = r.get("selected_val_accuracy")
        stopped = r.get("stopped_by") or "—"
        if stopped == "budget":
            stopped = "**budget** (not converged)"
        elif stopped == "max_epochs":
            stopped = "max epochs (not converged)" if summary.get("until_converged") else "fixed epochs"
        total = history[-1].get("wall_s") if history else r.get("train_wall_s")
        lines.append(
            f"| {r['method']} | {r['t_max']} | {r.get('device', 'cpu')} | {len(history) or r.get('epochs', '?')} | "
            f"{stopped} | {r.get('selected_epoch') or '—'} | "
            f"{f'{100 * val:.2f} %' if val is not None else '—'} | {100 * r['test_accuracy']:.2f} % | "
            + " | ".join(_seconds(tta[f"time_to_{round(100 * x)}"]) for x in levels)
            + f" | {_seconds(total)} | {_seconds(r.get('train_s_per_epoch'))} | "
            f"{r['peak_train_mib']:.1f} MiB" + (f" (GPU {r['gpu_peak_train_mib']:.0f} MiB)"
                                                if r.get("gpu_peak_train_mib") is not None else "") + " |")
    lines += ["", "Time to X %: cumulative training wall time (the meter's, evaluation excluded) up to the "
                  "end of the first epoch whose test accuracy is at least X (— : never reached). Test "
                  "accuracy (selected): the test accuracy of the epoch with the best held-out accuracy "
                  "(the last epoch without a held-out split); the test split chooses nothing."]
    return lines


def key_figure_lines(summary: dict) -> list:
    lines = []
    for t_max, f in (summary.get("key_figures") or {}).items():
        tta = f.get("time_to_accuracy") or {}
        if tta:
            lines.append(f"- T={t_max}: time to 95 % / 97 % test accuracy: " + "; ".join(
                f"{m} {_seconds(x.get('time_to_95'))} / {_seconds(x.get('time_to_97'))} "
                f"(best {100 * x['best_accuracy']:.2f} %{', budgeted' if x.get('budgeted') else ''})"
                for m, x in tta.items()) + ".")
        if "time_ratio" not in f:
            continue
        times = ", ".join(f"{m} {x:.1f}×" for m, x in f["time_ratio"].items())
        if "cpu_time_ratio" in f:
            times += " (CPU time: " + ", ".join(f"{m} {x:.1f}×" for m, x in f["cpu_time_ratio"].items()) + ")"
        mem = ", ".join(f"{m} {x:.1f}×" if x is not None else f"{m} ∞ (BSTDG: no measurable growth)"
                        for m, x in f["memory_ratio"].items())
        gap = f["accuracy_gap_points"]
        lines.append(f"- T={t_max}: BPTT time per epoch / BSTDG: {times}; BPTT peak training memory / "
                     f"BSTDG: {mem}; BSTDG accuracy {'+' if gap >= 0 else '−'}{abs(gap):.2f} points "
                     f"vs the best BPTT-trained method ({f['best_bptt']}).")
    return lines


def compare_markdown(summary: dict, figures: dict, sub_reports: dict, run: Path) -> str:
    layers = summary["arch"].split(",") if summary.get("arch") else summary.get("hidden", [])
    hidden = "-".join(str(s) for s in [784, *layers, 10])
    lines = [f"# Comparison on {summary.get('dataset')} ({hidden})", "",
             f"Date {summary.get('date')}, machine: {summary.get('machine')}.", "",
             f"Command: `{summary.get('command')}`", "",
             (f"Trained until converged: held-out split of {summary.get('n_val') or 0:,} "
              f"training samples (fixed seed, the same for every method), stop after "
              f"{summary.get('patience')} epochs without a better held-out accuracy, at most "
              f"{summary.get('epochs')} epochs" + (f", training wall-time budget {summary['budget_s']:,.0f} s"
                                                    if summary.get("budget_s") else "") + "; "
              if summary.get("until_converged") else f"{summary.get('epochs')} epoch(s) per run; ")
             + f"training samples: "
             f"{summary.get('limit_train') or 'all'} (runs marked * used fewer; their time per epoch "
             f"is extrapolated per sample); test samples: {summary.get('limit_test') or 'all'}. "
             f"Every (method, T) ran in a fresh process.", "",
             f"Peak training memory: {summary.get('memory_method')}, over the training epochs only "
             f"(not the interpreter, libraries, the encoded dataset or evaluation). Inference "
             f"samples/s: BSTDG methods on the event-driven engine with early exit, BPTT methods "
             f"as torch time-stepped over all T steps.", "",
             *compare_table(summary), "",
             "## Accuracy against training time", "", *convergence_table(summary), ""]
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
