"""Frozen features of a streamed split (`StreamedSplit`): its files decoded batch by batch by DataLoader
workers and passed through the backbone as they come, so that only the (N, D) features are ever held.

Unreadable files are left out (their rows would be another file's), counted in the split's `SkipReport` and
named in a warning; the labels returned are those of the files kept. Through a `FeatureCache`, the entry is
keyed by the split's files (`files_digest`: paths, sizes, modification times, labels) and also stores which
files were kept and which were skipped, so a cache hit returns the same labels and reports the same skips
without decoding anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from selfsup.data.dataset import DataError
from selfsup.data.file_batches import file_batches
from selfsup.eval.feature_cache import FeatureCache, FeatureKey, files_digest
from selfsup.eval.features import features_of_batches
from selfsup.eval.streamed_split import StreamedSplit

Prepare = Callable[[torch.Tensor], torch.Tensor]


def streamed_features(split: StreamedSplit, backbone: nn.Module, prepare: Prepare | None, batch_size: int = 512,
                      device: str | torch.device = "cpu", cache: FeatureCache | None = None,
                      key: FeatureKey | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, D) float32 features on the CPU and (N,) int64 labels (None for a flat folder) of the readable files
    of `split`, in file order; through `cache` under `key` (see `streamed_key`) when both are given."""
    def compute() -> dict[str, Any]:
        return _extract(split, backbone, prepare, batch_size, device)

    entry = compute() if cache is None or key is None else cache.get_entry(key, compute)
    split.skips.add([(str(name), str(why)) for name, why in entry["failed"]])
    kept = entry["kept"]  # (N,) positions of the readable files in the split
    return entry["features"], None if split.labels is None else split.labels[kept]


def streamed_key(split: StreamedSplit, name: str, checkpoint: str, data: str, feature: str) -> FeatureKey:
    """The cache key of split `name` ("train" or "test"): its files identify the data, not their pixels."""
    return FeatureKey(checkpoint, data, name, split.size, split.channels,
                      files_digest(split.root, (split.files[i] for i in range(len(split.files))),
                                   None if split.labels is None else split.labels.tolist()),
                      feature, source="files")


def _extract(split: StreamedSplit, backbone: nn.Module, prepare: Prepare | None, batch_size: int,
             device: str | torch.device) -> dict[str, Any]:
    """{"features": (N, D), "kept": (N,) int64, "failed": [[file, why], ...]} from one pass over the files."""
    kept: list[np.ndarray] = []
    failed: list[list[str]] = []

    def images() -> Iterator[torch.Tensor]:
        for batch in file_batches(split.batches(batch_size), split.workers):
            kept.append(batch.kept)
            failed.extend([name, why] for name, why in batch.failed)
            yield batch.images  # (K, C, S, S) uint8

    try:
        features = features_of_batches(backbone, images(), device, prepare)
    except ValueError:
        if failed and not any(len(k) for k in kept):  # every file unreadable: nothing to extract
            raise DataError(f"{split.root}: none of the {len(split)} image files of a split could be read, e.g. "
                            f"{failed[0][0]} ({failed[0][1]}): check the files") from None
        raise
    return {"features": features, "kept": torch.from_numpy(np.concatenate(kept)), "failed": failed}


__all__ = ["streamed_features", "streamed_key"]
