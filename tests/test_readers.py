"""Every loaded file is validated: the cases of docs/reliability.md ("Validated inputs"), one
test each, with the one-line error they must give (tests/test_fuzz_readers.py mutates files
at random on top of these)."""

from __future__ import annotations

import gzip
import io
import json
import time
import tracemalloc
import zipfile

import h5py
import numpy as np
import pytest

from bstdg import cli
from bstdg import export as E
from bstdg.cli import main_cli
from bstdg.config import load_config
from bstdg.data.idx import read_decompressed, read_idx, write_idx
from bstdg.data.mnist import load_idx_dataset
from bstdg.data import get_dataset, images
from bstdg.data.shd import read_spike_file, write_spike_file
from bstdg.errors import BstdgError, DataError
from bstdg.network import BinarySNN
from bstdg.npzio import read_arrays
from bstdg.report import report

from helpers import isolated  # noqa: F401 - autouse: no real dataset, empty working directory

SIZES = (6, 4, 3)
T_MAX = 8


def one_line(exc_info, *fragments: str) -> str:
    message = str(exc_info.value)
    assert isinstance(exc_info.value, BstdgError) and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def model_arrays(**changes) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"format": np.array("bstdg-model"), "format_version": np.array(1),
              "sizes": np.array(SIZES, np.int64), "t_max": np.array(T_MAX),
              "w": rng.uniform(-1, 1, 6 * 4 + 4 * 3).astype(np.float32),
              "theta": rng.uniform(1, 5, 7).astype(np.float32),
              "meta": np.array(json.dumps({"dataset": "mnist"}))}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    return arrays


def save(path, arrays: dict):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# --- models ---------------------------------------------------------------------------------


def test_a_valid_model_round_trips(tmp_path):
    net = BinarySNN.load(save(tmp_path / "m.npz", model_arrays()))
    net.save(tmp_path / "again.npz")
    again = BinarySNN.load(tmp_path / "again.npz")
    assert again.sizes == SIZES and np.array_equal(again.w, net.w) and again.meta == {"dataset": "mnist"}


@pytest.mark.parametrize("changes, fragment", [
    ({"theta": np.full(7, np.nan, np.float32)}, "'theta' holds NaN"),
    ({"theta": np.full(7, 1e30, np.float32)}, "thresholds must be in"),
    ({"theta": np.full(7, 0.5, np.float32)}, "thresholds must be in"),
    ({"w": np.full(36, np.nan, np.float32)}, "'w' holds NaN"),
    ({"w": np.full(36, 2.0, np.float32)}, "latent weights must be in [-1, 1]"),
    ({"w": np.array(["a"] * 36)}, "'w' must be 36 real numbers"),
    ({"theta": np.ones((1, 7), np.float32)}, "'theta' must be 7 real numbers"),
    ({"theta": None}, "'theta' must be 7 real numbers"),
    ({"t_max": np.array(-5)}, "t_max -5 is out of range"),
    ({"t_max": np.array(3_000_000_000)}, "t_max 3000000000 is out of range (2..16777216)"),
    ({"t_max": np.array(8.0)}, "'t_max' must be a single int"),
    ({"t_max": np.arange(2)}, "'t_max' must be a single int"),
    ({"sizes": np.array([6, -4, 3])}, "'sizes' must be 2 or more positive integers"),
    ({"sizes": np.array([6])}, "'sizes' must be 2 or more positive integers"),
    ({"sizes": np.array([6.0, 4.0, 3.0])}, "'sizes' must be 2 or more positive integers"),
    ({"meta": np.array("[1, 2]")}, "'meta' must be a JSON object"),
    ({"meta": np.array("{nope")}, "'meta' is not valid JSON"),
    ({"meta": np.array(json.dumps({"encoder": "x"}))}, "meta 'encoder' must be a JSON object"),
    ({"meta": np.array(json.dumps({"dataset": 5}))}, "meta 'dataset' must be a string"),
    ({"meta": np.array(json.dumps({"encoder": {"options": 3}}))}, "encoder 'options' must be"),
    ({"meta": np.array(json.dumps({"encoder": {"input_shape": [0]}}))}, "'input_shape' must be"),
    ({"format": np.array("bstdg-export")}, "not a bstdg model file"),
    ({"format_version": np.array(99)}, "model format v99"),
    ({"w": np.array([object()] * 36, dtype=object)}, "pickled Python objects"),
])
def test_damaged_models_are_refused_in_one_line(tmp_path, changes, fragment):
    path = save(tmp_path / "m.npz", model_arrays(**changes))
    with pytest.raises(BstdgError) as exc:
        BinarySNN.load(path)
    one_line(exc, str(path), fragment)


@pytest.mark.parametrize("damage, fragment", [
    (lambda b: b[:len(b) // 2], "truncated or corrupt"),
    (lambda b: b"", "truncated or corrupt"),
    (lambda b: b[:300] + bytes([b[300] ^ 0xFF]) + b[301:], "Bad CRC-32"),
])
def test_truncated_empty_and_flipped_model_files(tmp_path, damage, fragment):
    good = save(tmp_path / "good.npz", model_arrays()).read_bytes()
    path = tmp_path / "bad.npz"
    path.write_bytes(damage(good))
    with pytest.raises(BstdgError) as exc:
        BinarySNN.load(path)
    one_line(exc, fragment)


def test_damaged_npy_headers(tmp_path):
    good = save(tmp_path / "good.npz", model_arrays())
    for name, edit, fragment in (
            ("garbled", lambda body: body[:10] + b"{'descr': ???" + body[23:], "Cannot parse header"),
            ("unbalanced", lambda body: body.replace(b"(7,)", b"(999"), "TokenError")):
        buf = io.BytesIO()
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(buf, "w") as zout:
            for item in zin.infolist():
                body = zin.read(item)
                zout.writestr(item.filename, edit(body) if item.filename == "theta.npy" else body)
        path = tmp_path / f"{name}.npz"
        path.write_bytes(buf.getvalue())
        with pytest.raises(BstdgError) as exc:
            BinarySNN.load(path)
        one_line(exc, fragment)


def test_an_npz_that_claims_a_huge_shape_is_not_allocated(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10 ** 12,)})
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", header.getvalue() + bytes(16))
    with pytest.raises(BstdgError) as exc:
        read_arrays(path)
    one_line(exc, "array w is damaged", "8,000,000,000,000 bytes")


def test_an_npz_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", bytes(20 << 20))  # 20 MB of zeros, ~20 kB on disk
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    with pytest.raises(BstdgError) as exc:
        read_arrays(path, max_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_line(exc, "would unpack to 20,971,520 bytes")
    assert peak < 2 << 20


def test_bad_models_fail_cleanly_through_the_cli(tmp_path, capsys):
    path = save(tmp_path / "m.npz", model_arrays(theta=np.full(7, np.nan, np.float32)))
    out = str(tmp_path / "m.h")
    for argv in (["export", str(path), "--format", "c", "--out", out, "--random-inputs", "5"],
                 ["eval", str(path)], ["bench", "--model", str(path), "--samples", "5"]):
        assert main_cli(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("bstdg: error:") and "\n" not in err and "holds NaN" in err
    assert not (tmp_path / "m.h").exists()


# --- export files ---------------------------------------------------------------------------------


def exported(tmp_path, fmt: str, name: str):
    rng = np.random.default_rng(0)
    net = BinarySNN(SIZES, T_MAX, rng.uniform(-1, 1, 36).astype(np.float32),
                    rng.uniform(1, 5, 7).astype(np.float32), {"dataset": "mnist"})
    ex = E.from_binary_net(net.binary(), E.latency_encoder(T_MAX, (6,), "mnist"))
    return E.write(fmt, ex, tmp_path / name)


def test_the_c_header_digest_covers_the_encoder(tmp_path):
    path = exported(tmp_path, "c", "model.h")
    text = path.read_text()
    assert "#define BSTDG_DIGEST" in text
    E.read_c_header(path)
    path.write_text(text.replace('"kind": "latency"', '"kind": "latencY"'))
    with pytest.raises(BstdgError) as exc:
        E.read_c_header(path)
    one_line(exc, "encoder JSON comment does not match BSTDG_DIGEST")
    old = "\n".join(line for line in text.splitlines() if "BSTDG_DIGEST" not in line)
    path.write_text(old)  # a header of an older bstdg, without the digest
    with pytest.raises(BstdgError) as exc:
        E.read_c_header(path)
    one_line(exc, "has no BSTDG_DIGEST", "export it again")


def test_a_c_header_that_is_not_utf8(tmp_path):
    path = exported(tmp_path, "c", "model.h")
    path.write_bytes(path.read_bytes() + b"\xff")
    with pytest.raises(BstdgError) as exc:
        E.read_c_header(path)
    one_line(exc, "not UTF-8")


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m.update(t_max="8"), "t_max must be an integer"),
    (lambda m: m.update(t_max=1e400), "t_max must be an integer"),
    (lambda m: m["layers"][0].update(weights="../../etc/passwd"), "must be a file name in the folder"),
    (lambda m: m["layers"][0].update(weights=5), "must be a file name in the folder"),
    (lambda m: m.update(layers={"a": 1}), "layers in the manifest"),
    (lambda m: m.update(encoder={"t_max": 8, "input_shape": ["x"]}), "input_shape must be a list"),
])
def test_malformed_hex_manifests(tmp_path, edit, fragment):
    folder = exported(tmp_path, "hex", "hex")
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BstdgError) as exc:
        E.read_hex(folder)
    one_line(exc, fragment)


def test_export_npz_with_a_huge_t_max_is_refused(tmp_path):
    path = exported(tmp_path, "npz", "e.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["t_max"] = np.array(3_000_000_000, np.int64)
    save(path, arrays)
    with pytest.raises(BstdgError) as exc:
        E.read_npz(path)
    one_line(exc, "t_max 3000000000 is out of range")


# --- IDX ----------------------------------------------------------------------------------------


def test_a_gzip_bomb_is_refused_after_inflating_little(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + np.array([2, 28, 28], ">u4").tobytes() + bytes(2 * 28 * 28))
        for _ in range(8):
            f.write(bytes(8 << 20))  # 64 MB of zeros beyond the declared content
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(DataError) as exc:
        read_idx(path)
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_line(exc, "has trailing bytes", "found more than 1,584")
    assert peak < 4 << 20 and wall < 1.0


def test_idx_sizes_above_the_cap(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    write_idx(path, np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(DataError) as exc:
        read_idx(path, max_bytes=1000)
    one_line(exc, "declares shape (10, 28, 28)", "up to 1,000 bytes")
    other = tmp_path / "other.gz"
    other.write_bytes(gzip.compress(b"\x01" * 5000))  # not IDX: only the overall cap
    with pytest.raises(DataError) as exc:
        read_decompressed(other, max_bytes=1000)
    one_line(exc, "decompresses to more than 1,000 bytes")
    huge = tmp_path / "huge-idx"
    huge.write_bytes(bytes([0, 0, 8, 3]) + np.array([2 ** 31] * 3, ">u4").tobytes())
    with pytest.raises(DataError) as exc:
        read_idx(huge)
    one_line(exc, "declares shape")


def test_idx_files_with_no_samples(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    with pytest.raises(DataError) as exc:
        load_idx_dataset("mnist", "train", folder)
    one_line(exc, "mnist train: no samples")


# --- images -------------------------------------------------------------------------------------


def test_images_above_the_pixel_cap_are_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "big.jpg"
    Image.new("L", (40, 30)).save(path, "PNG")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError) as exc:
        images.read_gray(path, 8, 8)
    one_line(exc, "image of 40 x 30 pixels, more than the 1,000")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 10 ** 9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own bomb check
    for limit in (100, 1000):  # DecompressionBombError (> 2x), DecompressionBombWarning (> 1x)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(DataError) as exc:
            images.read_gray(path, 8, 8)
        one_line(exc, "not a readable image", "DecompressionBomb")


# --- HDF5 ---------------------------------------------------------------------------------------


def spike_file(path, n_channels: int = 5):
    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 1, 4)).astype(np.float32) for _ in range(3)]
    units = [rng.integers(0, 5, 4).astype(np.uint16) for _ in range(3)]
    write_spike_file(path, times, units, np.arange(3), n_channels)
    return path


def test_hdf5_external_links_are_refused(tmp_path):
    path = spike_file(tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        del f["labels"]
        f["labels"] = h5py.ExternalLink("/nonexistent/other.h5", "/labels")
    with pytest.raises(DataError) as exc:
        read_spike_file(path, 5, 3)
    one_line(exc, "labels is an external link to /nonexistent/other.h5")


def test_hdf5_errors_are_one_line_in_data_verify(tmp_path):
    folder = tmp_path / "shd"
    folder.mkdir()
    for split in ("train", "test"):
        path = spike_file(folder / f"shd_{split}.h5", 700)
        with h5py.File(path, "r+") as f:
            del f["labels"]
            f["labels"] = h5py.SoftLink("/nowhere")  # dangling: h5py raises KeyError
    result = get_dataset("shd").checks(folder)
    assert not any(result.values())
    assert all("cannot read its contents" in k or "missing labels" in k for k in result)


# --- config files -------------------------------------------------------------------------------


def test_a_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("epochs = 1 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(BstdgError) as exc:
        load_config(path)
    one_line(exc, "not UTF-8 text")


# --- report -------------------------------------------------------------------------------------


def run_folder(tmp_path, name, files: dict):
    run = tmp_path / name
    run.mkdir()
    for file, content in files.items():
        if isinstance(content, bytes):
            (run / file).write_bytes(content)
        else:
            (run / file).write_text(content if isinstance(content, str) else json.dumps(content))
    return run


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("files, fragment", [
    ({"metrics.json": "{nope"}, "metrics.json: not valid JSON"),
    ({"metrics.json": b"\xff\xfe"}, "metrics.json: not valid JSON"),
    ({"metrics.json": [1, 2]}, "must hold a JSON object, found list"),
    ({"metrics.json": {"history": [1]}}, "'history' must be a list of objects"),
    ({"metrics.json": {"test_accuracy": "x"}}, "'test_accuracy' must be a number"),
    ({"metrics.json": {"batches": [[1, 2]]}}, "'batches' must be a list"),
    ({"metrics.json": {}, "test_outputs.npz": npz(decision_time=np.array([object()]))}, "pickled"),
    ({"metrics.json": {}, "test_outputs.npz": npz(decision_time=np.arange(3))}, "no prediction"),
    ({"metrics.json": {}, "test_outputs.npz": b"PK\x03\x04garbage"}, "truncated or corrupt"),
    ({"metrics.json": {}, "model_real.npz": npz(w0=np.full(3, np.nan), theta0=np.ones(3))}, "finite"),
    ({"compare.json": "["}, "compare.json: not valid JSON"),
    ({"compare.json": {"time_steps": [16]}}, "'runs' must be a list of objects"),
    ({"compare.json": {"runs": [1], "time_steps": [16]}}, "'runs' must be a list of objects"),
    ({"compare.json": {"runs": [{"method": "x"}], "time_steps": [16]}}, "run 0 needs"),
    ({"compare.json": {"runs": [], "time_steps": ["16"]}}, "'time_steps' must be"),
])
def test_report_refuses_malformed_inputs_in_one_line(tmp_path, files, fragment):
    run = run_folder(tmp_path, "run", files)
    with pytest.raises(BstdgError) as exc:
        report(run, log=lambda *_: None)
    one_line(exc, fragment)


def test_report_of_a_run_with_a_nan_model(tmp_path, capsys):
    run = run_folder(tmp_path, "run", {"metrics.json": {"history": []}})
    save(run / "model.npz", model_arrays(theta=np.full(7, np.nan, np.float32)))
    assert main_cli(["report", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert "holds NaN" in err and "\n" not in err


# --- Ctrl-C inside a Numba kernel ------------------------------------------------------------------


def test_a_system_error_caused_by_ctrl_c_is_an_interruption(capsys):
    def numba_like():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("CPUDispatcher(<function f>) returned a result with an exception set") from exc

    assert cli.run_guarded(numba_like) == cli.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err.strip() == "bstdg: error: interrupted"

    def other():
        raise SystemError("a real bug")

    with pytest.raises(SystemError):
        cli.run_guarded(other)
