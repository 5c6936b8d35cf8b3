"""C header export and the portable C99 reference inference (``examples/c/bstdg_infer.c``).

The header defines the sizes as macros, per layer a ``static const uint8_t`` array of
packed sign bits (rows of ``ceil(n_in/8)`` bytes, MSB first, bit 1 = +1, exactly the npz's
``layer{l}_bits``) and a ``static const int16_t`` array of thresholds, plus a CRC-32 of the
network that the C program checks at start-up. The encoder definition is a JSON comment;
``BSTDG_DIGEST`` (the SHA-256 of :meth:`ExportedNet.digest`, as in the npz) covers the
network and the encoder, and :func:`read_c_header` checks both.

Samples for the C program, a text file in one of two formats:

* version 2 (:func:`write_event_samples`, any input code): a first line
  ``bstdg-samples 2 N_INPUTS T_MAX``, then one sample per line: the number of input spikes
  ``E``, then ``E`` pairs ``time unit`` in time order (an input may spike many times);
* version 1 (:func:`write_samples`, at most one spike per input): a first line
  ``bstdg-samples 1 N_INPUTS T_MAX``, then one sample per line: ``N_INPUTS`` integers, the
  spike time of each input in ``0..T_MAX`` (``T_MAX`` = no spike).

With ``-d`` the program prints ``class tie time`` per sample (:func:`run_reference`), so
``--verify`` compares predictions, ties and decision times.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .layered import ExportedLayeredNet, to_engine
from .model import ExportError, ExportedNet, from_binary_net, parse_encoder
from .verify import Rerun

FORMAT_VERSION = 2  # version 1: fc networks; version 2: layered (conv/pool/fc), :mod:`.c_layered`
SAMPLES_MAGIC = "bstdg-samples"
REFERENCE_SOURCE = Path(__file__).resolve().parents[2] / "examples" / "c" / "bstdg_infer.c"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic"]


def checksum(head, layers) -> int:
    """CRC-32 (IEEE, as zlib) of the ``head`` values as uint32 little-endian, then per
    ``(packed, thresholds)`` of ``layers`` the packed weight bytes and the thresholds as
    int16 little-endian (both header versions: :func:`crc32`, :func:`.c_layered.crc32`)."""
    crc = zlib.crc32(np.array(head, "<u4").tobytes())
    for packed, th in layers:
        crc = zlib.crc32(packed.tobytes(), crc)
        crc = zlib.crc32(np.asarray(th, "<i2").tobytes(), crc)
    return crc


def crc32(ex: ExportedNet) -> int:
    """CRC-32 (IEEE, as zlib) of: t_max and the sizes as uint32 little-endian, then per layer
    the packed weight bytes and the thresholds as int16 little-endian."""
    return checksum([ex.t_max, *ex.sizes],
                    ((np.packbits(b, axis=1), th) for b, th in zip(ex.bits, ex.thresholds)))


def array(ctype: str, name: str, values, per_line: int, fmt) -> str:
    """``static const ctype name[n] = {...};``, ``per_line`` values a line, each ``fmt(v)``."""
    values = list(values)
    rows = [", ".join(fmt(v) for v in values[i:i + per_line])
            for i in range(0, len(values), per_line)]
    body = ",\n    ".join(rows)
    return f"static const {ctype} {name}[{len(values)}] = {{\n    {body}\n}};\n"


def encoder_comment(encoder: dict) -> str:
    """The ``/* bstdg-encoder-json: ... */`` line (``*/`` escaped so the comment holds)."""
    text = json.dumps(encoder, sort_keys=True).replace("*/", "*\\/")
    return f"/* bstdg-encoder-json: {text} */"


def header(comment: list, version: int, ex, crc: int, arrays: list, layers: list) -> str:
    """The text of a C header of either version: the ``comment`` lines, the include guard,
    the macros (``BSTDG_FORMAT_VERSION`` = ``version``, the sizes of ``ex``, ``BSTDG_CRC32``
    = ``crc``, ``BSTDG_DIGEST``), the ``bstdg_sizes`` array and then ``arrays`` (array
    texts); per layer ``l`` a ``(note, packed, thresholds)`` of ``layers``: the comment
    ``/* layer l: note */`` and the arrays ``bstdg_w{l}`` (the packed bytes) and
    ``bstdg_th{l}``; last the tables of pointers to them."""
    sizes, n_layers = ex.sizes, len(layers)
    out = [
        *comment,
        "#ifndef BSTDG_MODEL_H",
        "#define BSTDG_MODEL_H",
        "#include <stdint.h>",
        "",
        f"#define BSTDG_FORMAT_VERSION {version}",
        f"#define BSTDG_N_LAYERS {n_layers}",
        f"#define BSTDG_T_MAX {ex.t_max}",
        f"#define BSTDG_N_INPUTS {sizes[0]}",
        f"#define BSTDG_N_OUTPUTS {sizes[-1]}",
        f"#define BSTDG_N_NEURONS {sum(sizes[1:])}",
        f"#define BSTDG_MAX_WIDTH {max(sizes)}",
        f"#define BSTDG_CRC32 0x{crc:08x}UL",
        f"#define BSTDG_DIGEST \"{ex.digest()}\"  /* SHA-256 of the network and the encoder */",
        "",
        array("uint32_t", "bstdg_sizes", sizes, 16, str),
        *arrays,
    ]
    for l, (note, packed, th) in enumerate(layers):
        out.append(f"/* layer {l}: {note} */")
        out.append(array("uint8_t", f"bstdg_w{l}", np.ravel(packed), 16, lambda v: f"0x{v:02x}"))
        out.append(array("int16_t", f"bstdg_th{l}", th, 16, str))
    names = ", ".join(f"bstdg_w{l}" for l in range(n_layers))
    out.append(f"static const uint8_t *const bstdg_weights[BSTDG_N_LAYERS] = {{{names}}};")
    names = ", ".join(f"bstdg_th{l}" for l in range(n_layers))
    out.append(f"static const int16_t *const bstdg_thresholds[BSTDG_N_LAYERS] = {{{names}}};")
    out += ["", "#endif /* BSTDG_MODEL_H */", ""]
    return "\n".join(out)


COMMENT = [
    "/* bstdg network export: binary fire-once IF network, generated by `bstdg export "
    "--format c`.",
    " * Weights: per layer, n_out rows of ceil(n_in/8) bytes; bit (7 - i%8) of byte i/8 of",
    " * row j is input i of neuron j, 1 = +1 and 0 = -1; padding bits are 0.",
    " * Thresholds: the smallest integer potential that fires (int16, >= 1).",
    " * Semantics and the prediction rule: docs/export.md; reference: examples/c/bstdg_infer.c",
    " */",
]


def header_text(ex: ExportedNet) -> str:
    """The version 1 header of an fc network."""
    layers = []
    for b, th in zip(ex.bits, ex.thresholds):
        packed = np.packbits(b, axis=1)
        layers.append((f"{b.shape[1]} inputs -> {b.shape[0]} neurons, {packed.shape[1]} bytes per row",
                       packed, th))
    return header([*COMMENT, encoder_comment(ex.encoder)], 1, ex, crc32(ex), [], layers)


def export_c(net, encoder: dict, path) -> Path:
    """Write ``net`` (a :class:`~bstdg.engine.BinaryNet`) as a C header."""
    return write_c(from_binary_net(net, encoder), path)


def write_c(ex, path) -> Path:
    if isinstance(ex, ExportedLayeredNet):
        from .c_layered import header_text as layered_header_text

        return atomic_write(path, layered_header_text(ex).encode())
    return atomic_write(path, header_text(ex).encode())


_DEFINE = re.compile(r"^#define\s+(BSTDG_\w+)\s+(\S+)\s*(?:/\*.*\*/)?\s*$", re.M)
_ARRAY = re.compile(r"static const (uint8_t|int16_t|uint32_t) (\w+)\[(\d+)\] = \{([^}]*)\};")


def layer_arrays(arrays: dict, l: int, n_rows: int, n_bits: int, source: str) -> tuple:
    """``(bits, thresholds)`` of layer ``l`` from the parsed arrays ``bstdg_w{l}`` (``n_rows``
    rows of ``n_bits`` sign bits, each padded to whole bytes) and ``bstdg_th{l}``: bits uint8
    ``(n_rows, n_bits)``, thresholds int64; ExportError when the bytes do not fit."""
    packed = np.array(arrays[f"bstdg_w{l}"], np.int64)
    if packed.size != n_rows * ((n_bits + 7) // 8) or packed.min(initial=0) < 0 \
            or packed.max(initial=0) > 255:
        raise ExportError(f"{source}: layer {l} weights do not hold {n_rows} rows of "
                          f"{(n_bits + 7) // 8} bytes")
    row = np.unpackbits(packed.astype(np.uint8).reshape(n_rows, -1), axis=1)
    if row[:, n_bits:].any():
        raise ExportError(f"{source}: layer {l} weights have non-zero padding bits")
    return np.ascontiguousarray(row[:, :n_bits]), np.array(arrays[f"bstdg_th{l}"], np.int64)


def check_crc(macros: dict, crc: int, source: str) -> None:
    """ExportError unless the header's ``BSTDG_CRC32`` is ``crc``."""
    if crc != int(macros["BSTDG_CRC32"].rstrip("UuLl"), 0):
        raise ExportError(f"{source}: content does not match BSTDG_CRC32 (corrupt or edited header)")


def read_c_header(path):
    """The network in a header written by :func:`write_c`: parsed, its CRC-32 and its
    ``BSTDG_DIGEST`` (which covers the encoder JSON too) checked. Headers without the
    digest (written before it existed, or damaged) are refused: re-export them.
    ExportError with one line for anything else."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ExportError(f"{source}: cannot read the C header ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ExportError(f"{source}: not a bstdg C header (not UTF-8 text: {exc.reason} at "
                          f"byte {exc.start})") from None
    try:
        macros = dict(_DEFINE.findall(text))
        arrays = {}
        for ctype, name, n, body in _ARRAY.findall(text):
            values = [int(v, 0) for v in body.replace("\n", " ").split(",") if v.strip()]
            if len(values) != int(n):
                raise ExportError(f"{source}: array {name} declares {n} values, holds {len(values)}")
            arrays[name] = values
        match = re.search(r"/\* bstdg-encoder-json: (.*) \*/", text)
        if match is None or "BSTDG_N_LAYERS" not in macros:
            raise ExportError(f"{source}: not a bstdg C header (`bstdg export --format c`)")
        if int(macros["BSTDG_FORMAT_VERSION"]) > FORMAT_VERSION:
            raise ExportError(f"{source}: header format v{macros['BSTDG_FORMAT_VERSION']} is "
                              f"newer than this bstdg (v{FORMAT_VERSION})")
        if int(macros["BSTDG_FORMAT_VERSION"]) == 2:
            from .c_layered import read_layered

            return read_layered(text, macros, arrays, source)
        encoder = parse_encoder(match.group(1), source)
        n_layers, t_max = int(macros["BSTDG_N_LAYERS"]), int(macros["BSTDG_T_MAX"])
        sizes = arrays["bstdg_sizes"]
        if len(sizes) != n_layers + 1 or sizes[0] != int(macros["BSTDG_N_INPUTS"]) \
                or sizes[-1] != int(macros["BSTDG_N_OUTPUTS"]):
            raise ExportError(f"{source}: sizes {sizes} disagree with the macros")
        layers = [layer_arrays(arrays, l, sizes[l + 1], sizes[l], source) for l in range(n_layers)]
        ex = ExportedNet(tuple(b for b, _ in layers), tuple(th for _, th in layers), t_max,
                         encoder).check(source)
        check_crc(macros, crc32(ex), source)
        digest = macros.get("BSTDG_DIGEST")
    except ExportError:
        raise
    except (KeyError, ValueError, IndexError, TypeError, OverflowError) as exc:
        raise ExportError(f"{source}: malformed or truncated C header "
                          f"({type(exc).__name__}: {str(exc)[:100]})") from None
    if digest is None:
        raise ExportError(f"{source}: has no BSTDG_DIGEST, the checksum that covers the encoder "
                          f"(damaged, or written by an older bstdg): export it again with "
                          f"`bstdg export RUN --format c`")
    if digest.strip('"') != ex.digest():
        raise ExportError(f"{source}: the network or its encoder JSON comment does not match "
                          f"BSTDG_DIGEST (corrupt or edited header)")
    return ex


def load_c_header(path):
    """``(BinaryNet, encoder)`` from a C header export (``(LayeredNet, encoder)`` for version 2)."""
    return to_engine(read_c_header(path))


# --- the C reference program --------------------------------------------------------------


def c_compiler() -> str | None:
    """The C compiler to use (``$CC``-less: ``cc``, then ``gcc``, then ``clang``), or None."""
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def compile_reference(header, build_dir, source=REFERENCE_SOURCE) -> Path:
    """Compile the reference inference against ``header``; returns the executable."""
    cc = c_compiler()
    if cc is None:
        raise ExportError("no C compiler found (cc, gcc or clang) to build the C reference")
    source = Path(source)
    if not source.is_file():
        raise ExportError(f"C reference source not found at {source} (it ships in the "
                          f"repository's examples/c/)")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(header, build_dir / "bstdg_model.h")
    exe = build_dir / "bstdg_infer"
    cmd = [cc, *CFLAGS, "-I", str(build_dir), "-o", str(exe), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or done.stderr.strip():
        raise ExportError(f"compiling the C reference failed or warned: {' '.join(cmd)}: "
                          f"{done.stderr.strip()[:2000]}")
    return exe


def spike_time_matrix(events, t_max: int) -> np.ndarray:
    """Spike times ``(B, n_inputs)`` (``t_max`` = none) of latency-coded events, for samples
    format 1; ExportError when an input spikes more than once (format 2 carries those:
    :func:`write_event_samples`)."""
    times = np.full((len(events), events.n_units), t_max, np.int64)
    owner = events.owner()
    times[owner, events.units] = events.times
    if np.count_nonzero(times < t_max) != len(owner) or (np.asarray(events.times) >= t_max).any():
        raise ExportError("samples format 1 holds one spike time per input; these samples "
                          "have inputs that spike more than once (write format 2)")
    return times


def write_samples(path, times: np.ndarray, t_max: int) -> Path:
    """Write spike times ``(B, n_inputs)`` in the C program's samples format 1 (numbers
    right-aligned in fixed-width columns)."""
    times = np.asarray(times, np.int64)
    if times.size and (times.min() < 0 or times.max() > t_max):
        raise ExportError(f"spike times must be in 0..{t_max}")
    width = len(str(t_max))
    path = Path(path)
    with open(path, "wb") as f:
        f.write(f"{SAMPLES_MAGIC} 1 {times.shape[1]} {t_max}\n".encode())
        for start in range(0, len(times), 1024):
            block = times[start:start + 1024]
            chars = np.full(block.shape + (width + 1,), ord(" "), np.uint8)
            value = block.copy()
            for k in range(width, 0, -1):  # digits right to left; leading zeros stay blank
                digit = (value % 10).astype(np.uint8)
                show = (value > 0) | (k == width)
                chars[..., k] = np.where(show, ord("0") + digit, ord(" "))
                value //= 10
            lines = chars.reshape(len(block), -1)[:, 1:]  # no separator before input 0
            newline = np.full((len(block), 1), ord("\n"), np.uint8)
            f.write(np.concatenate([lines, newline], axis=1).tobytes())
    return path


def write_event_samples(path, events, t_max: int) -> Path:
    """Write ``events`` (a :class:`~bstdg.encoding.SpikeEvents`, any number of spikes per
    input) in the C program's samples format 2: per sample the spike count, then the
    ``time unit`` pairs sorted by time (the order within a step is kept; it changes nothing)."""
    times = np.asarray(events.times, np.int64)
    units = np.asarray(events.units, np.int64)
    ptr = np.asarray(events.ptr, np.int64)
    if len(times) and (times.min() < 0 or times.max() >= t_max):
        raise ExportError(f"spike times must be in 0..{t_max - 1}")
    if len(units) and (units.min() < 0 or units.max() >= events.n_units):
        raise ExportError(f"input units must be in 0..{events.n_units - 1}")
    order = np.lexsort((times, events.owner()))  # by sample, then time; stable
    pairs = np.column_stack([times[order], units[order]]).ravel()
    path = Path(path)
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(f"{SAMPLES_MAGIC} 2 {events.n_units} {t_max}\n")
        for b in range(len(ptr) - 1):
            lo, hi = int(ptr[b]), int(ptr[b + 1])
            body = " ".join(map(str, pairs[2 * lo:2 * hi].tolist()))
            f.write(f"{hi - lo} {body}\n" if hi > lo else "0\n")
    return path


def run_reference(exe, samples_path) -> Rerun:
    """Run the compiled reference on a samples file (``-d``); returns its predictions, tie
    flags and decision times."""
    done = subprocess.run([str(exe), "-d", str(samples_path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ExportError(f"the C reference failed: {done.stderr.strip()}")
    values = np.array(done.stdout.split(), np.int64).reshape(-1, 3)
    return Rerun(values[:, 0], values[:, 1].astype(bool), values[:, 2])


def run_c_reference(header, events, t_max: int) -> Rerun:
    """Compile the reference against ``header`` in a temporary folder and run ``events``
    (samples format 2: any number of spikes per input); returns its predictions, tie flags
    and decision times."""
    with tempfile.TemporaryDirectory(prefix="bstdg-c-") as tmp:
        exe = compile_reference(header, tmp)
        samples = write_event_samples(Path(tmp) / "samples.txt", events, t_max)
        return run_reference(exe, samples)
