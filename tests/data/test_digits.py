import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from selfsup.data import DataError
from selfsup.data.digits import digit_images, load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_shapes_and_classes(digits):
    assert digits.name == "digits"
    assert digits.train.images.shape == (1437, 1, 28, 28) and digits.test.images.shape == (360, 1, 28, 28)
    assert digits.train.images.dtype == torch.uint8 and digits.test.labels.dtype == torch.int64
    assert digits.train.classes == [str(d) for d in range(10)] and digits.test.classes == digits.train.classes
    assert int(digits.train.images.max()) == 255 and int(digits.train.images.min()) == 0


def test_split_is_sklearns_unstratified_one(digits):
    from sklearn.model_selection import train_test_split

    target = sklearn_digits().target
    train_idx, test_idx = train_test_split(np.arange(len(target)), test_size=0.2, random_state=0)
    assert digits.train.labels.tolist() == target[train_idx].tolist()
    assert digits.test.labels.tolist() == target[test_idx].tolist()


def test_native_size_is_the_scaled_pixels():
    images, labels = digit_images(8)
    raw = sklearn_digits()
    assert np.array_equal(images[:, 0].numpy(), np.rint(raw.images * 255 / 16).astype(np.uint8))
    assert labels.tolist() == raw.target.tolist()


def test_upsampling_is_bilinear_without_corner_alignment():
    images, _ = digit_images(16)  # a 2x upsample: each output pixel mixes 3/4 and 1/4 of its neighbours
    small = torch.from_numpy(np.rint(sklearn_digits().images[0] * 255 / 16)).float()
    expected = 0.75 * small[3, 3] + 0.25 * small[3, 2]  # output (7, 6) sits at input (3.25, 2.75)
    expected = 0.75 * expected + 0.25 * (0.75 * small[4, 3] + 0.25 * small[4, 2])
    assert int(images[0, 0, 7, 6]) == int(torch.round(expected))


def _weighted_knn_top1(train, train_labels, test, test_labels, k=20, t=0.07):
    """DINO's k-NN: cosine similarity, top-k neighbours vote with weight exp(sim / t)."""
    a = torch.nn.functional.normalize(train.flatten(1).float() / 255, dim=1)
    b = torch.nn.functional.normalize(test.flatten(1).float() / 255, dim=1)
    sim, idx = (b @ a.T).topk(k, dim=1)
    votes = torch.zeros(len(b), 10).scatter_add_(1, train_labels[idx], (sim / t).exp())
    return (votes.argmax(1) == test_labels).float().mean().item() * 100


def test_raw_pixel_knn_baseline(digits):
    train, test = digits.train, digits.test
    top1 = _weighted_knn_top1(train.images, train.labels, test.images, test.labels)
    assert round(top1, 1) == 96.9


def test_bad_size():
    with pytest.raises(DataError, match="positive"):
        digit_images(0)
