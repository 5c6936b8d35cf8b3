"""Images to latency spikes: grayscale, resize, an optional filter front end, pooling,
the latency code; and ``images:DIR``, a dataset of image folders.

Encoding (:class:`ImageOptions`): each image is converted to grayscale (RGB and grayscale
files may be mixed), resized to ``height`` x ``width`` (bilinear) and scaled to [0, 1],
then turned into feature maps by one of three front ends (``filter``):

* ``"none"``: the pixels themselves, one map (the latency code of MNIST);
* ``"gabor"``: ``gabor_orientations`` even (cosine) Gabor filters
  ``exp(-(x'^2 + aspect^2 y'^2) / (2 sigma^2)) cos(2 pi x' / wavelength)``, ``x'`` along
  orientation ``k * 180 / orientations`` degrees (``gabor_size`` x ``gabor_size`` window,
  zero mean, absolute weights summing to 1, reflected borders); one map ``|response|`` per
  orientation: edges and bars of either polarity;
* ``"dog"``: a difference of Gaussians ``G(dog_sigma_centre) - G(dog_sigma_surround)``
  (``dog_size`` x ``dog_size`` window, each Gaussian normalised to sum 1) gives an
  on-centre map ``max(DoG, 0)`` and an off-centre map ``max(-DoG, 0)``.

Filtered maps of an image are divided by its strongest response; all maps are optionally
max-pooled over ``pool`` x ``pool`` blocks (the earliest spike of a block, in latency terms)
and latency-coded with :func:`~bstdg.encoding.encode_latency`: the strongest response spikes
at step 0, responses at or below ``floor`` never spike. Input unit ``(c * H + y) * W + x``
is map ``c`` at pooled pixel (y, x), ``H = height // pool``, ``W = width // pool``.

``images:DIR`` reads ``DIR/{train,test}/<class>/*.{jpg,jpeg,png}``; the classes are the
sorted names of the class folders (train and test together); the samples are ordered
round-robin over the classes, so ``limit`` N takes a balanced subset.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from bstdg.data.base import (SPLITS, Dataset, EncodedSplit, check_limit, check_split, finish,
                             finite, require)
from bstdg.encoding import Encoder, encode_latency, times_to_events
from bstdg.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Largest image read_gray decodes (pixels); Caltech101's largest is about 0.3 Mpixel.
MAX_IMAGE_PIXELS = 40_000_000
FILTERS = ("none", "gabor", "dog")
NOTES = {"units": "(map * H + y) * W + x; maps: the pixels, Gabor orientations, or DoG on- "
                  "then off-centre",
         "formula": "r = filter response / image max (then max-pooled); "
                    "t = round((1 - r) * (t_max - 1)); no spike if r <= floor"}


@dataclass(frozen=True)
class ImageOptions:
    """How images become spikes (module docstring). ``height``/``width`` 0: the size of
    the first training image."""

    height: int = 0  # pixels after resizing
    width: int = 0
    filter: str = "none"  # "none", "gabor" or "dog"
    gabor_orientations: int = 4  # orientations 0, 45, 90, 135 degrees
    gabor_size: int = 7  # Gabor window, pixels (odd)
    gabor_wavelength: float = 5.0  # pixels per cosine period
    gabor_sigma: float = 2.0  # Gaussian envelope, pixels
    gabor_aspect: float = 0.5  # envelope length across / along the orientation
    dog_size: int = 7  # DoG window, pixels (odd)
    dog_sigma_centre: float = 1.0  # standard deviation of the centre Gaussian, pixels
    dog_sigma_surround: float = 2.0
    pool: int = 1  # max-pool pool x pool blocks of each map (1: none)
    floor: float = 0.0  # responses at or below this fraction emit no spike

    def __post_init__(self):
        require(self.height >= 0 and self.width >= 0, "height and width must be >= 0 (0: the "
                f"first image's), got {self.height}x{self.width}")
        require(self.filter in FILTERS, f"filter must be one of {', '.join(FILTERS)}, got {self.filter!r}")
        require(self.pool >= 1, f"pool must be at least 1, got {self.pool}")
        require(finite(self.floor) and 0 <= self.floor < 1, f"floor must be in [0, 1), got {self.floor}")
        require(self.gabor_orientations >= 1, "gabor_orientations must be at least 1")
        for name in ("gabor_wavelength", "gabor_sigma", "gabor_aspect", "dog_sigma_centre",
                     "dog_sigma_surround"):
            value = getattr(self, name)
            require(finite(value) and value > 0, f"{name} must be a positive number, got {value}")

    @property
    def kind(self) -> str:
        return "latency" if self.filter == "none" else f"{self.filter}-latency"


def read_images(paths, options: ImageOptions) -> np.ndarray:
    """The images ``paths`` as float64 ``(N, height, width)`` in [0, 1]."""
    h, w = options.height, options.width
    return np.stack([read_gray(p, h, w) for p in paths]) if paths else np.zeros((0, h, w))


def encode_images(images: np.ndarray, t_max: int, options: ImageOptions):
    """``(events, input_shape)``: the front end (:func:`feature_maps`) and the latency code."""
    maps = feature_maps(images, options)
    times = encode_latency(maps.reshape(len(maps), -1), t_max, floor=options.floor)
    return times_to_events(times, t_max), maps.shape[1:]


def image_encoder(t_max: int, options: ImageOptions, input_shape) -> Encoder:
    return Encoder(options.kind, t_max, tuple(input_shape), asdict(options), NOTES)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def round_robin(per_class: list[list[Path]]) -> tuple[list[Path], np.ndarray]:
    """Interleave the classes (a, b, a, b, ...) so that the first N samples are balanced."""
    paths, labels = [], []
    for i in range(max((len(c) for c in per_class), default=0)):
        for label, items in enumerate(per_class):
            if i < len(items):
                paths.append(items[i])
                labels.append(label)
    return paths, np.asarray(labels, np.int64)


class ImageFolderDataset(Dataset):
    """``images:DIR``: ``DIR/{train,test}/<class>/*.{jpg,jpeg,png}`` (module docstring)."""

    Options = ImageOptions

    def __init__(self, root, options=None):
        super().__init__(options)
        self.root = Path(root).expanduser()
        self.name = f"images:{root}"
        self.classes = self._classes()

    def _classes(self) -> tuple:
        if not self.root.is_dir():
            raise DataError(f"{self.name}: no such folder")
        names = set()
        for split in SPLITS:
            folder = self.root / split
            if not folder.is_dir():
                raise DataError(f"{self.name}: no {split}/ folder (expected {split}/<class>/*.png|jpg)")
            names |= {d.name for d in folder.iterdir() if d.is_dir()}
        if len(names) < 2:
            raise DataError(f"{self.name}: found {len(names)} class folder(s); need at least 2 "
                            f"(train/<class>/, test/<class>/)")
        return tuple(sorted(names))

    def locate(self, data_dir=None) -> Path:
        return self.root

    def load(self, split: str, t_max: int, data_dir=None, limit: int | None = None) -> EncodedSplit:
        check_split(self.name, split)
        check_limit(limit)
        per_class = [_images(self.root / split / c) if (self.root / split / c).is_dir() else []
                     for c in self.classes]
        paths, labels = round_robin(per_class)
        if not paths:
            raise DataError(f"{self.name} {split}: no .jpg/.png images in {self.root / split}/<class>/")
        if limit is not None:
            paths, labels = paths[:limit], labels[:limit]
        options = self.options
        if not (options.height and options.width):
            h, w = image_size(paths[0] if split == "train" else self._first_train())
            options = replace(options, height=options.height or h, width=options.width or w)
        events, shape = encode_images(read_images(paths, options), t_max, options)
        return finish(self.name, split, events, labels, len(self.classes),
                      image_encoder(t_max, options, shape), self.classes)

    def _first_train(self) -> Path:
        for c in self.classes:
            folder = self.root / "train" / c
            if folder.is_dir() and _images(folder):
                return _images(folder)[0]
        raise DataError(f"{self.name}: no training images to take the size from (set height and width)")


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file."""
    from PIL import Image, UnidentifiedImageError  # heavy: only image folders need Pillow

    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def read_gray(path: Path, height: int, width: int) -> np.ndarray:
    """One image as float64 ``(height, width)`` in [0, 1]: grayscale, bilinear resize. An
    image whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels is refused before
    it is decoded; any decoding failure is one DataError line."""
    from PIL import Image  # heavy: only image folders need Pillow

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
        raise DataError(f"images: {what} must be odd and at least 3, got {size}")
    if min(images.shape[1:]) <= size // 2:
        raise DataError(f"images: images of {images.shape[1]}x{images.shape[2]} are too small "
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
        raise DataError(f"images: need 0 < dog_sigma_centre < dog_sigma_surround, got "
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
        raise DataError("images: gabor_orientations must be at least 1 and gabor_wavelength, "
                        "gabor_sigma, gabor_aspect positive")
    kernels = gabor_kernels(size, wavelength, sigma, aspect, orientations)
    return _scale_to_peak(np.abs(_correlate(images, kernels)))


def max_pool(maps: np.ndarray, pool: int) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, C, H // pool, W // pool)``, the maximum of each block
    (a ragged last row/column of blocks is dropped)."""
    if pool == 1:
        return maps
    n, c, h, w = maps.shape
    if pool < 1 or pool > min(h, w):
        raise DataError(f"images: pool must be 1..{min(h, w)} for {h}x{w} images, got {pool}")
    h2, w2 = h // pool, w // pool
    blocks = maps[:, :, :h2 * pool, :w2 * pool].reshape(n, c, h2, pool, w2, pool)
    return blocks.max(axis=(3, 5))


def feature_maps(images: np.ndarray, options: "ImageOptions") -> np.ndarray:
    """The encoder's front end: ``(N, H, W)`` images in [0, 1] to ``(N, C, H', W')`` maps
    in [0, 1] (filter, scale to the image's peak, pool; ``filter = "none"``: the pixels
    themselves, one map, not rescaled)."""
    o = options
    if o.filter == "gabor":
        maps = gabor_responses(images, o.gabor_size, o.gabor_wavelength, o.gabor_sigma,
                               o.gabor_aspect, o.gabor_orientations)
    elif o.filter == "dog":
        maps = dog_responses(images, o.dog_sigma_centre, o.dog_sigma_surround, o.dog_size)
    else:
        maps = images[:, None]
    return max_pool(maps, o.pool)


