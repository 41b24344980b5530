"""The Python API and the commands built on it: selfsup distill, --init, embed."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import selfsup
from selfsup.cli import build_parser, main, resolve_config
from selfsup.models.io import BackboneSpec, save_backbone


@pytest.fixture
def teacher(tmp_path):
    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 28, 1, 7, [0.2], [0.3])
    path = tmp_path / "teacher" / "backbone.safetensors"
    save_backbone(spec.build(), spec, path)
    return path.parent


def test_distill_flags_make_a_distill_config(teacher, tmp_path):
    args = build_parser().parse_args(["distill", "--teacher", str(teacher), "--data", "digits",
                                      "--backbone.width", "64", "--minutes", "3", "--out", str(tmp_path / "s")])
    cfg = resolve_config(args, base={"method": "distill"})
    assert cfg.method == "distill" and cfg.method_cfg.teacher == str(teacher)
    assert cfg.backbone.width == 64 and cfg.optim.minutes == 3 and cfg.views.n_global == 1
    args = build_parser().parse_args(["pretrain", "--init", "w.pth", "--init-from", "dino"])
    cfg = resolve_config(args)
    assert (cfg.backbone.init, cfg.backbone.init_from) == ("w.pth", "dino")


def test_selfsup_distill_writes_a_run_directory(teacher, tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher), "--data", "digits", "--backbone.width", "64",
                 "--backbone.patch-size", "7", "--epochs", "0.02", "--batch-size", "32", "--run.eval-knn", "false",
                 "--out", str(out), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["steps"] == 1
    model, spec = selfsup.load_backbone(out, return_spec=True)
    assert spec.width == 64 and model.spec == spec
    assert "teacher_sha256:" in (out / "config.yaml").read_text()


def test_a_mismatched_init_is_one_line(teacher, tmp_path, capsys):
    assert main(["pretrain", "--init", str(teacher), "--backbone.width", "64", "--data", "digits",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backbone.width 64 conflicts with" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_embed_reads_a_folder_or_an_array_the_same_way(teacher, tmp_path):
    model = selfsup.load_backbone(teacher)
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i}.png")
    from_folder = selfsup.embed(model, folder)
    from_array = selfsup.embed(model, images)
    assert from_folder.shape == (3, 128)
    torch.testing.assert_close(from_folder, from_array)
    torch.testing.assert_close(selfsup.embed(model, images / 255.0), from_array, atol=1e-4, rtol=1e-4)
    with pytest.raises(selfsup.api.ConfigError, match="holds no image files"):
        selfsup.embed(model, tmp_path / "teacher")


def test_evaluate_refuses_an_unknown_option(teacher):
    with pytest.raises(selfsup.api.ConfigError, match="knn has no option kk"):
        selfsup.evaluate(teacher, "knn", "digits", kk=3)


def test_pretrain_sizes_what_a_dict_leaves_open_and_runs_a_config_object_as_given(tmp_path, capsys):
    """Like `selfsup pretrain`: the batch is checked against the data (digits: 1,437 training images) and lowered
    with a notice; sized=False, or a PretrainConfig, runs the values exactly (and this batch is refused)."""
    tiny = {"method": "simclr", "data": {"name": "digits"}, "backbone": {"name": "vit-cpu", "patch_size": 7},
            "views": {"global_size": 28}, "optim": {"epochs": 0.01, "batch_size": 4096},
            "run": {"eval_knn": False, "out": str(tmp_path / "sized")}}
    out = selfsup.pretrain(**tiny)
    assert "lowered to 1024" in capsys.readouterr().err
    assert "batch_size: 1024" in (tmp_path / "sized" / "config.yaml").read_text() and out["steps"] == 1
    exact = {**tiny, "run": {**tiny["run"], "out": str(tmp_path / "exact")}}
    with pytest.raises(selfsup.api.ConfigError, match="larger than the 1437 training images"):
        selfsup.pretrain(**exact, sized=False)
    with pytest.raises(selfsup.api.ConfigError, match="larger than the 1437 training images"):
        selfsup.pretrain(selfsup.make_config(**exact))
