"""The page's "nearest training images": the training images of a run closest to a query in its feature space
(cosine), searched among a bounded, seeded sample of them.

What the page may open: the run's data (its config.yaml's data.name) must be one of selfsup's named datasets or
lie, symlinks resolved, under the page's --runs folder or the --data-root the server was started with; files of
an image folder that link out of those are left out. How much it reads: at most SAMPLE images. An image folder
is streamed (`open_streamed_folder`: only the sample's files are decoded, batch by batch, never the folder); an
.npz file or CIFAR batches are read into memory as evaluation reads them, refused when larger than
MAX_IN_MEMORY_BYTES (an .npz counted uncompressed), and only the sample is resized to the backbone's side.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.data import is_named, load_data, stream_kind
from selfsup.data.dataset import DataError, ImageSet
from selfsup.data.file_batches import FileBatches, file_batches
from selfsup.eval.adapt import adapt_set
from selfsup.eval.context import run_info
from selfsup.eval.features import extract_features, features_of_batches
from selfsup.eval.streamed_split import StreamedSplit, open_streamed_folder
from selfsup.models.io import BackboneSpec, normalizer
from selfsup.web.explore import RunError, inside

SAMPLE = 2000  # training images searched at most: a CPU computes their features in a minute or two
MAX_IN_MEMORY_BYTES = 2 * 2**30  # an .npz (uncompressed) or CIFAR folder read into memory for the sample
BATCH = 64


@dataclass
class Bank:
    """The features of a run's sampled training images and what is needed to show them."""

    features: torch.Tensor  # (n, D) L2-normalised
    split: ImageSet | StreamedSplit  # the sample: images in memory, or files decoded again when shown
    rows: torch.Tensor  # (n,) int64 position in `split` of each feature row (a streamed file may be unreadable)
    total: int  # training images the data holds
    data: str  # the data as the run's config names it


@dataclass
class Neighbours:
    """The k training images nearest to a query in the run's feature space (cosine)."""

    images: torch.Tensor  # (k, C, S, S) uint8
    similarity: list[float]
    labels: list[str | None]


def allowed_data(run: Path, runs_root: Path, data_root: Path | None = None) -> str:
    """The run's training data as the page may open it: a named dataset, or its path resolved under `runs_root`
    or `data_root`; RunError otherwise. A relative path is taken from the server's working directory, as
    `selfsup eval` takes it."""
    config = run / "config.yaml"
    data = run_info(run).get("data") if config.is_file() and inside(config, runs_root) else None
    if not data:
        raise RunError("This run names no training data (convert it with --data NAME to search one).")
    if is_named(str(data)):
        return str(data)
    path = Path(str(data)).expanduser().resolve()
    roots = [runs_root] + ([data_root] if data_root else [])
    if not any(path.is_relative_to(Path(r).resolve()) for r in roots):
        raise RunError(f"This run's training data {data} lies outside --runs, and the page opens nothing else: "
                       "restart selfsup serve with --data-root DIR (a folder holding it) to search it.")
    if not path.exists():
        raise RunError(f"This run's training data {data} is not there any more: nothing to search.")
    if stream_kind(str(path)) == "shards":
        raise RunError(f"This run's training data {data} is tar shards, which the page does not search: evaluate "
                       "the run with selfsup eval knn instead.")
    return str(path)


def sample_indices(n: int, size: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of min(n, size) of range(n), sorted."""
    return np.arange(n) if n <= size else np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def in_memory_bytes(path: Path) -> int:
    """What reading `path` into memory takes, about: an .npz's arrays uncompressed, a folder's file sizes."""
    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as z:
            return sum(i.file_size for i in z.infolist())
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else path.stat().st_size


def training_bank(run: Path, model: torch.nn.Module, spec: BackboneSpec, runs_root: Path,
                  data_root: Path | None = None, sample: int = SAMPLE) -> Bank:
    """Features of at most `sample` training images of `run` (see the module's docstring for what is read)."""
    data = allowed_data(run, runs_root, data_root)
    prepare, roots = normalizer(spec), [r for r in (runs_root, data_root) if r]
    named = is_named(data)
    try:
        if not named and stream_kind(data) == "folder":
            return streamed_bank(data, model, spec, prepare, roots, sample)
        if not named and in_memory_bytes(Path(data)) > MAX_IN_MEMORY_BYTES:
            raise RunError(f"This run's training data {data} takes over {MAX_IN_MEMORY_BYTES / 2**30:g} GiB in "
                           "memory, more than the page reads: search it with selfsup eval knn instead.")
        train = load_data(data).train
        idx = torch.from_numpy(sample_indices(len(train), sample))
        part = adapt_set(train.subset(idx), spec.in_chans, spec.img_size)
        feats = extract_features(model, part.images, BATCH, "cpu", prepare)
        return Bank(F.normalize(feats, dim=1), part, torch.arange(len(part)), len(train), data)
    except (DataError, OSError, zipfile.BadZipFile) as e:
        raise RunError(f"This run's training data cannot be read ({e}).") from e


def streamed_bank(data: str, model: torch.nn.Module, spec: BackboneSpec, prepare, roots: list[Path],
                  sample: int) -> Bank:
    """`training_bank` of an image folder: only the sampled files inside `roots` are decoded, batch by batch."""
    splits, _ = open_streamed_folder(data, spec.in_chans, spec.img_size, workers=0)
    train = splits.train
    idx = [int(i) for i in sample_indices(len(train), sample)
           if any(inside(train.files[int(i)], r) for r in roots)]  # a file linking out is left out
    if not idx:
        raise RunError(f"This run's training data {data} holds no image file inside the folders the page opens.")
    part = dataclasses.replace(train, files=train.files.take(idx),
                               labels=None if train.labels is None else train.labels[idx])
    kept: list[np.ndarray] = []

    def images() -> Iterator[torch.Tensor]:
        for batch in file_batches(part.batches(BATCH), 0):
            kept.append(batch.kept)
            yield batch.images  # (K, C, S, S) uint8

    feats = features_of_batches(model, images(), "cpu", prepare)
    return Bank(F.normalize(feats, dim=1), part, torch.from_numpy(np.concatenate(kept)), len(train), data)


def nearest(bank: Bank, model: torch.nn.Module, spec: BackboneSpec, image: torch.Tensor, k: int = 8) -> Neighbours:
    """The k images of `bank` nearest to a (C, H, W) uint8 image."""
    with torch.no_grad():
        q = model(normalizer(spec)(image[None]))  # (1, D)
    sim = bank.features @ F.normalize(q, dim=1)[0]  # (n,)
    top = sim.topk(min(k, len(sim)))
    rows, values = bank.rows[top.indices], top.values
    split, names = bank.split, bank.split.classes
    labels = [names[int(split.labels[i])] if names and split.labels is not None else None for i in rows]
    if isinstance(split, ImageSet):
        images = split.images[rows]
    else:  # decode the k files again (they were readable a moment ago; one that is not now is left out)
        shown = FileBatches(split.files.take(rows.tolist()), split.root, split.decode_channels, split.size,
                            len(rows), split.channels)[0]
        images, labels, values = shown.images, [labels[i] for i in shown.kept], values[torch.from_numpy(shown.kept)]
    return Neighbours(images, [round(v, 3) for v in values.tolist()], labels)


__all__ = ["MAX_IN_MEMORY_BYTES", "SAMPLE", "Bank", "Neighbours", "allowed_data", "nearest", "sample_indices",
           "training_bank"]
