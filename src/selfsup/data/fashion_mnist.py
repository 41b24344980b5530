"""Fashion-MNIST from its four gzipped IDX files (the layout of the Debian package dataset-fashion-mnist).

The files are looked for in $SELFSUP_FASHION_MNIST_DIR, then /usr/share/datasets/fashion-mnist; the first
folder holding all four is used. Images come out as (N, 1, 28, 28) uint8: 60000 train, 10000 test.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from selfsup.data.dataset import DataError, DataNotFound, ImageSet, Splits

__all__ = ["CLASSES", "DEFAULT_DIR", "ENV_VAR", "FILES", "DataNotFound", "find_fashion_mnist",
           "load_fashion_mnist", "read_idx"]

ENV_VAR = "SELFSUP_FASHION_MNIST_DIR"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
FIX = (f"reinstall it (`apt-get install --reinstall dataset-fashion-mnist`) or point {ENV_VAR} at a folder "
       "holding the 4 files " + ", ".join(name for pair in FILES.values() for name in pair))
_IDX_UBYTE = 0x08


def search_path() -> list[Path]:
    """The folders looked in, in order: $SELFSUP_FASHION_MNIST_DIR (when set), then DEFAULT_DIR."""
    env = os.environ.get(ENV_VAR)
    return ([Path(env).expanduser()] if env else []) + [DEFAULT_DIR]


def _missing(folder: Path) -> list[str]:
    return [name for pair in FILES.values() for name in pair if not (folder / name).is_file()]


def find_fashion_mnist() -> Path:
    """The first folder of `search_path()` holding all four files; DataNotFound when none does."""
    tried = []
    for folder in search_path():
        missing = _missing(folder)
        if not missing:
            return folder
        tried.append(f"{folder} (missing {', '.join(missing)})" if folder.is_dir()
                     else f"{folder} (no such folder)")
    raise DataNotFound(f"Fashion-MNIST not found in {'; '.join(tried)}: install it with "
                       f"`apt-get install dataset-fashion-mnist` or set {ENV_VAR} to a folder holding the "
                       "4 files " + ", ".join(name for pair in FILES.values() for name in pair))


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes -> uint8 array of the dims its header gives (e.g. (N, 28, 28)).

    The header is 0x00 0x00, a type byte (0x08 = ubyte), a dim-count byte, then one big-endian int32 per
    dim. A wrong magic, dim count or data length, or a broken gzip stream, raises DataError naming the file.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} is not a readable gzip file ({e}): {FIX}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise DataError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty file)'} "
                        f"(expected 000008{ndim:02x}): {FIX}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its IDX header: {FIX}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: {len(raw)} bytes for dims {dims} (expected {expected}): {FIX}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_split(folder: Path, images_name: str, labels_name: str) -> ImageSet:
    images = read_idx(folder / images_name, ndim=3)
    labels = read_idx(folder / labels_name, ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{folder / images_name} has {len(images)} images but {folder / labels_name} has "
                        f"{len(labels)} labels: {FIX}")
    if len(labels) and labels.max() >= len(CLASSES):
        raise DataError(f"{folder / labels_name} has label {labels.max()} (expected 0..9): {FIX}")
    return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                    list(CLASSES))


def load_fashion_mnist(root: str | Path | None = None) -> Splits:
    """Fashion-MNIST -> Splits of (N, 1, 28, 28) uint8 images with int64 labels 0..9 (60000 / 10000).

    root: the folder of the four .gz files; None searches `search_path()`. Missing files raise
    DataNotFound; corrupt ones DataError.
    """
    folder = find_fashion_mnist() if root is None else Path(root)
    if root is not None and (missing := _missing(folder)):
        raise DataNotFound(f"{folder} lacks the Fashion-MNIST file(s) {', '.join(missing)}: {FIX}")
    skipped = search_path()[0] if root is None and len(search_path()) > 1 else None
    notice = (f"{ENV_VAR}={skipped} lacks the Fashion-MNIST files; using {folder}"
              if skipped is not None and skipped != folder else None)
    return Splits("fashion-mnist", _load_split(folder, *FILES["train"]), _load_split(folder, *FILES["test"]),
                  notice)
