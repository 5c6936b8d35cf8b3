"""What a sweep writes: ``sweep.json`` (one record per trial), ``sweep.md`` (mean ± std
over the seeds per point), ``sweep.png`` and ``best.toml``.

Everything here works on plain records (dicts with ``params``, ``seed``,
``val_accuracy``, ``test_accuracy``, ``epochs``, ``wall_s``): the choice of the best point
(:func:`summarise`) reads the held-out accuracy only; the test accuracy is carried along
for the record.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..config import RULE_FIELDS, TRAIN_FIELDS, load_config, parse_toml, split
from ..errors import BstdgError
from ..files import atomic_write, write_json
from ..plots import _save, pyplot
from .sweep_spec import SweepSpec, point_label

SCHEMA = "bstdg-sweep/1"
OUTPUT_FILES = ("sweep.json", "sweep.md", "sweep.png", "best.toml")


def point_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def _mean_std(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def summarise(records: list[dict]) -> list[dict]:
    """One row per point of the finished trials: ``params``, ``seeds``, the held-out
    accuracy's ``val_mean`` / ``val_std`` (sample standard deviation over the seeds; 0 for
    one seed), the same for ``test``, mean ``epochs``, ``wall_s`` and held-out
    ``decision_time``; sorted by ``val_mean``, best first (ties: the earlier mean held-out
    decision, then the order the points first appear in). Only held-out figures decide."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        if r.get("val_accuracy") is not None:
            groups.setdefault(point_key(r["params"]), []).append(r)
    rows = []
    for order, group in enumerate(groups.values()):
        val_mean, val_std = _mean_std([r["val_accuracy"] for r in group])
        test_mean, test_std = _mean_std([r.get("test_accuracy") for r in group])
        rows.append({"params": group[0]["params"], "seeds": sorted(r["seed"] for r in group),
                     "val_mean": val_mean, "val_std": val_std, "test_mean": test_mean, "test_std": test_std,
                     "epochs": float(np.mean([r["epochs"] for r in group])),
                     "wall_s": float(np.mean([r["wall_s"] for r in group])),
                     "decision_time": _mean_std([r.get("val_decision_time") for r in group])[0],
                     "_order": order})
    inf = float("inf")
    rows.sort(key=lambda row: (-row["val_mean"], row["decision_time"] if row["decision_time"] is not None
                               else inf, row["_order"]))
    for row in rows:
        del row["_order"]
    return rows


def _pct(mean, std) -> str:
    return "—" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f} %"


def markdown(spec: SweepSpec, rows: list[dict], n_train: int, records: list[dict]) -> str:
    """The table of ``sweep.md``."""
    failed = [r for r in records if r.get("val_accuracy") is None]
    n_stopped = sum(r.get("status") == "stopped" for r in records)
    stopped = f" ({n_stopped} stopped early by the scheduler, at their last held-out score)" if n_stopped else ""
    # out of the trials the sweep file plans, so a sweep stopped early says so
    lines = [f"# Sweep of {spec.dataset} ({spec.source})", "",
             (f"{len(records) - len(failed)} of {spec.n_trials} trials ended{stopped}: {len(rows)} point(s) x "
             f"seeds {', '.join(map(str, spec.seeds))}, search {spec.search}. Each trial trains on "
             f"{n_train - spec.n_val:,} training samples and is scored on the other {spec.n_val:,} "
             f"(held out with split seed {spec.split_seed}); sorted by mean held-out accuracy. The "
             f"test accuracy of each final model is shown for the record and chose nothing."), "",
             "| # | point | seeds | held-out accuracy | test accuracy (not used) | epochs | wall s |",
             "|---|---|---|---|---|---|---|"]
    for k, row in enumerate(rows, 1):
        point = point_label(row["params"])
        lines.append(f"| {k} | {'**' + point + '**' if k == 1 else point} | {len(row['seeds'])} | "
                     f"{_pct(row['val_mean'], row['val_std'])} | {_pct(row['test_mean'], row['test_std'])} | "
                     f"{row['epochs']:g} | {row['wall_s']:.0f} |")
    if failed:
        lines += ["", (f"Failed or unfinished trials: {len(failed)} "
                  f"({'; '.join(sorted({str(r.get('error', 'unfinished')) for r in failed})[:3])}).")]
    lines += ["", "Mean ± sample standard deviation over the seeds (± 0 for one seed).", ""]
    return "\n".join(lines)


def plot(rows: list[dict], path, title: str = "") -> Path:
    """Held-out accuracy per point (mean, error bars: std over the seeds), best first."""
    plt = pyplot()
    n = len(rows)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * n + 2), 4.2))
    x = np.arange(n)
    ax.errorbar(x, [100 * r["val_mean"] for r in rows], yerr=[100 * r["val_std"] for r in rows],
                fmt="o", capsize=3, label="held-out (chooses)")
    tests = [r for r in rows if r["test_mean"] is not None]
    if tests:
        ax.plot([x[k] for k, r in enumerate(rows) if r["test_mean"] is not None],
                [100 * r["test_mean"] for r in tests], "x", color="grey", label="test (record only)")
    ax.set_xticks(x)
    ax.set_xticklabels([point_label(r["params"]) for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "sweep: held-out accuracy per point (mean ± std over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def toml_value(value) -> str:
    """A TOML literal of a plain value (bool, int, finite float, str, list of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BstdgError(f"best.toml: cannot write the non-finite value {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise BstdgError(f"best.toml: cannot write {value!r}")


def best_settings(spec: SweepSpec, params: dict) -> tuple[dict, dict]:
    """``(top-level keys, rule table)`` of ``best.toml``: the file's training settings with
    the point's values over them."""
    top = {"dataset": spec.user.dataset or spec.dataset, **spec.user.train, **spec.user.data}
    rule = dict(spec.user.rule)
    for name, value in params.items():
        value = list(value) if isinstance(value, tuple) else value
        if name in RULE_FIELDS and name not in TRAIN_FIELDS:  # as SweepSpec.trial_settings
            rule[name] = value
        else:
            top[name] = value
    if isinstance(top.get("hidden"), tuple):
        top["hidden"] = list(top["hidden"])
    return top, rule


def best_toml(spec: SweepSpec, row: dict, n_train: int) -> str:
    """The text of ``best.toml``: loadable by ``bstdg train --config`` (checked here)."""
    top, rule = best_settings(spec, row["params"])
    seeds = ", ".join(map(str, row["seeds"]))
    lines = [f"# The best point of a bstdg sweep ({spec.source}): {point_label(row['params'])}",
             (f"# held-out accuracy {_pct(row['val_mean'], row['val_std'])} over seeds {seeds}, on "
             f"{spec.n_val} of {n_train} training samples"),
             (f"# (trained on the other {n_train - spec.n_val}); test {_pct(row['test_mean'], row['test_std'])}, "
             f"not used for the choice."),
             "# Train it on the whole training split: bstdg train --config best.toml --out RUN"]
    if spec.limit_train is not None:
        lines.append(f"# The sweep used limit_train = {spec.limit_train}: add --limit-train "
                     f"{spec.limit_train} to train as the sweep did.")
    lines += [f"{k} = {toml_value(v)}" for k, v in top.items()]
    if rule:
        lines += ["", "[rule]"] + [f"{k} = {toml_value(v)}" for k, v in rule.items()]
    text = "\n".join(lines) + "\n"
    split(parse_toml(text.encode(), "best.toml"), "best.toml")  # it must load as a config
    return text


def write_outputs(out, spec: SweepSpec, records: list[dict], n_train: int, extra: dict | None = None
                  ) -> dict:
    """Write ``sweep.json``, ``sweep.md`` and, once a trial has finished, ``sweep.png`` and
    ``best.toml`` into ``out``; returns the ``sweep.json`` object."""
    out = Path(out)
    rows = summarise(records)
    result = {"schema": SCHEMA, "spec": spec.to_dict(), "n_train": n_train, "n_fit": n_train - spec.n_val,
              **(extra or {}), "trials": records, "points": rows, "best": rows[0] if rows else None}
    write_json(out / "sweep.json", result)
    atomic_write(out / "sweep.md", markdown(spec, rows, n_train, records).encode())
    if not rows:
        return result
    plot(rows, out / "sweep.png", f"{spec.dataset}: held-out accuracy per point (mean ± std over seeds)")
    atomic_write(out / "best.toml", best_toml(spec, rows[0], n_train).encode())
    load_config(out / "best.toml")
    return result
