"""Fuzz the file readers: a damaged file gives one-line BstdgError or a valid result, never
any other exception.

Each reader gets valid files of small networks and datasets, mutated by hypothesis: bytes
truncated, flipped, inserted, deleted or overwritten, and (for the ``.npz`` and HDF5 files)
arrays replaced by NaN, huge values, other dtypes or shapes, pickled objects, or removed.
``derandomize=True`` makes every run try the same examples; the whole file takes a few
seconds (docs/reliability.md).
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bstdg import config as config_mod  # noqa: E402
from bstdg import export as E  # noqa: E402
from bstdg.data.idx import read_idx, write_idx  # noqa: E402
from bstdg.data.shd import read_spike_file, write_spike_file  # noqa: E402
from bstdg.errors import BstdgError  # noqa: E402
from bstdg.network import BinarySNN  # noqa: E402

FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SIZES = (6, 4, 3)
T_MAX = 8
N_CHANNELS, N_CLASSES = 5, 3


def fuzz(n: int):
    """``n`` examples, the same in every run."""
    return settings(FUZZ, max_examples=n)


def one_line_or_result(read, path):
    """``read(path)``: its result, or None after a BstdgError whose message is one
    non-empty line; any other exception propagates (and fails the test)."""
    try:
        return read(path)
    except BstdgError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, repr(message)
        return None


@st.composite
def mutated(draw, data: bytes):
    """``data`` after 1-3 byte edits."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("truncate", "flip", "insert", "delete", "overwrite")))
        n = len(data)
        at = draw(st.integers(0, max(n - 1, 0)))
        if op == "truncate":
            del data[at:]
        elif op == "flip" and n:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and n:
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "overwrite" and n:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(chunk)] = chunk
    return bytes(data)


# values an array of a file may be replaced with
def _replacements(a: np.ndarray) -> list:
    flat = np.ravel(a)
    size = max(flat.size, 1)
    return [
        None,  # removed
        np.full(size, np.nan), np.full(size, np.inf), np.full(size, -1e30), np.full(size, 1e30),
        np.full(size, 2 ** 62, np.int64), np.full(size, -3, np.int64), np.zeros(size, np.uint8),
        np.zeros(size, bool), np.zeros(size, np.complex64), np.array(["x"] * size),
        np.array([object()] * size, dtype=object),  # pickled by np.savez
        np.zeros((size, 2), np.float32), np.zeros(0, np.float32), np.array(3.5),
        np.array(-1), np.array(2 ** 40), np.array("{not json"), np.array("[1, 2]"),
        np.array(json.dumps({"dataset": 3, "encoder": []})),
        np.array(json.dumps({"dataset": "mnist", "encoder": {"input_shape": ["a"], "t_max": "8"}})),
    ]


@st.composite
def replaced_arrays(draw, arrays: dict):
    """``arrays`` with one array replaced by a hostile value (or removed)."""
    key = draw(st.sampled_from(sorted(arrays)))
    value = draw(st.sampled_from(_replacements(arrays[key])))
    out = dict(arrays)
    if value is None:
        out.pop(key)
    else:
        out[key] = value
    return out


@st.composite
def mutated_member(draw, data: bytes):
    """The zip ``data`` with one member's bytes (``.npy`` header or data) edited and the zip
    rebuilt with valid CRCs, so that the edit reaches the ``.npy`` parser."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    name = draw(st.sampled_from(sorted(members)))
    head = members[name][:128]  # mostly the .npy header: edit it, keep the rest
    members[name] = draw(mutated(head)) + members[name][128:]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for member, body in members.items():
            z.writestr(member, body)
    return buf.getvalue()


def npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def arrays_of(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --- valid files --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder():
    path = Path(tempfile.mkdtemp(prefix="bstdg-fuzz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def small_model() -> BinarySNN:
    rng = np.random.default_rng(0)
    n_w = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    return BinarySNN(SIZES, T_MAX, rng.uniform(-1, 1, n_w).astype(np.float32),
                     rng.uniform(1, 4, sum(SIZES[1:])).astype(np.float32),
                     {"dataset": "mnist", "encoder": {"kind": "latency", "t_max": T_MAX}})


@pytest.fixture(scope="module")
def files(folder):
    """name -> bytes of a valid file (the hex folder: its manifest and files by name)."""
    net = small_model()
    net.save(folder / "model.npz")
    ex = E.from_binary_net(net.binary(), E.latency_encoder(T_MAX, (SIZES[0],), "mnist"))
    out = {"model": (folder / "model.npz").read_bytes()}
    for fmt, name in (("npz", "export.npz"), ("nir", "export.nir"), ("c", "model.h")):
        out[fmt] = E.write(fmt, ex, folder / name).read_bytes()
    hexdir = E.write("hex", ex, folder / "hex")
    out["hex"] = {p.name: p.read_bytes() for p in hexdir.iterdir()}
    write_idx(folder / "x-idx3-ubyte", np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))
    out["idx"] = (folder / "x-idx3-ubyte").read_bytes()
    out["idx.gz"] = gzip.compress(out["idx"], mtime=0)
    rng = np.random.default_rng(1)
    times = [np.sort(rng.uniform(0, 1, 4)).astype(np.float32) for _ in range(3)]
    units = [rng.integers(0, N_CHANNELS, 4).astype(np.uint16) for _ in range(3)]
    write_spike_file(folder / "spikes.h5", times, units, np.arange(3), N_CHANNELS)
    out["h5"] = (folder / "spikes.h5").read_bytes()
    out["toml"] = b'dataset = "mnist"\nhidden = [6]\nt_max = 16\nepochs = 2\nshift = 1\ntheta_out = 32.0\n'
    return out


def write_file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_the_valid_files_read(folder, files):
    assert BinarySNN.load(write_file(folder, "m.npz", files["model"])).sizes == SIZES
    for fmt, name in (("npz", "e.npz"), ("nir", "e.nir"), ("c", "m.h")):
        assert E.read(fmt, write_file(folder, name, files[fmt])).sizes == SIZES
    assert read_idx(write_file(folder, "i.gz", files["idx.gz"])).shape == (2, 3, 4)
    assert len(read_spike_file(write_file(folder, "s.h5", files["h5"]), N_CHANNELS, N_CLASSES)) == 3
    assert config_mod.load_config(write_file(folder, "c.toml", files["toml"])).train["epochs"] == 2


# --- models -------------------------------------------------------------------------------------


def check_model(path):
    net = BinarySNN.load(path)
    assert np.isfinite(net.w).all() and np.isfinite(net.theta).all()
    net.binary()  # a model that loads can be run
    return net


@fuzz(250)
@given(data=st.data())
def test_model_bytes(folder, files, data):
    one_line_or_result(check_model, write_file(folder, "fz-model.npz", data.draw(mutated(files["model"]))))


@fuzz(200)
@given(data=st.data())
def test_model_npy_headers(folder, files, data):
    content = data.draw(mutated_member(files["model"]))
    one_line_or_result(check_model, write_file(folder, "fz-model3.npz", content))


@fuzz(120)
@given(data=st.data())
def test_model_arrays(folder, files, data):
    arrays = data.draw(replaced_arrays(arrays_of(files["model"])))
    net = one_line_or_result(check_model, write_file(folder, "fz-model2.npz", npz_bytes(arrays)))
    if net is not None:  # accepted: only harmless replacements (e.g. w as uint8 zeros)
        assert 2 <= net.t_max <= 2 ** 24 and net.theta.max() <= 2 ** 15 - 1


# --- export files -------------------------------------------------------------------------------


@fuzz(200)
@given(data=st.data())
def test_export_npz_bytes(folder, files, data):
    one_line_or_result(E.read_npz, write_file(folder, "fz.npz", data.draw(mutated(files["npz"]))))


@fuzz(150)
@given(data=st.data())
def test_export_npz_npy_headers(folder, files, data):
    one_line_or_result(E.read_npz, write_file(folder, "fz3.npz", data.draw(mutated_member(files["npz"]))))


@fuzz(120)
@given(data=st.data())
def test_export_npz_arrays(folder, files, data):
    arrays = data.draw(replaced_arrays(arrays_of(files["npz"])))
    one_line_or_result(E.read_npz, write_file(folder, "fz2.npz", npz_bytes(arrays)))


@fuzz(80)
@given(data=st.data())
def test_nir_bytes(folder, files, data):
    pytest.importorskip("nir")
    one_line_or_result(E.read_nir, write_file(folder, "fz.nir", data.draw(mutated(files["nir"]))))


@fuzz(250)
@given(data=st.data())
def test_c_header_bytes(folder, files, data):
    one_line_or_result(E.read_c_header, write_file(folder, "fz.h", data.draw(mutated(files["c"]))))


@fuzz(150)
@given(data=st.data())
def test_hex_folder_bytes(folder, files, data):
    name = data.draw(st.sampled_from(sorted(files["hex"])))
    hexdir = folder / "fz-hex"
    hexdir.mkdir(exist_ok=True)
    for file, content in files["hex"].items():
        (hexdir / file).write_bytes(data.draw(mutated(content)) if file == name else content)
    one_line_or_result(E.read_hex, hexdir)


# --- data files ---------------------------------------------------------------------------------


@fuzz(200)
@given(data=st.data(), compressed=st.booleans())
def test_idx_bytes(folder, files, data, compressed):
    raw = data.draw(mutated(files["idx"]))
    content = gzip.compress(raw, mtime=0) if compressed and data.draw(st.booleans()) else \
        data.draw(mutated(files["idx.gz"])) if compressed else raw
    one_line_or_result(read_idx, write_file(folder, "fz-idx3-ubyte", content))


def _h5_variants() -> list:
    """Structural damage to an SHD-layout file: (description, function(h5 file))."""
    def replace(key, value):
        def edit(f):
            del f[key]
            f[key] = value
        return edit

    def external(key):
        def edit(f):
            del f[key]
            f[key] = h5py.ExternalLink("/nonexistent/other.h5", "/x")
        return edit

    def soft(key):
        def edit(f):
            del f[key]
            f[key] = h5py.SoftLink("/nowhere")
        return edit

    def group(key):
        def edit(f):
            del f[key]
            f.create_group(key)
        return edit

    def attr(value):
        def edit(f):
            f.attrs["n_channels"] = value
        return edit

    variants = []
    for key in ("labels", "spikes/times", "spikes/units"):
        variants += [(f"{key} external", external(key)), (f"{key} soft", soft(key)),
                     (f"{key} group", group(key)),
                     (f"{key} strings", replace(key, np.array([b"a", b"b", b"c"]))),
                     (f"{key} floats", replace(key, np.array([0.5, np.nan, np.inf]))),
                     (f"{key} 2-d", replace(key, np.zeros((3, 2, 2)))),
                     (f"{key} scalar", replace(key, np.int64(3))),
                     (f"{key} empty", replace(key, np.zeros(0)))]
    variants += [("spikes external", external("spikes")),
                 ("labels huge", replace("labels", np.full(3, 2 ** 40))),
                 ("attr string", attr("seven")), ("attr array", attr(np.arange(3))),
                 ("extra/keys bytes",
                  lambda f: f.create_dataset("extra/keys", data=np.array([b"\xff\xfe"] * 3))),
                 ("extra/speaker external", lambda f: f.__setitem__("extra/speaker",
                                                                  h5py.ExternalLink("/no.h5", "/s")))]
    return variants


@fuzz(60)
@given(data=st.data())
def test_hdf5_bytes(folder, files, data):
    path = write_file(folder, "fz.h5", data.draw(mutated(files["h5"])))
    one_line_or_result(lambda p: read_spike_file(p, N_CHANNELS, N_CLASSES), path)


@pytest.mark.parametrize("name, edit", _h5_variants(), ids=[n for n, _ in _h5_variants()])
def test_hdf5_structure(folder, files, name, edit):
    path = write_file(folder, "fz-struct.h5", files["h5"])
    with h5py.File(path, "r+") as f:
        edit(f)
    one_line_or_result(lambda p: read_spike_file(p, N_CHANNELS, N_CLASSES), path)


# --- config files -------------------------------------------------------------------------------


@fuzz(250)
@given(data=st.data())
def test_toml_bytes(folder, files, data):
    content = data.draw(mutated(files["toml"]))
    one_line_or_result(config_mod.load_config, write_file(folder, "fz.toml", content))
