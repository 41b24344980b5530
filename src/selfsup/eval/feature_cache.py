"""Frozen features cached on disk, so that every protocol after the first (and every learning rate of a
linear-probe sweep) starts from the features instead of a pass through the backbone.

Files live in `<run>/eval/features/`, one per (data, split, image size, channels, feature): `train-<hash>.pt`
holds the (N, D) float32 features and the full key they were computed for. The feature is what the backbone
outputs (a ViT's cls, cls-last4, ... as `--feature` picks it), so one feature never reads another's file. The key
includes the sha256 of the backbone file's bytes and of the images, so features are recomputed (and the file
overwritten) whenever the checkpoint or the data change; a file that cannot be read is recomputed too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from selfsup.eval.features import extract_features

CACHE_VERSION = 2  # bump when what is cached changes meaning (e.g. another feature than the backbone output)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def images_digest(images: torch.Tensor) -> str:
    """sha256 of a uint8 image stack's shape and bytes (about 0.1 s for Fashion-MNIST's 47 MB)."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    """What a cached feature file was computed from."""

    checkpoint: str  # sha256 of backbone.safetensors
    data: str  # the --data value
    split: str  # "train" or "test"
    image_size: int  # side of the images fed to the backbone (after adaptation)
    channels: int
    images: str  # images_digest of those images
    feature: str  # what the backbone outputs (BackboneSpec.feature: a ViT pool such as cls-last4, or avgpool)
    version: int = CACHE_VERSION

    def file_name(self) -> str:
        """One file per data, split, size, channels and feature: a new checkpoint overwrites the old features."""
        where = json.dumps([self.data, self.image_size, self.channels, self.feature])
        return f"{self.split}-{hashlib.sha256(where.encode()).hexdigest()[:16]}.pt"


class FeatureCache:
    """Features on disk under `directory`; `hits` and `misses` count how each request was served."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.hits = self.misses = 0

    def path(self, key: FeatureKey) -> Path:
        return self.directory / key.file_name()

    def load(self, key: FeatureKey) -> torch.Tensor | None:
        """The cached (N, D) features for exactly `key`, or None (absent, stale or unreadable)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign file: recompute
            return None
        if not isinstance(stored, dict) or stored.get("key") != dataclasses.asdict(key):
            return None
        return stored.get("features")

    def save(self, key: FeatureKey, features: torch.Tensor) -> None:
        """Atomic write (temporary file, then rename)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"key": dataclasses.asdict(key), "features": features.contiguous()}, tmp)
        os.replace(tmp, path)

    def get(self, key: FeatureKey, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Cached features for `key`, else `compute()` them and store them."""
        features = self.load(key)
        if features is not None:
            self.hits += 1
            return features
        self.misses += 1
        features = compute()
        self.save(key, features)
        return features


def cached_features(cache: FeatureCache, backbone: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor] | None,
                    images: torch.Tensor, checkpoint: str, data: str, split: str, feature: str,
                    batch_size: int = 512, device: str | torch.device = "cpu") -> torch.Tensor:
    """`extract_features` of (N, C, S, S) uint8 images -> (N, D) float32, through `cache`.

    `checkpoint` is the sha256 of the backbone file (`file_digest`), `data` the --data value, `feature` what
    `backbone` outputs (`BackboneSpec.feature`).
    """
    key = FeatureKey(checkpoint, data, split, images.shape[-1], images.shape[1], images_digest(images), feature)
    return cache.get(key, lambda: extract_features(backbone, images, batch_size, device, prepare))


__all__ = ["CACHE_VERSION", "FeatureCache", "FeatureKey", "cached_features", "file_digest", "images_digest"]
