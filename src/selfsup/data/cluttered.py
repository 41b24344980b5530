"""`cluttered`: objects on textured backgrounds with exact masks, generated from a seed (no download).

Each image is a crop of one of scikit-image's bundled photos (brick, grass, gravel, coffee, the cat, the
astronaut, ...), resized to the image side, with 1 to 3 Fashion-MNIST objects pasted on it (scikit-learn's
digits where Fashion-MNIST is not installed): each at a random position and a side of 45-70% of the image,
tinted with a random bright colour; the photo's contrast is halved so that the objects, not the backgrounds
(a handful of photos, an easy shortcut for clustering methods), are what stands out. An object's mask is its
own pixels (> 16 of 255, resized with it, kept where the resized mask is at least one half); a later object
covers an earlier one, and the mask map records what is visible, so masks and pasted pixels agree exactly.
The label is the class of the largest visible object. The train split draws its objects from the source's
train images and the test split from its test images; the same seed and size give the same images.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np
import torch

from selfsup.data.dataset import DataError, DataNotFound, ImageSet, Splits

SIZES = {"cluttered": 64, "cluttered-96": 96}  # --data name -> default side
N_TRAIN, N_TEST = 10_000, 1_000
MAX_OBJECTS = 3
SCALE = (0.45, 0.7)  # object side / image side
BACKGROUND_CONTRAST = 0.5  # photo contrast kept around mid-grey: textured, but the objects stand out
CROP = (0.2, 0.6)  # background crop side / photo's shorter side
OBJECT_MIN = 16  # an object pixel is one brighter than this (of 255): drops the faint speckle around items
PHOTOS = ("brick", "grass", "gravel", "coffee", "chelsea", "astronaut", "rocket", "camera", "coins")


@lru_cache(maxsize=1)
def backgrounds() -> tuple[np.ndarray, ...]:
    """scikit-image's bundled photos as (H, W, 3) uint8 (grayscale ones repeated), those that need no download."""
    try:
        from skimage import data as photos
    except ImportError as e:
        raise DataError("the cluttered dataset needs scikit-image for its backgrounds: pip install scikit-image "
                        "(scripts/setup.sh installs it)") from e
    out = []
    for name in PHOTOS:
        try:
            img = np.asarray(getattr(photos, name)())
        except Exception:  # noqa: BLE001 - a photo that would need a download is skipped
            continue
        out.append(np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3])
    if not out:
        raise DataError("no scikit-image photo could be loaded for the cluttered backgrounds: reinstall "
                        "scikit-image (pip install --force-reinstall scikit-image)")
    return tuple(out)


def object_source() -> tuple[Splits, str | None]:
    """Fashion-MNIST (28x28 grayscale objects), or digits when it is not installed (with a notice)."""
    from selfsup.data.fashion_mnist import load_fashion_mnist

    try:
        return load_fashion_mnist(), None
    except DataNotFound:
        from selfsup.data.digits import load_digits

        return load_digits(28), "Fashion-MNIST is not installed: cluttered objects are scikit-learn digits"


def random_color(rng: np.random.Generator) -> np.ndarray:
    """A bright colour (3,) in [0, 1]: any hue, saturation 0.5-1, value 1."""
    return np.asarray(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), 1.0))


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of a random photo, resized to (size, size, 3) uint8, its contrast scaled by
    BACKGROUND_CONTRAST around mid-grey."""
    from PIL import Image

    photo = backgrounds()[rng.integers(len(backgrounds()))]
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(*CROP))
    top, left = rng.integers(h - side + 1), rng.integers(w - side + 1)
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    img = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return (128 + (img - 128) * BACKGROUND_CONTRAST).round().clip(0, 255).astype(np.uint8)


def scaled_object(obj: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(28, 28) uint8 object -> its (side, side) intensities in [0, 1] and bool mask (own pixels > OBJECT_MIN)."""
    from PIL import Image

    pix = Image.fromarray(obj).resize((side, side), Image.Resampling.BILINEAR)
    own = Image.fromarray(((obj > OBJECT_MIN) * 255).astype(np.uint8))
    alpha = own.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(pix, dtype=np.float32) / 255, np.asarray(alpha) >= 128


def compose(rng: np.random.Generator, objects: np.ndarray, classes: np.ndarray, size: int
            ) -> tuple[np.ndarray, np.ndarray, int]:
    """One image (size, size, 3) uint8, its mask map (size, size) uint8 with ids 1..K and its label."""
    img = background(rng, size).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    picks = rng.integers(len(objects), size=rng.integers(1, MAX_OBJECTS + 1))
    for k, i in enumerate(picks, start=1):
        side = int(round(size * rng.uniform(*SCALE)))
        pix, own = scaled_object(objects[i], side)
        top, left = rng.integers(size - side + 1), rng.integers(size - side + 1)
        region = (slice(top, top + side), slice(left, left + side))
        img[region][own] = (pix[own, None] * random_color(rng) * 255)
        mask[region][own] = k
    areas = np.bincount(mask.ravel(), minlength=len(picks) + 1)[1:]
    return img.round().clip(0, 255).astype(np.uint8), mask, int(classes[picks[int(np.argmax(areas))]])


def generate(objects: ImageSet, n: int, size: int, seed: int) -> ImageSet:
    """`n` cluttered images of side `size` from `objects` (N, 1, 28, 28) with labels; deterministic in seed."""
    if size < 16:
        raise DataError(f"cluttered images must be at least 16 px, got {size}: pass a larger image size")
    rng = np.random.default_rng(seed)
    src, cls = objects.images[:, 0].numpy(), objects.labels.numpy()
    imgs, masks, labels = zip(*(compose(rng, src, cls, size) for _ in range(n)), strict=True)
    return ImageSet(torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous(),
                    torch.tensor(labels, dtype=torch.int64), objects.classes, torch.from_numpy(np.stack(masks)))


def load_cluttered(name: str = "cluttered", image_size: int | None = None, seed: int = 0) -> Splits:
    """The cluttered splits: N_TRAIN / N_TEST RGB images (N, 3, S, S) with masks, S = image_size or the name's
    default (64, or 96 for cluttered-96)."""
    size = image_size or SIZES[name]
    source, notice = object_source()
    train = generate(source.train, N_TRAIN, size, seed)
    test = generate(source.test, N_TEST, size, seed + 1)
    return Splits(name, train, test, notice)


__all__ = ["N_TEST", "N_TRAIN", "SIZES", "backgrounds", "compose", "generate", "load_cluttered"]
