import pytest

from selfsup.models.vit import VisionTransformer


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Method tests use small tensors: one thread each."""


@pytest.fixture
def tiny_vit():
    return VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
