import numpy as np
import pytest
import torch

from selfsup.data import DataError
from selfsup.data.npz import load_npz, to_nchw


def test_keras_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 256, (5, 10, 12), np.uint8), rng.integers(0, 256, (2, 10, 12), np.uint8)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=np.array([0, 1, 2, 1, 0]), x_test=x_test, y_test=np.array([3, 1]))
    splits = load_npz(path)
    assert splits.name == "mnist.npz"
    assert splits.train.images.shape == (5, 1, 10, 12) and splits.test.images.shape == (2, 1, 10, 12)
    assert np.array_equal(splits.train.images[:, 0].numpy(), x_train)
    assert splits.train.labels.dtype == torch.int64 and splits.test.labels.tolist() == [3, 1]
    assert splits.train.classes == ["0", "1", "2", "3"] and splits.test.classes == splits.train.classes


def test_keras_rgba_with_column_labels(tmp_path):
    x = np.zeros((3, 4, 4, 4), np.uint8)
    x[..., 0], x[..., 1], x[..., 2], x[..., 3] = 10, 20, 30, 99
    path = tmp_path / "c.npz"
    np.savez(path, x_train=x, y_train=np.array([[1], [0], [1]]), x_test=x[:1], y_test=np.array([[0]]),
             classes=np.array(["cat", "dog"]))
    splits = load_npz(path)
    assert splits.train.images.shape == (3, 3, 4, 4)
    assert splits.train.images[0, :, 0, 0].tolist() == [10, 20, 30]
    assert splits.train.labels.tolist() == [1, 0, 1] and splits.train.classes == ["cat", "dog"]


def test_float_images_scaled(tmp_path):
    x = np.full((2, 3, 3, 3), 0.5, dtype=np.float32)
    x[0, 0, 0] = [0.0, 1.0, 0.2]
    path = tmp_path / "f.npz"
    np.savez(path, images=x)
    splits = load_npz(path)
    assert splits.train.images.dtype == torch.uint8 and splits.test is None and splits.train.labels is None
    assert splits.train.images[0, :, 0, 0].tolist() == [0, 255, 51]
    assert int(splits.train.images[1, 0, 1, 1]) == 128


def test_images_with_labels(tmp_path):
    path = tmp_path / "u.npz"
    np.savez(path, images=np.zeros((3, 1, 6, 6), np.uint8), labels=np.array([2, 0, 2]))
    splits = load_npz(path)
    assert splits.train.images.shape == (3, 1, 6, 6)  # channels-first kept
    assert splits.train.labels.tolist() == [2, 0, 2] and splits.train.num_classes == 3 and splits.test is None


@pytest.mark.parametrize("array, match", [
    (np.full((2, 4, 4), 2.0), r"outside \[0, 1\]"),
    (np.zeros((2, 4, 4), np.int16), "int16"),
    (np.zeros((2, 6, 4, 5), np.uint8), r"\(2, 6, 4, 5\)"),
])
def test_bad_image_arrays(tmp_path, array, match):
    path = tmp_path / "bad.npz"
    np.savez(path, images=array)
    with pytest.raises(DataError, match=match) as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_bad_labels(tmp_path):
    path = tmp_path / "l.npz"
    np.savez(path, images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0.5, 1.0]))
    with pytest.raises(DataError, match="integer"):
        load_npz(path)
    np.savez(path, images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1, 2]))
    with pytest.raises(DataError, match=r"\(3,\)"):
        load_npz(path)


def test_wrong_keys_listed(tmp_path):
    path = tmp_path / "k.npz"
    np.savez(path, data=np.zeros((2, 4, 4), np.uint8), target=np.zeros(2))
    with pytest.raises(DataError) as info:
        load_npz(path)
    assert str(path) in str(info.value) and "data, target" in str(info.value) and "x_train" in str(info.value)


def test_pickled_objects_refused(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="not a readable .npz") as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_npz(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError) as info:
        load_npz(bad)
    assert str(bad) in str(info.value)


def test_train_test_shape_mismatch(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.zeros(2, int),
             x_test=np.zeros((1, 5, 5), np.uint8), y_test=np.zeros(1, int))
    with pytest.raises(DataError, match="x_test"):
        load_npz(path)


def test_to_nchw_gray_channel_last():
    assert to_nchw(np.zeros((2, 5, 5, 1), np.uint8), "x").shape == (2, 1, 5, 5)
