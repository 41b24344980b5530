import pytest
import torch

from selfsup.data.views import channel_stats


def test_channel_stats_sample_the_whole_stack_uniformly():
    """A class-sorted stack: 300 black images, then 300 white ones. A sample of 100 must see both."""
    images = torch.cat([torch.zeros(300, 1, 4, 4), torch.full((300, 1, 4, 4), 255.0)]).to(torch.uint8)
    mean, std = channel_stats(images, max_images=100)
    assert 0.35 < mean[0] < 0.65 and std[0] > 0.4
    assert channel_stats(images, max_images=100) == (mean, std)  # a fixed generator
    assert channel_stats(images)[0][0] == pytest.approx(0.5)  # all of a small stack
