"""Where pre-training's batches come from: one interface for images held in memory and files streamed.

Opening the data (`selfsup.data.open_training_data`) gives a `TrainingData`: what is known before the crop
sizes are (the image count, channels and default side, the evaluation splits). Its `source(layout, side)`
gives the `BatchSource` the engine trains on: `batch(step)` is the uint8 batch (B, C, S, S) of one step,
`batches(start)` the batches of start, start + 1, ... without end (workers decode ahead for streamed data).

Every source cuts an epoch from `epoch_order`, a function of the seed and the epoch only, and gives process
`rank` of `world` its share, so the batch of a step never depends on where a run was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from selfsup.data.dataset import Splits


@dataclass(frozen=True)
class Layout:
    """How batches are cut: the run's seed, its batch over all processes and this process's place."""

    seed: int
    world_batch: int
    rank: int = 0
    world: int = 1

    @property
    def local_batch(self) -> int:
        return self.world_batch // self.world

    def steps_per_epoch(self, count: int) -> int:
        """Full batches of `count` images; the last partial batch of an epoch is dropped."""
        return count // self.world_batch


def epoch_order(count: int, layout: Layout, epoch: int) -> torch.Tensor:
    """This process's share of the epoch's shuffle of `count` images: (steps * local_batch,) int64 indices, a
    function of seed and epoch only; step i of the epoch reads [i * local_batch, (i + 1) * local_batch)."""
    g = torch.Generator().manual_seed(layout.seed * 100003 + epoch)
    perm = torch.randperm(count, generator=g)[: layout.steps_per_epoch(count) * layout.world_batch]
    return perm[layout.rank :: layout.world]


class BatchSource(Protocol):
    """The batches of one process's pre-training (see the module's docstring)."""

    steps_per_epoch: int

    def batch(self, step: int) -> torch.Tensor:
        """(local_batch, C, S, S) uint8: the batch of `step`, read on its own (calibration, tests)."""
        ...

    def batches(self, start: int) -> Iterator[torch.Tensor]:
        """The batches of steps start, start + 1, ... (endless; close the iterator to stop its workers)."""
        ...


class TrainingData(Protocol):
    """Opened training data: known before the crop sizes; `source` makes the batches."""

    name: str
    count: int  # training images
    channels: int
    size: int  # side of the images in memory; for streamed data the default global crop side

    def eval_splits(self, size: int, labelled: bool = True) -> Splits:
        """The splits evaluation reads, in memory; where streamed, bounded subsets at `size` (the global crop
        side), and with `labelled` False (no evaluation asked for) only the unlabeled sample."""
        ...

    def sample(self, size: int) -> torch.Tensor:
        """uint8 (N, C, S, S) training images for statistics and figures: all of them when in memory, a
        bounded seeded sample when streamed."""
        ...

    def source(self, layout: Layout, size: int) -> BatchSource:
        """The batches of this process, for global crops of side `size`."""
        ...


class InMemorySource:
    """Batches indexed out of a uint8 (N, C, S, S) stack held in memory."""

    def __init__(self, images: torch.Tensor, layout: Layout) -> None:
        self.images, self.layout = images, layout
        self.steps_per_epoch = layout.steps_per_epoch(len(images))
        self._order: tuple[int, torch.Tensor] = (-1, torch.empty(0, dtype=torch.long))

    def _indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.images), self.layout, epoch))
        b = self.layout.local_batch
        return self._order[1][i * b : (i + 1) * b]

    def batch(self, step: int) -> torch.Tensor:
        return self.images[self._indices(step)]

    def batches(self, start: int) -> Iterator[torch.Tensor]:
        step = start
        while True:
            yield self.batch(step)
            step += 1


@dataclass
class InMemoryData:
    """A `Splits` loaded in memory (`load_data`): pre-training reads its train images."""

    splits: Splits

    @property
    def name(self) -> str:
        return self.splits.name

    @property
    def count(self) -> int:
        return len(self.splits.train)

    @property
    def channels(self) -> int:
        return self.splits.train.channels

    @property
    def size(self) -> int:
        return self.splits.train.size

    def eval_splits(self, size: int, labelled: bool = True) -> Splits:
        return self.splits

    def sample(self, size: int) -> torch.Tensor:
        return self.splits.train.images

    def source(self, layout: Layout, size: int) -> InMemorySource:
        return InMemorySource(self.splits.train.images, layout)


__all__ = ["BatchSource", "InMemoryData", "InMemorySource", "Layout", "TrainingData", "epoch_order"]
