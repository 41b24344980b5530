"""Sharded tar archives (the WebDataset layout) streamed through the `webdataset` package.

A shard holds samples as consecutive files sharing a key: `000123.jpg` (any image format Pillow reads)
and optionally `000123.cls` (the label as text). `--data.name` is a folder of `.tar` shards or a brace
pattern (`shards/train-{000000..000099}.tar`). `write_shards` packs an image folder into this layout.

Order: every epoch shuffles the shards with the seed and the epoch, and gives process r of R and reader g of
G (G = max(1, --data.workers)) the shards at positions r * G + g, r * G + g + R * G, ...; each reader streams
its shards (again from its first when they run out) through a shuffle buffer seeded with (seed, epoch, r, g),
and makes the batches of the epoch's steps i with i mod G = g from consecutive samples. An epoch has
(samples // batch) steps. A resumed run reads (without decoding) the samples its readers had consumed, so
resume is exact when --data.workers and the process count are unchanged; with others the order differs.
"""

from __future__ import annotations

import io
import itertools
import re
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander

from selfsup.data.batch_source import Layout
from selfsup.data.dataset import DataError, ImageSet, Splits
from selfsup.data.folder_index import image_extensions, scan_folder
from selfsup.data.image_folder import decode_image, default_size, probe_image
from selfsup.data.skips import Failure, SkipReport, fill_failed
from selfsup.data.streaming import SAMPLE_IMAGES, load_side, loader

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
Sample = dict[str, object]


def is_shards(spec: str) -> bool:
    """Whether `--data.name` names tar shards: a pattern or file ending in .tar, or a folder holding some."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return any(p.name.endswith(SHARD_SUFFIXES) for p in path.iterdir())
    return spec.endswith(SHARD_SUFFIXES)


def shard_files(spec: str) -> list[str]:
    """The shard paths of a folder (sorted) or of a brace pattern (in its order), each checked to exist."""
    path = Path(spec).expanduser()
    urls = (sorted(str(p) for p in path.iterdir() if p.name.endswith(SHARD_SUFFIXES)) if path.is_dir()
            else [str(Path(u).expanduser()) for u in expand_urls(spec)])
    missing = [u for u in urls if not Path(u).is_file()]
    if missing or not urls:
        raise DataError(f"--data.name {spec}: {missing[0] if missing else 'no shards'} not found: give a folder of "
                        ".tar shards or a brace pattern of existing ones (e.g. shards/train-{000000..000009}.tar)")
    return urls


def _image_key(name: str, exts: set[str]) -> str | None:
    """The sample key of a member holding an image (webdataset's: the name up to the first dot), else None."""
    key, suffix = base_plus_ext(name)
    return key if key is not None and "." + suffix.rsplit(".", 1)[-1].lower() in exts else None


def count_samples(url: str) -> int:
    """Samples with an image in one shard, from its tar headers (the data is skipped, not read). A shard that
    breaks off is counted up to the break, with a warning: streaming skips its rest too."""
    exts, keys = image_extensions(), set()
    try:
        with tarfile.open(url, "r:*") as tar:
            for m in tar:
                if m.isreg() and (key := _image_key(m.name, exts)) is not None:
                    keys.add(key)
    except (tarfile.TarError, OSError, EOFError) as e:
        warnings.warn(f"{url}: unreadable after {len(keys)} sample(s) ({type(e).__name__}: {e}); the rest of it "
                      "is skipped: rewrite it or leave it out of --data.name", stacklevel=2)
    return len(keys)


def _image_bytes(sample: Sample, exts: set[str]) -> bytes | None:
    return next((v for k, v in sample.items() if not k.startswith("__")
                 and "." + k.rsplit(".", 1)[-1].lower() in exts and isinstance(v, bytes)), None)


_SHARD_NAME = re.compile(r"([^/'\"\s]+\.(?:tar|tar\.gz|tgz))\b")


def _shard_error(e: Exception) -> Failure:
    """(shard file name, "Type: message") of an error webdataset's tar reader passed on (it appends the shard's
    path or stream to the exception's args)."""
    names = [m.group(1) for a in e.args if isinstance(a, str) for m in [_SHARD_NAME.search(a)] if m]
    message = str(e.args[0]).split(" @ ")[0][:200] if e.args else ""
    return (names[-1] if names else "a shard", f"{type(e).__name__}: {message}" if message else type(e).__name__)


def read_samples(urls: list[str], errors: list[Failure]) -> Iterator[Sample]:
    """The samples of `urls` in order (webdataset's tar reader); read errors are appended to `errors`."""
    def handler(e: Exception) -> bool:
        errors.append(_shard_error(e))
        return True  # skip the rest of a broken shard, go on with the next

    for url in urls:  # opened here rather than by webdataset, so that each file is closed when done with
        try:
            with open(url, "rb") as stream:
                yield from group_by_keys(tar_file_expander([{"url": url, "stream": stream}], handler=handler),
                                         handler=handler)
        except OSError as e:
            handler(OSError(str(e), url))


def shuffled(samples: Iterator[Sample], size: int, rng: np.random.Generator) -> Iterator[Sample]:
    """A shuffle buffer of `size` samples: each sample read replaces a random one, which is given out."""
    buf: list[Sample] = []
    for s in samples:
        if len(buf) < size:
            buf.append(s)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], s = s, buf[j]
        yield s
    rng.shuffle(buf)  # only for a finite input
    yield from buf


class _ShardBatches(IterableDataset):
    """Reader g of G (the DataLoader worker id) yields one item per round of G steps: (step, batch, failures)
    for its own step of the round, or None when the round has none for it (already trained, or past the
    epoch's end), so the DataLoader's round robin over workers gives the steps in order."""

    def __init__(self, urls: list[str], count: int, layout: Layout, channels: int, side: int, groups: int,
                 shuffle: int, start: int = 0) -> None:
        self.urls, self.layout, self.channels, self.side = urls, layout, channels, side
        self.groups, self.shuffle, self.start = groups, shuffle, start
        self.steps_per_epoch = layout.steps_per_epoch(count)
        self.rounds = -(-self.steps_per_epoch // groups)
        if len(urls) < layout.world * groups:
            raise DataError(f"{len(urls)} shard(s) are fewer than the {layout.world} process(es) x {groups} reader(s) "
                            "(--data.workers, at least 1) that each read shards of their own: write more shards "
                            "(write_shards(..., per_shard=...)) or lower --data.workers")

    def group_urls(self, epoch: int, group: int) -> list[str]:
        g = torch.Generator().manual_seed(self.layout.seed * 100003 + epoch)
        order = torch.randperm(len(self.urls), generator=g).tolist()
        first, every = self.layout.rank * self.groups + group, self.layout.world * self.groups
        return [self.urls[i] for i in order[first::every]]

    def stream(self, epoch: int, group: int, errors: list[Failure]) -> Iterator[Sample]:
        """Reader `group`'s samples of `epoch`: its shards through the seeded shuffle buffer, read again (and
        shuffled anew) from the first when the epoch needs more samples than they hold."""
        urls = self.group_urls(epoch, group)
        rng = np.random.default_rng([self.layout.seed, epoch, self.layout.rank, group])
        while True:
            empty = True
            for sample in shuffled(read_samples(urls, errors), self.shuffle, rng):
                empty = False
                yield sample
            if empty:
                raise DataError(f"shards {', '.join(urls[:3])} hold no readable samples: {errors[-1:]}")

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, list[Failure]] | None]:
        info = get_worker_info()
        return self.items(info.id if info is not None else 0)

    def items(self, group: int) -> Iterator[tuple[int, torch.Tensor, list[Failure]] | None]:
        """Reader `group`'s items from the round of step `start` on."""
        first_epoch, first_i = divmod(self.start, self.steps_per_epoch)
        for epoch in itertools.count(first_epoch):
            errors: list[Failure] = []
            stream = self.stream(epoch, group, errors)
            for r in range(self.rounds):
                i, done = r * self.groups + group, epoch == first_epoch and r < first_i // self.groups
                item = None
                if i < self.steps_per_epoch:
                    batch = list(itertools.islice(stream, self.layout.local_batch))
                    step = epoch * self.steps_per_epoch + i
                    item = None if step < self.start else (step, *self.decode(batch, errors))
                if not done:
                    yield item

    def decode(self, samples: list[Sample], errors: list[Failure]) -> tuple[torch.Tensor, list[Failure]]:
        exts = image_extensions()
        images: list[np.ndarray | None] = []
        failed, errors[:] = list(errors), []
        for s in samples:
            data = _image_bytes(s, exts)
            a = "no image file in the sample" if data is None else decode_image(io.BytesIO(data), self.channels,
                                                                                  self.side)
            if isinstance(a, str):
                failed.append((f"{Path(str(s.get('__url__'))).name}:{s.get('__key__')}", a))
            images.append(None if isinstance(a, str) else a)
        if all(a is None for a in images):
            raise DataError(f"a whole batch of samples was unreadable ({failed[:3]}): check the shards")
        return torch.from_numpy(np.stack(fill_failed(images))), failed


class ShardStream:
    """The `BatchSource` of tar shards."""

    def __init__(self, urls: list[str], count: int, layout: Layout, channels: int, side: int, workers: int,
                 shuffle: int, where: str) -> None:
        self.args = (urls, count, layout, channels, side, max(1, workers), shuffle)
        self.steps_per_epoch, self.workers = layout.steps_per_epoch(count), workers
        self.skips = SkipReport(where)

    def batches(self, start: int) -> Iterator[torch.Tensor]:
        it = iter(loader(_ShardBatches(*self.args, start=start), start, self.workers))
        try:
            for item in it:
                if item is not None:
                    self.skips.add(item[2])
                    yield item[1]
        finally:
            del it  # stops the workers

    def batch(self, step: int) -> torch.Tensor:
        """Reads the stream of the step's reader up to it (slow far into an epoch: for calibration and tests)."""
        data = _ShardBatches(*self.args, start=step)
        item = next(x for x in data.items(step % self.steps_per_epoch % data.groups) if x is not None)
        self.skips.add(item[2])
        return item[1]


class TarShards:
    """Tar shards opened for streaming (the `TrainingData` of `open_training_data`); no evaluation split."""

    def __init__(self, spec: str, load_size: int | None = None, workers: int = 4, shuffle: int = 1000,
                 image_size: int | None = None) -> None:
        self.name, self.urls = spec, shard_files(spec)
        self.load_size, self.workers, self.shuffle = load_size, workers, shuffle
        self.count = sum(count_samples(u) for u in self.urls)
        if not self.count:
            raise DataError(f"--data.name {spec}: its {len(self.urls)} shard(s) hold no image samples")
        self._first = self._first_images()
        probes = [p for p in (probe_image(io.BytesIO(b)) for b in self._first) if not isinstance(p, str)]
        if not probes:
            raise DataError(f"--data.name {spec}: none of the first {len(self._first)} images could be read")
        self.channels = 1 if all(gray for gray, _ in probes) else 3
        self.size = image_size or default_size([s for _, s in probes])[0]

    def _first_images(self) -> list[bytes]:
        exts, errors = image_extensions(), []
        found = (_image_bytes(s, exts) for s in read_samples(self.urls, errors))
        return [b for b in itertools.islice(found, SAMPLE_IMAGES) if b is not None]

    def sample(self, size: int) -> torch.Tensor:
        """The first SAMPLE_IMAGES images of the shards (in name order) at the load side."""
        side = load_side(size, self.load_size)
        images = [a for b in self._first if not isinstance(a := decode_image(io.BytesIO(b), self.channels, side), str)]
        return torch.from_numpy(np.stack(images))

    def eval_splits(self, size: int, labelled: bool = True) -> Splits:
        return Splits(self.name, ImageSet(self.sample(size)), None,
                      "tar shards: no evaluation during pre-training (evaluate an image folder with selfsup eval)")

    def source(self, layout: Layout, size: int) -> ShardStream:
        return ShardStream(self.urls, self.count, layout, self.channels, load_side(size, self.load_size),
                           self.workers, self.shuffle, self.name)


def write_shards(root: str | Path, out: str | Path, per_shard: int = 1000, prefix: str = "shard") -> list[Path]:
    """Pack the training files of an image folder (its layouts as `image_folder` reads them; train/ only when
    it has train/ and test/) into tar shards of `per_shard` samples, `out/{prefix}-000000.tar`, ...: each file's
    bytes as they are (no re-encoding) under a running key, with its label as `.cls` when the folder has
    class sub-folders. Returns the shard paths."""
    train, _, _ = scan_folder(Path(root), image_extensions())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(out / f"{prefix}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i, path in enumerate(train.files):
            sample: Sample = {"__key__": f"{i:08d}", path.suffix.lower().lstrip("."): path.read_bytes()}
            if train.labels is not None:
                sample["cls"] = str(train.labels[i]).encode()
            sink.write(sample)
    return sorted(out.glob(f"{prefix}-*.tar"))


__all__ = ["ShardStream", "TarShards", "count_samples", "is_shards", "read_samples", "shard_files", "write_shards"]
