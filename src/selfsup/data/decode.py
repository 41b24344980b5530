"""The one image decoder of selfsup: training and evaluation folders and shards, `selfsup attention` and the web
page's uploads all turn a file into pixels here, so an image looks the same to each of them.

A file is opened lazily (Pillow reads the header only), its pixel count checked against a limit before anything
is decoded, then decoded (JPEGs at a reduced scale when a `draft` side is given), turned upright by its EXIF
orientation (phone photos store it there), brought to 8 bits (16/32-bit integer and float grayscale) and to
"L" or "RGB": palette images through their palette, alpha dropped, grayscale kept 1-channel when asked for by
content (`channels=None`).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from selfsup.data.dataset import DataError

GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
EXIF_ORIENTATION = 0x0112
PIL_MAX_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS, used when a library has set it to None


def default_max_pixels() -> int:
    """The largest image decoded by default: twice Image.MAX_IMAGE_PIXELS (where Pillow itself refuses), also
    when something in the process disabled Pillow's check by setting it to None."""
    return 2 * (Image.MAX_IMAGE_PIXELS or PIL_MAX_PIXELS)


def is_gray(im: Image.Image) -> bool:
    """Whether an opened image is grayscale: a gray mode, or a palette whose colours are all gray."""
    if im.mode in GRAY_MODES:
        return True
    if im.mode == "P":
        rgb = np.asarray(im.getpalette("RGB") or [], dtype=np.int32).reshape(-1, 3)
        return bool((rgb == rgb[:, :1]).all())
    return False


def to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit integer and float grayscale -> 8-bit "L" (integers divided by 257, floats in [0, 1] by 1/255)."""
    a = np.asarray(im)
    if im.mode == "F":
        a = a * 255.0 if a.size and np.nanmax(a) <= 1.0 else a
    else:
        a = a.astype(np.float64) / 257.0
    return Image.fromarray(np.nan_to_num(a).round().clip(0, 255).astype(np.uint8), mode="L")


def decode(source: str | Path | BinaryIO, channels: int | None = None, max_pixels: int | None = None,
           draft: int | None = None) -> Image.Image:
    """A file (path or binary file object) -> an upright 8-bit image in memory, "L" for channels 1, "RGB" for 3,
    and by content (grayscale or not) for None.

    Refused with DataError, before decoding, when the header declares more than `max_pixels` (default
    `default_max_pixels()`); `draft` lets a JPEG decode at a reduced scale whose sides stay >= draft. Pillow's
    own errors (unreadable, truncated) propagate."""
    limit = max_pixels or default_max_pixels()
    with Image.open(source) as im:
        w, h = im.size
        if w * h > limit:
            raise DataError(f"the image is {w}x{h} pixels, over the limit of {limit / 1e6:.1f} megapixels")
        if draft is not None:
            im.draft(None, (draft, draft))  # JPEG: decode at a reduced scale that stays >= draft
        im.load()
        mode = ("L" if is_gray(im) else "RGB") if channels is None else ("L" if channels == 1 else "RGB")
        if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I") or im.mode == "F":
            im = to_8bit(im)
        return im.convert(mode)  # a new image: it outlives the file


def to_array(im: Image.Image) -> np.ndarray:
    """A decoded "L" or "RGB" image -> (C, H, W) uint8, C-contiguous and writable (torch.from_numpy takes it)."""
    a = np.array(im, dtype=np.uint8)  # a copy: Pillow's arrays are read-only
    return np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))


__all__ = ["EXIF_ORIENTATION", "GRAY_MODES", "decode", "default_max_pixels", "is_gray", "to_8bit", "to_array"]
