"""One ordered pass over a file list: batches of the readable files, their positions, the failures."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from selfsup.data.channels import to_channels
from selfsup.data.file_batches import FileBatches, file_batches
from selfsup.data.folder_index import PathTable
from selfsup.data.image_folder import decode_image


def _files(root, n: int = 7, broken: tuple[int, ...] = (2,)) -> PathTable:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = root / f"{i}.png"
        if i in broken:
            path.write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return PathTable(paths)


def test_batches_hold_the_readable_files_in_order_with_their_positions(tmp_path):
    files = _files(tmp_path)
    data = FileBatches(files, tmp_path, 3, 8, batch=3, channels=1)
    batches = list(file_batches(data, workers=0))
    assert len(data) == len(batches) == 3
    assert [b.kept.tolist() for b in batches] == [[0, 1], [3, 4, 5], [6]]
    assert [name for b in batches for name, _ in b.failed] == ["2.png"]
    want = torch.stack([torch.from_numpy(decode_image(tmp_path / f"{i}.png", 3, 8)) for i in (0, 1)])
    assert torch.equal(batches[0].images, to_channels(want, 1)) and batches[0].images.shape == (2, 1, 8, 8)
    by_worker = list(file_batches(data, workers=1))
    assert all(torch.equal(a.images, b.images) and np.array_equal(a.kept, b.kept) for a, b in
               zip(batches, by_worker, strict=True))


def test_a_batch_of_unreadable_files_is_empty(tmp_path):
    files = _files(tmp_path, n=4, broken=(0, 1))
    first, second = FileBatches(files, tmp_path, 3, 8, batch=2)
    assert first.images.shape == (0, 3, 8, 8) and len(first.kept) == 0 and len(first.failed) == 2
    assert second.kept.tolist() == [2, 3]
