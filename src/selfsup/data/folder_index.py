"""One image folder's index: its image files, their labels and the train/test split, found by one scan and split
once, with nothing decoded. Every reader of a folder starts from it: in memory (`image_folder.py`), streamed for
training (`streaming.py`) and for evaluation (`eval/streamed_split.py`), packed into shards (`shards.py`); so
all of them see the same files in the same splits.

Layouts, tried in order:
  root/train/<class>/..., root/test/<class>/... (or root/val/...): the given train/test split;
  root/<class>/...: one labelled tree, split 80/20 per class (seed 0) by file, before anything is decoded;
  root/*.png ...: a flat folder, unlabeled (labels None, no test split).
Class sub-folders are searched recursively; hidden files and folders are ignored, as are files whose
extension is not an image format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from selfsup.data.dataset import DataError

LAYOUT = ("class sub-folders of images (root/<class>/*.png), optionally under root/train/ and root/test/ "
          "(or root/val/), or a flat folder of images (unlabeled)")
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


class PathTable:
    """File paths packed into one bytes object: a tenth of the memory of a list of Paths, and worker
    processes forked from the main one share it instead of copying it page by page as they touch it."""

    def __init__(self, paths: Sequence[Path | str]) -> None:
        encoded = [os.fsencode(p) for p in paths]
        self.offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int64)
        self.blob = b"".join(encoded)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return os.fsdecode(self.blob[self.offsets[i] : self.offsets[i + 1]])

    def take(self, idx: Sequence[int] | np.ndarray) -> PathTable:
        return PathTable([self[int(i)] for i in idx])


@dataclass
class FolderIndex:
    """The files of one folder's train and test splits (packed paths) and their labels (None: unlabelled)."""

    root: Path
    classes: list[str] | None
    train: PathTable
    train_labels: np.ndarray | None
    test: PathTable
    test_labels: np.ndarray | None
    ignored: int  # non-image files seen
    layout_note: str | None
    split_note: str  # "" unless the 80/20 split was made here

    def notes(self) -> list[str]:
        ignored = f"ignored {self.ignored} non-image file(s)" if self.ignored else ""
        return [n for n in (self.split_note, self.layout_note, ignored) if n]


def index_folder(root: str | Path) -> FolderIndex:
    """Scan `root` once (`scan_folder`) and split a labelled tree without train/ and test/ 80/20 per class."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: expected {LAYOUT}")
    train, test, layout_note = scan_folder(root, image_extensions())
    files, labels = PathTable(train.files), _labels(train.labels)
    test_files, test_labels = PathTable(test.files if test else []), _labels(test.labels if test else None)
    split_note = ""
    if test is None and labels is not None:
        train_idx, test_idx = stratified_split(labels)
        files, labels, test_files, test_labels = (files.take(train_idx), labels[train_idx],
                                                  files.take(test_idx), labels[test_idx])
        split_note = (f"no train/ and test/ sub-folders: split {len(train_idx) + len(test_idx)} files 80/20 per "
                      f"class (seed 0) into {len(train_idx)} train / {len(test_idx)} test"
                      + ("" if len(test_idx) else " (too few images per class for a test split)"))
    ignored = train.ignored + (test.ignored if test else 0)
    return FolderIndex(root, train.classes, files, labels, test_files, test_labels, ignored, layout_note, split_note)


def _labels(labels: list[int] | None) -> np.ndarray | None:
    return None if labels is None else np.asarray(labels, dtype=np.int64)


__all__ = ["LAYOUT", "TEST_FRACTION", "FileTree", "FolderIndex", "PathTable", "image_extensions", "index_folder",
           "scan_folder", "stratified_split"]
