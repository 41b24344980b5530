"""What the sized recipe and the memory guard need to know of the training data, read before the run opens it:
image count, side, channels, and whether the images are held in memory or streamed. Image folders and tar
shards are only scanned (file names and a sample of headers); the named sets, .npz files and CIFAR batches are
read, as the run will read them."""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.config import DataConfig
from selfsup.data import stream_kind
from selfsup.engine.data import open_data


@dataclass(frozen=True)
class DataFacts:
    count: int  # training images
    side: int  # side of the images as the run reads them (an image folder's median shorter side, capped at 224)
    channels: int
    streamed: bool  # read lazily by DataLoader workers; else held in memory whole
    test_count: int = 0  # evaluation images held in memory beside the training ones

    def words(self) -> str:
        """'2,000 RGB images of 224 px, streamed'."""
        kind = "RGB" if self.channels == 3 else "grayscale" if self.channels == 1 else f"{self.channels}-channel"
        return f"{self.count:,} {kind} images of {self.side} px, {'streamed' if self.streamed else 'in memory'}"


def probe_data(cfg: DataConfig, seed: int = 0) -> DataFacts:
    """The facts of `cfg`'s training data (see the module docstring)."""
    kind = stream_kind(cfg.name)
    in_memory = kind is None or cfg.stream == "never"
    if kind == "folder" and cfg.stream == "never":  # scan it as a stream would; decoding it all waits for the run
        from selfsup.data.streaming import StreamedFolder

        folder = StreamedFolder(cfg.name, cfg.load_size, 0, cfg.eval_images, cfg.image_size)
        train = round(folder.count * (1 - cfg.holdout))
        return DataFacts(train, folder.size, folder.channels, False, folder.count - train + len(folder.test_files))
    data = open_data(cfg, seed)
    test = getattr(data, "splits", None)
    test_count = len(test.test) if test is not None and test.test is not None else 0
    return DataFacts(data.count, data.size, data.channels, not in_memory, test_count)
