"""A folder of image files (any format Pillow reads) -> one in-memory Splits.

The files and their train/test split are the folder's index (`folder_index.py`: its layouts, labels and 80/20
split, shared by every reader of a folder). Every image is decoded once (`decode.py`: upright by its EXIF orientation,
8-bit), its shorter side resized to `image_size` (bilinear) and centre-cropped square. Grayscale images stay
1-channel when all images are grayscale, otherwise everything is RGB (alpha dropped). Unreadable images are
skipped with one warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from selfsup.data.dataset import DataError, ImageSet, Splits
from selfsup.data.decode import decode, is_gray, to_array
from selfsup.data.folder_index import index_folder

MAX_DEFAULT_SIZE = 224
def _why(e: Exception, path: Path | BinaryIO) -> str:
    """The error as "Type: message", without the path that Pillow repeats in its messages."""
    message = str(e).replace(f" {str(path)!r}", "").replace(str(path), "the file")
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def probe_image(path: Path) -> tuple[bool, tuple[int, int]] | str:
    """(is grayscale, (width, height)) from the file's header, or the error message."""
    try:
        with Image.open(path) as im:
            return is_gray(im), im.size
    except Exception as e:  # Pillow raises many types for bad files
        return _why(e, path)


def decode_image(path: Path | BinaryIO, channels: int, size: int) -> np.ndarray | str:
    """One file (or its bytes as a file object) -> (C, size, size) uint8: shorter side resized to `size`,
    centre-cropped; or the error."""
    try:
        im = decode(path, channels, draft=size)
        w, h = im.size
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        a = to_array(im.resize((size, size), Image.Resampling.BILINEAR, box=box))
    except Exception as e:  # truncated or corrupt files are skipped and reported
        return _why(e, path)
    return a  # (C, S, S), C-contiguous: stacks without a copy


@dataclass
class DecodedFiles:
    """What `decode_files` returns."""

    images: torch.Tensor  # (K, C, S, S) uint8, the readable files in order
    kept: np.ndarray  # (K,) indices into the file list
    failed: list[tuple[Path, str]]
    size: int
    size_note: str | None


def default_size(sizes: list[tuple[int, int]]) -> tuple[int, str | None]:
    """The median shorter side capped at 224, and a note unless every image already is that square."""
    median = int(round(float(np.median([min(s) for s in sizes])))) if sizes else 1
    size = max(1, min(median, MAX_DEFAULT_SIZE))
    if all(s == (size, size) for s in sizes):
        return size, None
    capped = f", capped at {MAX_DEFAULT_SIZE}" if median > MAX_DEFAULT_SIZE else ""
    return size, f"images resized to {size}x{size} (median shorter side {median}{capped})"


def decode_files(files: Sequence[Path], image_size: int | None = None,
                 workers: int | None = None) -> DecodedFiles:
    """Decode `files` in a thread pool -> (K, C, S, S) uint8 for the K readable ones.

    C is 1 if every readable header is grayscale, else 3. S is `image_size`, or by default the median
    shorter side (capped at 224).
    """
    if image_size is not None and image_size < 1:
        raise DataError(f"image size must be a positive number of pixels, got {image_size}")
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        probes = list(pool.map(probe_image, files))
        ok = [p for p in probes if not isinstance(p, str)]
        channels = 1 if ok and all(gray for gray, _ in ok) else 3
        size, note = (image_size, None) if image_size else default_size([s for _, s in ok])
        out = np.empty((len(files), channels, size, size), dtype=np.uint8)  # filled in place: no 2nd copy
        errors = list(pool.map(lambda i: _decode_into(out, i, files[i]), range(len(files))))
    failed = [(f, e) for f, e in zip(files, errors, strict=True) if e is not None]
    kept = np.array([i for i, e in enumerate(errors) if e is None], dtype=np.int64)
    images = torch.from_numpy(out if not failed else out[kept])
    return DecodedFiles(images, kept, failed, size, note)


def _decode_into(out: np.ndarray, i: int, path: Path) -> str | None:
    """Decode `path` into out[i] (C, S, S); the error message when it cannot be read."""
    a = decode_image(path, out.shape[1], out.shape[-1])
    if isinstance(a, str):
        return a
    out[i] = a
    return None


def _warn_skipped(root: Path, failed: list[tuple[Path, str]]) -> None:
    names = ", ".join(f"{path.relative_to(root)} ({why})" for path, why in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    warnings.warn(f"{root}: skipped {len(failed)} unreadable image file(s): {names}{more}", stacklevel=3)


def _subset(images: torch.Tensor, labels: np.ndarray | None, idx: np.ndarray,
            classes: list[str] | None) -> ImageSet:
    t = torch.from_numpy(idx)
    return ImageSet(images[t], None if labels is None else torch.from_numpy(labels[idx]), classes)


def load_image_folder(root: str | Path, image_size: int | None = None, workers: int | None = None) -> Splits:
    """An image folder -> Splits of (N, C, S, S) uint8 images, C in {1, 3}, S = image_size (default: the
    median shorter side, capped at 224). Labels are int64 (N,) indexing the sorted class-folder names;
    a flat folder gives labels None and test None. `workers` threads decode (default min(8, CPUs)). The splits
    are the folder index's (`folder_index.py`), less the files that cannot be read."""
    index = index_folder(root)
    files = [Path(t[i]) for t in (index.train, index.test) for i in range(len(t))]
    out = decode_files(files, image_size, workers)
    if not len(out.kept):
        raise DataError(f"{index.root}: none of the {len(files)} image files could be read, e.g. "
                        f"{out.failed[0][0]} ({out.failed[0][1]})")
    if out.failed:
        _warn_skipped(index.root, out.failed)
    labels = None
    if index.train_labels is not None:
        test_labels = index.test_labels if index.test_labels is not None else np.empty(0, dtype=np.int64)
        labels = np.concatenate([index.train_labels, test_labels])[out.kept]
    n_train = int(np.searchsorted(out.kept, len(index.train)))  # kept files before the first test file
    train_set = _subset(out.images, labels, np.arange(n_train), index.classes)
    test_set = _subset(out.images, labels, np.arange(n_train, len(out.kept)), index.classes) \
        if len(out.kept) > n_train else None
    notes = [*index.notes(), out.size_note, f"skipped {len(out.failed)} unreadable image file(s)" if out.failed else ""]
    return Splits(str(index.root), train_set, test_set, "; ".join(n for n in notes if n) or None)
