"""Image folders read lazily: a DataLoader whose workers decode the files of each step's batch.

The folder is its index (`folder_index.py`: the layouts, labels and 80/20 split every reader sees), but nothing is
decoded up front: memory holds the file names (packed, see `PathTable`), a bounded sample for the channel
statistics and, for evaluation, a bounded labelled subset at the global crop side (`--data.eval-images`).
Each file is decoded with Pillow at the load side L (`load_side`): its shorter side resized to L, then
centre-cropped to L x L so that a batch stacks; the crops are then made from it on the device as for
in-memory data. Step s of epoch e reads the files at `epoch_order(e)[i * B : (i + 1) * B]` (i = s mod the
steps of an epoch), so a resumed run reads exactly what an uninterrupted one would, whatever the workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from selfsup.data.batch_source import Layout, epoch_order
from selfsup.data.dataset import DataError, ImageSet, Splits
from selfsup.data.folder_index import LAYOUT, PathTable, index_folder
from selfsup.data.image_folder import decode_image, default_size, probe_image
from selfsup.data.skips import Failure, SkipReport, fill_failed

SAMPLE_IMAGES = 512  # images decoded for the channel statistics, the methods' data priors and the figures
LOAD_MARGIN = 1.15  # default load side over the global crop side


def load_side(global_size: int, load_size: int | None = None) -> int:
    """The side streamed images are decoded at: `load_size`, or by default 15% above the global crop."""
    return load_size or round(global_size * LOAD_MARGIN)


def seeded_pick(count: int, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of min(count, limit) of `count` items, drawn as `views.channel_stats` draws them."""
    if count <= limit:
        return np.arange(count)
    pick = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit]
    return pick.sort().values.numpy()


def decode_many(paths: Sequence[str], channels: int, side: int, root: Path,
                threads: int = 1) -> tuple[list[np.ndarray | None], list[Failure]]:
    """Decode `paths` -> (C, side, side) arrays (None where unreadable) and the failures, named from `root`."""
    def one(path: str) -> np.ndarray | str:
        return decode_image(Path(path), channels, side)

    if threads <= 1:
        out = [one(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            out = list(pool.map(one, paths))
    failed = [(_relative(p, root), a) for p, a in zip(paths, out, strict=True) if isinstance(a, str)]
    return [None if isinstance(a, str) else a for a in out], failed


def probe_paths(paths: Sequence[str], root: Path) -> tuple[int, list[tuple[int, int]]]:
    """(channels, (width, height) of each readable file) from the headers of `paths`: 1 channel if every
    readable one is grayscale, else 3, as `image_folder` decides for the files it decodes."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        ok = [p for p in pool.map(probe_image, map(Path, paths)) if not isinstance(p, str)]
    if not ok:
        raise DataError(f"{root}: none of {len(paths)} image files sampled could be read, e.g. {paths[0]}: "
                        "check the files")
    return (1 if all(gray for gray, _ in ok) else 3), [size for _, size in ok]


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


class _StepBatches(Dataset):
    """Item s: (the uint8 batch of step s, its unreadable files). Decoded in a DataLoader worker."""

    def __init__(self, files: PathTable, root: Path, layout: Layout, channels: int, side: int) -> None:
        self.files, self.root, self.layout, self.channels, self.side = files, root, layout, channels, side
        self.steps_per_epoch = layout.steps_per_epoch(len(files))
        self._order: tuple[int, torch.Tensor] = (-1, torch.empty(0, dtype=torch.long))

    def _epoch(self, epoch: int) -> torch.Tensor:
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.files), self.layout, epoch))
        return self._order[1]

    def __getitem__(self, step: int) -> tuple[torch.Tensor, list[Failure]]:
        epoch, i = divmod(step, self.steps_per_epoch)
        order, b = self._epoch(epoch), self.layout.local_batch
        images, failed = decode_many([self.files[int(j)] for j in order[i * b : (i + 1) * b]], self.channels,
                                     self.side, self.root)
        if all(a is None for a in images):
            images[0], more = self._rescue(order, (i + 1) * b)
            failed += more
        return torch.from_numpy(np.stack(fill_failed(images))), failed

    def _rescue(self, order: torch.Tensor, after: int) -> tuple[np.ndarray, list[Failure]]:
        """The first readable file after position `after` of the epoch (cyclically): a batch whose files were
        all unreadable still gets one image to repeat."""
        failed: list[Failure] = []
        for pos in range(after, after + len(order)):
            path = self.files[int(order[pos % len(order)])]
            (image,), bad = decode_many([path], self.channels, self.side, self.root)
            if image is not None:
                return image, failed
            failed += bad
        raise DataError(f"{self.root}: none of its {len(self.files)} training image files could be read, e.g. "
                        f"{failed[0][0]} ({failed[0][1]}): check the files")


class _From:
    """Sampler of the steps start, start + 1, ... (endless)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


def _as_is(item: object) -> object:
    return item


def loader(dataset: Dataset, start: int, workers: int, stop: int | None = None) -> DataLoader:
    """Items start, start + 1, ... (up to `stop`, else without end) of `dataset` (or its rounds, for an
    iterable one), decoded by `workers` processes (0: in this one). The loader draws its workers' seeds from a
    generator of its own, so that opening one leaves torch's global random state, which the views draw from,
    as it was."""
    sampler = _From(start) if stop is None else range(start, stop)
    if isinstance(dataset, torch.utils.data.IterableDataset):
        sampler = None
    # pinned host memory where a GPU reads the batches: their copy to it runs beside the step (non_blocking)
    return DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_as_is, num_workers=workers,
                      prefetch_factor=2 if workers else None, generator=torch.Generator(),
                      pin_memory=torch.cuda.is_available())


class FolderStream:
    """The `BatchSource` of a streamed image folder."""

    def __init__(self, files: PathTable, root: Path, layout: Layout, channels: int, side: int, workers: int) -> None:
        self.dataset = _StepBatches(files, root, layout, channels, side)
        self.steps_per_epoch, self.workers = self.dataset.steps_per_epoch, workers
        self.skips = SkipReport(str(root))

    def batch(self, step: int) -> torch.Tensor:
        images, failed = self.dataset[step]
        self.skips.add(failed)
        return images

    def batches(self, start: int) -> Iterator[torch.Tensor]:
        it = iter(loader(self.dataset, start, self.workers))
        try:
            for images, failed in it:
                self.skips.add(failed)
                yield images
        finally:
            del it  # stops the workers


class StreamedFolder:
    """A folder of images opened for streaming (the `TrainingData` of `open_training_data`)."""

    def __init__(self, root: str | Path, load_size: int | None = None, workers: int = 4, eval_images: int = 5000,
                 image_size: int | None = None) -> None:
        index = index_folder(root)  # its files, labels and 80/20 split, as every reader of a folder sees them
        self.root, self.name, self.classes = index.root, str(index.root), index.classes
        self.load_size, self.workers, self.eval_images = load_size, workers, eval_images
        self.files, self.labels = index.train, index.train_labels
        self.test_files, self.test_labels = index.test, index.test_labels
        self.channels, self.size = self._probe(image_size)
        self._sample: tuple[int, torch.Tensor] | None = None

    @property
    def count(self) -> int:
        return len(self.files)

    def hold_out(self, train_idx: np.ndarray, test_idx: np.ndarray) -> None:
        """Train on the training files at `train_idx`; the ones at `test_idx` become the evaluation split."""
        labels = self.labels
        self.test_files, self.test_labels = self.files.take(test_idx), labels[test_idx]
        self.files, self.labels = self.files.take(train_idx), labels[train_idx]

    def _probe(self, image_size: int | None) -> tuple[int, int]:
        """(channels, side) from the headers of a seeded sample: 1 channel if all of them are grayscale; the
        side `image_size` or their median shorter side capped at 224, as for in-memory folders."""
        if not self.count:
            raise DataError(f"{self.root} holds no training image files: expected {LAYOUT}")
        channels, sizes = probe_paths([self.files[int(i)] for i in seeded_pick(self.count, SAMPLE_IMAGES)],
                                      self.root)
        return channels, image_size or default_size(sizes)[0]

    def sample(self, size: int) -> torch.Tensor:
        """Up to SAMPLE_IMAGES training images (seeded pick) at the load side of global crops of `size`."""
        side = load_side(size, self.load_size)
        if self._sample is None or self._sample[0] != side:
            picked = [self.files[int(i)] for i in seeded_pick(self.count, SAMPLE_IMAGES)]
            images, _ = decode_many(picked, self.channels, side, self.root, threads=max(1, self.workers))
            kept = [a for a in images if a is not None]
            if not kept:
                raise DataError(f"{self.root}: none of {len(picked)} image files sampled could be read: check them")
            self._sample = (side, torch.from_numpy(np.stack(kept)))
        return self._sample[1]

    def eval_splits(self, size: int, labelled: bool = True) -> Splits:
        """Up to --data.eval-images train and test images (seeded picks) in memory at `size`, for the k-NN
        during pre-training; without labels (or with `labelled` False), the sample only, no test split."""
        if not labelled or self.labels is None or not len(self.test_files):
            return Splits(self.name, ImageSet(self.sample(size)), None, "streamed: no evaluation split in memory")
        train, n_train = self._eval_set(self.files, self.labels, size)
        test, n_test = self._eval_set(self.test_files, self.test_labels, size)
        note = (f"streamed; evaluation during pre-training reads {len(train)} of the {n_train} train and "
                f"{len(test)} of the {n_test} test images (--data.eval-images)")
        return Splits(self.name, train, test, note)

    def _eval_set(self, files: PathTable, labels: np.ndarray, size: int) -> tuple[ImageSet, int]:
        idx = seeded_pick(len(files), self.eval_images)
        images, _ = decode_many([files[int(i)] for i in idx], self.channels, size, self.root,
                                threads=max(1, self.workers))
        keep = [k for k, a in enumerate(images) if a is not None]
        stack = torch.from_numpy(np.stack([images[k] for k in keep]))
        return ImageSet(stack, torch.from_numpy(labels[idx][keep]), self.classes), len(files)

    def source(self, layout: Layout, size: int) -> FolderStream:
        return FolderStream(self.files, self.root, layout, self.channels, load_side(size, self.load_size),
                            self.workers)


__all__ = ["FolderStream", "StreamedFolder", "decode_many", "load_side", "loader", "probe_paths",
           "seeded_pick"]
