"""How separable each Caltech front end makes Faces vs Motorbikes, for a real-valued readout.

    python benchmarks/caltech_frontends.py --data-dir ../shared/datasets
    python benchmarks/caltech_frontends.py --variants gabor:4,dog:1 --out runs/bench/caltech-frontends.json

Encodes both splits with the packaged Caltech options except ``filter`` and ``pool``
(``--variants``: ``filter:pool`` pairs), then fits an L2-regularised logistic regression
(numpy, full-batch gradient descent) on two views of the input spikes the network sees:
``latency`` = ``1 - t / t_max`` for an input that spikes at step ``t``, 0 for a silent one,
and ``fired`` = 1 / 0. Prints and writes (``--out``) 5-fold cross-validated accuracy on the
400 training images and the test accuracy of the model fitted on all of them. This is a
ceiling check of the features, not a spiking model: if a real-valued linear readout cannot
separate the classes, a binary fire-once network on the same inputs is unlikely to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bstdg.cli import existing_data_dir
from bstdg.data import load_events
from bstdg.encoding import SpikeEvents

DEFAULT_VARIANTS = (("dog", 1), ("gabor", 1), ("gabor", 2), ("gabor", 4), ("gabor", 8))


def dense_inputs(events: SpikeEvents, t_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``(latency, fired)`` views ``(B, n_units)`` of single-spike inputs."""
    latency = np.zeros((len(events), events.n_units))
    latency[events.owner(), events.units] = 1.0 - events.times / t_max
    return latency, (latency > 0).astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2=1e-3, steps=2000) -> tuple[np.ndarray, np.ndarray]:
    """An L2-regularised logistic regression on ``x`` with a constant feature appended
    (the bias), by ``steps`` of full-batch gradient descent from zero with step ``1 / L``,
    ``L = lambda_max(K) / (4 n) + l2`` the loss's smoothness. Computed in the span of the
    samples (``w = x^T alpha``, kernel ``K = x x^T + 1``), which is where gradient descent
    from zero stays: ``n x n`` work per step however many inputs. Returns ``(x, alpha)``,
    what :func:`accuracy` needs."""
    n = len(y)
    kernel = x @ x.T + 1.0
    step = 1.0 / (np.linalg.eigvalsh(kernel)[-1] / (4 * n) + l2)
    alpha = np.zeros(n)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(kernel @ alpha)))
        alpha -= step * ((p - y) / n + l2 * alpha)
    return x, alpha


def accuracy(model: tuple[np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Share of ``x`` whose score ``(x x_fit^T + 1) alpha`` has the sign of label 1."""
    x_fit, alpha = model
    return float((((x @ x_fit.T + 1.0) @ alpha > 0) == (y == 1)).mean())


def cross_validated(x: np.ndarray, y: np.ndarray, folds=5, seed=0) -> float:
    order = np.random.default_rng(seed).permutation(len(y))
    scores = []
    for k in range(folds):
        held = order[k::folds]
        fit = np.setdiff1d(order, held)
        scores.append(accuracy(fit_logistic(x[fit], y[fit]), x[held], y[held]))
    return float(np.mean(scores))


def main(variants=DEFAULT_VARIANTS, data_dir=None, t_max=256) -> dict:
    data_dir = existing_data_dir(data_dir)
    rows = []
    for kind, pool in variants:
        options = {"filter": kind, "pool": pool}
        train = load_events("caltech-face-motor", "train", t_max, data_dir, options=options)
        test = load_events("caltech-face-motor", "test", t_max, data_dir, options=options)
        row = {"filter": kind, "pool": pool, "inputs": train.events.n_units,
               "input_spikes_per_image": len(train.events.times) / len(train.labels)}
        for view, (a, b) in zip(("latency", "fired"), zip(dense_inputs(train.events, t_max),
                                                           dense_inputs(test.events, t_max))):
            row[f"{view}_cv"] = cross_validated(a, train.labels)
            row[f"{view}_test"] = accuracy(fit_logistic(a, train.labels), b, test.labels)
        rows.append(row)
        print(f"{kind:5s} pool {pool}: {row['inputs']:6d} inputs, "
              f"{row['input_spikes_per_image']:7.0f} spikes/image; latency cv "
              f"{row['latency_cv']:.3f} test {row['latency_test']:.3f}; fired cv "
              f"{row['fired_cv']:.3f} test {row['fired_test']:.3f}", flush=True)
    return {"t_max": t_max, "rows": rows}


def main_cli(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(f"{k}:{p}" for k, p in DEFAULT_VARIANTS),
                        help="comma-separated filter:pool pairs, e.g. gabor:4,dog:1")
    parser.add_argument("--data-dir", help="where the datasets are (else $BSTDG_DATA, ./datasets)")
    parser.add_argument("--out", default="runs/bench/caltech-frontends.json")
    args = parser.parse_args(argv)
    try:
        variants = [(k, int(p)) for k, p in (v.split(":") for v in args.variants.split(","))]
    except ValueError:
        parser.error(f"--variants: expected filter:pool pairs, got {args.variants!r}")
    result = main(variants, args.data_dir)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
