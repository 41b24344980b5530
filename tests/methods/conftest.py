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
    holds 10 k + channel in every pixel and -1 outside the 3x3 grid: a crop's content names its cell. The grid
    is centred, (size - 3 cell) // 2 px from the top-left (1 px at 17, 29 or 62 px)."""

    def make(batch: int, size: int, channels: int = 3) -> torch.Tensor:
        cell = size // 3
        idx = torch.arange(size) - (size - 3 * cell) // 2  # position in the grid
        k = (idx[:, None] // cell) * 3 + idx[None, :] // cell
        inside = (idx >= 0) & (idx < 3 * cell)
        k = torch.where(inside[:, None] & inside[None, :], k, -1).float()
        x = torch.stack([torch.where(k >= 0, 10 * k + c, -1.0) for c in range(channels)])
        return x.expand(batch, -1, -1, -1)

    return make
