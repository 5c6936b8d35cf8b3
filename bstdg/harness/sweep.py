"""``bstdg sweep``: many trainings on Ray Tune, each scored on held-out training samples.

    bstdg sweep --config sweep.toml --out runs/sweep [--address auto|ray://HOST:PORT]
                [--workers N] [--resume] [--force] [--data-dir DIR]

The file (:mod:`bstdg.harness.sweep_spec`) gives the training settings, the held-out part
(``n_val``), the seeds and the space. Each point of the space trains once per seed, each
training one Ray Tune trial (:mod:`bstdg.harness.sweep_trial`: one CPU, one Numba thread)
that reports its held-out accuracy after every epoch, so the ``asha`` scheduler can stop
bad trials early. The test split chooses nothing: each trial reads it once, after
training, for the record.

Ray: by default bstdg starts a local Ray with ``--workers`` CPUs (default: all) and stops
it at the end; ``--address`` joins a running cluster instead (``auto``: the one this
machine belongs to; ``ray://HOST:PORT``: a Ray Client server; ``HOST:PORT``: a head
node), where every node must see the dataset at the same path (docs/scaling.md). Search:
``grid`` (every combination) and ``random`` (``samples`` points drawn with
``search_seed``) are fixed lists of points, each run on every seed; ``optuna`` proposes
``samples`` points as results come in (Ray Tune's ``OptunaSearch``, wrapped in a
``Repeater`` that runs each point on every seed and gives Optuna their mean).

``OUT/`` holds ``sweep-config.toml`` (a copy of the file), ``ray/`` (Ray Tune's
experiment: ``--resume`` continues it with ``Tuner.restore``), and the outputs of
:mod:`bstdg.harness.sweep_output`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ..config import MAX_CONFIG_BYTES, parse_toml
from ..data import PREFIXES, get_dataset
from ..errors import BstdgError, Interrupted, first_line
from ..files import atomic_write
from ..runs import RunFolder
from .sweep_output import OUTPUT_FILES, write_outputs
from .sweep_spec import Choice, SweepSpec, parse_sweep, point_label
from .sweep_trial import TrialSetup, check_n_val, decode_config, ray_trial

CONFIG_COPY, EXPERIMENT = "sweep-config.toml", "ray"
METRIC, MODE = "val_accuracy", "max"
PATH_PREFIXES = ("arrays", "images", "events")  # specs whose argument is a file or folder
CONNECT_TIMEOUT_S = 5.0


# --- the file ------------------------------------------------------------------------------


def read_sweep(path) -> tuple[SweepSpec, bytes]:
    """The checked spec of the sweep file ``path`` and its bytes."""
    path = Path(path).expanduser()
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise BstdgError(f"--config {path}: {path.stat().st_size:,} bytes; a sweep file is at most "
                             f"{MAX_CONFIG_BYTES:,}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BstdgError(f"--config {path}: no such file") from None
    except OSError as exc:
        raise BstdgError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    return parse_sweep(parse_toml(data, str(path)), str(path)), data


def absolute_dataset(spec: str) -> str:
    """``spec`` with the path of an ``arrays:`` / ``images:`` / ``events:`` spec made
    absolute (Ray runs each trial in its own folder)."""
    prefix, sep, argument = spec.partition(":")
    if sep and prefix in PATH_PREFIXES and prefix in PREFIXES:
        return f"{prefix}:{Path(argument).expanduser().absolute()}"
    return spec


def count_training_samples(spec: SweepSpec, dataset: str, data_dir) -> int:
    """How many training samples the trials split (the dataset is read once here, which
    also fails early, before Ray starts, when it is missing)."""
    config, options = spec.trial_settings(first_point(spec), spec.seeds[0])
    return len(get_dataset(dataset, options).load("train", config.t_max, data_dir, spec.limit_train).labels)


def first_point(spec: SweepSpec) -> dict:
    if spec.search == "optuna":
        return {e.name: e.candidates()[0] for e in spec.space}
    return spec.points()[0]


# --- Ray -----------------------------------------------------------------------------------


def import_ray():
    """``(ray, ray.tune)``; BstdgError naming the extra when Ray Tune is not installed."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's tables off with verbose=0
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray  # optional: the sweep extra
        from ray import tune
    except ImportError:
        raise BstdgError("bstdg sweep needs Ray Tune: pip install 'bstdg[sweep]' (or 'ray[tune]')") from None
    return ray, tune


def check_address(address: str) -> None:
    """BstdgError when ``address`` is not ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT``, or
    nothing answers at HOST:PORT within a few seconds."""
    if address == "auto":
        return
    host_port = address.removeprefix("ray://")
    host, sep, port = host_port.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise BstdgError(f"--address {address}: expected auto, ray://HOST:PORT or HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise BstdgError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                         f"start one (`ray start --head`) or leave out --address for a local Ray") from None


def start_ray(address: str | None, workers: int | None, env: dict) -> bool:
    """Start a local Ray (``address`` None) or connect to a cluster; True when this call
    started or connected it (and the sweep shuts it down at the end)."""
    ray, _ = import_ray()
    if ray.is_initialized():  # a notebook or a test that started Ray itself: use it
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True,
                 "runtime_env": {"env_vars": env}}
    try:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"--address {address}" if address else "local Ray"
        raise BstdgError(f"{where}: cannot start or join Ray ({first_line(exc)})"
                         + ("; start a cluster (`ray start --head`) or leave out --address" if address else "")
                         ) from None
    return True


def param_space(spec: SweepSpec, tune) -> dict:
    """Ray Tune's space. grid, random: the fixed points times the seeds (two grid axes, so
    every point runs on every seed); optuna: one distribution per entry (a choice as the
    index of its value, since Optuna's categories are plain values and ``hidden`` is a
    list); the seed comes from the Repeater's ``__trial_index__``."""
    if spec.search != "optuna":
        return {"point": tune.grid_search(plain_points(spec)), "seed": tune.grid_search(list(spec.seeds))}
    space = {}
    for e in spec.space:
        if isinstance(e, Choice):
            space[e.name] = tune.choice(list(range(len(e.values))))
        elif e.integer:
            space[e.name] = (tune.lograndint if e.log else tune.randint)(e.low, e.high + 1)
        else:
            space[e.name] = (tune.loguniform if e.log else tune.uniform)(e.low, e.high)
    return space


def plain_points(spec: SweepSpec) -> list[dict]:
    """The fixed points as JSON values (tuples as lists)."""
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in p.items()} for p in spec.points()]


def search_algorithm(spec: SweepSpec):
    """None (grid, random: Ray's variant generator walks the fixed points) or Optuna in a
    Repeater; BstdgError naming the extra when Optuna is missing."""
    if spec.search != "optuna":
        return None
    try:
        import optuna  # optional: the sweep extra
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise BstdgError("search = \"optuna\" needs Optuna: pip install optuna (in the 'sweep' extra)") from None
    from ray.tune.search import Repeater  # optional: the sweep extra

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(metric=METRIC, mode=MODE, seed=spec.search_seed)
    return Repeater(searcher, repeat=len(spec.seeds), set_index=True) if len(spec.seeds) > 1 else searcher


def scheduler(spec: SweepSpec):
    if spec.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler  # optional: the sweep extra

    epochs = [spec.settings.train.get("epochs", 10)]
    for e in spec.space:
        if e.name == "epochs":
            epochs = list(e.candidates())
    return ASHAScheduler(time_attr="epoch", max_t=int(max(epochs)), grace_period=1, reduction_factor=3)


def progress_callback(tune, spec: SweepSpec, log: Callable):
    """A Tune callback printing one line per finished or failed trial."""

    class Progress(tune.Callback):
        done = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            m = trial.last_result or {}
            point, seed = decode_config(trial.config, spec)
            how = "" if m.get("final") else " (stopped early)"
            log(f"trial {self.done}/{spec.n_trials}: {point_label(point)}, seed {seed}: held-out "
                f"{m.get(METRIC, float('nan')):.4f} after {m.get('epoch', 0)} epoch(s){how}, "
                f"{m.get('time_total_s', 0):.0f} s")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            log(f"trial {self.done}/{spec.n_trials}: {trial.config} failed (see {trial.path})")

    return Progress()


# --- records -------------------------------------------------------------------------------


def records(grid, spec: SweepSpec) -> list[dict]:
    """One record per trial of Ray's ResultGrid that started (``sweep.json``)."""
    out = []
    for k in range(len(grid)):
        result = grid[k]
        if not result.config:  # never started (an interrupted sweep)
            continue
        m = result.metrics or {}
        point, seed = decode_config(result.config, spec)
        status = "finished" if m.get("final") else ("error" if result.error else
                                                      "stopped" if METRIC in m else "unfinished")
        record = {"params": {k: list(v) if isinstance(v, tuple) else v for k, v in point.items()},
                  "seed": seed, "val_accuracy": m.get(METRIC), "test_accuracy": m.get("test_accuracy"),
                  "epochs": m.get("epoch", 0), "wall_s": m.get("wall_s", m.get("time_total_s", 0.0)),
                  "val_decision_time": m.get("val_decision_time"), "val_history": m.get("val_history"),
                  "status": status, "trial_id": m.get("trial_id")}
        if result.error:
            record["error"] = (str(result.error).strip().splitlines() or [type(result.error).__name__])[-1]
            record["val_accuracy"] = None
        out.append(record)
    if spec.search != "optuna":  # the order of the file's points, then of the seeds
        keys = [json.dumps(p, sort_keys=True) for p in plain_points(spec)]
        out.sort(key=lambda r: (keys.index(json.dumps(r["params"], sort_keys=True)), spec.seeds.index(r["seed"])))
    return out



# --- the command ---------------------------------------------------------------------------


def prepare_out(out: Path, config, resume: bool, force: bool) -> tuple[SweepSpec, bytes]:
    """Check ``out`` against ``resume`` / ``force`` and return the spec (on resume: the
    one the sweep started with)."""
    copy, experiment = out / CONFIG_COPY, out / EXPERIMENT
    if RunFolder(out).holds_run():
        raise BstdgError(f"--out {out} holds a training run; choose another folder for the sweep")
    if resume:
        if force:
            raise BstdgError("--force and --resume exclude each other")
        if not copy.is_file() or not experiment.is_dir():
            raise BstdgError(f"--resume: {out} holds no sweep to continue ({CONFIG_COPY} and {EXPERIMENT}/ "
                             f"are written when a sweep starts)")
        spec, data = read_sweep(copy)
        if config is not None and Path(config).expanduser().read_bytes() != data:
            raise BstdgError(f"--resume: {config} differs from the file the sweep in {out} started with "
                             f"({copy}); leave out --config to continue it as it was")
        return spec, data
    if config is None:
        raise BstdgError("--config sweep.toml is required (unless --resume)")
    spec, data = read_sweep(config)
    if copy.exists() or experiment.exists():
        if not force:
            raise BstdgError(f"{out} already holds a sweep; use --resume to continue it or --force to "
                             f"start over (its results are removed)")
        shutil.rmtree(experiment, ignore_errors=True)
        for name in (CONFIG_COPY, *OUTPUT_FILES):
            (out / name).unlink(missing_ok=True)
    return spec, data


def run_sweep(config=None, out="runs/sweep", address: str | None = None, workers: int | None = None,
              resume: bool = False, force: bool = False, data_dir=None, log: Callable = print) -> dict:
    """Run (or with ``resume`` continue) the sweep of ``config`` into ``out`` and return
    the ``sweep.json`` object (module docstring)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise BstdgError(f"--workers must be a positive integer, got {workers!r}")
    if data_dir is not None:
        if not Path(data_dir).expanduser().is_dir():
            raise BstdgError(f"--data-dir {data_dir}: no such folder")
        data_dir = str(Path(data_dir).expanduser().absolute())
    out = Path(out)
    with RunFolder(out):  # one bstdg process per folder
        spec, data = prepare_out(out, config, resume, force)
        dataset = absolute_dataset(spec.dataset)
        n_train = count_training_samples(spec, dataset, data_dir)
        check_n_val(spec.n_val, n_train, spec.source)
        ray, tune = import_ray()
        search = search_algorithm(spec)
        if address is not None:
            check_address(address)
        workers = workers if workers is not None or address is not None else (os.cpu_count() or 1)
        env = {"NUMBA_NUM_THREADS": "1"}
        if os.environ.get("BSTDG_DATA"):
            env["BSTDG_DATA"] = str(Path(os.environ["BSTDG_DATA"]).expanduser().absolute())
        where = f"Ray at {address}" if address else f"a local Ray with {workers} worker(s)"
        log(f"sweep {spec.source}: {spec.n_trials} trials ({spec.n_points} point(s) x {len(spec.seeds)} seed(s), "
            f"search {spec.search}) on {spec.dataset}, {n_train - spec.n_val:,} training samples, "
            f"{spec.n_val:,} held out; {where} -> {out}")
        started = start_ray(address, workers, env)
        start = time.perf_counter()
        try:
            if not resume:  # the sweep exists from here on (--resume continues it)
                atomic_write(out / CONFIG_COPY, data)
            trainable = tune.with_resources(tune.with_parameters(ray_trial, setup=TrialSetup(spec, dataset, data_dir)),
                                            {"cpu": 1})
            path = str((out / EXPERIMENT).absolute())
            if resume:
                if not tune.Tuner.can_restore(path):
                    raise BstdgError(f"--resume: {path} holds no Ray Tune experiment to restore")
                log(f"resuming the sweep in {out}")
                tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
            else:
                tuner = tune.Tuner(
                    trainable, param_space=param_space(spec, tune),
                    tune_config=tune.TuneConfig(
                        metric=METRIC, mode=MODE, search_alg=search, scheduler=scheduler(spec),
                        num_samples=1 if search is None else spec.n_trials,
                        max_concurrent_trials=workers,
                        trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
                    run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(out.absolute()), verbose=0,
                                              callbacks=[progress_callback(tune, spec, log)]))
            grid = tuner.fit()
            trials = records(grid, spec)
        finally:
            if started:
                ray.shutdown()
        wall = time.perf_counter() - start
        result = write_outputs(out, spec, trials, n_train, {
            "address": address, "workers": workers, "wall_s": wall, "resumed": bool(resume)})
    best, ended = result["best"], sum(r["status"] != "unfinished" for r in trials)
    if best is not None:
        log(f"best: {point_label(best['params'])}: held-out {100 * best['val_mean']:.2f} ± "
            f"{100 * best['val_std']:.2f} % over {len(best['seeds'])} seed(s) ({wall:.0f} s in all)")
        log(f"wrote {out / 'sweep.json'}, sweep.md, sweep.png and best.toml "
            f"(bstdg train --config {out / 'best.toml'} --out RUN)")
    if ended < spec.n_trials:
        raise Interrupted(f"interrupted: {ended} of {spec.n_trials} trials ended (see {out / 'sweep.md'}); "
                          f"continue with `bstdg sweep --resume --out {out}`")
    if best is None:
        errors = sorted({r["error"] for r in trials if r.get("error")})
        raise BstdgError(f"no trial of the sweep finished ({errors[0] if errors else 'none ran'}); "
                         f"see {out / 'sweep.json'} and the trial folders in {out / EXPERIMENT}")
    return result
