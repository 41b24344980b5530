import pytest
import torch

from selfsup.models.vit import VisionTransformer


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Method tests use small tensors: one thread each."""


@pytest.fixture
def tiny_vit():
    return VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture
def cell_image():
    """make(batch, size, channels) -> views (B, C, size, size) whose grid cell k (row-major, side size // 3)
    holds 10 k + channel in every pixel and -1 outside the 3x3 grid: a crop's content names its cell."""

    def make(batch: int, size: int, channels: int = 3) -> torch.Tensor:
        cell, idx = size // 3, torch.arange(size)
        k = (idx[:, None] // cell) * 3 + idx[None, :] // cell
        k = torch.where((idx[:, None] < 3 * cell) & (idx[None, :] < 3 * cell), k, -1).float()
        x = torch.stack([torch.where(k >= 0, 10 * k + c, -1.0) for c in range(channels)])
        return x.expand(batch, -1, -1, -1)

    return make
