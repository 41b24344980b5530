"""Where every protocol's frozen features come from: one source for data held in memory and for an image folder
streamed from disk, which owns the on-disk cache.

`FeatureSource.features(name, split)` returns (N, D) float32 features and (N,) labels on the CPU:
- a split held in memory (`ImageSet`): its images through the backbone in batches (`extract_features`), cached
  under a key holding the digest of the images' bytes;
- a streamed split (`StreamedSplit`): its files decoded batch by batch by DataLoader workers and passed through
  the backbone as they come, so that only the features are ever held. Unreadable files are left out (their
  rows would be another file's), counted in the split's `SkipReport` and named in a warning; the labels
  returned are those of the files kept. The cache key holds the digest of the split's files (paths, sizes,
  modification times, labels: nothing is decoded to look it up), and the entry also stores which files were
  kept and which were skipped, so a cache hit returns the same labels and reports the same skips.
Without a cache or a checkpoint digest (the raw-pixel baseline, `cache=False`), features are computed each time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from selfsup.data import ImageSet
from selfsup.data.dataset import DataError
from selfsup.data.file_batches import file_batches
from selfsup.eval.feature_cache import FeatureCache, FeatureKey, files_digest, images_digest
from selfsup.eval.features import extract_features, features_of_batches
from selfsup.eval.streamed_split import StreamedSplit

Prepare = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FeatureSource:
    """The frozen features of `backbone` (its output `feature`, e.g. a ViT pool) on `data`'s splits."""

    backbone: nn.Module
    prepare: Prepare | None  # uint8-scaled [0, 1] images -> normalised backbone input
    device: torch.device | str = "cpu"
    batch_size: int = 512
    cache: FeatureCache | None = None
    checkpoint: str | None = None  # sha256 of the backbone file; None: nothing is cached
    data: str = ""  # the --data value, part of the cache key
    feature: str = ""  # what the backbone outputs (BackboneSpec.feature), part of the cache key

    @property
    def caching(self) -> bool:
        return self.cache is not None and self.checkpoint is not None

    def features(self, name: str, split: ImageSet | StreamedSplit) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, D) float32 features on the CPU and (N,) int64 labels (None when unlabelled) of split `name`
        ("train" or "test"), through the cache when there is one."""
        if isinstance(split, StreamedSplit):
            return self._streamed(name, split)
        images = split.images  # (N, C, S, S) uint8

        def compute() -> torch.Tensor:
            return extract_features(self.backbone, images, self.batch_size, self.device, self.prepare)

        if not self.caching:
            return compute(), split.labels
        key = FeatureKey(self.checkpoint, self.data, name, images.shape[-1], images.shape[1], images_digest(images),
                         self.feature)
        return self.cache.get(key, compute), split.labels

    def _streamed(self, name: str, split: StreamedSplit) -> tuple[torch.Tensor, torch.Tensor | None]:
        def compute() -> dict[str, Any]:
            return streamed_entry(split, self.backbone, self.prepare, self.batch_size, self.device)

        entry = self.cache.get_entry(self.streamed_key(name, split), compute) if self.caching else compute()
        split.skips.add([(str(file), str(why)) for file, why in entry["failed"]])
        kept = entry["kept"]  # (N,) positions of the readable files in the split
        return entry["features"], None if split.labels is None else split.labels[kept]

    def streamed_key(self, name: str, split: StreamedSplit) -> FeatureKey:
        """The cache key of a streamed split: its files identify the data, not their pixels."""
        labels = None if split.labels is None else split.labels.tolist()
        return FeatureKey(self.checkpoint, self.data, name, split.size, split.channels,
                          files_digest(split.root, (split.files[i] for i in range(len(split.files))), labels),
                          self.feature, source="files")


def streamed_entry(split: StreamedSplit, backbone: nn.Module, prepare: Prepare | None, batch_size: int = 512,
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """{"features": (N, D), "kept": (N,) int64, "failed": [[file, why], ...]} from one pass over the files."""
    kept: list[np.ndarray] = []
    failed: list[list[str]] = []

    def images() -> Iterator[torch.Tensor]:
        for batch in file_batches(split.batches(batch_size), split.workers):
            kept.append(batch.kept)
            failed.extend([file, why] for file, why in batch.failed)
            yield batch.images  # (K, C, S, S) uint8

    try:
        features = features_of_batches(backbone, images(), device, prepare)
    except ValueError:
        if failed and not any(len(k) for k in kept):  # every file unreadable: nothing to extract
            raise DataError(f"{split.root}: none of the {len(split)} image files of a split could be read, e.g. "
                            f"{failed[0][0]} ({failed[0][1]}): check the files") from None
        raise
    return {"features": features, "kept": torch.from_numpy(np.concatenate(kept)), "failed": failed}


__all__ = ["FeatureSource", "streamed_entry"]
