from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data.digits import digit_images
from selfsup.models.io import BackboneSpec, save_backbone


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The eval tests use small tensors: one thread each."""


def write_digits_npz(path: Path, n_train: int = 150, n_test: int = 50, rgb_size: int | None = None) -> Path:
    """200 of scikit-learn's digits (28x28 grayscale) as an .npz in Keras' layout; with `rgb_size`, as RGB images
    padded to that side (another dataset for transfer and adaptation tests)."""
    x, y = digit_images(28)
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n_train + n_test]
    x, y = x[idx, 0].numpy(), y[idx].numpy()  # (n, 28, 28) uint8, (n,)
    if rgb_size is not None:
        pad = (rgb_size - 28) // 2
        x = np.repeat(np.pad(x, ((0, 0), (pad, pad), (pad, pad)))[..., None], 3, axis=3)  # (n, S, S, 3)
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])
    return path


@pytest.fixture
def digits_npz():
    """`write_digits_npz(path, n_train, n_test, rgb_size)` for tests that need another dataset."""
    return write_digits_npz


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """An .npz of 150 train / 50 test digits, 28x28 grayscale."""
    return write_digits_npz(tmp_path / "digits200.npz")


@pytest.fixture
def tiny_run(tmp_path, tiny_data) -> Path:
    """A run directory with a random vit-cpu backbone (28 px, 1 channel, patch 7) 'pre-trained' on tiny_data."""
    run = tmp_path / "run"
    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 28, 1, 7, [0.2], [0.3])
    save_backbone(spec.build(), spec, run / "backbone.safetensors")
    (run / "config.yaml").write_text(f"method: dino\ndata: {{name: {tiny_data}}}\n")
    return run
