"""Opening a run's training data as --data.stream asks: in memory (`load_data`), or streamed from an image
folder or tar shards; with --data.holdout, a validation split taken from the training images either way. And
`skipped_files`, the count of unreadable files a stream has skipped so far, for metrics.jsonl."""

from __future__ import annotations

from typing import TYPE_CHECKING

from selfsup.config import DataConfig
from selfsup.data import load_data, stream_kind
from selfsup.data.batch_source import InMemoryData, TrainingData
from selfsup.eval.subsets import holdout_splits, validation_split
from selfsup.validate import ConfigError

if TYPE_CHECKING:
    from lightning.fabric import Fabric

    from selfsup.data.batch_source import BatchSource


def open_data(cfg: DataConfig, seed: int) -> TrainingData:
    """The training data of `cfg`; `seed` draws --data.holdout's split."""
    kind = stream_kind(cfg.name)
    if cfg.stream == "always" and kind is None:
        raise ConfigError(f"--data.stream always: {cfg.name} is read into memory whole (a named set, an .npz file or "
                          "CIFAR batches) and cannot be streamed: use --data.stream auto")
    if cfg.stream == "never" and kind == "shards":
        raise ConfigError(f"--data.stream never: {cfg.name} holds tar shards, which are only streamed: use "
                          "--data.stream auto, or an image folder")
    if kind is None or cfg.stream == "never":
        splits = load_data(cfg.name, cfg.image_size)
        return InMemoryData(holdout_splits(splits, cfg.holdout, seed) if cfg.holdout else splits)
    if kind == "shards":
        if cfg.holdout:
            raise ConfigError(f"--data.holdout: tar shards ({cfg.name}) have no evaluation during pre-training: "
                              "set --data.holdout 0 and hold out shards of your own")
        from selfsup.data.shards import TarShards

        return TarShards(cfg.name, cfg.load_size, cfg.workers, cfg.shuffle_buffer, cfg.image_size)
    return _streamed_folder(cfg, seed)


def _streamed_folder(cfg: DataConfig, seed: int) -> TrainingData:
    import torch

    from selfsup.data.streaming import StreamedFolder

    data = StreamedFolder(cfg.name, cfg.load_size, cfg.workers, cfg.eval_images, cfg.image_size)
    if cfg.holdout:
        if data.labels is None:
            raise ConfigError(f"--data.holdout: {cfg.name} has no class sub-folders (no labels) to hold a "
                              "stratified validation split out of: set --data.holdout 0")
        train_idx, val_idx = validation_split(torch.from_numpy(data.labels), cfg.holdout, seed)
        data.hold_out(train_idx.numpy(), val_idx.numpy())
        data.name = f"{data.name} (held-out {cfg.holdout:g} of train)"
    return data


def skipped_files(fabric: Fabric, source: BatchSource) -> dict[str, int]:
    """{"skipped_files": n} once the processes' streams have skipped n > 0 unreadable files, else {} (and always
    for data in memory). Each process counts a file once; n is the sum over processes. A collective where the
    source streams: every process calls it at the same steps (the log steps)."""
    skips = getattr(source, "skips", None)  # a SkipReport on streamed sources only, on every process alike
    if skips is None:
        return {}
    import torch

    total = int(fabric.all_reduce(torch.tensor(float(skips.count)), reduce_op="sum").item())
    return {"skipped_files": total} if total else {}


__all__ = ["open_data", "skipped_files"]
