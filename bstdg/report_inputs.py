"""What ``bstdg report`` reads from a run folder, checked: ``metrics.json`` and ``compare.json``
(kinds of the fields the report uses), ``test_outputs.npz``, the model file's parameters.

The raster and the histograms come from ``test_outputs.npz`` when the run saved one
(``bstdg compare`` does); otherwise the model is run on the test split of its dataset, which
then has to be found (``--data-dir``, ``$BSTDG_DATA``, ``./datasets``); without it those
figures are skipped and the report says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import BstdgError, DataError
from .limits import T_MAX_LIMIT
from .metrics import hidden_spikes_before_decision
from .npzio import read_arrays, scalar
from .report_tables import RUN_ROWS


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
    # heavy: the engine (Numba) and the data registry (tqdm), only when nothing was saved
    from .data import load_events
    from .engine.event import if_network_forward
    from .evaluation import forward_decisions
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


def layered_model(run: Path) -> bool:
    """``run/model.npz`` holds a conv network (format ``bstdg-layered-model``)."""
    from .convnet import FORMAT  # heavy: the engine (Numba)
    from .runs import model_format

    return (run / "model.npz").is_file() and model_format(run / "model.npz") == FORMAT


def parameters(run: Path):
    """(weights per layer, thresholds per layer, latent?) from the run's model file."""
    if (run / "model.npz").exists():
        from .network import BinarySNN  # heavy: the engine (Numba)

        net = BinarySNN.load(run / "model.npz")
        return ([net.weight(l) for l in range(net.n_layers)],
                [net.threshold(l) for l in range(net.n_layers)], True)
    if (run / "model_real.npz").exists():
        path = run / "model_real.npz"
        z = read_arrays(path, "model file")
        n = sum(1 for k in z if k.startswith("w"))
        layers = [(z.get(f"w{l}"), z.get(f"theta{l}")) for l in range(n)]
        _require(n > 0 and all(w is not None and th is not None and w.dtype.kind == "f" == th.dtype.kind
                               and np.isfinite(w).all() and np.isfinite(th).all() for w, th in layers),
                 path, "needs finite real arrays w0, theta0, w1, theta1, ...")
        return [w for w, _ in layers], [th for _, th in layers], False
    return None
