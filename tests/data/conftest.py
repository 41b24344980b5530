"""Tiny on-disk datasets in each source's real format, with the arrays they were written from."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest


def _write_idx(path: Path, array: np.ndarray) -> Path:
    """A uint8 array -> gzipped IDX file: 0x00 0x00 0x08 ndim, big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


@pytest.fixture
def write_idx():
    """The IDX writer, for tests that build their own (bad) files."""
    return _write_idx


@pytest.fixture
def fashion_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": np.array([9, 8, 7, 5], dtype=np.uint8)}
    folder = tmp_path / "fmnist"
    folder.mkdir()
    for name, array in arrays.items():
        _write_idx(folder / name, array)
    return folder, arrays


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def cifar_rows(n: int, seed: int) -> np.ndarray:
    """(n, 3072) uint8 rows as in the CIFAR batches."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, list[int]]]]:
    folder = tmp_path / "cifar10"
    folder.mkdir()
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        rows, labels = cifar_rows(2 if name != "test_batch" else 3, i), [(i + j) % 10 for j in range(3)]
        labels = labels[: len(rows)]
        _pickle(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                                b"filenames": [b"x.png"] * len(rows)})
        batches[name] = (rows, labels)
    names = [n.encode() for n in "airplane automobile bird cat deer dog frog horse ship truck".split()]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return folder, batches


@pytest.fixture
def cifar100_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _pickle(folder / "train", {b"data": cifar_rows(4, 10), b"fine_labels": [0, 99, 5, 42],
                               b"coarse_labels": [0, 1, 2, 3]})
    _pickle(folder / "test", {b"data": cifar_rows(2, 11), b"fine_labels": [7, 99], b"coarse_labels": [0, 1]})
    _pickle(folder / "meta", {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"super{i}".encode() for i in range(20)]})
    return folder
