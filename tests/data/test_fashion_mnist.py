import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data import DataError, DataNotFound
from selfsup.data import fashion_mnist as fm


def test_loads_fixture_exactly(fashion_dir):
    folder, arrays = fashion_dir
    splits = fm.load_fashion_mnist(folder)
    assert splits.name == "fashion-mnist"
    assert splits.train.images.shape == (6, 1, 28, 28) and splits.test.images.shape == (4, 1, 28, 28)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64
    assert np.array_equal(splits.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte.gz"])
    assert np.array_equal(splits.test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte.gz"])
    assert splits.train.labels.tolist() == [0, 1, 2, 3, 4, 9]
    assert splits.test.labels.tolist() == [9, 8, 7, 5]
    assert splits.train.classes[0] == "T-shirt/top" and splits.train.classes[9] == "Ankle boot"
    assert splits.train.num_classes == 10


def test_env_var_is_searched_first(fashion_dir, monkeypatch, tmp_path):
    folder, _ = fashion_dir
    monkeypatch.setenv(fm.ENV_VAR, str(folder))
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "absent")
    splits = fm.load_fashion_mnist()
    assert len(splits.train) == 6 and splits.notice is None


def test_env_var_without_files_falls_back_with_notice(fashion_dir, monkeypatch, tmp_path):
    folder, _ = fashion_dir
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "elsewhere"))
    monkeypatch.setattr(fm, "DEFAULT_DIR", folder)
    splits = fm.load_fashion_mnist()
    assert len(splits.test) == 4
    assert fm.ENV_VAR in splits.notice and str(tmp_path / "elsewhere") in splits.notice


def test_missing_files_raise_data_not_found(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(fm.ENV_VAR, str(empty))
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "absent")
    with pytest.raises(DataNotFound) as info:
        fm.load_fashion_mnist()
    message = str(info.value)
    assert str(empty) in message and str(tmp_path / "absent") in message
    assert "train-images-idx3-ubyte.gz" in message and "apt-get install dataset-fashion-mnist" in message
    assert isinstance(info.value, DataError)


def test_explicit_root_missing_one_file(fashion_dir):
    folder, _ = fashion_dir
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFound, match="t10k-labels-idx1-ubyte.gz"):
        fm.load_fashion_mnist(folder)


def test_wrong_magic_names_file_and_fix(fashion_dir, write_idx):
    folder, _ = fashion_dir
    bad = folder / "train-labels-idx1-ubyte.gz"
    write_idx(bad, np.zeros((6, 2), np.uint8))  # a 2-dim file where a 1-dim one is expected
    with pytest.raises(DataError) as info:
        fm.load_fashion_mnist(folder)
    assert str(bad) in str(info.value) and "magic" in str(info.value)
    assert "dataset-fashion-mnist" in str(info.value) and fm.ENV_VAR in str(info.value)
    assert not isinstance(info.value, DataNotFound)


def test_truncated_payload(fashion_dir):
    folder, arrays = fashion_dir
    path = folder / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated") as info:
        fm.load_fashion_mnist(folder)
    assert str(path) in str(info.value)


def test_truncated_gzip_stream(fashion_dir):
    folder, _ = fashion_dir
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError) as info:
        fm.load_fashion_mnist(folder)
    assert str(path) in str(info.value) and "gzip" in str(info.value)


def test_count_mismatch(fashion_dir, write_idx):
    folder, _ = fashion_dir
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="6 images but .* 5 labels"):
        fm.load_fashion_mnist(folder)


def test_read_idx_header(tmp_path, write_idx):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(fm.read_idx(write_idx(tmp_path / "a.gz", array), ndim=3), array)
    empty = tmp_path / "empty.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="empty file"):
        fm.read_idx(empty, ndim=1)


def test_real_fashion_mnist():
    if any(not (fm.DEFAULT_DIR / name).is_file() for pair in fm.FILES.values() for name in pair):
        pytest.skip(f"Fashion-MNIST is not in {fm.DEFAULT_DIR} (apt-get install dataset-fashion-mnist)")
    splits = fm.load_fashion_mnist(fm.DEFAULT_DIR)
    assert splits.train.images.shape == (60000, 1, 28, 28) and splits.test.images.shape == (10000, 1, 28, 28)
    assert splits.train.num_classes == 10
    assert torch.bincount(splits.train.labels).tolist() == [6000] * 10
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10
    assert splits.train.labels[:5].tolist() == [9, 0, 0, 3, 0]


def test_search_path_default_last(monkeypatch):
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    assert fm.search_path() == [fm.DEFAULT_DIR]
    monkeypatch.setenv(fm.ENV_VAR, "/x/y")
    assert fm.search_path() == [Path("/x/y"), fm.DEFAULT_DIR]
