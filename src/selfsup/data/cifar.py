"""CIFAR-10 / CIFAR-100 from the "python version" pickled batches of cs.toronto.edu/~kriz/cifar.html.

CIFAR-10: data_batch_1..5, test_batch, batches.meta (b"labels", b"label_names").
CIFAR-100: train, test, meta (b"fine_labels", b"fine_label_names").
Each batch is a dict whose b"data" is (N, 3072) uint8: the R, G and B 32x32 planes, row-major.
The batches are pickles, read by `plain_pickle.load_plain`: a file that names any other Python object than
those rebuilding such a dict is refused without running anything from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.data.dataset import DataError, ImageSet, Splits
from selfsup.data.plain_pickle import ForbiddenGlobal, load_plain

CIFAR10 = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"], "meta": "batches.meta",
           "labels": b"labels", "names": b"label_names"}
CIFAR100 = {"train": ["train"], "test": ["test"], "meta": "meta", "labels": b"fine_labels",
            "names": b"fine_label_names"}
_EXTRACTED = ("cifar-10-batches-py", "cifar-100-python")  # the folders the official archives unpack to


def _variant(folder: Path) -> dict[str, Any] | None:
    names = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    if names & {*CIFAR10["train"], *CIFAR10["test"], CIFAR10["meta"]}:
        return CIFAR10
    if names & {"train", "test", "meta"}:
        return CIFAR100
    return None


def cifar_root(path: str | Path) -> Path | None:
    """`path`, or its cifar-10-batches-py / cifar-100-python sub-folder, when it holds CIFAR batch files."""
    path = Path(path)
    for folder in (path, *(path / name for name in _EXTRACTED)):
        if _variant(folder) is not None:
            return folder
    return None


def is_cifar_dir(path: str | Path) -> bool:
    """Whether `path` (or its extracted-archive sub-folder) holds CIFAR-10 or CIFAR-100 python batches."""
    return cifar_root(path) is not None


def _unpickle(path: Path) -> dict:
    """A CIFAR pickle's dict, read by `load_plain`: a file holding anything but plain data and numpy arrays is
    refused before any of it runs."""
    download = "download the python version again from https://www.cs.toronto.edu/~kriz/cifar.html"
    try:
        with open(path, "rb") as f:
            obj = load_plain(f, encoding="bytes")
    except ForbiddenGlobal as e:
        raise DataError(f"{path} is refused unread: it names the Python object {e.name!r}, and a CIFAR batch holds "
                        f"only dicts, lists, strings, bytes, numbers and numpy arrays ({download})") from None
    except Exception as e:  # a broken or foreign file: pickle, numpy and the file system raise many kinds
        detail = " ".join(str(e).split())[:200]
        raise DataError(f"{path} is not a readable CIFAR pickle ({type(e).__name__}: {detail}): {download}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict")
    return obj


def _labels(value: Any, path: Path, key: bytes) -> np.ndarray:
    """A batch's labels (a list of ints, or an integer array) -> (N,) int64."""
    ints = isinstance(value, list) and all(isinstance(v, int) for v in value)
    if not ints and not (isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu"):
        raise DataError(f"{path}: {key!r} is a {type(value).__name__}, not a list of integer labels")
    try:
        return np.asarray(value, dtype=np.int64)
    except OverflowError:
        raise DataError(f"{path}: {key!r} holds labels beyond int64") from None


def _batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        keys = [k[:40] for k in batch if isinstance(k, (bytes, str))][:6]
        raise DataError(f"{path} lacks the keys b'data' and {label_key!r} (has {keys})")
    data, labels = batch[b"data"], _labels(batch[label_key], path, label_key)
    if not isinstance(data, np.ndarray):  # a nest of lists could expand far beyond the file's size
        raise DataError(f"{path}: b'data' is a {type(data).__name__}, not a numpy array")
    data = np.asarray(data)  # a plain ndarray, not load_plain's PlainArray
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: b'data' is {data.dtype} {data.shape} with {len(labels)} labels; expected "
                        "uint8 (N, 3072) with N labels")
    return data.reshape(-1, 3, 32, 32), labels


def _split(folder: Path, names: list[str], label_key: bytes, classes: list[str]) -> ImageSet:
    parts = [_batch(folder / name, label_key) for name in names]
    images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{folder}: labels span {labels.min()}..{labels.max()} but the meta file names "
                        f"{len(classes)} classes")
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), classes)


def load_cifar(path: str | Path) -> Splits:
    """A CIFAR-10 or CIFAR-100 folder -> Splits of (N, 3, 32, 32) uint8 images (50000 / 10000 in full).

    CIFAR-100 uses the 100 fine labels. Missing files raise DataError listing what is expected.
    """
    folder = cifar_root(path) or Path(path)
    variant = _variant(folder) or CIFAR10
    expected = [*variant["train"], *variant["test"], variant["meta"]]
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} is missing the CIFAR file(s) {', '.join(missing)}: a CIFAR-10 folder "
                        f"holds {', '.join(CIFAR10['train'])}, test_batch and batches.meta; a CIFAR-100 "
                        "folder holds train, test and meta (the python version from "
                        "https://www.cs.toronto.edu/~kriz/cifar.html)")
    meta = _unpickle(folder / variant["meta"])
    if variant["names"] not in meta:
        raise DataError(f"{folder / variant['meta']} lacks {variant['names']!r}")
    names = meta[variant["names"]]
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{folder / variant['meta']}: {variant['names']!r} is not a list of class names")
    classes = [n.decode(errors="replace") if isinstance(n, bytes) else n for n in names]
    name = "cifar10" if variant is CIFAR10 else "cifar100"
    return Splits(name, _split(folder, variant["train"], variant["labels"], classes),
                  _split(folder, variant["test"], variant["labels"], classes))
