import numpy as np
import pytest
import torch

from selfsup.models.io import BackboneSpec, save_backbone


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small models: one thread each."""


@pytest.fixture
def runs_dir(tmp_path):
    """A folder with two runs: an RGB ViT on a small .npz (for the nearest images) and a ResNet."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / "tiny.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    root = tmp_path / "runs"
    torch.manual_seed(0)
    vit = BackboneSpec("vit-cpu", 32, 3, 8, [0.5] * 3, [0.25] * 3)
    save_backbone(vit.build(), vit, root / "vit" / "backbone.safetensors")
    (root / "vit" / "config.yaml").write_text(f"method: dino\ndata: {{name: {tmp_path / 'tiny.npz'}}}\n")
    rn = BackboneSpec("resnet18", 32, 3, None, [0.5] * 3, [0.25] * 3, width=8)
    save_backbone(rn.build(), rn, root / "group" / "rn" / "backbone.safetensors")
    (root / "group" / "rn" / "config.yaml").write_text(f"method: simclr\ndata: {{name: {tmp_path / 'tiny.npz'}}}\n")
    return root


@pytest.fixture
def png():
    """`png(size)`: PNG bytes of a random RGB image of (width, height)."""
    return png_bytes


def png_bytes(size=(40, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()
