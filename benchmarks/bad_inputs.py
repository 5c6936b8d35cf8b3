"""Feed bstdg damaged and malicious files through its command line; print one row per case.

Not part of the test suite (tests/test_fuzz_readers.py and tests/test_readers.py are). Every
case runs ``python -m bstdg.cli ...`` (or, for the export readers, which no command reads
from a user's file, the reader behind ``bstdg.cli.run_guarded``) in a fresh process on tiny
generated data in a temporary folder, and reports the exit status and either the one-line
error, ``TRACEBACK: <last line>`` or ``ACCEPTED`` (exit 0 on a bad input). Usage::

    PYTHONPATH=$PWD python benchmarks/bad_inputs.py [--only SUBSTRING] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bstdg.data.idx import write_idx  # noqa: E402
from bstdg.network import BinarySNN  # noqa: E402

SIZES = (784, 12, 10)
T_MAX = 16


# --- tiny data and a model -------------------------------------------------------------------


def fake_mnist(folder: Path, n: int = 30) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        images = (rng.random((n, 28, 28)) < 0.1) * rng.integers(50, 256, (n, 28, 28))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images.astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    return folder


def good_arrays() -> dict:
    rng = np.random.default_rng(1)
    n_w = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    return {"format": np.array("bstdg-model"), "format_version": np.array(1),
            "sizes": np.array(SIZES, np.int64), "t_max": np.array(T_MAX),
            "w": rng.uniform(-1, 1, n_w).astype(np.float32),
            "theta": rng.uniform(1, 8, sum(SIZES[1:])).astype(np.float32),
            "meta": np.array(json.dumps({"dataset": "mnist"}))}


def save_npz(path: Path, arrays: dict) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def model_cases(tmp: Path) -> dict:
    """name -> path of a (damaged) model file."""
    good = save_npz(tmp / "good.npz", good_arrays())
    data = good.read_bytes()
    out = {}

    def raw(name, content):
        (tmp / name).write_bytes(content)
        out[name] = tmp / name

    def arrays(name, **changes):
        a = good_arrays()
        for k, v in changes.items():
            if v is None:
                a.pop(k)
            else:
                a[k] = v
        out[name] = save_npz(tmp / name, a)

    raw("model-truncated.npz", data[:len(data) // 2])
    raw("model-empty.npz", b"")
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    raw("model-flipped-byte.npz", bytes(flipped))
    # a zip member whose .npy header is damaged (valid zip CRC)
    buf = io.BytesIO()
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(buf, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item)
            if item.filename == "theta.npy":
                body = body[:10] + b"{'descr': ???" + body[23:]
            zout.writestr(item, body)
    raw("model-bad-npy-header.npz", buf.getvalue())
    arrays("model-no-theta.npz", theta=None)
    theta = good_arrays()["theta"]
    arrays("model-nan-theta.npz", theta=np.full_like(theta, np.nan))
    arrays("model-huge-theta.npz", theta=np.full_like(theta, 1e30))
    w = good_arrays()["w"]
    arrays("model-nan-w.npz", w=np.full_like(w, np.nan))
    arrays("model-neg-tmax.npz", t_max=np.array(-5))
    arrays("model-huge-tmax.npz", t_max=np.array(3_000_000_000))
    arrays("model-bad-sizes.npz", sizes=np.array([784, -12, 10]))
    arrays("model-meta-list.npz", meta=np.array("[1, 2]"))
    arrays("model-meta-not-json.npz", meta=np.array("{nope"))
    arrays("model-meta-encoder-str.npz", meta=np.array(json.dumps({"dataset": "mnist", "encoder": "x"})))
    arrays("model-w-strings.npz", w=np.array(["a"] * len(w)))
    arrays("model-theta-2d.npz", theta=theta.reshape(1, -1))
    arrays("model-pickled-w.npz", w=np.array([object()] * 3, dtype=object))
    return out


def export_cases(tmp: Path) -> list:
    """(name, format, path) of damaged export files."""
    from bstdg.export import from_binary_net, latency_encoder, write

    net = BinarySNN(SIZES, T_MAX, good_arrays()["w"], good_arrays()["theta"], {"dataset": "mnist"})
    ex = from_binary_net(net.binary(), latency_encoder(T_MAX, (28, 28), "mnist"))
    cases = []
    for fmt, name in (("npz", "export.npz"), ("nir", "export.nir"), ("c", "model.h")):
        path = write(fmt, ex, tmp / name)
        data = path.read_bytes()
        for what, content in (("truncated", data[:len(data) // 2]), ("empty", b""),
                              ("flipped", bytes(b ^ 0xFF if i == len(data) // 3 else b
                                                for i, b in enumerate(data)))):
            bad = tmp / f"{what}-{name}"
            bad.write_bytes(content)
            cases.append((f"{fmt} {what}", fmt, bad))
    header = (tmp / "model.h").read_text()
    edited = header.replace('"kind": "latency"', '"kind": "latencY"')
    (tmp / "encoder-edited-model.h").write_text(edited)
    cases.append(("c encoder JSON edited", "c", tmp / "encoder-edited-model.h"))
    (tmp / "latin1-model.h").write_bytes(header.encode() + b"\xff\xfe")
    cases.append(("c not UTF-8", "c", tmp / "latin1-model.h"))
    folder = write("hex", ex, tmp / "hexdir")
    (folder / "manifest.json").write_text("[1, 2")
    cases.append(("hex manifest not JSON", "hex", folder))
    folder = write("hex", ex, tmp / "hexdir2")
    m = json.loads((folder / "manifest.json").read_text())
    m["layers"][0]["weights"] = 5
    (folder / "manifest.json").write_text(json.dumps(m))
    cases.append(("hex manifest wrong type", "hex", folder))
    folder = write("hex", ex, tmp / "hexdir3")
    m = json.loads((folder / "manifest.json").read_text())
    m["t_max"] = "16"
    (folder / "manifest.json").write_text(json.dumps(m))
    cases.append(("hex manifest t_max str", "hex", folder))
    return cases


def run_folder(tmp: Path, name: str, metrics=None, compare=None, outputs=None) -> Path:
    run = tmp / name
    run.mkdir()
    if metrics is not None:
        (run / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if compare is not None:
        (run / "compare.json").write_text(compare if isinstance(compare, str) else json.dumps(compare))
    if outputs is not None:
        shutil.copy(outputs, run / "test_outputs.npz")
    return run


def report_cases(tmp: Path, models: dict) -> list:
    cases = []
    for name in ("model-flipped-byte.npz", "model-nan-theta.npz", "model-meta-list.npz"):
        run = run_folder(tmp, f"run-{name}", metrics={"history": []})
        shutil.copy(models[name], run / "model.npz")
        cases.append((f"report {name}", run))
    cases.append(("report metrics not JSON", run_folder(tmp, "r1", metrics="{nope")))
    cases.append(("report metrics a list", run_folder(tmp, "r2", metrics=[1, 2])))
    cases.append(("report history wrong", run_folder(tmp, "r3", metrics={"history": [1, 2]})))
    cases.append(("report accuracy str", run_folder(tmp, "r4", metrics={"test_accuracy": "x"})))
    pickled = tmp / "pickled.npz"
    np.savez(pickled, decision_time=np.array([object()], dtype=object))
    cases.append(("report pickled test_outputs", run_folder(tmp, "r5", metrics={}, outputs=pickled)))
    partial = tmp / "partial.npz"
    np.savez(partial, decision_time=np.arange(3))
    cases.append(("report test_outputs keys missing", run_folder(tmp, "r6", metrics={}, outputs=partial)))
    cases.append(("report compare not JSON", run_folder(tmp, "c1", compare="[")))
    cases.append(("report compare no runs", run_folder(tmp, "c2", compare={"time_steps": [16]})))
    cases.append(("report compare runs wrong", run_folder(tmp, "c3", compare={"runs": [1],
                                                                              "time_steps": [16]})))
    return cases


def data_cases(tmp: Path) -> list:
    """(name, argv) for data files: IDX, gzip bomb, images, HDF5, TOML."""
    import h5py

    cases = []
    zero = fake_mnist(tmp / "zero" / "mnist")
    write_idx(zero / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
    write_idx(zero / "train-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    cases.append(("IDX 0 samples (train)", ["train", "--data-dir", str(tmp / "zero"), "--epochs", "1",
                                            "--hidden", "8", "--t-max", "8", "--out", str(tmp / "o1")]))
    hdr = fake_mnist(tmp / "hdr" / "mnist")
    raw = gzip.decompress((hdr / "t10k-images-idx3-ubyte.gz").read_bytes())
    (hdr / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:2] + b"\x08\xff" + raw[4:]))
    cases.append(("IDX 255 dims header (train)", ["train", "--data-dir", str(tmp / "hdr"), "--epochs", "1",
                                                  "--hidden", "8", "--t-max", "8", "--out", str(tmp / "o2")]))
    bomb = fake_mnist(tmp / "bomb" / "mnist")
    header = bytes([0, 0, 8, 3]) + np.array([30, 28, 28], ">u4").tobytes()
    with gzip.open(bomb / "t10k-images-idx3-ubyte.gz", "wb", compresslevel=9) as f:
        f.write(header + bytes(30 * 28 * 28))
        chunk = bytes(1 << 24)
        for _ in range(56):  # ~0.9 GB of zeros after the declared content, ~0.9 MB compressed
            f.write(chunk)
    bomb_dir = str(tmp / "bomb")
    cases.append(("gzip bomb 0.9 GB (eval)", ["eval", str(tmp / "good.npz"), "--data-dir", bomb_dir]))
    cases.append(("gzip bomb 0.9 GB (data verify)", ["data", "verify", "mnist", "--data-dir", bomb_dir]))
    # Caltech: a tiny PNG (named .jpg) that claims 30000 x 30000 pixels
    from PIL import Image

    cal = tmp / "cal" / "caltech-face-motor"
    for split in ("train", "test"):
        for cls in ("face", "motorbike"):
            d = cal / split / cls
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(d / f"{i}.jpg", "JPEG")
    big = Image.new("1", (30000, 30000))
    big.save(cal / "train" / "face" / "big.jpg", "PNG", optimize=True)
    cases.append(("PNG bomb 30000x30000 (train)", ["train", "--dataset", "caltech-face-motor", "--data-dir",
                                                   str(tmp / "cal"), "--epochs", "1", "--hidden", "4",
                                                   "--t-max", "8", "--out", str(tmp / "o3")]))
    # HDF5 with an external link
    shd = tmp / "shd" / "shd"
    shd.mkdir(parents=True)
    for split in ("train", "test"):
        with h5py.File(shd / f"shd_{split}.h5", "w") as f:
            vt = h5py.vlen_dtype(np.float32)
            vu = h5py.vlen_dtype(np.uint16)
            t = f.create_dataset("spikes/times", (2,), dtype=vt)
            u = f.create_dataset("spikes/units", (2,), dtype=vu)
            t[0], t[1] = np.array([0.1], np.float32), np.array([0.2], np.float32)
            u[0], u[1] = np.array([1], np.uint16), np.array([2], np.uint16)
            f["labels"] = h5py.ExternalLink("/nonexistent/other.h5", "/labels")
    cases.append(("HDF5 external link (train)", ["train", "--dataset", "shd", "--data-dir", str(tmp / "shd"),
                                                 "--epochs", "1", "--hidden", "4", "--t-max", "8",
                                                 "--out", str(tmp / "o4")]))
    cases.append(("HDF5 external link (data verify)",
                  ["data", "verify", "shd", "--data-dir", str(tmp / "shd")]))
    (tmp / "latin1.toml").write_bytes("epochs = 1 # caf\xe9\n".encode("latin-1"))
    cases.append(("TOML not UTF-8", ["train", "--config", str(tmp / "latin1.toml"), "--data-dir",
                                     str(tmp / "data"), "--out", str(tmp / "o5")]))
    (tmp / "bad.toml").write_text("epochs = [\n")
    cases.append(("TOML syntax error", ["train", "--config", str(tmp / "bad.toml"), "--data-dir",
                                        str(tmp / "data"), "--out", str(tmp / "o6")]))
    return cases


# --- running ----------------------------------------------------------------------------------


READER = """
import sys
from bstdg import cli, export
sys.exit(cli.run_guarded(lambda fmt, path: export.read(fmt, path), fmt=sys.argv[1], path=sys.argv[2]))
"""


def run(argv: list, timeout: float = 300) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BSTDG_DATA": "/nonexistent"}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return -1, "TIMEOUT", time.perf_counter() - start
    wall = time.perf_counter() - start
    err = done.stderr.strip().splitlines()
    if any(line.startswith("Traceback") for line in err):
        return done.returncode, "TRACEBACK: " + (err[-1] if err else ""), wall
    if done.returncode == 0:
        return 0, "ACCEPTED", wall
    return done.returncode, err[-1] if err else "(no message)", wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--keep", help="build the files in this folder and keep them")
    args = parser.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="bstdg-bad-"))
    tmp.mkdir(parents=True, exist_ok=True)
    data = fake_mnist(tmp / "data" / "mnist")
    models = model_cases(tmp)
    rows = []
    cli = ["-m", "bstdg.cli"]
    for name, path in models.items():
        cases = [(f"eval {name}", cli + ["eval", str(path), "--data-dir", str(data.parent)])]
        if name in ("model-nan-theta.npz", "model-huge-theta.npz", "model-nan-w.npz",
                    "model-flipped-byte.npz", "model-huge-tmax.npz"):
            cases += [(f"export --verify {name}", cli + ["export", str(path), "--format", "c", "--out",
                                                          str(tmp / "x.h"), "--random-inputs", "20"]),
                      (f"bench {name}", cli + ["bench", "--model", str(path), "--samples", "10",
                                               "--dense-samples", "5", "--repeats", "1",
                                               "--data-dir", str(data.parent)])]
        rows += cases
    rows += [(f"read {name}", ["-c", READER, fmt, str(path)]) for name, fmt, path in export_cases(tmp)]
    rows += [(name, cli + ["report", str(run_dir)]) for name, run_dir in report_cases(tmp, models)]
    rows += [(name, cli + argv) for name, argv in data_cases(tmp)]
    print("| case | exit | result | s |\n|---|---|---|---|")
    for name, argv in rows:
        if args.only and args.only not in name:
            continue
        rc, message, wall = run(argv)
        message = message.replace("|", "\\|")
        if len(message) > 160:
            message = message[:157] + "..."
        print(f"| {name} | {rc} | {message} | {wall:.1f} |", flush=True)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
