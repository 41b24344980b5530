import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import selfsup
from selfsup.cli import main
from selfsup.models.checkpoint_file import _unpickling_message as unpickling_message
from selfsup.models.convert import ConvertError, Geometry, convert_checkpoint, resolve_spec, suggest_flags
from selfsup.models.io import BackboneSpec, load_backbone

sys.path.insert(0, str(Path(__file__).parent))
import official_vit  # noqa: E402
from official_vit import DINOV2_CASES, LAYOUTS, dinov2_reference, reference, write_layout  # noqa: E402

TINY = {"backbone": "vit-tiny", "width": 48, "depth": 2, "num_heads": 3}  # the reference's size (patch 8, 64 px)
TINY_FLAGS = ["--backbone", "vit-tiny", "--width", "48", "--depth", "2", "--num-heads", "3"]
CALLS = []
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
# What each project's own code says, written out here (not read from selfsup) so that a wrong default fails:
# ViT-S heads (dino vision_transformer.py 6, moco-v3 vits.py 12, timm 6; MAE releases no ViT-S: 64 channels per
# head), input normalisation (timm's _cfg default 0.5) and the feature its linear evaluation reads.
OFFICIAL_S = {"dino": (6, IMAGENET, "cls-last4"), "mae": (6, IMAGENET, "cls"), "moco-v3": (12, IMAGENET, "cls"),
              "timm": (6, ([0.5] * 3, [0.5] * 3), "cls"), "dinov2": (6, IMAGENET, "cls+mean")}
SMALL = {"backbone": "vit-small", "depth": 2}  # an official width (384), 2 blocks


@pytest.fixture(scope="module")
def nets():
    """Teacher and student of the official reference ViT (width 48, depth 2, 3 heads, 8-px patches, 64 px)."""
    return reference(0), reference(1)


def images(h, w, seed=0):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def official_tokens(ref, x):
    """The official model's normalised [CLS] (B, D) and patch tokens (B, h*w, D)."""
    if hasattr(ref, "forward_features"):  # DINOv2's DinoVisionTransformer
        out = ref.forward_features(x)
        return out["x_norm_clstoken"], out["x_norm_patchtokens"]
    tokens = ref.tokens(x)
    return tokens[:, 0], tokens[:, 1:]


def same_outputs(model, ref, sizes, atol=1e-5):
    """Whether the converted model's normalised [CLS] and patch tokens are the official model's at each size."""
    with torch.no_grad():
        for h, w in sizes:
            got, (cls, patches) = model.forward_features(images(h, w)), official_tokens(ref, images(h, w))
            if got["x_norm_patchtokens"].shape != patches.shape or not (
                    torch.allclose(got["x_norm_clstoken"], cls, atol=atol)
                    and torch.allclose(got["x_norm_patchtokens"], patches, atol=atol)):
                return False
    return True


def small_nets(source: str, resize: str):
    """Teacher and student ViT-S (384 wide, 2 blocks) with the source's official heads and resizing."""
    heads = OFFICIAL_S[source][0]
    return tuple(reference(seed, embed_dim=384, num_heads=heads, resize=resize) for seed in (0, 1))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_official_layout_converts_to_the_official_network(layout, tmp_path, one_thread):
    source, _, resize, _ = LAYOUTS[layout]
    teacher, student = small_nets(source, resize)
    path = write_layout(layout, teacher, student, tmp_path / "ckpt.pth")
    converted = convert_checkpoint(path, source, **SMALL)  # heads, resizing, mean/std and feature: the defaults
    # the stored 8x8 grid, and a non-square one that shrinks the height and grows the width
    assert same_outputs(converted.model, teacher, [(64, 64), (48, 80)])
    assert not same_outputs(converted.model, student, [(64, 64)])  # the teacher / base encoder, not the other
    spec = converted.spec
    heads, (mean, std), pool = OFFICIAL_S[source]
    assert (spec.img_size, spec.patch_size, spec.in_chans, converted.model.num_heads) == (64, 8, 3, heads)
    assert (spec.mean, spec.std, spec.pool) == (mean, std, pool)
    expected_dropped = {"dino-release": [], "dino-training": ["head"], "timm": ["head"], "timm-headless": [],
                        "timm-train": ["head"], "mae-release": [], "mae-finetuned": ["head"], "mae-linprobe": ["head"],
                        "mae": ["decoder_blocks", "decoder_embed", "decoder_norm", "decoder_pos_embed",
                                "decoder_pred", "mask_token"],
                        "moco-v3": ["head", "momentum_encoder", "predictor"], "moco-v3-deit": [],
                        "moco-v3-lincls": ["head"]}[layout]
    assert converted.dropped == expected_dropped


def test_moco_v3_vit_s_with_dino_s_heads_would_be_off(tmp_path, one_thread):
    """The head count is not in the weights: MoCo v3's ViT-S read as a 6-head ViT gives other outputs."""
    teacher, student = small_nets("moco-v3", "size")
    path = write_layout("moco-v3-deit", teacher, student, tmp_path / "linear-vit-s-300ep.pth.tar")
    assert not same_outputs(convert_checkpoint(path, "moco-v3", num_heads=6, **SMALL).model, teacher, [(64, 64)],
                            atol=1e-2)


@pytest.mark.parametrize("case", list(DINOV2_CASES))
def test_dinov2_files_give_the_official_tokens(case, tmp_path, one_thread):
    registers, ffn, chunks, writer, source = DINOV2_CASES[case]
    ref = dinov2_reference(registers, ffn, chunks)
    path = tmp_path / ("model.safetensors" if source == "timm" else "dinov2_vits14_pretrain.pth")
    if source == "timm":
        save_file({k: v.contiguous() for k, v in writer(ref).items()}, str(path))
    else:
        torch.save(writer(ref), path)
    # timm's _dinov2 entries take ImageNet's mean/std; its non-register ones resize antialiased where DINOv2's own
    # code resizes the "dino" way, which the reference computes
    norm = {"mean": IMAGENET[0], "std": IMAGENET[1]} | ({} if registers else {"pos_interp": "dino"})
    converted = convert_checkpoint(path, source, **SMALL, **(norm if source == "timm" else {}))
    spec = converted.spec
    assert (spec.registers, spec.layerscale, spec.ffn, spec.img_size, spec.patch_size) == (4 * registers, 1.0, ffn,
                                                                                           56, 14)
    assert converted.model.num_heads == 6 and (spec.mean, spec.std) == IMAGENET
    # the stored 4x4 grid and a 3x6 one (antialiased resizing differs from plain when it shrinks)
    assert same_outputs(converted.model, ref, [(56, 56), (42, 84)])
    if source == "dinov2":
        assert spec.pool == "cls+mean" and "mask_token" in converted.dropped
        assert converted.part == ("teacher" if writer is official_vit.dinov2_teacher else "file")
        if writer is official_vit.dinov2_teacher:
            assert {"dino_head", "ibot_head"} <= set(converted.dropped)
        with torch.no_grad():  # the hub's linear heads read [CLS] and the mean patch token (hub/classifiers.py)
            out, x = ref.forward_features(images(56, 56)), images(56, 56)
            want = torch.cat([out["x_norm_clstoken"], out["x_norm_patchtokens"].mean(dim=1)], dim=1)
            assert torch.allclose(converted.model(x), want, atol=1e-5)


def test_dinov2_training_shards_and_student_are_refused(tmp_path):
    torch.save({"model": {"student.backbone._flat_param": torch.zeros(10)}, "iteration": 5},
               tmp_path / "model_final.rank_0.pth")
    with pytest.raises(ConvertError, match="FSDP training checkpoint .*teacher_checkpoint.pth.*--eval-only"):
        convert_checkpoint(tmp_path / "model_final.rank_0.pth", "dinov2")
    # the real files hold ShardedTensors, which weights_only refuses before any key is read
    error = "Unsupported global: GLOBAL torch.distributed._shard.sharded_tensor.api.ShardedTensor"
    assert "FSDP training checkpoint" in unpickling_message(tmp_path / "model_final.rank_0.pth", error)
    torch.save(official_vit.dinov2_teacher(dinov2_reference()), tmp_path / "teacher_checkpoint.pth")
    with pytest.raises(ConvertError, match="holds the teacher only.*drop --student"):
        convert_checkpoint(tmp_path / "teacher_checkpoint.pth", "dinov2", student=True)


@pytest.mark.parametrize("size,patch,other", [(64, 8, [(96, 96), (80, 112)]), (224, 16, [(320, 320), (288, 224)])])
def test_dino_interpolation_is_the_official_one_at_other_sizes(size, patch, other, tmp_path, one_thread):
    ref = reference(2, img_size=size, patch_size=patch)
    path = write_layout("dino-release", ref, ref, tmp_path / "dino.pth")
    converted = convert_checkpoint(path, "dino", **TINY)
    assert converted.spec.pos_interp == "dino" and converted.spec.img_size == size
    assert same_outputs(converted.model, ref, [(size, size), *other])
    with torch.no_grad():  # the attention maps of `selfsup attention` are DINO's too
        x = images(*other[1])
        assert torch.allclose(converted.model.get_last_selfattention(x), ref.get_last_selfattention(x), atol=1e-5)
    # resizing to the grid (selfsup's own runs) samples other points: equal at the training size only
    plain = convert_checkpoint(path, "dino", pos_interp="size", **TINY)
    assert same_outputs(plain.model, ref, [(size, size)])
    assert not same_outputs(plain.model, ref, other[:1], atol=1e-3)


def test_dino_student_on_request(nets, tmp_path, one_thread):
    path = write_layout("dino-training", *nets, tmp_path / "checkpoint.pth")
    student = convert_checkpoint(path, "dino", student=True, **TINY)
    assert student.part == "student" and same_outputs(student.model, nets[1], [(64, 64)])
    with pytest.raises(ConvertError, match="--student picks the student.*drop --student"):
        convert_checkpoint(write_layout("mae", *nets, tmp_path / "mae.pth"), "mae", student=True, **TINY)


def test_heads_are_not_in_the_weights_so_a_wrong_count_changes_the_output(nets, tmp_path, one_thread):
    path = write_layout("dino-release", *nets, tmp_path / "dino.pth")
    wrong = convert_checkpoint(path, "dino", **{**TINY, "num_heads": 6})
    assert not same_outputs(wrong.model, nets[0], [(64, 64)])


def _run_pickled_code(tag):
    CALLS.append(tag)
    return tag


class Payload:
    """An object whose unpickling would call _run_pickled_code."""

    def __reduce__(self):
        return _run_pickled_code, ("unpickled",)


def test_a_checkpoint_with_other_pickled_objects_is_refused_without_running_them(nets, tmp_path):
    path = tmp_path / "trojan.pth"
    torch.save({"model": nets[0].state_dict(), "extra": Payload()}, path)
    with pytest.raises(ConvertError) as e:
        convert_checkpoint(path, "mae", **TINY)
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "_run_pickled_code" in message
    assert "re-save its weights" in message and CALLS == []
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConvertError, match="cannot read .*bad.pth as a PyTorch checkpoint"):
        convert_checkpoint(bad, "dino")


def test_a_fine_tuned_mae_model_is_refused(nets, tmp_path):
    state = {k: v for k, v in nets[0].state_dict().items() if not k.startswith("norm.")}
    state |= {"fc_norm.weight": torch.ones(48), "fc_norm.bias": torch.zeros(48), "head.weight": torch.zeros(10, 48)}
    torch.save({"model": state}, tmp_path / "mae_finetuned_vit_base.pth")
    with pytest.raises(ConvertError, match="fc_norm.*nothing is converted: convert the pre-trained checkpoint .* "
                       "fine-tuned with --cls_token, whose encoder is kept and head dropped"):
        convert_checkpoint(tmp_path / "mae_finetuned_vit_base.pth", "mae", **TINY)


def test_other_architectures_and_layouts_are_named(nets, tmp_path):
    state = nets[0].state_dict() | {"blocks.0.attn.q_norm.weight": torch.ones(16)}
    torch.save(state, tmp_path / "qknorm.pth")
    with pytest.raises(ConvertError, match="no place for .*q_norm.weight.*query/key norms"):
        convert_checkpoint(tmp_path / "qknorm.pth", "timm", **TINY)
    torch.save(nets[0].state_dict() | {"blocks.1.ls1.gamma": torch.ones(48)}, tmp_path / "layerscale.pth")
    with pytest.raises(ConvertError, match="no place for .*ls1.gamma.*layer scale on some blocks only"):
        convert_checkpoint(tmp_path / "layerscale.pth", "timm", **TINY)
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "resnet.pth")
    with pytest.raises(ConvertError, match="no ViT patch embedding.*check --from"):
        convert_checkpoint(tmp_path / "resnet.pth", "moco-v3")
    with pytest.raises(ConvertError, match="no 'model' state_dict"):
        torch.save({"model": [1, 2]}, tmp_path / "odd.pth")
        convert_checkpoint(tmp_path / "odd.pth", "mae")


def test_a_wrong_size_names_the_option_and_what_the_file_holds(nets, tmp_path):
    path = write_layout("dino-release", *nets, tmp_path / "dino.pth")
    with pytest.raises(ConvertError, match="--patch-size 16 does not fit .*pass --patch-size 8"):
        convert_checkpoint(path, "dino", patch_size=16, **TINY)
    with pytest.raises(ConvertError, match="--backbone vit-small is a ViT of width 384 and depth 12, but .* holds "
                       "width 48 and depth 2: pass --backbone vit-base --width 48 --depth 2"):
        convert_checkpoint(path, "dino", backbone="vit-small")
    with pytest.raises(ConvertError, match="which is no preset's: pass .*--num-heads"):
        convert_checkpoint(path, "dino")
    vit_s8 = Geometry(width=384, depth=12, patch_size=8, in_chans=3, grid=28)
    assert suggest_flags(vit_s8, "dino") == "--backbone vit-small --patch-size 8"
    with pytest.raises(ConvertError, match="--backbone vit-base is a ViT of width 768.*pass --backbone vit-small "
                       "--patch-size 8"):
        resolve_spec(vit_s8, "dino", Path("dino_deitsmall8_pretrain.pth"), backbone="vit-base")


def test_official_sizes_get_the_official_heads_and_image_size():
    vit_s16 = Geometry(width=384, depth=12, patch_size=16, in_chans=3, grid=14)
    dino = resolve_spec(vit_s16, "dino", Path("f.pth"))
    assert (dino.name, dino.img_size, dino.num_heads, dino.width, dino.pos_interp) == ("vit-small", 224, None, None,
                                                                                       "dino")
    assert dino.build().num_heads == 6
    moco = resolve_spec(vit_s16, "moco-v3", Path("f.pth"))
    assert moco.num_heads == 12 and moco.pos_interp == "size" and moco.build().num_heads == 12
    vit_l = resolve_spec(Geometry(1024, 24, 16, 3, 14), "mae", Path("f.pth"), backbone="vit-base", width=1024,
                         depth=24)
    assert (vit_l.width, vit_l.depth, vit_l.num_heads) == (1024, 24, None)  # 16 heads of vit-base's 64 channels
    vit_h = resolve_spec(Geometry(1280, 32, 14, 3, 16), "mae", Path("f.pth"), backbone="vit-base", width=1280,
                         depth=32)
    assert (vit_h.width, vit_h.depth, vit_h.num_heads, vit_h.patch_size) == (1280, 32, 16, 14)


def test_backbone_files_without_the_new_fields_still_load(tmp_path):
    spec = BackboneSpec("vit-cpu", 28, 3, 7, [0.2] * 3, [0.3] * 3, width=64, depth=2)
    model = spec.build()
    old = {k: v for k, v in spec.__dict__.items() if k not in ("num_heads", "pos_interp")}  # as before the fields
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"selfsup_backbone": json.dumps(old)})
    loaded, got = load_backbone(path)
    assert got == spec and got.pos_interp == "size" and loaded.pos_interp == "size"
    assert same_outputs(loaded.eval(), model.eval(), [(28, 28)], atol=0)


def test_load_backbone_takes_a_run_a_backbone_file_or_an_official_file(nets, tmp_path, one_thread):
    path = write_layout("dino-training", *nets, tmp_path / "checkpoint.pth")
    official = selfsup.load_backbone(path, **TINY)  # the layout is recognised: DINO, teacher
    assert not official.training and same_outputs(official, nets[0], [(64, 64), (72, 96)])
    assert main(["convert", str(path), "--from", "dino", *TINY_FLAGS, "--out", str(tmp_path / "run")]) == 0
    for where in (tmp_path / "run", tmp_path / "run" / "backbone.safetensors"):
        model, spec = selfsup.load_backbone(where, return_spec=True)
        assert spec.pos_interp == "dino" and same_outputs(model, nets[0], [(64, 64), (72, 96)])
    with pytest.raises(ConvertError, match="no checkpoint file at"):
        selfsup.load_backbone(tmp_path / "missing.pth", source="dino")


def test_convert_command_makes_a_run_every_command_accepts(nets, tmp_path, capsys, one_thread):
    from PIL import Image

    from selfsup.web.explore import find_runs, load_run
    from selfsup.web.neighbours import nearest, training_bank

    path = write_layout("dino-training", *nets, tmp_path / "checkpoint.pth")
    run = tmp_path / "runs" / "dino"
    assert main(["convert", str(path), "--from", "dino", *TINY_FLAGS, "--patch-size", "8", "--data", "digits",
                 "--out", str(run), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["part"] == "teacher" and summary["num_heads"] == 3 and summary["dropped"] == ["head"]
    assert "dino teacher of" in out[0] and "left out: head" in out[0]
    assert main(["knn", "--checkpoint", str(run), "--k", "5", "--json"]) == 0  # data from its config.yaml
    knn = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert knn["n_test"] > 0 and 0 <= knn["top1"] <= 100
    Image.new("RGB", (72, 56), (200, 30, 30)).save(tmp_path / "red.png")
    assert main(["attention", "--checkpoint", str(run), "--image", str(tmp_path / "red.png"), "--out",
                 str(tmp_path / "att"), "--json"]) == 0
    att = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert att["images"][0]["heads"] == 3 and (tmp_path / "att" / "red.png").is_file()
    assert list(find_runs(tmp_path / "runs")) == ["dino"]  # what selfsup serve offers
    model, spec = load_run(run)
    assert spec.pos_interp == "dino" and same_outputs(model, nets[0], [(64, 64)])
    bank = training_bank(run, model, spec, tmp_path / "runs", sample=50)  # its data: digits, a named dataset
    near = nearest(bank, model, spec, torch.full((3, 64, 64), 128, dtype=torch.uint8), k=3)
    assert len(near.similarity) == 3


def test_convert_command_errors_are_one_line(nets, tmp_path, capsys):
    path = write_layout("dino-release", *nets, tmp_path / "dino.pth")
    assert main(["convert", str(path), "--from", "dino", *TINY_FLAGS, "--patch-size", "16", "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("selfsup convert: error: --patch-size 16") and "--patch-size 8" in err[0]
    assert not (tmp_path / "r").exists()
    assert main(["convert", str(path), "--from", "dino", *TINY_FLAGS, "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["convert", str(path), "--from", "dino", *TINY_FLAGS, "--out", str(tmp_path / "r")]) == 2
    assert "already holds a backbone" in capsys.readouterr().err
    torch.save({"teacher": Payload()}, tmp_path / "trojan.pth")
    assert main(["convert", str(tmp_path / "trojan.pth"), "--from", "dino", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trojan.pth holds a pickled" in err[0] and CALLS == []


def test_convert_prints_the_defaults_it_took_and_flags_override_them(nets, tmp_path, capsys):
    path = write_layout("timm", *nets, tmp_path / "vit.pth")
    assert main(["convert", str(path), "--from", "timm", *TINY_FLAGS, "--out", str(tmp_path / "a"), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert (summary["mean"], summary["std"], summary["pos_interp"], summary["pool"]) == ([0.5] * 3, [0.5] * 3,
                                                                                        "size-antialias", "cls")
    assert out[1] == ("feature cls, input mean 0.5 0.5 0.5 std 0.5 0.5 0.5, position embeddings resized the "
                      "size-antialias way (timm's defaults: --mean, --std, --pos-interp, --pool)")
    assert out[2].startswith("note: mean/std 0.5 are timm's default ViTs' (augreg); its .dino, .mae and _dinov2")
    assert main(["convert", str(path), "--from", "timm", *TINY_FLAGS, "--mean", "0.485", "0.456", "0.406", "--std",
                 "0.229", "0.224", "0.225", "--pool", "cls+mean", "--pos-interp", "size", "--out",
                 str(tmp_path / "b"), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert not any(line.startswith("note:") for line in out)
    model, spec = selfsup.load_backbone(tmp_path / "b", return_spec=True)
    assert (spec.mean, spec.std, spec.pool, spec.pos_interp) == (*IMAGENET, "cls+mean", "size")
    assert model(images(64, 64)).shape == (2, 96)
    assert main(["convert", str(path), "--from", "timm", *TINY_FLAGS, "--mean", "0.5", "0.5", "--out",
                 str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mean 0.5 0.5 does not fit the file's 3-channel input: pass 3 values" in err[0]


def test_convert_help_names_each_sources_resizing(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "as MAE and timm do" not in text
    assert "size-antialias (bicubic to the grid, antialiased when shrinking, as DINOv2's register models and timm " \
           "do)" in text
    assert "dinov2 (a release dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth" in text and "--mean" in text


def test_attention_and_the_page_on_a_converted_dinov2_model_with_registers(tmp_path, one_thread):
    """Issue 30's evidence: `selfsup convert --from dinov2` of a register model (random weights: real maps need the
    released ones), then `selfsup attention` and the page's attention on it, registers left out of the maps."""
    import numpy as np
    from PIL import Image

    from selfsup.web.explore import attention_png, find_runs, load_run, to_tensor

    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(official_vit.dinov2_release(dinov2_reference(registers=True)), path)
    runs = tmp_path / "runs"
    assert main(["convert", str(path), "--from", "dinov2", "--backbone", "vit-small", "--depth", "2", "--out",
                 str(runs / "dinov2-reg")]) == 0
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (61, 90, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "att"
    assert main(["attention", "--checkpoint", str(runs / "dinov2-reg"), "--image", str(image), "--out", str(out),
                 "--rollout"]) == 0
    maps = np.load(next(out.glob("*.npy")))
    assert maps.shape == (6, 61 // 14, 90 // 14)  # 6 heads on the 4 x 6 patch grid: no register in the maps
    model, spec = load_run(find_runs(runs)["dinov2-reg"], runs)
    assert model.num_register_tokens == 4
    png, grid = attention_png(model, spec, to_tensor(np.asarray(Image.open(image)), 3, 56), 0.6, "dinov2")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and grid == (4, 5)  # the shorter side at 56 px: 56 x 83 -> 4 x 5
