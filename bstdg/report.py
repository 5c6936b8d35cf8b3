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
from .files import atomic_write


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


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; BstdgError (one line) when unreadable, not UTF-8, not
    JSON or not an object."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise BstdgError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BstdgError(f"{path}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(value, dict):
        raise BstdgError(f"{path}: must hold a JSON object, found {type(value).__name__}")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(ok: bool, path: Path, what: str) -> None:
    if not ok:
        raise BstdgError(f"{path}: {what} (malformed file)")


def check_metrics(metrics: dict, path: Path) -> dict:
    """BstdgError unless the fields of ``metrics.json`` that the report uses have the right
    kinds: ``history`` a list of objects with a numeric ``epoch``, ``batches`` rows of 3
    numbers, the figures of the table numbers, ``t_max`` an integer, ``config`` an object."""
    history = metrics.get("history")
    _require(history is None or (isinstance(history, list) and all(
        isinstance(h, dict) and _is_number(h.get("epoch")) and
        all(_is_number(h[k]) for k in ("train_accuracy_running", "test_accuracy", "loss") if k in h)
        for h in history)), path, "'history' must be a list of objects with a numeric 'epoch'")
    batches = metrics.get("batches")
    _require(batches is None or (isinstance(batches, list) and all(
        isinstance(b, list) and len(b) == 3 and all(_is_number(v) for v in b) for b in batches)),
        path, "'batches' must be a list of [position, loss, accuracy] rows")
    for _, key, _ in RUN_ROWS:
        _require(key is None or key not in metrics or _is_number(metrics[key]), path,
                 f"{key!r} must be a number")
    _require(isinstance(metrics.get("config", {}), dict), path, "'config' must be an object")
    t_max = metrics.get("t_max") or metrics.get("config", {}).get("t_max")
    _require(t_max is None or (isinstance(t_max, int) and not isinstance(t_max, bool)), path,
             "'t_max' must be an integer")
    _require(isinstance(metrics.get("sizes", []), list), path, "'sizes' must be a list")
    _require(isinstance(metrics.get("method", ""), (str, type(None))), path, "'method' must be text")
    return metrics


RUN_NUMBERS = ("test_accuracy", "epoch_s", "train_samples_per_s", "peak_train_mib",
               "hidden_spikes_per_sample", "mean_decision_time", "eval_samples_per_s")


def check_compare(summary: dict, path: Path) -> dict:
    """BstdgError unless ``compare.json`` has ``runs`` (objects with ``method``, ``t_max``,
    ``run_dir`` and the numeric figures of the table) and ``time_steps`` (integers)."""
    runs, steps = summary.get("runs"), summary.get("time_steps")
    _require(isinstance(runs, list) and all(isinstance(r, dict) for r in runs), path,
             "'runs' must be a list of objects")
    _require(isinstance(steps, list) and all(isinstance(t, int) and not isinstance(t, bool) and t > 0
                                             for t in steps), path,
             "'time_steps' must be a list of positive integers")
    _require(isinstance(summary.get("methods", []), list), path, "'methods' must be a list")
    _require(isinstance(summary.get("hidden", []), list), path, "'hidden' must be a list")
    _require(_is_number(summary.get("epoch_samples", 0)), path, "'epoch_samples' must be a number")
    for i, r in enumerate(runs):
        history = r.get("history", [])
        _require(isinstance(history, list) and all(
            isinstance(h, dict) and all(_is_number(h.get(k)) for k in ("epoch", "test_accuracy"))
            and all(h.get(k) is None or _is_number(h[k]) for k in ("wall_s", "val_accuracy"))
            for h in history), path,
            f"run {i}: 'history' must be a list of objects with a numeric 'epoch' and 'test_accuracy'")
        _require(isinstance(r.get("method"), str) and isinstance(r.get("run_dir"), str)
                 and isinstance(r.get("t_max"), int) and not isinstance(r.get("t_max"), bool), path,
                 f"run {i} needs a 'method', a 'run_dir' and an integer 't_max'")
        _require(all(_is_number(r.get(k)) for k in RUN_NUMBERS), path,
                 f"run {i} needs the numbers {', '.join(RUN_NUMBERS)}")
    return summary


# --- one training run ----------------------------------------------------------------------


def test_outputs(run: Path, data_dir=None) -> tuple[dict | None, str | None]:
    """The per-sample test figures of ``run`` (saved, or computed from its model and the
    test data); ``(None, why)`` when neither is possible."""
    saved = run / "test_outputs.npz"
    if saved.exists():
        return read_test_outputs(saved), None
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


def read_test_outputs(path: Path, keys=None) -> dict:
    """The arrays of a ``test_outputs.npz`` (see :func:`bstdg.compare.save_test_outputs`),
    checked: per-sample 1-d arrays of one length N >= 1, ``t_max`` an integer in 2..2^24,
    ``sizes`` positive integers, ``raster_times`` one time per neuron; no pickles
    (:func:`bstdg.npzio.read_arrays`). ``keys``: only these are required (default: all)."""
    from .limits import T_MAX_LIMIT
    from .npzio import read_arrays, scalar

    z = read_arrays(path, "test outputs file")
    per_sample = ("decision_time", "prediction", "tie", "label", "hidden_spikes")
    wanted = keys or per_sample + ("t_max", "sizes", "raster_input_times", "raster_times")
    missing = [k for k in wanted if k not in z]
    _require(not missing, path, f"no {', '.join(missing)}")
    lengths = {len(z[k]) if z[k].ndim == 1 else -1 for k in per_sample if k in wanted}
    _require(len(lengths) <= 1 and -1 not in lengths and 0 not in lengths, path,
             f"{', '.join(k for k in per_sample if k in wanted)} must be 1-d arrays of one length >= 1")
    _require(all(z[k].dtype.kind in "iub" for k in wanted if k != "t_max"), path,
             "the arrays must hold integers")
    if "t_max" in wanted:
        t_max = scalar(z, "t_max", "int", str(path))
        _require(2 <= t_max <= T_MAX_LIMIT, path, f"t_max {t_max} is out of range (2..{T_MAX_LIMIT})")
    if "sizes" in wanted:
        sizes = z["sizes"]
        _require(sizes.ndim == 1 and len(sizes) >= 2 and (sizes >= 1).all(), path,
                 "'sizes' must be 2 or more positive integers")
        if "raster_times" in wanted:
            _require(z["raster_times"].shape == (int(sizes[1:].sum()),), path,
                     "'raster_times' must hold one time per neuron")
    return z


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
    layered = _layered_model(run)
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


def _layered_model(run: Path) -> bool:
    """``run/model.npz`` holds a conv network (format ``bstdg-layered-model``)."""
    from .convnet import FORMAT
    from .runs import model_format

    return (run / "model.npz").is_file() and model_format(run / "model.npz") == FORMAT


def parameters(run: Path):
    """(weights per layer, thresholds per layer, latent?) from the run's model file."""
    if (run / "model.npz").exists():
        from .network import BinarySNN

        net = BinarySNN.load(run / "model.npz")
        return ([net.weight(l) for l in range(net.n_layers)],
                [net.threshold(l) for l in range(net.n_layers)], True)
    if (run / "model_real.npz").exists():
        from .npzio import read_arrays

        path = run / "model_real.npz"
        z = read_arrays(path, "model file")
        n = sum(1 for k in z if k.startswith("w"))
        layers = [(z.get(f"w{l}"), z.get(f"theta{l}")) for l in range(n)]
        _require(n > 0 and all(w is not None and th is not None and w.dtype.kind == "f" == th.dtype.kind
                               and np.isfinite(w).all() and np.isfinite(th).all() for w, th in layers),
                 path, "needs finite real arrays w0, theta0, w1, theta1, ...")
        return [w for w, _ in layers], [th for _, th in layers], False
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
    from .methods import time_to_accuracy

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
