from pathlib import Path

import numpy as np
import pytest
import torch
from photos import wave_photo  # tests/photos.py

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


def _write_class(folder: Path, n: int, seed: int) -> None:
    """n JPEG and PNG files of different sizes and aspect ratios; every 5th one grayscale."""
    folder.mkdir(parents=True)
    for i in range(n):
        image = wave_photo((18 + 5 * i, 16 + 3 * (i % 4)), seed + i, "L" if i % 5 == 4 else "RGB")
        image.save(folder / f"{i:02d}.{'png' if i % 3 == 2 else 'jpg'}", quality=90)


def write_photo_folder(root: Path, layout: str, classes: str = "abc", per_class: int = 8) -> Path:
    """An image folder in one of the three layouts: "split" (train/<class>/ and test/<class>/, per_class and
    per_class // 2 files), "classes" (root/<class>/, per_class files) or "flat" (3 * per_class unlabelled)."""
    for c, name in enumerate(classes):
        if layout == "split":
            _write_class(root / "train" / name, per_class, 100 * c)
            _write_class(root / "test" / name, per_class // 2, 100 * c + 50)
        elif layout == "classes":
            _write_class(root / name, per_class, 100 * c)
    if layout == "flat":
        _write_class(root, len(classes) * per_class, 0)
    return root


@pytest.fixture
def photo_folder():
    """`write_photo_folder(root, layout, classes, per_class)`: a small folder of generated JPEGs and PNGs."""
    return write_photo_folder


def write_tiny_vit_run(run: Path, channels: int = 3, size: int = 16, patch: int = 4) -> Path:
    """A run directory holding a random tiny ViT (width 32, depth 2, 2 heads) for `channels` x `size` images."""
    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", size, channels, patch, [0.5] * channels, [0.25] * channels, width=32, depth=2,
                        num_heads=2)
    save_backbone(spec.build(), spec, run / "backbone.safetensors")
    return run


@pytest.fixture
def tiny_vit_run():
    """`write_tiny_vit_run(run, channels, size, patch)`."""
    return write_tiny_vit_run
