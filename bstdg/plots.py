"""Figures of a training run and of a comparison (matplotlib, Agg backend, imported lazily).

Every function takes plain arrays or dicts (what ``metrics.json``, ``compare.json`` and
``test_outputs.npz`` hold), writes one PNG and returns its path; nothing here trains or
loads data. :mod:`bstdg.report` decides what to draw for a run folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .errors import BstdgError
from .files import atomic_write

DPI = 110


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend; BstdgError when matplotlib is missing."""
    try:
        import matplotlib  # heavy, and optional for figures: the plot extra
    except ImportError:
        raise BstdgError("plots need matplotlib: pip install matplotlib (the 'plot' extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # (as above)
    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format=path.suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return atomic_write(path, buf.getvalue())


def training_curves(history: list, path, title: str = "", batches=None) -> Path:
    """Loss (when logged) and train/test accuracy per epoch; ``batches`` (rows of
    ``[epoch position, loss, accuracy]``, one per mini-batch) adds the within-epoch curves."""
    plt = pyplot()
    has_loss = any("loss" in h for h in history) or (batches is not None and len(batches))
    fig, axes = plt.subplots(1, 2 if has_loss else 1, figsize=(10 if has_loss else 5.5, 3.8))
    axes = np.atleast_1d(axes)
    ax = axes[-1]
    epochs = [h["epoch"] for h in history]
    if batches is not None and len(batches):
        b = np.asarray(batches, float)
        ax.plot(b[:, 0], smooth(b[:, 2]), color="tab:blue", alpha=0.35, lw=1,
                label="train accuracy (mini-batch, smoothed)")
    ax.plot(epochs, [h.get("train_accuracy_running", np.nan) for h in history], "o-",
            color="tab:blue", label="train accuracy (running, per epoch)")
    ax.plot(epochs, [h.get("test_accuracy", np.nan) for h in history], "s-", color="tab:orange",
            label="test accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if has_loss:
        ax = axes[0]
        if batches is not None and len(batches):
            ax.plot(b[:, 0], smooth(b[:, 1]), color="tab:red", alpha=0.35, lw=1,
                    label="mini-batch (smoothed)")
        if any("loss" in h for h in history):
            ax.plot(epochs, [h.get("loss", np.nan) for h in history], "o-", color="tab:red",
                    label="epoch mean")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "training curves")
    return _save(fig, path)


def smooth(y: np.ndarray, width: int = 10) -> np.ndarray:
    """Moving average (shorter at the start) of ``y``."""
    y = np.asarray(y, float)
    if len(y) < 2:
        return y
    c = np.cumsum(np.r_[0.0, y])
    lo = np.maximum(np.arange(len(y)) + 1 - width, 0)
    return (c[np.arange(len(y)) + 1] - c[lo]) / (np.arange(len(y)) + 1 - lo)


def raster(input_times: np.ndarray, layer_times: list, t_max: int, path, label=None,
           prediction=None, decision_time=None, title: str = "") -> Path:
    """Spike raster of one sample through every layer: input, hidden layers, output
    (one panel each, time on the x axis), with the decision time marked."""
    plt = pyplot()
    panels = [("input", np.asarray(input_times))] + [
        (f"hidden {l + 1}" if l < len(layer_times) - 1 else "output", np.asarray(t))
        for l, t in enumerate(layer_times)]
    heights = [3, *([2] * (len(panels) - 2)), 1.2]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.6 + 1.3 * sum(heights) / 2), sharex=True,
                             gridspec_kw={"height_ratios": heights})
    for ax, (name, times) in zip(axes, panels):
        fired = np.flatnonzero(times < t_max)
        ax.scatter(times[fired], fired, s=4 if name != "output" else 30, marker="|" if name != "output" else "o",
                   color="k" if name != "output" else "tab:red")
        ax.set_ylabel(f"{name}\n({len(fired)}/{len(times)})", fontsize=8)
        ax.set_ylim(-0.5, len(times) - 0.5)
        if name == "output":
            ax.set_yticks(range(len(times)))
            ax.tick_params(axis="y", labelsize=6)
            if label is not None and label < len(times):
                ax.axhline(label, color="tab:green", lw=0.8, alpha=0.6)
        if decision_time is not None and decision_time < t_max:
            ax.axvline(decision_time, color="tab:red", ls="--", lw=0.8)
    axes[-1].set_xlim(-0.5, t_max - 0.5)
    axes[-1].set_xlabel("time step")
    head = title or "spike raster of one test sample"
    if label is not None:
        head += f" — label {label}, predicted {prediction}, decision at step {decision_time}"
    fig.suptitle(head, fontsize=10)
    return _save(fig, path)


def histograms(series: dict, path, xlabel: str, title: str, bins=None, t_max=None) -> Path:
    """One histogram per entry of ``series`` (name -> values), overlaid as step outlines
    (a single series is filled), with each mean in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    all_values = np.concatenate([np.asarray(v, float) for v in series.values()]) if series else np.zeros(1)
    if bins is None:
        hi = max(float(all_values.max()), 1.0)
        bins = np.linspace(0, hi + 1, min(60, int(hi) + 2))
    for name, values in series.items():
        values = np.asarray(values, float)
        counts, edges = np.histogram(values, bins=bins)
        kw = dict(fill=True, alpha=0.7) if len(series) == 1 else dict(lw=1.5)
        ax.stairs(counts, edges, label=f"{name} (mean {values.mean():.1f})", **kw)
    if t_max is not None:
        ax.axvline(t_max, color="gray", ls=":", lw=1)
        ax.text(t_max, ax.get_ylim()[1] * 0.95, " no output spike ", ha="right", va="top",
                fontsize=7, color="gray")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def parameter_distributions(weights: list, thresholds: list, path, title: str = "",
                            latent: bool = True) -> Path:
    """Histograms of the latent (or real) weights and of the thresholds, one row per layer."""
    plt = pyplot()
    n = len(weights)
    fig, axes = plt.subplots(n, 2, figsize=(10, 2.6 * n + 0.6), squeeze=False)
    for l, (w, th) in enumerate(zip(weights, thresholds)):
        w = np.asarray(w, float).ravel()
        ax = axes[l, 0]
        counts, edges = np.histogram(w, bins=100)
        ax.stairs(counts, edges, fill=True, color="tab:blue")  # one polygon: fast
        pos = (w >= 0).mean()
        ax.set_title(f"layer {l + 1}: {'latent ' if latent else ''}weights ({w.size:,}; "
                     f"{100 * pos:.1f} % give +1)" if latent else f"layer {l + 1}: weights ({w.size:,})",
                     fontsize=9)
        ax.grid(alpha=0.3)
        th = np.asarray(th, float).ravel()
        ax = axes[l, 1]
        lo, hi = np.floor(th.min()), np.ceil(th.max())
        counts, edges = np.histogram(th, bins=np.arange(lo, hi + 2) - 0.5 if hi - lo < 80 else 60)
        ax.stairs(counts, edges, fill=True, color="tab:purple")
        ax.set_title(f"layer {l + 1}: thresholds (mean {th.mean():.1f}, "
                     f"range {th.min():.0f}–{th.max():.0f})", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "parameter distributions")
    return _save(fig, path)


COMPARE_PANELS = (
    ("test_accuracy", "test accuracy", False),
    ("epoch_s", "train wall time per epoch (s)", True),
    ("peak_train_mib", "peak training memory (MiB, RSS growth)", True),
    ("synops_per_sample", "synaptic operations / test sample", True),
)


def compare_vs_t(rows: list, path, n_epoch: int | None = None, title: str = "") -> Path:
    """Accuracy, time per epoch and peak training memory against T, one line per method."""
    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, ScalarFormatter  # heavy and optional, as in pyplot()
    fig, axes = plt.subplots(1, len(COMPARE_PANELS), figsize=(5 * len(COMPARE_PANELS), 4.2))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    markers = "osD^v<>p*h"
    for k, m in enumerate(methods):
        mine = sorted((r for r in rows if r["method"] == m), key=lambda r: r["t_max"])
        ts = [r["t_max"] for r in mine]
        for ax, (key, label, log) in zip(axes, COMPARE_PANELS):
            ax.plot(ts, [r.get(key, np.nan) for r in mine], marker=markers[k % len(markers)], label=m)
    for ax, (key, label, log) in zip(axes, COMPARE_PANELS):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["t_max"] for r in rows}))
        ax.get_xaxis().set_major_formatter(ScalarFormatter())
        ax.set_xlabel("T (time steps)")
        values = [r.get(key) for r in rows]
        if log and all(v is not None and v > 0 for v in values):  # a zero cannot be drawn on a log axis
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        if key == "epoch_s" and n_epoch:
            label = f"train wall time per epoch of {n_epoch:,} samples (s)"
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title or "accuracy, time and memory against T")
    return _save(fig, path)


def accuracy_vs_time(rows: list, path, title: str = "", levels=(0.95, 0.97)) -> Path:
    """Test accuracy after each epoch against the cumulative training wall time (log
    scale), one line per (method, T): colour per method, marker per T; the held-out-selected
    epoch of each run is circled, ``levels`` are dotted lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    steps = sorted({r["t_max"] for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>p*h"
    for r in rows:
        pts = [(h["wall_s"], h["test_accuracy"], h["epoch"]) for h in r.get("history", [])
               if h.get("wall_s") is not None and h.get("test_accuracy") is not None]
        if not pts:
            continue
        x, y, epochs = (np.asarray(v, float) for v in zip(*pts))
        colour = colours[methods.index(r["method"]) % len(colours)]
        marker = markers[steps.index(r["t_max"]) % len(markers)]
        label = f"{r['method']}, T={r['t_max']}" + (" (budgeted)" if r.get("budgeted") else "")
        ax.plot(x, y, marker=marker, color=colour, ms=4, lw=1.2, label=label,
                ls="--" if r.get("budgeted") else "-")
        chosen = epochs == r.get("selected_epoch")
        if chosen.any():
            ax.plot(x[chosen], y[chosen], "o", ms=11, mfc="none", mec=colour, mew=1.5)
    for level in levels:
        ax.axhline(level, color="gray", ls=":", lw=0.8)
        ax.text(0.005, level, f"{100 * level:g} %", va="bottom", fontsize=7, color="gray",
                transform=ax.get_yaxis_transform())  # x: axes fraction, y: accuracy
    if all(h.get("wall_s", 0) > 0 for r in rows for h in r.get("history", []) if h.get("wall_s") is not None):
        ax.set_xscale("log")
    ax.set_xlabel("cumulative training wall time (s)")
    ax.set_ylabel("test accuracy")
    lo = min((h["test_accuracy"] for r in rows for h in r.get("history", [])
              if h.get("test_accuracy") is not None), default=0.0)
    ax.set_ylim(max(0.0, min(lo, 0.9) - 0.02), 1.0)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2 if len(rows) > 6 else 1, loc="lower right")
    ax.set_title(title or "test accuracy against training wall time (circled: held-out-selected epoch)",
                 fontsize=10)
    return _save(fig, path)
