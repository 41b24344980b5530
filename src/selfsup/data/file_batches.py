"""One pass over a list of image files in order, batch by batch, decoded by DataLoader workers: what frozen
features of a streamed folder are computed from (`selfsup.eval.feature_source`).

Item i of `FileBatches` is the i-th run of `batch` files, each decoded as `image_folder` decodes it (shorter
side resized to the side, centre-cropped) and brought to the wanted channels. Unlike pre-training's batches, an
unreadable file is left out rather than replaced (each row of the result must be its own file's): the batch
carries the positions of the files it kept and the failures, for the caller to count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from selfsup.data.channels import to_channels
from selfsup.data.folder_index import PathTable
from selfsup.data.skips import Failure
from selfsup.data.streaming import decode_many, loader


class FileBatch(NamedTuple):
    """The readable files of one batch, in order."""

    images: torch.Tensor  # (K, C, S, S) uint8, K <= batch
    kept: np.ndarray  # (K,) int64 positions of those files in the whole list (sent by value, not shared)
    failed: list[Failure]  # (file name relative to the root, why) of the others


class FileBatches(Dataset):
    """Item i: the files at positions [i * batch, (i + 1) * batch) decoded with `decode_channels` channels at
    `side`, then converted to `channels` (`to_channels`: gray repeated, RGB to luminance)."""

    def __init__(self, files: PathTable, root: Path, decode_channels: int, side: int, batch: int,
                 channels: int | None = None) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.files, self.root, self.decode_channels, self.side, self.batch = files, root, decode_channels, side, batch
        self.channels = channels or decode_channels

    def __len__(self) -> int:
        return math.ceil(len(self.files) / self.batch)

    def __getitem__(self, i: int) -> FileBatch:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        start = i * self.batch
        stop = min(start + self.batch, len(self.files))
        images, failed = decode_many([self.files[j] for j in range(start, stop)], self.decode_channels, self.side,
                                     self.root)
        keep = [k for k, a in enumerate(images) if a is not None]
        if keep:
            stack = torch.from_numpy(np.stack([images[k] for k in keep]))  # (K, C, S, S)
        else:
            stack = torch.empty((0, self.decode_channels, self.side, self.side), dtype=torch.uint8)
        kept = np.asarray(keep, dtype=np.int64) + start
        return FileBatch(to_channels(stack, self.channels), kept, failed)


def file_batches(dataset: FileBatches, workers: int) -> Iterator[FileBatch]:
    """Every item of `dataset` in order, decoded ahead by `workers` processes (0: in this one); at most
    2 x workers batches wait decoded at a time. The workers stop when the iterator is exhausted or dropped."""
    yield from loader(dataset, 0, workers, stop=len(dataset))


__all__ = ["FileBatch", "FileBatches", "file_batches"]
