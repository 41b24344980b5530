import pytest
import torch

from selfsup.data import DataError, ImageSet, Splits
from selfsup.eval.adapt import adapt_splits, to_channels


def test_gray_to_rgb_repeats_and_rgb_to_gray_uses_luminance():
    gray = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    rgb = to_channels(gray, 3)
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, c:c + 1], gray) for c in range(3))
    assert torch.equal(to_channels(rgb, 1), gray)  # equal channels: luminance weights sum to 1
    colours = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 100, 50]], dtype=torch.uint8)
    images = colours.view(4, 3, 1, 1)
    assert to_channels(images, 1).flatten().tolist() == [76, 150, 29, 124]  # 0.299 R + 0.587 G + 0.114 B


def test_other_channel_counts_cannot_be_converted():
    with pytest.raises(DataError, match="cannot convert 2-channel"):
        to_channels(torch.zeros(1, 2, 4, 4, dtype=torch.uint8), 3)


def test_splits_get_channels_and_side_and_the_changes_are_listed():
    train = ImageSet(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8), torch.arange(6))
    test = ImageSet(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), torch.arange(2))
    adapted, changes = adapt_splits(Splits("rgb", train, test, notice="source note"), channels=1, size=28)
    assert adapted.train.images.shape == (6, 1, 28, 28) and adapted.test.images.shape == (2, 1, 28, 28)
    assert torch.equal(adapted.train.labels, train.labels) and adapted.notice == "source note"
    assert changes == ["3-channel images converted by luminance to 1 channel", "resized from 32x32 to 28x28"]
    same, none = adapt_splits(adapted, channels=1, size=28)
    assert same is adapted and none == []
