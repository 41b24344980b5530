import numpy as np
import pytest
import torch

from selfsup.models.io import BackboneSpec, save_backbone


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small models: one thread each."""


# Each kind of run selfsup trains or converts, as (name, spec): the page must show every one.
RUN_KINDS = {
    "vit": BackboneSpec("vit-cpu", 32, 3, 8, [0.5] * 3, [0.25] * 3),  # patch stem
    "demo": BackboneSpec("vit-cpu", 28, 1, 7, [0.5], [0.25], stem="conv"),  # the demo's: conv stem, stride 8
    "dinov2": BackboneSpec("vit-cpu", 28, 3, 14, [0.5] * 3, [0.25] * 3, layerscale=1e-5, registers=4,
                           ffn="swiglu"),  # registers, LayerScale, SwiGLU
    "group/rn": BackboneSpec("resnet18", 32, 3, None, [0.5] * 3, [0.25] * 3, width=8),
}


@pytest.fixture
def runs_dir(tmp_path):
    """A folder with a run of each kind (RUN_KINDS), trained on a small .npz inside the folder (for the
    nearest images)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    root = tmp_path / "runs"
    (root / "data").mkdir(parents=True)
    np.savez(root / "data" / "tiny.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    torch.manual_seed(0)
    for name, spec in RUN_KINDS.items():
        save_backbone(spec.build(), spec, root / name / "backbone.safetensors")
        (root / name / "config.yaml").write_text(f"method: dino\ndata: {{name: {root / 'data' / 'tiny.npz'}}}\n")
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
