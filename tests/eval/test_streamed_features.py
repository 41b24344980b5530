"""Frozen features of a streamed image folder: equal to the in-memory path's, the same k-NN accuracy, unreadable
files skipped and counted, cached by the files, and never an (N, C, H, W) tensor of the whole split."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

from selfsup.data import image_folder
from selfsup.data.file_batches import FileBatches
from selfsup.eval.context import build_context
from selfsup.eval.knn import KnnOptions
from selfsup.eval.protocols import run_protocol
from selfsup.eval.streamed_split import StreamedSplit


def _contexts(run, folder, **kw):
    """(in memory, streamed) contexts of the same run and folder."""
    memory = build_context(run, str(folder), data_stream="never", batch_size=7, **kw)
    streamed = build_context(run, str(folder), data_stream="always", batch_size=7, **kw)
    return memory, streamed


@pytest.mark.parametrize(("layout", "channels", "workers"), [("split", 3, 0), ("classes", 1, 0), ("flat", 3, 0)])
def test_streamed_features_equal_the_in_memory_ones(tmp_path, photo_folder, tiny_vit_run, layout, channels,
                                                    workers):
    folder = photo_folder(tmp_path / "photos", layout)
    run = tiny_vit_run(tmp_path / "run", channels)
    memory, streamed = _contexts(run, folder, cache=False, data_workers=workers)
    assert isinstance(streamed.splits.train, StreamedSplit) and not memory.streamed
    assert streamed.adaptation == memory.adaptation  # e.g. RGB files by luminance to a 1-channel backbone
    splits = ("train", "test") if layout != "flat" else ("train",)
    for split in splits:
        x, y = streamed.features(split, labelled=layout != "flat")
        want_x, want_y = memory.features(split, labelled=layout != "flat")
        assert x.shape == want_x.shape and x.shape[1] == 32
        assert split == "test" or len(x) % 7 and len(x) > 7  # several batches, the last one partial
        torch.testing.assert_close(x, want_x)
        assert (y is None and want_y is None) if layout == "flat" else torch.equal(y, want_y)
        assert streamed.split(split, False).classes == memory.split(split, False).classes
    assert (streamed.splits.test is None) == (memory.splits.test is None) == (layout == "flat")
    assert streamed.skipped_files == 0 and memory.skipped_files is None


def test_gray_or_rgb_is_decided_from_the_train_and_test_files_as_in_memory(tmp_path, photo_folder, tiny_vit_run):
    folder = photo_folder(tmp_path / "photos", "split", per_class=4)
    for path in (folder / "train").rglob("*.*"):  # gray train files, colour test files: RGB, as in memory
        Image.open(path).convert("L").save(path.with_suffix(".png"))
        path.unlink()
    memory, streamed = _contexts(tiny_vit_run(tmp_path / "run"), folder, cache=False, data_workers=0)
    assert streamed.splits.test.decode_channels == 3 and memory.adaptation == streamed.adaptation == []
    torch.testing.assert_close(streamed.features("test")[0], memory.features("test")[0])


def test_knn_gives_the_same_accuracy_on_both_paths(tmp_path, photo_folder, tiny_vit_run):
    folder = photo_folder(tmp_path / "photos", "classes", per_class=10)
    memory, streamed = _contexts(tiny_vit_run(tmp_path / "run"), folder, options=KnnOptions(k=[1, 5]),
                                 data_workers=1)
    a = run_protocol("knn", memory, write=False, echo=False)
    b = run_protocol("knn", streamed, write=False, echo=False)
    assert a["numbers"] == b["numbers"] and a["settings"] == b["settings"]
    assert (a["data"]["streamed"], b["data"]["streamed"], b["data"]["skipped_files"]) == (False, True, 0)
    assert (b["data"]["n_train"], b["data"]["n_test"]) == (a["data"]["n_train"], a["data"]["n_test"]) == (24, 6)


def _break(path) -> None:
    path.write_bytes(b"\xff\xd8 not a JPEG after all")


def test_an_unreadable_file_is_skipped_counted_and_reported(tmp_path, photo_folder, tiny_vit_run, capsys):
    folder = photo_folder(tmp_path / "photos", "split")
    _break(folder / "train" / "b" / "03.jpg")
    _break(folder / "test" / "a" / "01.jpg")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):  # in memory: both files, in one warning
        memory = build_context(tiny_vit_run(tmp_path / "run"), str(folder), data_stream="never", cache=False)
    streamed = build_context(tmp_path / "run", str(folder), data_stream="always", cache=False, batch_size=8,
                             data_workers=0)
    assert len(streamed.splits.train) == 24  # listed; left out when read
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\), left out of the features: "
                                         r"train/b/03.jpg \(UnidentifiedImageError"):
        x, y = streamed.features("train")
    torch.testing.assert_close(x, memory.features("train")[0])
    assert torch.equal(y, memory.features("train")[1]) and len(x) == 23
    with pytest.warns(UserWarning, match="test/a/01.jpg"):
        record = run_protocol("knn", streamed, write=True, echo=True)
    assert record["data"]["skipped_files"] == 2 and record["settings"]["n_test"] == 11
    assert "skipped 2 unreadable image file(s)" in record["data"]["notice"]
    assert "data: streamed (--data-stream)" in capsys.readouterr().out
    assert record["numbers"] == run_protocol("knn", memory, write=False, echo=False)["numbers"]


def test_a_split_of_unreadable_files_is_named(tmp_path, photo_folder, tiny_vit_run):
    folder = photo_folder(tmp_path / "photos", "split", per_class=2)
    for path in (folder / "test").rglob("*.jpg"):
        _break(path)
    ctx = build_context(tiny_vit_run(tmp_path / "run"), str(folder), data_stream="always", data_workers=0)
    with pytest.raises(ValueError, match=r"none of the 3 image files of a split could be read, e.g. test/a/00.jpg"):
        ctx.features("test")


def test_streamed_features_are_cached_by_the_files(tmp_path, photo_folder, tiny_vit_run):
    folder = photo_folder(tmp_path / "photos", "split")
    _break(folder / "train" / "a" / "00.jpg")
    run = tiny_vit_run(tmp_path / "run")
    first = build_context(run, str(folder), data_stream="always", data_workers=0)
    with pytest.warns(UserWarning, match="skipped 1"):
        x, y = first.features("train")
    again = build_context(run, str(folder), data_stream="always", data_workers=0)
    with pytest.warns(UserWarning, match="train/a/00.jpg"):  # a cache hit reports the skipped file again
        x2, y2 = again.features("train")
    assert (first.cache.misses, again.cache.hits, again.cache.misses) == (1, 1, 0)
    assert torch.equal(x, x2) and torch.equal(y, y2) and again.skipped_files == 1
    with pytest.warns(UserWarning, match="skipped 1"):
        build_context(run, str(folder), data_stream="never").features("train")  # in memory: a file of its own
    assert len(list((run / "eval" / "features").glob("train-*.pt"))) == 2
    changed = folder / "train" / "c" / "01.jpg"
    os.utime(changed, ns=(0, changed.stat().st_mtime_ns + 10**9))  # same bytes, another time: recomputed
    late = build_context(run, str(folder), data_stream="always", data_workers=0)
    with pytest.warns(UserWarning):
        assert torch.equal(late.features("train")[0], x)
    assert (late.cache.hits, late.cache.misses) == (0, 1)


def test_a_streamed_context_never_holds_the_images_of_a_split(tmp_path, photo_folder, tiny_vit_run, monkeypatch):
    folder = photo_folder(tmp_path / "photos", "classes", per_class=10)
    run = tiny_vit_run(tmp_path / "run")

    def no_decoding_all(*args, **kwargs):
        raise AssertionError("the whole folder was decoded into memory")

    monkeypatch.setattr(image_folder, "decode_files", no_decoding_all)
    rows, getitem = [], FileBatches.__getitem__

    def recording(self, i):
        batch = getitem(self, i)
        rows.append(len(batch.images))
        return batch

    monkeypatch.setattr(FileBatches, "__getitem__", recording)
    ctx = build_context(run, str(folder), data_stream="always", cache=False, batch_size=8, data_workers=0)
    with pytest.raises(ValueError, match="pass --data-stream never"):
        ctx.splits.train.images  # noqa: B018 (the split holds no images to read)
    assert len(ctx.features("train")[0]) == 24 and rows == [8, 8, 8]  # one batch of files at a time
