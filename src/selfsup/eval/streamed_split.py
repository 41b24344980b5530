"""Evaluation data streamed from an image folder (`--data-stream`): splits that hold the files' names and
labels, never their images; their frozen features are computed batch by batch (`feature_source.py`), so
memory holds the (N, D) features and (N,) labels, not the (N, C, S, S) images.

The folder is its index (`data/folder_index.py`), as pre-training's streaming and the in-memory folder see it:
the same files in the same train/test split. Each file is decoded as the in-memory
folder decodes it at the backbone's side (`decode_image`: shorter side resized, centre crop), gray or RGB
decided from the train and test headers as in memory (from a seeded sample of 512 when there are more), then
brought to the backbone's channels as `adapt.py` brings in-memory images: the features equal the in-memory
path's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.data.dataset import DataError, Splits
from selfsup.data.file_batches import FileBatches
from selfsup.data.folder_index import PathTable, index_folder
from selfsup.data.skips import SkipReport
from selfsup.data.streaming import SAMPLE_IMAGES, probe_paths, seeded_pick
from selfsup.eval.adapt import channel_change

SKIPPED = "left out of the features"  # what becomes of an unreadable file, for SkipReport's warning


@dataclass
class StreamedSplit:
    """One split of a streamed image folder: its files and labels, never its images.

    It answers what protocols that read only features ask of an `ImageSet` (len, labels, classes, num_classes,
    channels, size); reading `images` raises a DataError that names `--data-stream never`.
    """

    files: PathTable
    root: Path
    labels: torch.Tensor | None  # (N,) int64 of every listed file, readable or not; None for a flat folder
    classes: list[str] | None
    decode_channels: int  # the folder's: 1 when every (sampled) header is grayscale, else 3
    channels: int  # the backbone's, after conversion
    size: int  # the side files are decoded at: the backbone's
    workers: int  # DataLoader processes decoding the files (0: the main one)
    skips: SkipReport  # unreadable files met so far, shared by the splits of one folder

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(self.labels.max()) + 1 if self.labels is not None and len(self.labels) else 0

    @property
    def images(self) -> torch.Tensor:
        raise DataError(f"--data {self.root} is streamed (--data-stream), so its images are not held in memory, "
                        "but this evaluation reads them: pass --data-stream never to load the folder into memory")

    def batches(self, batch: int) -> FileBatches:
        """Its files in order, `batch` at a time, decoded at `size` and converted to `channels`."""
        return FileBatches(self.files, self.root, self.decode_channels, self.size, batch, self.channels)


def open_streamed_folder(folder: str | Path, channels: int, size: int,
                         workers: int = 4) -> tuple[Splits, list[str]]:
    """An image folder opened for streamed evaluation by a backbone of `channels` and side `size` -> (Splits
    whose train and test are `StreamedSplit`s, test None for a flat folder; the adaptation made, as
    `adapt_splits` names it). Nothing is decoded but the headers of a sample."""
    index = index_folder(folder)  # its files, labels and 80/20 split, as training and memory see them
    root, files, labels, test_files, test_labels = (index.root, index.train, index.train_labels, index.test,
                                                    index.test_labels)
    decode = folder_channels(files, test_files, root)
    skips = SkipReport(str(root), how=SKIPPED)

    def split(table: PathTable, y: np.ndarray | None) -> StreamedSplit:
        return StreamedSplit(table, root, None if y is None else torch.from_numpy(y), index.classes, decode,
                             channels, size, workers, skips)

    decoders = f"{workers} worker processes" if workers else "this process"
    notes = [f"streamed (--data-stream): {len(files)} train / {len(test_files)} test files, decoded batch by "
             f"batch by {decoders}", *index.notes()]
    test_split = split(test_files, test_labels) if len(test_files) else None
    splits = Splits(str(root), split(files, labels), test_split, "; ".join(n for n in notes if n))
    return splits, [channel_change(decode, channels)] if decode != channels else []


def folder_channels(train: PathTable, test: PathTable, root: Path) -> int:
    """1 if every readable header of a seeded sample of the train and test files is grayscale, else 3 (all of
    them up to SAMPLE_IMAGES files: then exactly what the in-memory folder decides)."""
    n = len(train)
    pick = seeded_pick(n + len(test), SAMPLE_IMAGES)
    return probe_paths([train[int(i)] if i < n else test[int(i) - n] for i in pick], root)[0]


__all__ = ["SKIPPED", "StreamedSplit", "folder_channels", "open_streamed_folder"]
