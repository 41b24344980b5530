"""A folder of image files (any format Pillow reads) -> one in-memory Splits.

Layouts, tried in order:
  root/train/<class>/..., root/test/<class>/... (or root/val/...): the given train/test split;
  root/<class>/...: one labelled tree, split 80/20 per class (seed 0);
  root/*.png ...: a flat folder, unlabeled (labels None, no test split).
Class sub-folders are searched recursively; hidden files and folders are ignored, as are files whose
extension is not an image format. Every image is decoded once (`decode.py`: upright by its EXIF orientation,
8-bit), its shorter side resized to `image_size` (bilinear) and centre-cropped square. Grayscale images stay
1-channel when all images are grayscale, otherwise everything is RGB (alpha dropped). Unreadable images are
skipped with one warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from selfsup.data.dataset import DataError, ImageSet, Splits
from selfsup.data.decode import decode, is_gray, to_array

LAYOUT = ("class sub-folders of images (root/<class>/*.png), optionally under root/train/ and root/test/ "
          "(or root/val/), or a flat folder of images (unlabeled)")
MAX_DEFAULT_SIZE = 224
TEST_FRACTION = 0.2
_NOT_RASTER = {"EPS", "MPEG", "WMF", "BUFR", "GRIB", "HDF5"}  # need external tools or are stubs


def image_extensions() -> set[str]:
    """Lower-case file extensions (".png", ".jpg", ...) of the raster formats this Pillow can open."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and fmt not in _NOT_RASTER}


@dataclass
class FileTree:
    """Image files found under one folder; labels index `classes` (None for a flat folder)."""

    files: list[Path] = field(default_factory=list)
    labels: list[int] | None = None
    classes: list[str] | None = None
    ignored: int = 0


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _files_under(folder: Path, exts: set[str]) -> tuple[list[Path], int]:
    """Image files anywhere under `folder` (sorted) and the count of other files there."""
    found, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if _visible(d)]
        for name in filter(_visible, filenames):
            if Path(name).suffix.lower() in exts:
                found.append(Path(dirpath) / name)
            else:
                ignored += 1
    return sorted(found), ignored


def _scan_classes(folder: Path, exts: set[str]) -> FileTree:
    """root/<class>/... -> a labelled tree; classes are the sorted sub-folder names that hold images."""
    tree = FileTree(labels=[], classes=[])
    for entry in sorted(folder.iterdir()):
        if not _visible(entry.name):
            continue
        if not entry.is_dir():
            tree.ignored += 1  # loose files next to class folders
            continue
        files, ignored = _files_under(entry, exts)
        tree.ignored += ignored
        if files:
            tree.labels += [len(tree.classes)] * len(files)
            tree.classes.append(entry.name)
            tree.files += files
    return tree


def _scan_flat(folder: Path, exts: set[str]) -> FileTree:
    entries = [p for p in sorted(folder.iterdir()) if _visible(p.name) and p.is_file()]
    files = [p for p in entries if p.suffix.lower() in exts]
    return FileTree(files=files, ignored=len(entries) - len(files))


def _split_dirs(root: Path) -> tuple[Path, Path] | None:
    """(train, test) sub-folders when root has train/ and test/ (or val/), else None."""
    test = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    return (root / "train", test) if (root / "train").is_dir() and test is not None else None


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


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), both sorted: round(test_fraction * n) of each class's n images
    (at least 1 when n >= 2) go to test, chosen by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(np.floor(test_fraction * len(idx) + 0.5))
        test.append(idx[: max(k, 1) if len(idx) >= 2 else 0])
    test_idx = np.sort(np.concatenate(test)) if test else np.empty(0, dtype=np.int64)
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx


def _subset(images: torch.Tensor, labels: np.ndarray | None, idx: np.ndarray,
            classes: list[str] | None) -> ImageSet:
    t = torch.from_numpy(idx)
    return ImageSet(images[t], None if labels is None else torch.from_numpy(labels[idx]), classes)


def scan_folder(root: Path, exts: set[str]) -> tuple[FileTree, FileTree | None, str | None]:
    """(train tree, test tree or None, note on the layout) of the image files under `root` with extensions
    `exts` (see `image_extensions`); nothing is decoded."""
    dirs = _split_dirs(root)
    if dirs is not None:
        train, test = _scan_classes(dirs[0], exts), _scan_classes(dirs[1], exts)
        for tree, folder in ((train, dirs[0]), (test, dirs[1])):
            if not tree.files:
                raise DataError(f"{folder} holds no image files: expected {LAYOUT}")
        extra = sorted(set(test.classes) - set(train.classes))
        if extra:
            raise DataError(f"{dirs[1]} has class folder(s) {', '.join(extra[:10])} that {dirs[0]} lacks: "
                            "the test classes must be a subset of the train classes")
        index = {name: i for i, name in enumerate(train.classes)}
        test.labels = [index[test.classes[label]] for label in test.labels]
        test.classes = train.classes
        return train, test, (f"using {dirs[1].name}/ as the test split" if dirs[1].name != "test" else None)
    tree = _scan_classes(root, exts)
    if tree.files:
        return tree, None, None
    tree = _scan_flat(root, exts)
    if not tree.files:
        raise DataError(f"{root} holds no image files: expected {LAYOUT}")
    return tree, None, f"{root} has no class sub-folders: {len(tree.files)} unlabeled images, no test split"


def _assemble(train: FileTree, test: FileTree | None, out: DecodedFiles) -> tuple[ImageSet, ImageSet | None, str]:
    """The decoded images -> (train set, test set or None, note on the split)."""
    labels = None
    if train.labels is not None:
        labels = np.array(train.labels + (test.labels if test else []), dtype=np.int64)[out.kept]
    if test is not None:
        n_train = int(np.searchsorted(out.kept, len(train.files)))
        train_idx, test_idx, note = np.arange(n_train), np.arange(n_train, len(out.kept)), ""
    elif labels is not None:
        train_idx, test_idx = stratified_split(labels)
        note = (f"no train/ and test/ sub-folders: split {len(labels)} images 80/20 per class (seed 0) into "
                f"{len(train_idx)} train / {len(test_idx)} test"
                + ("" if len(test_idx) else " (too few images per class for a test split)"))
    else:
        train_idx, test_idx, note = np.arange(len(out.kept)), np.empty(0, dtype=np.int64), ""
    test_set = _subset(out.images, labels, test_idx, train.classes) if len(test_idx) else None
    return _subset(out.images, labels, train_idx, train.classes), test_set, note


def load_image_folder(root: str | Path, image_size: int | None = None, workers: int | None = None) -> Splits:
    """An image folder -> Splits of (N, C, S, S) uint8 images, C in {1, 3}, S = image_size (default: the
    median shorter side, capped at 224). Labels are int64 (N,) indexing the sorted class-folder names;
    a flat folder gives labels None and test None. `workers` threads decode (default min(8, CPUs))."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: expected {LAYOUT}")
    train, test, layout_note = scan_folder(root, image_extensions())
    files = train.files + (test.files if test else [])
    out = decode_files(files, image_size, workers)
    if not len(out.kept):
        raise DataError(f"{root}: none of the {len(files)} image files could be read, e.g. "
                        f"{out.failed[0][0]} ({out.failed[0][1]})")
    if out.failed:
        _warn_skipped(root, out.failed)
    train_set, test_set, split_note = _assemble(train, test, out)
    ignored = train.ignored + (test.ignored if test else 0)
    notes = [split_note, layout_note, out.size_note,
             f"skipped {len(out.failed)} unreadable image file(s)" if out.failed else "",
             f"ignored {ignored} non-image file(s)" if ignored else ""]
    return Splits(str(root), train_set, test_set, "; ".join(n for n in notes if n) or None)
