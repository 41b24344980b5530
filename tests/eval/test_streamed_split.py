"""Which evaluations stream an image folder (--data-stream), what a streamed split holds, and the CLI flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selfsup.cli import main
from selfsup.data import image_folder
from selfsup.eval.context import EvalError, build_context
from selfsup.eval.fewshot import FewshotOptions
from selfsup.eval.protocols import PROTOCOLS, data_stream, run_protocol

FEATURES_ONLY = {"knn", "linear", "transfer"}


def test_auto_streams_for_the_protocols_that_read_features_only():
    for name in PROTOCOLS:
        want = "auto" if name in FEATURES_ONLY else "never"
        assert data_stream(name, None, "auto") == want, name
        assert data_stream(name, None, "never") == "never"
    assert data_stream("fewshot", FewshotOptions(finetune=False), "always") == "always"
    with pytest.raises(EvalError, match="protocol fewshot reads the images themselves.*--no-finetune streams"):
        data_stream("fewshot", FewshotOptions(), "always")
    with pytest.raises(EvalError, match="--data-stream always: protocol finetune .* use --data-stream auto"):
        data_stream("finetune", None, "always")


def test_always_refuses_data_that_is_not_an_image_folder(tiny_run, tiny_data):
    assert not build_context(tiny_run, cache=False, data_stream="auto").streamed  # an .npz stays in memory
    with pytest.raises(EvalError, match=f"--data-stream always: .*--data {tiny_data} is none"):
        build_context(tiny_run, cache=False, data_stream="always")
    with pytest.raises(EvalError, match="--data-workers must be >= 0"):
        build_context(tiny_run, cache=False, data_workers=-1)


def test_a_streamed_split_holds_files_and_labels_and_says_how_it_was_split(tmp_path, photo_folder, tiny_vit_run):
    folder = photo_folder(tmp_path / "photos", "classes", per_class=10)
    (folder / "notes.txt").write_text("not an image")
    ctx = build_context(tiny_vit_run(tmp_path / "run"), str(folder), data_stream="auto", data_workers=0)
    train, test = ctx.splits.train, ctx.splits.test
    assert (len(train), len(test), train.num_classes, train.classes) == (24, 6, 3, ["a", "b", "c"])
    assert np.bincount(test.labels.numpy()).tolist() == [2, 2, 2] and (train.size, train.channels) == (16, 3)
    notice = ctx.data_notice()
    assert "streamed (--data-stream): 24 train / 6 test files" in notice and "split 30 files 80/20" in notice
    assert "ignored 1 non-image file(s)" in notice
    with pytest.raises(EvalError, match="protocol finetune reads the images themselves, but --data .* is streamed"):
        run_protocol("finetune", ctx, write=False, echo=False)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_cli_streams_by_default_and_records_it(tmp_path, photo_folder, tiny_vit_run, capsys):
    folder = photo_folder(tmp_path / "photos", "split")
    (folder / "test" / "c" / "00.jpg").write_bytes(b"broken")
    run = tiny_vit_run(tmp_path / "run")
    flags = ["--checkpoint", str(run), "--data", str(folder), "--data-workers", "0", "--json"]
    with pytest.warns(UserWarning, match="test/c/00.jpg"):
        assert main(["eval", "knn", *flags]) == 0
    streamed = _json(capsys)
    assert streamed["data"]["streamed"] and streamed["data"]["skipped_files"] == 1
    with pytest.warns(UserWarning, match="skipped 1"):
        assert main(["eval", "knn", *flags, "--data-stream", "never"]) == 0
    memory = _json(capsys)
    assert not memory["data"]["streamed"] and memory["numbers"] == streamed["numbers"]
    with pytest.warns(UserWarning, match="test/c/00.jpg"):
        assert main(["knn", *flags]) == 0
    assert _json(capsys)["skipped_files"] == 1
    assert main(["eval", "finetune", *flags, "--data-stream", "always"]) == 2
    assert "--data-stream always: protocol finetune" in capsys.readouterr().err


def test_embed_streams_an_unlabelled_folder(tmp_path, photo_folder, tiny_vit_run, capsys, monkeypatch):
    folder = photo_folder(tmp_path / "photos", "flat")
    monkeypatch.setattr(image_folder, "decode_files", None)  # the in-memory path would call it
    out = tmp_path / "emb.npy"
    assert main(["embed", "--checkpoint", str(tiny_vit_run(tmp_path / "run")), "--data", str(folder), "--split",
                 "train", "--out", str(out), "--data-workers", "0", "--json"]) == 0
    assert _json(capsys)["n"] == 24 and np.load(out).shape == (24, 32)
