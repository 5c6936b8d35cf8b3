"""Caltech101 Faces vs Motorbikes: JPEG folders to Gabor or DoG latency spikes.

Two layouts are accepted (see ``datasets/README.md``):

* **split folders** ``train/{face,motorbike}/*.jpg`` and ``test/{face,motorbike}/*.jpg``
  (the usual 200+200 / 198+198 split of the spiking-CNN and S4NN papers);
* **the full Caltech101 download**: its ``Faces`` and ``Motorbikes`` category folders
  (``101_ObjectCategories/``); ``train_per_class`` and ``test_per_class`` images of each
  class are drawn, disjointly, with the fixed ``split_seed``.

Encoding (options with their defaults in ``bstdg/configs/caltech-face-motor.toml``): each
image is converted to grayscale (RGB and grayscale JPEGs may be mixed), resized to
``height`` x ``width`` (bilinear) and scaled to [0, 1], then filtered (reflected borders)
into feature maps by one of two front ends (``filter``):

* ``"gabor"`` (default): ``gabor_orientations`` even (cosine) Gabor filters
  ``exp(-(x'^2 + aspect^2 y'^2) / (2 sigma^2)) cos(2 pi x' / wavelength)``, ``x'`` along
  orientation ``k * 180 / orientations`` degrees (``gabor_size`` x ``gabor_size`` window,
  zero mean, absolute weights summing to 1); one map ``|response|`` per orientation:
  edges and bars of either polarity.
* ``"dog"``: a difference of Gaussians ``G(dog_sigma_centre) - G(dog_sigma_surround)``
  (``dog_size`` x ``dog_size`` window, each Gaussian normalised to sum 1) gives an
  on-centre map ``max(DoG, 0)`` and an off-centre map ``max(-DoG, 0)``.

All maps of an image are divided by its strongest response, optionally max-pooled over
``pool`` x ``pool`` blocks (the earliest spike of a block, in latency terms) and
latency-coded with :func:`~bstdg.encoding.encode_latency`: the strongest response spikes at
step 0, responses at or below ``floor`` never spike. Input unit ``(c * H + y) * W + x`` is
map ``c`` at pooled pixel (y, x), ``H = height // pool``, ``W = width // pool``.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from bstdg.encoding import encode_latency, times_to_events
from bstdg.errors import DataError

NAME = "caltech-face-motor"
CLASSES = ("face", "motorbike")  # label 0, 1
SPLITS = ("train", "test")
FULL_FOLDERS = ("Faces", "Motorbikes")  # Caltech101 category folders, label 0, 1
FULL_PARENTS = ("", "101_ObjectCategories", "caltech-101/101_ObjectCategories",
                "caltech101/101_ObjectCategories")
# Image counts of the known copies (checked by `bstdg data verify`).
KNOWN_SPLIT_COUNTS = {"train/face": 200, "train/motorbike": 200,
                      "test/face": 198, "test/motorbike": 198}
KNOWN_FULL_COUNTS = {"Faces": 435, "Motorbikes": 798}
JPEG_SUFFIXES = (".jpg", ".jpeg")


def _jpegs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())


# --- finding the files -------------------------------------------------------------------


def probe(name: str, folder: Path, options: dict | None = None) -> tuple[Path | None, str | None]:
    """``(folder to use, None)`` when ``folder`` holds either layout; ``(None, problem)``
    when it holds part of one (a missing or empty class folder); ``(None, None)`` if no
    trace of the dataset is there."""
    split_dirs = [folder / split / cls for split in SPLITS for cls in CLASSES]
    present = [d for d in split_dirs if d.is_dir()]
    if present:
        missing = [str(d.relative_to(folder)) for d in split_dirs if not d.is_dir()]
        if missing:
            return None, f"{folder} has only part of the split folders (missing {', '.join(missing)})"
        empty = [str(d.relative_to(folder)) for d in split_dirs if not _jpegs(d)]
        if empty:
            return None, f"{folder}: no .jpg files in {', '.join(empty)}"
        return folder, None
    for parent in FULL_PARENTS:
        base = folder / parent if parent else folder
        dirs = [base / sub for sub in FULL_FOLDERS]
        if any(d.is_dir() for d in dirs):
            missing = [d.name for d in dirs if not d.is_dir() or not _jpegs(d)]
            if missing:
                return None, f"{base} has no (or an empty) {' and '.join(missing)} folder"
            return base, None
    return None, None


def missing_hint(name: str, options: dict | None = None) -> str:
    return (f"Run `bstdg data fetch {name}` (downloads Caltech101, keeps Faces and Motorbikes), "
            f"or place train/{{face,motorbike}}/*.jpg and test/{{face,motorbike}}/*.jpg, or "
            f"Caltech101's 101_ObjectCategories/{{Faces,Motorbikes}}/, in datasets/{name}/ "
            f"(or point BSTDG_DATA / --data-dir at it)")


def wanted_files(name: str, options: dict | None = None) -> tuple[str, ...]:
    return tuple(f"{split}/{cls}/*.jpg" for split in SPLITS for cls in CLASSES)


def is_full_layout(folder: Path) -> bool:
    return all((folder / sub).is_dir() for sub in FULL_FOLDERS) and not (folder / "train").is_dir()


def _round_robin(per_class: list[list[Path]]) -> tuple[list[Path], np.ndarray]:
    """Interleave the classes (a, b, a, b, ...) so that the first N samples are balanced."""
    paths, labels = [], []
    for i in range(max(len(c) for c in per_class)):
        for label, items in enumerate(per_class):
            if i < len(items):
                paths.append(items[i])
                labels.append(label)
    return paths, np.asarray(labels, np.int64)


def split_files(folder: Path, split: str, options: dict) -> tuple[list[Path], np.ndarray]:
    """The JPEG paths and labels (0 face, 1 motorbike) of ``split``, classes interleaved."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected train or test")
    if not is_full_layout(folder):
        per_class = [_jpegs(folder / split / cls) for cls in CLASSES]
        for cls, files in zip(CLASSES, per_class):
            if not files:
                raise DataError(f"{NAME} {split}: no .jpg files in {folder / split / cls}")
        return _round_robin(per_class)
    n_train, n_test = int(options["train_per_class"]), int(options["test_per_class"])
    if n_train < 1 or n_test < 1:
        raise DataError(f"{NAME}: train_per_class and test_per_class must be at least 1")
    rng = np.random.default_rng(int(options["split_seed"]))
    per_class = []
    for sub in FULL_FOLDERS:
        files = _jpegs(folder / sub)
        if len(files) < n_train + n_test:
            raise DataError(f"{folder / sub} holds {len(files)} images; the split needs "
                            f"{n_train} train + {n_test} test")
        order = rng.permutation(len(files))
        chosen = order[:n_train] if split == "train" else order[n_train:n_train + n_test]
        per_class.append([files[i] for i in sorted(chosen)])
    return _round_robin(per_class)


# --- images and encoding -------------------------------------------------------------------


# Largest image read_gray decodes (pixels); Caltech101's largest is about 0.3 Mpixel.
MAX_IMAGE_PIXELS = 40_000_000


def read_gray(path: Path, height: int, width: int) -> np.ndarray:
    """One JPEG as float64 ``(height, width)`` in [0, 1]: grayscale, bilinear resize. An
    image whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels is refused before
    it is decoded; any decoding failure is one DataError line."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refused, not printed
            image = Image.open(path)
        with image:
            w, h = image.size
            if w * h > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: image of {w} x {h} pixels, more than the "
                                f"{MAX_IMAGE_PIXELS:,} bstdg decodes (damaged file or a "
                                f"decompression bomb?)")
            image.draft("L", (2 * width, 2 * height))  # JPEG: decode at a reduced scale
            gray = image.convert("L").resize((width, height), Image.BILINEAR)
            return np.asarray(gray, dtype=np.float64) / 255.0
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a bad file
        # (UnidentifiedImageError, OSError, ValueError, SyntaxError, DecompressionBombError, ...)
        reason = " ".join(str(exc).split())[:150]
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {reason})") from None


def gaussian_1d(sigma: float, size: int) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _correlate(images: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` images correlated with ``(C, k, k)`` kernels (reflected borders):
    ``(N, C, H, W)``."""
    size = kernels.shape[-1]
    r = size // 2
    padded = np.pad(images, ((0, 0), (r, r), (r, r)), mode="reflect")
    h, w = images.shape[1:]
    out = np.zeros((len(images), len(kernels), h, w))
    for i in range(size):
        for j in range(size):
            out += kernels[None, :, i, j, None, None] * padded[:, None, i:i + h, j:j + w]
    return out


def _check_window(images: np.ndarray, size: int, what: str) -> None:
    if size < 3 or size % 2 == 0:
        raise DataError(f"{NAME}: {what} must be odd and at least 3, got {size}")
    if min(images.shape[1:]) <= size // 2:
        raise DataError(f"{NAME}: images of {images.shape[1]}x{images.shape[2]} are too small "
                        f"for a {size}x{size} filter window")


def _scale_to_peak(maps: np.ndarray) -> np.ndarray:
    """Each image's maps divided by their largest value (all zero stays zero)."""
    maps[np.abs(maps) < 1e-9] = 0.0  # rounding noise of a flat region is no edge
    peak = maps.reshape(len(maps), -1).max(axis=1)
    scale = np.where(peak > 0, 1.0 / np.where(peak > 0, peak, 1.0), 0.0)
    return maps * scale[:, None, None, None]


def dog_responses(images: np.ndarray, sigma_centre: float, sigma_surround: float,
                  size: int) -> np.ndarray:
    """On- and off-centre DoG responses ``(N, 2, H, W)``, each image divided by its largest
    response (all zero for a flat image)."""
    _check_window(images, size, "dog_size")
    if not 0 < sigma_centre < sigma_surround:
        raise DataError(f"{NAME}: need 0 < dog_sigma_centre < dog_sigma_surround, got "
                        f"{sigma_centre}, {sigma_surround}")
    kernel = (np.outer(gaussian_1d(sigma_centre, size), gaussian_1d(sigma_centre, size))
              - np.outer(gaussian_1d(sigma_surround, size), gaussian_1d(sigma_surround, size)))
    dog = _correlate(images, kernel[None])[:, 0]
    return _scale_to_peak(np.stack([np.maximum(dog, 0.0), np.maximum(-dog, 0.0)], axis=1))


def gabor_kernels(size: int, wavelength: float, sigma: float, aspect: float,
                  orientations: int) -> np.ndarray:
    """``(orientations, size, size)`` even Gabor kernels (see the module docstring),
    each zero-mean with absolute weights summing to 1; lengths in pixels."""
    r = size // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    kernels = []
    for k in range(orientations):
        angle = np.pi * k / orientations
        along = x * np.cos(angle) + y * np.sin(angle)
        across = -x * np.sin(angle) + y * np.cos(angle)
        g = (np.exp(-(along ** 2 + aspect ** 2 * across ** 2) / (2 * sigma ** 2))
             * np.cos(2 * np.pi * along / wavelength))
        g -= g.mean()
        kernels.append(g / np.abs(g).sum())
    return np.stack(kernels)


def gabor_responses(images: np.ndarray, size: int, wavelength: float, sigma: float,
                    aspect: float, orientations: int) -> np.ndarray:
    """``|response|`` of each Gabor orientation ``(N, orientations, H, W)``, each image
    divided by its largest response (all zero for a flat image)."""
    _check_window(images, size, "gabor_size")
    if orientations < 1 or wavelength <= 0 or sigma <= 0 or aspect <= 0:
        raise DataError(f"{NAME}: gabor_orientations must be at least 1 and gabor_wavelength, "
                        f"gabor_sigma, gabor_aspect positive")
    kernels = gabor_kernels(size, wavelength, sigma, aspect, orientations)
    return _scale_to_peak(np.abs(_correlate(images, kernels)))


def max_pool(maps: np.ndarray, pool: int) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, C, H // pool, W // pool)``, the maximum of each block
    (a ragged last row/column of blocks is dropped)."""
    if pool == 1:
        return maps
    n, c, h, w = maps.shape
    if pool < 1 or pool > min(h, w):
        raise DataError(f"{NAME}: pool must be 1..{min(h, w)} for {h}x{w} images, got {pool}")
    h2, w2 = h // pool, w // pool
    blocks = maps[:, :, :h2 * pool, :w2 * pool].reshape(n, c, h2, pool, w2, pool)
    return blocks.max(axis=(3, 5))


def feature_maps(images: np.ndarray, options: dict) -> np.ndarray:
    """The encoder's front end: ``(N, H, W)`` images in [0, 1] to ``(N, C, H', W')`` maps
    in [0, 1] (filter, scale to the image's peak, pool)."""
    kind = options["filter"]
    if kind == "gabor":
        maps = gabor_responses(images, int(options["gabor_size"]), float(options["gabor_wavelength"]),
                               float(options["gabor_sigma"]), float(options["gabor_aspect"]),
                               int(options["gabor_orientations"]))
    elif kind == "dog":
        maps = dog_responses(images, float(options["dog_sigma_centre"]),
                             float(options["dog_sigma_surround"]), int(options["dog_size"]))
    else:
        raise DataError(f"{NAME}: filter must be \"gabor\" or \"dog\", got {kind!r}")
    return max_pool(maps, int(options["pool"]))


def encoder_info(t_max: int, options: dict, input_shape) -> dict:
    return {"kind": f"{options['filter']}-latency", "t_max": t_max, "options": dict(options),
            "input_shape": [int(n) for n in input_shape],
            "units": "(map * H + y) * W + x; maps: Gabor orientations, or DoG on- then "
                     "off-centre",
            "formula": "r = filter response / image max (then max-pooled); "
                       "t = round((1 - r) * (t_max - 1)); no spike if r <= floor"}


def load_split(split: str, t_max: int, data_dir, options: dict, limit: int | None = None):
    """``(events, labels, encoder)`` of one split (see the module docstring)."""
    from bstdg.data.fetch import locate

    folder = locate(NAME, data_dir, options)
    paths, labels = split_files(folder, split, options)
    if limit is not None:
        paths, labels = paths[:limit], labels[:limit]
    h, w = int(options["height"]), int(options["width"])
    if h < 1 or w < 1:
        raise DataError(f"{NAME}: height and width must be positive, got {h}x{w}")
    floor = float(options["floor"])
    if not 0 <= floor < 1:
        raise DataError(f"{NAME}: floor must be in [0, 1), got {floor}")
    images = np.stack([read_gray(p, h, w) for p in paths]) if paths else np.zeros((0, h, w))
    maps = feature_maps(images, options)
    times = encode_latency(maps.reshape(len(maps), -1), t_max, floor=floor)
    return times_to_events(times, t_max), labels, encoder_info(t_max, options, maps.shape[1:])


# --- verify ------------------------------------------------------------------------------


def checks(name: str, folder: Path, options: dict | None = None) -> dict[str, bool]:
    """Every class folder present, every image decodes, and the image counts of the known
    copies (split folders: 200/200/198/198; Caltech101: Faces 435, Motorbikes 798). There
    are no published checksums of these JPEG sets, so none are checked."""
    from PIL import Image

    result = {}
    if is_full_layout(folder):
        groups = {sub: folder / sub for sub in FULL_FOLDERS}
        known = KNOWN_FULL_COUNTS
    else:
        groups = {f"{split}/{cls}": folder / split / cls for split in SPLITS for cls in CLASSES}
        known = KNOWN_SPLIT_COUNTS
    for key, sub in groups.items():
        files = _jpegs(sub) if sub.is_dir() else []
        result[f"{key}: {len(files)} images (known copy: {known[key]})"] = len(files) == known[key]
        bad = []
        for path in files:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    image = Image.open(path)
                with image:
                    if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                        raise ValueError("too many pixels")
                    image.verify()
            except Exception:  # noqa: BLE001 - any decoding failure makes the file bad
                bad.append(path.name)
        label = f"{key}: all images decode" if not bad else \
            f"{key}: {len(bad)} unreadable ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})"
        result[label] = not bad and bool(files)
    return result


# --- fetch -------------------------------------------------------------------------------


def _extract_categories(archive: Path, out: Path, workdir: Path) -> int:
    """Copy the Faces and Motorbikes JPEGs of a Caltech101 archive (the official zip, which
    holds ``101_ObjectCategories.tar.gz``, or that tar itself) into ``out/{Faces,Motorbikes}``.
    Returns the number of images copied."""
    pattern = re.compile(r"(?:^|/)(Faces|Motorbikes)/([^/]+\.jpe?g)$", re.IGNORECASE)
    copied = 0

    def save(category: str, base: str, src) -> None:
        nonlocal copied
        (out / category).mkdir(parents=True, exist_ok=True)
        with open(out / category / base, "wb") as dst:
            shutil.copyfileobj(src, dst)
        copied += 1

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                m = pattern.search(member)
                if m and m.group(1) in FULL_FOLDERS:
                    with zf.open(member) as src:
                        save(m.group(1), m.group(2), src)
                elif member.endswith((".tar.gz", ".tgz", ".tar")) and "101_ObjectCategories" in member:
                    inner = workdir / Path(member).name
                    with zf.open(member) as src, open(inner, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    copied += _extract_categories(inner, out, workdir)
                    inner.unlink()
        return copied
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                m = pattern.search(member.name)
                if member.isfile() and m and m.group(1) in FULL_FOLDERS:
                    save(m.group(1), m.group(2), tar.extractfile(member))
    except tarfile.TarError as exc:
        raise DataError(f"{archive.name} is neither a zip nor a tar archive ({exc})") from None
    return copied


def fetch(name: str, dest_root: Path, progress: bool | None = None) -> Path:
    """Download the official Caltech101 archive (no published checksum: the result is
    checked by structure and image counts instead), keep its Faces and Motorbikes folders
    in ``dest_root/<name>/101_ObjectCategories/``, and delete the archive."""
    from bstdg.data import fetch as fetch_mod

    dest = Path(dest_root) / name
    target = dest / "101_ObjectCategories"
    if probe(name, target)[0] is not None and all(checks(name, target).values()):
        return target
    dest.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in fetch_mod.get_spec(name).urls:
        with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as work:
            work = Path(work)
            archive = work / "caltech-101.archive"
            staged = work / "101_ObjectCategories"
            try:
                with open(archive, "wb") as out:
                    fetch_mod.stream_url(url, out, "caltech-101", progress)
                _extract_categories(archive, staged, work)
                problems = [k for k, ok in checks(name, staged).items() if not ok]
                if problems:
                    raise DataError(f"the archive's Faces/Motorbikes fail verification: "
                                    f"{'; '.join(problems)}")
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staged, target)
                return target
            except (DataError, OSError, zipfile.BadZipFile, ValueError) as exc:
                failures.append(f"{url}: {fetch_mod._reason(exc)}")
    raise DataError(f"could not fetch {name} (tried {'; '.join(failures)}). Download Caltech101 "
                    f"yourself and place its Faces and Motorbikes folders in {target}/, or the "
                    f"split folders train/{{face,motorbike}} and test/{{face,motorbike}} in {dest}/")
