import numpy as np
import pytest
from PIL import Image

import selfsup.data as data
from selfsup.data import DataError, DataNotFound, ImageSet, Splits, available_sources, load_data
from selfsup.data import fashion_mnist as fm


def test_exports():
    assert {"ImageSet", "Splits", "DataError", "DataNotFound", "load_data"} <= set(data.__all__)
    assert issubclass(DataNotFound, DataError) and ImageSet and Splits


def test_digits():
    splits = load_data("digits")
    assert splits.name == "digits" and splits.train.images.shape == (1437, 1, 28, 28)
    assert load_data("digits", image_size=16).test.images.shape == (360, 1, 16, 16)


def test_fashion_mnist_via_env(fashion_dir, monkeypatch, tmp_path):
    folder, _ = fashion_dir
    monkeypatch.setenv(fm.ENV_VAR, str(folder))
    splits = load_data("fashion-mnist")
    assert splits.name == "fashion-mnist" and splits.train.images.shape == (6, 1, 28, 28)
    assert load_data("fashion_mnist", image_size=32).train.images.shape == (6, 1, 32, 32)


def test_fashion_mnist_absent(monkeypatch, tmp_path):
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "absent")
    with pytest.raises(DataNotFound):
        load_data("fashion-mnist")


def test_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 10, 10, 3), np.uint8), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((2, 10, 10, 3), np.uint8), y_test=np.array([1, 0]))
    splits = load_data(str(path))
    assert splits.train.images.shape == (4, 3, 10, 10) and splits.test.labels.tolist() == [1, 0]
    resized = load_data(str(path), image_size=5)
    assert resized.train.images.shape == (4, 3, 5, 5) and "10x10 to 5x5" in resized.notice
    with pytest.raises(DataError, match="missing.npz"):
        load_data(str(tmp_path / "missing.npz"))


def test_cifar_dir(cifar10_dir):
    folder, _ = cifar10_dir
    splits = load_data(str(folder))
    assert splits.name == "cifar10" and splits.train.images.shape == (10, 3, 32, 32)


def test_image_folder(tmp_path):
    for cls in ("a", "b"):
        for i in range(5):
            Image.new("RGB", (20, 16), (i * 40, 0, 0)).save(tmp_path / f"{cls}{i}.png")
            (tmp_path / "tree" / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 16), (i * 40, 0, 0)).save(tmp_path / "tree" / cls / f"{i}.png")
    splits = load_data(str(tmp_path / "tree"), image_size=12)
    assert splits.train.images.shape == (8, 3, 12, 12) and splits.test.images.shape == (2, 3, 12, 12)
    assert splits.train.classes == ["a", "b"]


def test_unknown_spec_lists_choices(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(str(tmp_path / "nothing-here"))
    message = str(info.value)
    assert all(word in message for word in ("nothing-here", "fashion-mnist", "digits", ".npz", "CIFAR"))


def test_available_sources():
    sources = available_sources()
    assert len(sources) == 7 and all(isinstance(s, str) and s for s in sources)
    assert sources[0].startswith("fashion-mnist") and sources[1].startswith("digits")
    assert sources[2].startswith("cluttered")
