import math
import os

import numpy as np
import pytest
import torch
from photos import png_claiming  # tests/photos.py

import selfsup.data.file_batches as fb
from selfsup.web.explore import (
    MAX_TOKENS,
    RunError,
    UploadError,
    attention_png,
    decode_upload,
    display_size,
    example_image,
    find_runs,
    load_run,
    to_tensor,
    token_stride,
)
from selfsup.web.neighbours import allowed_data, nearest, training_bank


def test_find_runs_lists_only_run_folders_under_the_root(runs_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "backbone.safetensors").write_bytes(b"")
    os.symlink(outside / "x", runs_dir / "link")  # a link out of --runs is not offered
    (runs_dir / "linked-file").mkdir()
    os.symlink(outside / "x" / "backbone.safetensors", runs_dir / "linked-file" / "backbone.safetensors")
    assert list(find_runs(runs_dir)) == ["demo", "dinov2", "vit", "group/rn"]


def test_uploads_are_checked_for_size_and_content(png):
    img = decode_upload(png(), limit_mb=1)
    assert img.shape == (30, 40, 3) and img.dtype.name == "uint8"
    with pytest.raises(UploadError, match="over this page's limit of 0.001 MB"):
        decode_upload(png(), limit_mb=0.001)
    with pytest.raises(UploadError, match="does not decode as an image"):
        decode_upload(b"%PDF-1.4 not an image")


def test_an_uploads_pixels_are_checked_before_decoding():
    # the header says 8000x6000 = 48 MP, the data is one pixel: decoding first would say "does not decode"
    with pytest.raises(UploadError, match="8000x6000 pixels, over the limit of 40.0 megapixels: upload an image "
                                          "under 40 megapixels"):
        decode_upload(png_claiming(8000, 6000))
    with pytest.raises(UploadError, match="does not decode as an image"):  # under the limit: decoded, and fails
        decode_upload(png_claiming(800, 600))


def test_examples_and_resizing():
    cat = example_image("chelsea")
    assert cat.ndim == 3 and cat.shape[2] == 3
    assert example_image("camera").shape[2] == 3  # grayscale photos come as RGB
    x = to_tensor(cat, 1, 64)
    assert x.shape[0] == 1 and min(x.shape[1:]) == 64 and x.dtype == torch.uint8
    with pytest.raises(ValueError, match="unknown example"):
        example_image("../../etc/passwd")


@pytest.mark.parametrize("h, w, side, stride", [(1000, 40000, 256, 16), (40000, 1000, 256, 8), (1, 40_000_000, 256, 7),
                                                (300, 200, 512, 8), (600, 600, 256, 32), (50, 70, None, 14)])
def test_the_token_count_is_bounded_whatever_the_shape(h, w, side, stride):
    H, W = display_size(h, w, side, stride)
    assert math.ceil(H / stride) * math.ceil(W / stride) <= MAX_TOKENS and min(H, W) >= stride
    if (h, w, side) == (1000, 40000, 256):  # the 40000x1000 upload at side 256 on ViT-S/16: 10,240 tokens
        assert (H // 16) * (W // 16) > MAX_TOKENS * 0.9  # shrunk to the bound, not far below it


def test_an_image_within_the_bound_keeps_its_side():
    assert display_size(300, 400, 64, 8) == (64, 85)
    x = to_tensor(np.zeros((100, 4000, 3), np.uint8), 3, 256, stride=16)  # would be 256 x 10240 px
    assert math.ceil(x.shape[1] / 16) * math.ceil(x.shape[2] / 16) <= MAX_TOKENS


@pytest.mark.parametrize("name, size, grid", [
    ("vit", (48, 72), (6, 9)),  # patch stem: 8-px patches
    ("demo", (112, 168), (14, 21)),  # the demo's conv stem at the page's size of the issue: stride 8, no crop
    ("demo", (45, 68), (6, 9)),  # any size: ceil(45 / 8), ceil(68 / 8)
    ("dinov2", (48, 72), (3, 5)),  # registers left out of the maps; 14-px patches, cropped to 42x70
])
def test_attention_png_on_every_kind_of_vit(runs_dir, name, size, grid):
    model, spec = load_run(runs_dir / name)
    x = to_tensor(example_image("coffee"), spec.in_chans, min(size), token_stride(model))
    assert tuple(x.shape[-2:]) == size
    png, got = attention_png(model, spec, x, 0.6, "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and got == grid


def test_a_damaged_or_half_written_backbone_is_a_run_error_without_server_paths(runs_dir):
    f = runs_dir / "vit" / "backbone.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(RunError, match="vit/backbone.safetensors") as e:
        load_run(runs_dir / "vit", runs_dir)
    assert str(runs_dir) not in str(e.value)
    f.write_bytes(b"garbage")
    with pytest.raises(RunError, match="cannot read vit/backbone.safetensors"):
        load_run(runs_dir / "vit", runs_dir)


def test_nearest_images_search_a_bounded_sample(runs_dir):
    model, spec = load_run(runs_dir / "vit")
    bank = training_bank(runs_dir / "vit", model, spec, runs_dir, sample=10)
    assert bank.total == 30 and len(bank.rows) == 10 == len(bank.features)
    n = nearest(bank, model, spec, to_tensor(example_image("coffee"), 3, 32), k=3)
    assert n.images.shape == (3, 3, 32, 32) and n.similarity == sorted(n.similarity, reverse=True)
    assert not (runs_dir / "vit" / "eval").exists()  # the page writes nothing into a run


def test_data_outside_runs_is_opened_only_under_data_root(runs_dir, tmp_path):
    elsewhere = tmp_path / "private"
    elsewhere.mkdir()
    (runs_dir / "data" / "tiny.npz").rename(elsewhere / "tiny.npz")
    (runs_dir / "vit" / "config.yaml").write_text(f"method: dino\ndata: {{name: {elsewhere / 'tiny.npz'}}}\n")
    with pytest.raises(RunError, match="lies outside --runs.*--data-root DIR"):
        allowed_data(runs_dir / "vit", runs_dir)
    os.symlink(elsewhere, runs_dir / "data" / "link")  # through a symlink under --runs: still outside
    (runs_dir / "vit" / "config.yaml").write_text(f"data: {{name: {runs_dir / 'data' / 'link' / 'tiny.npz'}}}\n")
    with pytest.raises(RunError, match="lies outside --runs"):
        allowed_data(runs_dir / "vit", runs_dir)
    assert allowed_data(runs_dir / "vit", runs_dir, data_root=elsewhere) == str(elsewhere / "tiny.npz")
    (runs_dir / "vit" / "config.yaml").write_text("data: {name: digits}\n")  # selfsup's own datasets
    assert allowed_data(runs_dir / "vit", runs_dir) == "digits"


def write_folder(root, n_per_class=6):
    """root/train/{a,b}/ with n_per_class PNGs each, root/test/{a,b}/ with one."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_per_class), ("test", 1)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_an_image_folder_is_streamed_and_only_its_sample_decoded(runs_dir, tmp_path, monkeypatch):
    folder = runs_dir / "data" / "folder"
    write_folder(folder)
    outside = tmp_path / "secret.png"
    (folder / "train" / "a" / "0.png").rename(outside)
    os.symlink(outside, folder / "train" / "a" / "0.png")  # a file linking out of --runs is left out
    (runs_dir / "vit" / "config.yaml").write_text(f"data: {{name: {folder}}}\n")
    decoded = []
    real = fb.decode_many

    def counting(paths, *args, **kwargs):
        decoded.extend(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(fb, "decode_many", counting)
    model, spec = load_run(runs_dir / "vit")
    bank = training_bank(runs_dir / "vit", model, spec, runs_dir, sample=100)
    assert bank.total == 12 and len(decoded) == len(bank.rows) == 11  # all but the link
    assert not any(p.endswith("a/0.png") for p in decoded)
    n = nearest(bank, model, spec, to_tensor(example_image("coffee"), 3, 32), k=2)
    assert n.images.shape == (2, 3, 32, 32) and set(n.labels) <= {"a", "b"}
    decoded.clear()
    bank = training_bank(runs_dir / "vit", model, spec, runs_dir, sample=5)
    assert len(decoded) == len(bank.rows) <= 5  # the sample, never the folder
