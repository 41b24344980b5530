import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.cli import main
from selfsup.data.dataset import DataError
from selfsup.insight.visualize import read_image, unique_stems, visualize
from selfsup.models.io import BackboneFileError, BackboneSpec, save_backbone


def write_png(path, size=(45, 37), mode="RGB"):
    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)
    return path


def test_attention_of_image_files_writes_grid_and_maps(tmp_path, vit_run):
    img = write_png(tmp_path / "cat.png")
    gray = write_png(tmp_path / "gray.png", (24, 64), "L")
    entries = visualize(vit_run, [img, gray], tmp_path / "out", threshold=0.6, with_rollout=True)
    assert [e["grid"] for e in entries] == [[4, 5], [8, 3]]  # 37x45 cropped to 32x40; 64x24 to 64x24
    maps = np.load(tmp_path / "out" / "cat.npy")
    assert maps.shape == (entries[0]["heads"], 4, 5) and maps.dtype == np.float32
    assert np.all(maps.reshape(maps.shape[0], -1).sum(-1) <= 1 + 1e-5)
    assert np.load(tmp_path / "out" / "gray_rollout.npy").shape == (8, 3)
    assert Image.open(tmp_path / "out" / "cat.png").size[0] > 200


def test_size_resizes_the_shorter_side(tmp_path):
    img = write_png(tmp_path / "a.png", (40, 20))
    assert read_image(img, 3, size=64).shape == (3, 64, 128)
    assert read_image(img, 1).shape == (1, 20, 40)


def test_bad_inputs_name_the_file_or_option(tmp_path, vit_run):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(DataError, match="notes.png cannot be decoded"):
        visualize(vit_run, [bad], tmp_path / "out")
    with pytest.raises(DataError, match="no such file"):
        visualize(vit_run, [tmp_path / "missing.png"], tmp_path / "out")
    with pytest.raises(DataError, match="--threshold"):
        visualize(vit_run, [bad], tmp_path / "out", threshold=0)
    spec = BackboneSpec("resnet18", 32, 3, None, [0.5] * 3, [0.25] * 3, width=8)
    save_backbone(spec.build(), spec, tmp_path / "rn" / "backbone.safetensors")
    with pytest.raises(BackboneFileError, match="no attention"):
        visualize(tmp_path / "rn", [bad], tmp_path / "out")


def test_same_stems_are_numbered():
    from pathlib import Path

    assert unique_stems([Path("a/cat.png"), Path("b/cat.jpg"), Path("dog.png")]) == ["cat", "cat-2", "dog"]


def test_cli_attention(tmp_path, vit_run, capsys):
    img = write_png(tmp_path / "x.png")
    assert main(["attention", "--checkpoint", str(vit_run), "--image", str(img), "--out", str(tmp_path / "o"),
                 "--threshold", "0.5", "--json"]) == 0
    assert "x.png: 4 heads on a 4x5 patch grid" in capsys.readouterr().out
    assert main(["attention", "--checkpoint", str(vit_run), "--image", str(tmp_path / "nope.png"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "nope.png: no such file" in capsys.readouterr().err


def test_attention_of_the_demos_conv_stem_and_of_registers_at_any_size(tmp_path):
    img = write_png(tmp_path / "odd.png", (61, 45))
    torch.manual_seed(0)
    for name, spec, grid in (
            ("demo", BackboneSpec("vit-cpu", 28, 1, 7, [0.5], [0.25], stem="conv"), [6, 8]),  # ceil(45/8), ceil(61/8)
            ("reg", BackboneSpec("vit-cpu", 28, 3, 14, [0.5] * 3, [0.25] * 3, layerscale=1e-5, registers=4,
                                 ffn="swiglu"), [3, 4])):  # 45x61 cropped to 42x56
        save_backbone(spec.build(), spec, tmp_path / name / "backbone.safetensors")
        [entry] = visualize(tmp_path / name, [img], tmp_path / name / "out", with_rollout=True)
        assert entry["grid"] == grid
        maps = np.load(entry["npy"])
        assert maps.shape == (4, *grid) and np.all(maps.reshape(4, -1).sum(-1) < 1)  # CLS and registers left out
        assert Image.open(entry["png"]).size[0] > 200
