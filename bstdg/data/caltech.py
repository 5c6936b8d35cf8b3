"""Caltech101 Faces vs Motorbikes: JPEG folders, encoded by the image front ends of
:mod:`bstdg.data.images` (default here: Gabor maps, pooled 4x4).

Two layouts are accepted (see ``datasets/README.md``):

* **split folders** ``train/{face,motorbike}/*.jpg`` and ``test/{face,motorbike}/*.jpg``
  (the usual 200+200 / 198+198 split of the spiking-CNN and S4NN papers);
* **the full Caltech101 download**: its ``Faces`` and ``Motorbikes`` category folders
  (``101_ObjectCategories/``); ``train_per_class`` and ``test_per_class`` images of each
  class are drawn, disjointly, with the fixed ``split_seed``.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bstdg.data.fetch import reason, stream_url
from bstdg.data.base import (EncodedSplit, FileDataset, check_limit, check_split, finish,
                             require)
from bstdg.data.images import (MAX_IMAGE_PIXELS, ImageOptions, encode_images, image_encoder, read_images,
                               round_robin)
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
URLS = ("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",)


@dataclass(frozen=True)
class CaltechOptions(ImageOptions):
    """:class:`~bstdg.data.images.ImageOptions` with this dataset's defaults, and the split
    of the full Caltech101 download."""

    height: int = 80
    width: int = 125
    filter: str = "gabor"
    pool: int = 4
    floor: float = 0.1
    split_seed: int = 0  # full Caltech101 download only: which images go to train and test
    train_per_class: int = 200  # full Caltech101 download only: images per class in train
    test_per_class: int = 198  # ... and in test (the rest are not used)

    def __post_init__(self):
        super().__post_init__()
        require(self.height >= 1 and self.width >= 1, f"height and width must be positive, got "
                f"{self.height}x{self.width}")
        require(self.train_per_class >= 1 and self.test_per_class >= 1,
                "train_per_class and test_per_class must be at least 1")


class CaltechDataset(FileDataset):
    """``caltech-face-motor`` (module docstring); label 0 face, 1 motorbike."""

    name = NAME
    Options = CaltechOptions
    classes = CLASSES
    size = "400/396 JPEGs (usual split), or a split of the full Caltech101 download"

    def probe(self, folder: Path):
        return probe(folder)

    def missing_hint(self) -> str:
        return (f"Run `bstdg data fetch {NAME}` (downloads Caltech101, keeps Faces and Motorbikes), "
                f"or place train/{{face,motorbike}}/*.jpg and test/{{face,motorbike}}/*.jpg, or "
                f"Caltech101's 101_ObjectCategories/{{Faces,Motorbikes}}/, in datasets/{NAME}/ "
                f"(or point BSTDG_DATA / --data-dir at it)")

    def wanted_files(self) -> tuple[str, ...]:
        return tuple(f"{split}/{cls}/*.jpg" for split in SPLITS for cls in CLASSES)

    def checks(self, folder: Path) -> dict[str, bool]:
        return checks(folder)

    def fetch(self, dest_root: Path, progress: bool | None = None) -> Path:
        return fetch(dest_root, progress)

    def load(self, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
        check_limit(limit)
        paths, labels = split_files(self.locate(data_dir), split, self.options)
        if limit is not None:
            paths, labels = paths[:limit], labels[:limit]
        events, shape = encode_images(read_images(paths, self.options), t_max, self.options)
        return finish(NAME, split, events, labels, len(CLASSES),
                      image_encoder(t_max, self.options, shape), CLASSES)


def _jpegs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())


# --- finding the files -------------------------------------------------------------------


def probe(folder: Path) -> tuple[Path | None, str | None]:
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


def is_full_layout(folder: Path) -> bool:
    return all((folder / sub).is_dir() for sub in FULL_FOLDERS) and not (folder / "train").is_dir()


def split_files(folder: Path, split: str, options: CaltechOptions) -> tuple[list[Path], np.ndarray]:
    """The JPEG paths and labels (0 face, 1 motorbike) of ``split``, classes interleaved."""
    check_split(NAME, split)
    if not is_full_layout(folder):
        per_class = [_jpegs(folder / split / cls) for cls in CLASSES]
        for cls, files in zip(CLASSES, per_class):
            if not files:
                raise DataError(f"{NAME} {split}: no .jpg files in {folder / split / cls}")
        return round_robin(per_class)
    n_train, n_test = options.train_per_class, options.test_per_class
    rng = np.random.default_rng(options.split_seed)
    per_class = []
    for sub in FULL_FOLDERS:
        files = _jpegs(folder / sub)
        if len(files) < n_train + n_test:
            raise DataError(f"{folder / sub} holds {len(files)} images; the split needs "
                            f"{n_train} train + {n_test} test")
        order = rng.permutation(len(files))
        chosen = order[:n_train] if split == "train" else order[n_train:n_train + n_test]
        per_class.append([files[i] for i in sorted(chosen)])
    return round_robin(per_class)


# --- verify ------------------------------------------------------------------------------


def checks(folder: Path) -> dict[str, bool]:
    """Every class folder present, every image decodes, and the image counts of the known
    copies (split folders: 200/200/198/198; Caltech101: Faces 435, Motorbikes 798). There
    are no published checksums of these JPEG sets, so none are checked."""
    from PIL import Image  # heavy: only image folders need Pillow

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


def fetch(dest_root: Path, progress: bool | None = None) -> Path:
    """Download the official Caltech101 archive (no published checksum: the result is
    checked by structure and image counts instead), keep its Faces and Motorbikes folders
    in ``dest_root/<name>/101_ObjectCategories/``, and delete the archive."""
    dest = Path(dest_root) / NAME
    target = dest / "101_ObjectCategories"
    if probe(target)[0] is not None and all(checks(target).values()):
        return target
    dest.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in URLS:
        with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as work:
            work = Path(work)
            archive = work / "caltech-101.archive"
            staged = work / "101_ObjectCategories"
            try:
                with open(archive, "wb") as out:
                    stream_url(url, out, "caltech-101", progress)
                _extract_categories(archive, staged, work)
                problems = [k for k, ok in checks(staged).items() if not ok]
                if problems:
                    raise DataError(f"the archive's Faces/Motorbikes fail verification: "
                                    f"{'; '.join(problems)}")
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staged, target)
                return target
            except (DataError, OSError, zipfile.BadZipFile, ValueError) as exc:
                failures.append(f"{url}: {reason(exc)}")
    raise DataError(f"could not fetch {NAME} (tried {'; '.join(failures)}). Download Caltech101 "
                    f"yourself and place its Faces and Motorbikes folders in {target}/, or the "
                    f"split folders train/{{face,motorbike}} and test/{{face,motorbike}} in {dest}/")
