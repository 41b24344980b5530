"""One folder index (data/folder_index.py): scanned and split once, before anything is decoded, and the same files
in the same splits for every reader: in memory, training's stream and evaluation's stream."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data import DataError
from selfsup.data.folder_index import index_folder
from selfsup.data.image_folder import load_image_folder
from selfsup.data.streaming import StreamedFolder
from selfsup.eval.streamed_split import open_streamed_folder


def tree(root: Path, per_class: int = 10, broken: tuple[str, ...] = ()) -> Path:
    """root/<class>/NN.png: two classes of distinct gray levels, a notes file, and `broken` files unreadable."""
    for c, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("L", (8, 8), 10 * i + 100 * c).save(root / name / f"{i:02d}.png")
    for rel in broken:
        (root / rel).write_bytes(b"not an image")
    (root / "a" / "notes.txt").write_text("x")
    return root


def files(table) -> list[str]:
    return [Path(table[i]).name for i in range(len(table))]


def test_a_class_tree_is_split_80_20_per_class_by_file_once(tmp_path):
    index = index_folder(tree(tmp_path / "t"))
    assert index.classes == ["a", "b"] and (len(index.train), len(index.test)) == (16, 4)
    assert np.bincount(index.test_labels).tolist() == [2, 2] and np.bincount(index.train_labels).tolist() == [8, 8]
    both = [index.train[i] for i in range(len(index.train))] + [index.test[i] for i in range(len(index.test))]
    assert len(set(both)) == 20  # disjoint, every file once
    assert "split 20 files 80/20" in " ".join(index.notes()) and "ignored 1 non-image" in " ".join(index.notes())
    again = index_folder(tmp_path / "t")
    assert files(again.test) == files(index.test)  # seeded


def test_every_reader_sees_the_index_splits(tmp_path):
    root = tree(tmp_path / "t", broken=("b/zz.png",))  # one unreadable file, in whichever split the index put it
    index = index_folder(root)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image file.*zz.png"):
        memory = load_image_folder(root)
    streamed, _ = open_streamed_folder(root, channels=1, size=8, workers=0)
    training = StreamedFolder(root, workers=0)
    for split, table in (("train", index.train), ("test", index.test)):
        assert files(getattr(streamed, split).files) == files(table)
    assert files(training.files) == files(index.train) and files(training.test_files) == files(index.test)
    # in memory: the same splits less the file it cannot decode, each image where the index put its file
    readable = {"train": [f for f in files(index.train) if f != "zz.png"],
                "test": [f for f in files(index.test) if f != "zz.png"]}
    for split in ("train", "test"):
        images = getattr(memory, split).images[:, 0, 0, 0].tolist()  # gray level 10 * i + 100 * class
        labels = getattr(memory, split).labels.tolist()
        assert sorted(images) == sorted(10 * int(f[:2]) + 100 * y for f, y in zip(readable[split], labels,
                                                                                   strict=True))


def test_a_missing_folder_is_one_line(tmp_path):
    with pytest.raises(DataError, match="is not a folder: expected class sub-folders"):
        index_folder(tmp_path / "missing")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (8, 8)).save(flat / "x.png")
    index = index_folder(flat)
    assert index.train_labels is None and len(index.test) == 0 and index.test_labels is None
    assert torch.equal(load_image_folder(flat).train.images, torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
