import torch

from selfsup.data import ImageSet, Splits
from selfsup.data.resize import resize_splits, resize_square


def test_resize_square_crops_centre_then_scales():
    images = torch.zeros(2, 1, 6, 10, dtype=torch.uint8)
    images[..., 2:8] = 200  # the centre 6x6 square
    assert torch.equal(resize_square(images, 6), torch.full((2, 1, 6, 6), 200, dtype=torch.uint8))
    out = resize_square(images, 3)
    assert out.shape == (2, 1, 3, 3) and out.dtype == torch.uint8 and int(out.min()) == 200
    assert resize_square(images, 12).shape == (2, 1, 12, 12)


def test_resize_splits_notice_and_noop():
    s = Splits("x", ImageSet(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0])),
               ImageSet(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.tensor([1])))
    assert resize_splits(s, None) is s and resize_splits(s, 8) is s
    r = resize_splits(s, 4)
    assert r.train.images.shape == (3, 3, 4, 4) and r.test.images.shape == (1, 3, 4, 4)
    assert r.train.labels.tolist() == [0, 1, 0] and "8x8 to 4x4" in r.notice
