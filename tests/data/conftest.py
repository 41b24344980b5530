"""Tiny on-disk datasets in each source's real format, with the arrays they were written from."""

from __future__ import annotations

import gzip
import pickle
import struct
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


def _py2(obj: object) -> bytes:
    """The protocol-2 opcodes Python 2's cPickle writes for a CIFAR batch's objects (memo puts left out): its
    str (here bytes) as BINSTRING, and numpy 1's ndarray as numpy.core.multiarray._reconstruct with state
    (1, shape, dtype, fortran, raw bytes)."""
    if isinstance(obj, bytes):
        return (b"U" + bytes([len(obj)]) if len(obj) < 256 else b"T" + struct.pack("<i", len(obj))) + obj
    if isinstance(obj, bool) or obj is None:
        return {None: b"N", False: b"\x89", True: b"\x88"}[obj]
    if isinstance(obj, int):
        return b"K" + bytes([obj]) if 0 <= obj < 256 else b"J" + struct.pack("<i", obj)
    if isinstance(obj, tuple):
        return b"(" + b"".join(_py2(v) for v in obj) + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):
        dtype = (b"cnumpy\ndtype\n" + _py2((obj.dtype.str[1:].encode(), 0, 1)) + b"R"
                 + _py2((3, obj.dtype.str[:1].encode(), None, None, None, -1, -1, 0)) + b"b")
        state = b"(" + _py2(1) + _py2(obj.shape) + dtype + _py2(False) + _py2(obj.tobytes()) + b"t"
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2((0,)) + _py2(b"b")
                + b"\x87R" + state + b"b")
    raise TypeError(f"no Python 2 pickle for {type(obj).__name__}")


def write_py2_pickle(path: Path, obj: dict) -> None:
    """`obj` pickled as the official CIFAR python batches are: by Python 2, protocol 2."""
    path.write_bytes(b"\x80\x02" + _py2(obj) + b".")


@pytest.fixture
def py2_pickle():
    """`write_py2_pickle(path, obj)`, for tests that write their own batches."""
    return write_py2_pickle


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
        write_py2_pickle(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                                         b"filenames": [b"x.png"] * len(rows)})
        batches[name] = (rows, labels)
    names = [n.encode() for n in "airplane automobile bird cat deer dog frog horse ship truck".split()]
    write_py2_pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072, b"num_cases_per_batch": 10000})
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
