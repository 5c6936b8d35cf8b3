"""MNIST 784-600-10: the two rate-coded baselines at T = 2, 4, 8, 16, 32 time steps, next to a
trained BSTDG model (single spike, binary weights), with synaptic operations per sample.

    python benchmarks/quant_convert.py --data-dir /path/to/datasets --epochs 5
    python benchmarks/quant_convert.py --steps 2,8 --limit-train 5000 --limit-test 2000 --epochs 1

* ``quant-threshold``: one IF network per T, trained directly with a trainable threshold
  (the quantization step); ``ann-convert``: one ReLU ANN, converted to IF with normalised
  thresholds and with thresholds tuned per T (:mod:`bstdg.baselines`);
* both take the analog pixel as a constant input current over T steps; real weights;
* BSTDG: ``--bstdg-run`` (a ``bstdg train`` folder; default ``runs/bench-accuracy/bstdg``,
  skipped if absent), evaluated on the event engine with early exit.

Writes ``--out`` (default ``runs/quant-convert.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from bstdg.baselines import ann_convert, quant_threshold, ratecode


def int_list(text: str) -> tuple:
    return tuple(int(v) for v in text.split(",") if v)


def bstdg_reference(run_dir, data_dir, limit_test) -> dict | None:
    from bstdg.runs import load_model
    from bstdg.data import load_events

    path = Path(run_dir)
    if not (path / "model.npz").is_file() and not path.is_file():
        print(f"(no BSTDG model at {run_dir}: BSTDG row skipped)")
        return None
    net, dataset = load_model(path)
    options = (net.meta.get("encoder") or {}).get("options")
    test = load_events(dataset, "test", net.t_max, data_dir, limit_test, options=options)
    out = {"run": str(run_dir), "dataset": dataset}
    for early in (True, False):
        out["early_exit" if early else "full"] = ratecode.bstdg_figures(
            net, test.events, test.labels, early)
    return out


def main(steps, epochs: int, hidden=(600,), seed: int = 0, data_dir=None, limit_train=None,
         limit_test=None, methods=("quant-threshold", "ann-convert"), v0: float = 0.5,
         bstdg_run="runs/bench-accuracy/bstdg", out="runs/quant-convert.json",
         threads: int | None = None, qt_epochs=None) -> dict:
    x_train, y_train = ratecode.load_analog("mnist", "train", data_dir, limit_train)
    x_test, y_test = ratecode.load_analog("mnist", "test", data_dir, limit_test)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    results = {}
    data = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    if "quant-threshold" in methods:
        cfg = quant_threshold.QuantThresholdConfig(hidden=tuple(hidden), epochs=qt_epochs or epochs,
                                                   v0=v0, seed=seed)
        start = time.perf_counter()
        results["quant-threshold"] = quant_threshold.run(steps, config=cfg, log=log,
                                                         threads=threads, **data)
        results["quant-threshold"]["total_wall_s"] = time.perf_counter() - start
    if "ann-convert" in methods:
        cfg = ann_convert.ANNConvertConfig(hidden=tuple(hidden), epochs=epochs, v0=v0, seed=seed)
        start = time.perf_counter()
        results["ann-convert"] = ann_convert.run(steps, config=cfg, log=log, threads=threads, **data)
        results["ann-convert"]["total_wall_s"] = time.perf_counter() - start
    if bstdg_run:
        ref = bstdg_reference(bstdg_run, data_dir, limit_test)
        if ref:
            results["bstdg"] = ref
    summary = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
               "command": " ".join(sys.argv), "steps": list(steps),
               "n_train": len(x_train), "n_test": len(x_test), "results": results}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=float))
    print()
    print(table(summary))
    print(f"\nwritten to {out}")
    return summary


def table(summary: dict) -> str:
    """Markdown table: one row per method and T."""
    res = summary["results"]
    lines = ["| method | T (steps) | test accuracy | synaptic ops / sample (input + hidden) "
             "| hidden spikes / sample | thresholds |",
             "|---|---|---|---|---|---|"]

    def ops(r):
        return f"{r['synops_per_sample']:,.0f} ({r['synops_input']:,.0f} + {r['synops_hidden']:,.0f})"

    if "bstdg" in res:
        for key, label in (("early_exit", "bstdg (early exit)"), ("full", "bstdg (no early exit)")):
            r = res["bstdg"][key]
            lines.append(f"| {label} | single spike, t_max {r['t_max']} (decision at "
                         f"{r['mean_decision_time']:.1f}) | {100 * r['test_accuracy']:.2f} % | "
                         f"{ops(r)} | {r['hidden_spikes_per_sample']:.1f} | integer |")
    if "quant-threshold" in res:
        for r in res["quant-threshold"]["rows"]:
            th = ", ".join(f"{l['theta']:.3f}" for l in r["layers"])
            lines.append(f"| quant-threshold | {r['t_steps']} | {100 * r['test_accuracy']:.2f} % | "
                         f"{ops(r)} | {r['hidden_spikes_per_sample']:.1f} | {th} (trained) |")
    if "ann-convert" in res:
        a = res["ann-convert"]
        lines.append(f"| ANN (ReLU, source of ann-convert) | — | {100 * a['ann_test_accuracy']:.2f} % "
                     f"| — | — | — |")
        for r in a["rows"]:
            u = r["untuned"]
            th_u = ", ".join(f"{l['theta']:.3f}" for l in u["layers"])
            th_t = ", ".join(f"{l['theta']:.3f}" for l in r["layers"])
            lines.append(f"| ann-convert, normalised θ | {r['t_steps']} | "
                         f"{100 * u['test_accuracy']:.2f} % | {ops(u)} | "
                         f"{u['hidden_spikes_per_sample']:.1f} | {th_u} |")
            lines.append(f"| ann-convert, tuned θ | {r['t_steps']} | {100 * r['test_accuracy']:.2f} % "
                         f"| {ops(r)} | {r['hidden_spikes_per_sample']:.1f} | {th_t} |")
    return "\n".join(lines)


def error_table(summary: dict) -> str:
    """Markdown table of the per-layer errors (hidden layer 1) against T."""
    res = summary["results"]
    lines = ["| method | T | θ | quantization error | clipping error | conversion error (vs ANN) |",
             "|---|---|---|---|---|---|"]
    for r in res.get("quant-threshold", {}).get("rows", []):
        l = r["layers"][0]
        lines.append(f"| quant-threshold | {r['t_steps']} | {l['theta']:.3f} | "
                     f"{l['quantization_error']:.4f} | {l['clipping_error']:.4f} | — |")
    for r in res.get("ann-convert", {}).get("rows", []):
        for label, row in (("normalised", r["untuned"]), ("tuned", r)):
            l = row["layers"][0]
            lines.append(f"| ann-convert, {label} | {r['t_steps']} | {l['theta']:.3f} | "
                         f"{l['quantization_error']:.4f} | {l['clipping_error']:.4f} | "
                         f"{l['conversion_error']:.4f} |")
    return "\n".join(lines)


def main_cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int_list, default=(2, 4, 8, 16, 32),
                   help="time steps T of the rate code, comma-separated (default 2,4,8,16,32)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (ANN and quant-threshold)")
    p.add_argument("--qt-epochs", type=int, help="quant-threshold epochs (default: --epochs)")
    p.add_argument("--hidden", type=int_list, default=(600,))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--v0", type=float, default=0.5,
                   help="initial potential as a fraction of the threshold (0.5 rounds, 0 floors)")
    p.add_argument("--data-dir")
    p.add_argument("--limit-train", type=int)
    p.add_argument("--limit-test", type=int)
    p.add_argument("--methods", default="quant-threshold,ann-convert")
    p.add_argument("--bstdg-run", default="runs/bench-accuracy/bstdg",
                   help="a bstdg train folder for the BSTDG row ('' to skip)")
    p.add_argument("--threads", type=int, help="torch threads (default 1)")
    p.add_argument("--out", default="runs/quant-convert.json")
    p.add_argument("--errors", action="store_true", help="also print the per-layer error table")
    a = p.parse_args(argv)
    summary = main(a.steps, a.epochs, a.hidden, a.seed, a.data_dir, a.limit_train, a.limit_test,
                   tuple(m for m in a.methods.split(",") if m), a.v0, a.bstdg_run, a.out,
                   a.threads, a.qt_epochs)
    if a.errors:
        print()
        print(error_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
