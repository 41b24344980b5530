import os

import pytest
import torch

from selfsup.web.explore import (
    UploadError,
    attention_png,
    decode_upload,
    example_image,
    find_runs,
    load_run,
    nearest_training_images,
    to_tensor,
)


def test_find_runs_lists_only_run_folders_under_the_root(runs_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "backbone.safetensors").write_bytes(b"")
    os.symlink(outside / "x", runs_dir / "link")  # a link out of --runs is not offered
    assert list(find_runs(runs_dir)) == ["vit", "group/rn"]


def test_uploads_are_checked_for_size_and_content(png):
    img = decode_upload(png(), limit_mb=1)
    assert img.shape == (30, 40, 3) and img.dtype.name == "uint8"
    with pytest.raises(UploadError, match="over this page's limit of 0.001 MB"):
        decode_upload(png(), limit_mb=0.001)
    with pytest.raises(UploadError, match="does not decode as an image"):
        decode_upload(b"%PDF-1.4 not an image")


def test_examples_and_resizing():
    cat = example_image("chelsea")
    assert cat.ndim == 3 and cat.shape[2] == 3
    assert example_image("camera").shape[2] == 3  # grayscale photos come as RGB
    x = to_tensor(cat, 1, 64)
    assert x.shape[0] == 1 and min(x.shape[1:]) == 64 and x.dtype == torch.uint8
    with pytest.raises(ValueError, match="unknown example"):
        example_image("../../etc/passwd")


def test_attention_png_and_nearest_images(runs_dir):
    model, spec = load_run(runs_dir / "vit")
    png, grid = attention_png(model, spec, to_tensor(example_image("coffee"), 3, 48), 0.6, "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and grid == (6, 9)  # 48x72 -> 6x9 patches of 8 px
    n = nearest_training_images(runs_dir / "vit", to_tensor(example_image("coffee"), 3, 32), k=3)
    assert n.images.shape == (3, 3, 32, 32) and n.similarity == sorted(n.similarity, reverse=True)
    assert (runs_dir / "vit" / "eval" / "features").is_dir()  # cached for the next query
