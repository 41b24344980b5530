"""Frozen features cached on disk, so that every protocol after the first (and every learning rate of a
linear-probe sweep) starts from the features instead of a pass through the backbone.

Files live in `<run>/eval/features/`, one per (data, split, image size, channels, feature, source):
`train-<hash>.pt` holds the (N, D) float32 features and the full key they were computed for. The feature is
what the backbone outputs (a ViT's cls, cls-last4, ... as `--feature` picks it), so one feature never reads
another's file. The key includes the sha256 of the backbone file's bytes and of the data, so features are
recomputed (and the file overwritten) whenever the checkpoint or the data change; a file that cannot be read
is recomputed too. The data's digest is that of the images for data held in memory (`images_digest`), and for
a streamed image folder that of its files' names, sizes, modification times and labels (`files_digest`: the
images are not decoded to look the features up); the two sources keep separate files, and a streamed entry
also stores which files were readable (see `feature_source.py`, the one place features are computed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CACHE_VERSION = 2  # bump when what is cached changes meaning (e.g. another feature than the backbone output)


def images_digest(images: torch.Tensor) -> str:
    """sha256 of a uint8 image stack's shape and bytes (about 0.1 s for Fashion-MNIST's 47 MB)."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def files_digest(root: Path, paths: Iterable[str], labels: Iterable[int] | None = None) -> str:
    """sha256 of the resolved folder `root` and, per file of `paths` (in order), its path, size, modification
    time (ns) and label: what identifies a streamed split without decoding it. A file missing now counts as
    size -1, so that it changes the digest instead of failing here (decoding reports it)."""
    h = hashlib.sha256(str(Path(root).resolve()).encode())
    for path, label in zip(paths, itertools.repeat(None) if labels is None else labels, strict=False):
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, 0
        h.update(f"\0{path}\0{size}\0{mtime}\0{label}".encode(errors="surrogateescape"))
    return h.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    """What a cached feature file was computed from."""

    checkpoint: str  # sha256 of backbone.safetensors
    data: str  # the --data value
    split: str  # "train" or "test"
    image_size: int  # side of the images fed to the backbone (after adaptation)
    channels: int
    images: str  # images_digest of those images, or files_digest of a streamed split's files
    feature: str  # what the backbone outputs (BackboneSpec.feature: a ViT pool such as cls-last4, or avgpool)
    source: str = "memory"  # "memory" (images_digest) or "files" (a streamed folder: files_digest)
    version: int = CACHE_VERSION

    def file_name(self) -> str:
        """One file per data, split, size, channels, feature and source: a new checkpoint overwrites the old
        features, and a folder streamed or loaded into memory keeps one file each."""
        where = [self.data, self.image_size, self.channels, self.feature]
        where = json.dumps(where if self.source == "memory" else [*where, self.source])
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
        entry = self.load_entry(key)
        return None if entry is None else entry["features"]

    def load_entry(self, key: FeatureKey) -> dict[str, Any] | None:
        """What was saved for exactly `key` ({"features": (N, D), ...what `save` was given besides}), or None."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign file: recompute
            return None
        if not isinstance(stored, dict) or stored.get("key") != dataclasses.asdict(key) or "features" not in stored:
            return None
        return {k: v for k, v in stored.items() if k != "key"}

    def save(self, key: FeatureKey, features: torch.Tensor, **extra: Any) -> None:
        """Atomic write (temporary file, then rename) of the features and `extra` (tensors, lists, strings)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"key": dataclasses.asdict(key), "features": features.contiguous(), **extra}, tmp)
        os.replace(tmp, path)

    def get(self, key: FeatureKey, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Cached features for `key`, else `compute()` them and store them."""
        return self.get_entry(key, lambda: {"features": compute()})["features"]

    def get_entry(self, key: FeatureKey, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached entry for `key`, else `compute()` it ({"features": (N, D), ...extra}) and store it."""
        entry = self.load_entry(key)
        if entry is not None:
            self.hits += 1
            return entry
        self.misses += 1
        entry = compute()
        self.save(key, **entry)
        return entry


__all__ = ["CACHE_VERSION", "FeatureCache", "FeatureKey", "files_digest", "images_digest"]
