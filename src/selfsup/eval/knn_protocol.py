"""The k-NN protocol on a dataset's own train/test split (DINO's eval_knn.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from selfsup.data import Splits
from selfsup.eval.features import extract_features
from selfsup.eval.knn import KnnResult, knn_classify


def knn_eval(backbone: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor] | None, splits: Splits,
             device: torch.device | str = "cpu", k: int = 20, temperature: float = 0.07,
             batch_size: int = 512) -> KnnResult:
    """Features of the train and test images (no augmentation) -> weighted k-NN top-1 on test.

    For the raw-pixel baseline pass `nn.Flatten()` as the backbone and no `prepare`.
    """
    if splits.test is None or splits.test.labels is None or splits.train.labels is None:
        raise ValueError(f"{splits.name} has no labelled test split: k-NN needs labels for train and test")
    train = extract_features(backbone, splits.train.images, batch_size, device, prepare)
    test = extract_features(backbone, splits.test.images, batch_size, device, prepare)
    return knn_classify(train, splits.train.labels, test, splits.test.labels, k=k, temperature=temperature,
                        num_classes=splits.train.num_classes)
