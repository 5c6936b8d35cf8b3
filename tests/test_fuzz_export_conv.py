"""Fuzz the readers of layered (conv/pool/fc) exports: a damaged npz, NIR, C header or hex
folder gives one-line BstdgError or a valid network, never any other exception (the
strategies of tests/test_fuzz_readers.py)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bstdg import export as E  # noqa: E402
from bstdg.arch import Architecture  # noqa: E402
from bstdg.engine.conv import LayeredNet, weight_shape  # noqa: E402
from test_fuzz_readers import (arrays_of, fuzz, mutated, mutated_member, npz_bytes,  # noqa: E402
                               one_line_or_result, replaced_arrays, write_file)


@pytest.fixture(scope="module")
def folder():
    path = Path(tempfile.mkdtemp(prefix="bstdg-fuzz-conv-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def files(folder):
    rng = np.random.default_rng(0)
    arch = Architecture.parse("conv2k3p1,pool2", (1, 6, 6), 3)
    net = LayeredNet(arch, tuple(np.where(rng.random(weight_shape(arch, l)) < 0.5, 1, -1).astype(np.int8)
                                 for l in range(3)),
                     tuple(rng.integers(1, 4, n).astype(np.int32) for n in arch.sizes[1:]), 8)
    ex = E.from_layered_net(net, E.latency_encoder(8, [1, 6, 6], "mnist"))
    out = {}
    names = {"npz": "export.npz", "c": "model.h", "nir": "export.nir"}
    for fmt in ("npz", "c") + (("nir",) if _have_nir() else ()):
        out[fmt] = E.write(fmt, ex, folder / names[fmt]).read_bytes()
    hexdir = E.write("hex", ex, folder / "hex")
    out["hex"] = {p.name: p.read_bytes() for p in hexdir.iterdir()}
    return out


def _have_nir() -> bool:
    try:
        import nir  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_valid_files_read(folder, files):
    for fmt, name in (("npz", "e.npz"), ("c", "m.h")):
        assert str(E.read(fmt, write_file(folder, name, files[fmt])).arch) == "conv2k3p1,pool2"


@fuzz(150)
@given(data=st.data())
def test_layered_npz_bytes(folder, files, data):
    one_line_or_result(E.read_npz, write_file(folder, "fz.npz", data.draw(mutated(files["npz"]))))


@fuzz(100)
@given(data=st.data())
def test_layered_npz_npy_headers(folder, files, data):
    one_line_or_result(E.read_npz, write_file(folder, "fz3.npz", data.draw(mutated_member(files["npz"]))))


@fuzz(150)
@given(data=st.data())
def test_layered_npz_arrays(folder, files, data):
    arrays = data.draw(replaced_arrays(arrays_of(files["npz"])))
    one_line_or_result(E.read_npz, write_file(folder, "fz2.npz", npz_bytes(arrays)))


@fuzz(60)
@given(data=st.data())
def test_layered_nir_bytes(folder, files, data):
    if "nir" not in files:
        pytest.skip("no nir package")
    one_line_or_result(E.read_nir, write_file(folder, "fz.nir", data.draw(mutated(files["nir"]))))


@fuzz(200)
@given(data=st.data())
def test_layered_c_header_bytes(folder, files, data):
    one_line_or_result(E.read_c_header, write_file(folder, "fz.h", data.draw(mutated(files["c"]))))


@fuzz(120)
@given(data=st.data())
def test_layered_hex_folder_bytes(folder, files, data):
    name = data.draw(st.sampled_from(sorted(files["hex"])))
    hexdir = folder / "fz-hex"
    hexdir.mkdir(exist_ok=True)
    for file, content in files["hex"].items():
        (hexdir / file).write_bytes(data.draw(mutated(content)) if file == name else content)
    one_line_or_result(E.read_hex, hexdir)
