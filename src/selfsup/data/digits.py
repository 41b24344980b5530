"""scikit-learn's bundled 8x8 digits, upsampled to MNIST's 28x28: a dataset that needs no download.

The split is `train_test_split(test_size=0.2, random_state=0)` without stratification: 1437 train and
360 test images. It is the documented baseline (raw-pixel k-NN 96.9%), so do not change it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split

from selfsup.data.dataset import DataError, ImageSet, Splits

CLASSES = [str(d) for d in range(10)]


def digit_images(image_size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits -> images (1797, 1, S, S) uint8 and labels (1797,) int64.

    The 0..16 pixel values are scaled to 0..255 and rounded to uint8, then upsampled bilinearly
    (align_corners=False) to S = image_size and rounded/clamped back to uint8.
    """
    if image_size < 1:
        raise DataError(f"image size must be a positive number of pixels, got {image_size}")
    bunch = _sklearn_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # (N, 8, 8)
    small = torch.from_numpy(pixels).unsqueeze(1).float()
    big = F.interpolate(small, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return big.round().clamp(0, 255).to(torch.uint8), torch.from_numpy(bunch.target.astype(np.int64))


def load_digits(image_size: int = 28) -> Splits:
    """The digits as Splits: 1437 train / 360 test images (N, 1, S, S) uint8, classes "0".."9"."""
    images, labels = digit_images(image_size)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0)
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return Splits("digits", ImageSet(images[train_idx], labels[train_idx], list(CLASSES)),
                  ImageSet(images[test_idx], labels[test_idx], list(CLASSES)))
