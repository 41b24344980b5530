"""The recipe chosen for image sizes, dataset sizes and machines, all injected (no measurement, no timing)."""

import pytest

from selfsup.machine import GIB, Resources
from selfsup.sizing import DataFacts, choose

CPU2 = Resources(cores=2, memory=24 * GIB)
CPU32 = Resources(cores=32, memory=128 * GIB)
GPU = Resources(cores=16, memory=128 * GIB, gpu="NVIDIA H100", gpu_memory=80 * GIB)
DINO_HEAD = (6_000_000, True)  # parameters of DINO's CPU head (out_dim 4096), and its momentum teacher


def facts(count=2000, side=224, channels=3, streamed=True):
    return DataFacts(count, side, channels, streamed)


def pick(user=None, **kw):
    res = kw.pop("res", CPU2)
    return choose({"data": {"name": "x"}, **(user or {})}, facts(**kw), res, head=DINO_HEAD)


@pytest.mark.parametrize(("count", "cpu_batch", "gpu_batch"), [(300, 16, 16), (2000, 64, 64), (100_000, 256, 1024)])
def test_the_batch_follows_the_dataset_size(count, cpu_batch, gpu_batch):
    assert pick(count=count).values["optim"]["batch_size"] == cpu_batch
    assert pick(count=count, res=GPU).values["optim"]["batch_size"] == gpu_batch


def test_photos_on_two_cores_get_small_crops_that_pass_over_the_data_several_times():
    r = pick(user={"optim": {"minutes": 3}})
    v, b = r.values["views"], r.values["backbone"]
    assert v["global_size"] <= 128 and v["global_size"] % b["patch_size"] == 0
    assert 4 <= v["global_size"] // b["patch_size"] <= 8  # at most 64 tokens, not the 1,024 of 7-px patches
    assert r.values["data"]["workers"] == 1
    line = next(x for x in r.reasons if x.startswith("CPU:"))
    assert "epochs in 3 min" in line and float(line.split(" epochs")[0].split()[-1]) >= 4


def test_more_cores_afford_larger_crops_and_more_workers():
    small, large = pick(user={"optim": {"minutes": 3}}), pick(user={"optim": {"minutes": 3}}, res=CPU32)
    assert large.values["views"]["global_size"] > small.values["views"]["global_size"]
    assert large.values["data"]["workers"] > small.values["data"]["workers"]


def test_a_larger_dataset_in_the_same_minutes_gets_smaller_crops():
    few = pick(user={"optim": {"minutes": 3}}, count=300)
    many = pick(user={"optim": {"minutes": 3}}, count=100_000)
    assert many.values["views"]["global_size"] < few.values["views"]["global_size"]


@pytest.mark.parametrize("side", [96, 224])
def test_a_gpu_gets_the_papers_vit_small_16(side):
    r = pick(res=GPU, side=side)
    assert r.values["backbone"] == {"name": "vit-small", "patch_size": 16}
    assert r.values["views"] == {"global_size": 224, "local_size": 96, "n_local": 10}
    assert r.values["data"]["workers"] == 10
    assert any("ViT-S/16" in x for x in r.reasons)


def test_small_images_on_a_gpu_keep_their_size():
    r = pick(res=GPU, side=28, count=60_000, streamed=False)
    assert r.values["views"]["global_size"] == 28 and r.values["backbone"]["patch_size"] == 4
    assert "workers" not in r.values.get("data", {})  # in memory: no DataLoader


def test_small_images_on_a_cpu_get_the_demo_recipe_with_4x4_patches():
    r = pick(side=28, count=60_000, channels=1, streamed=False)
    assert r.values["method"] == "simclr" and r.values["backbone"]["stem"] == "conv"
    assert r.values["views"]["global_size"] == 28 and r.values["backbone"]["patch_size"] == 7
    r32 = pick(side=32, count=50_000, streamed=False)
    assert r32.values["views"]["global_size"] // r32.values["backbone"]["patch_size"] == 4


def test_a_given_method_or_method_option_keeps_the_method():
    assert "method" not in pick(user={"method": "dino"}, side=28).values
    assert "method" not in pick(user={"dino": {"out_dim": 64}}, side=28).values


def test_every_value_the_user_gave_is_left_to_them():
    user = {"backbone": {"name": "vit-tiny", "patch_size": 8}, "views": {"global_size": 96, "n_local": 2},
            "optim": {"batch_size": 32}, "data": {"name": "x", "workers": 3}}
    for res in (CPU2, GPU):
        r = choose(user, facts(), res, head=DINO_HEAD)
        chosen = {f"{s}.{k}" for s, opts in r.values.items() if isinstance(opts, dict) for k in opts}
        given = {f"{s}.{k}" for s, opts in user.items() for k in opts}
        assert not chosen & given


def test_a_given_crop_size_still_gets_a_patch_size_that_divides_it():
    r = pick(user={"views": {"global_size": 96}})
    assert 96 % r.values["backbone"]["patch_size"] == 0 and "global_size" not in r.values["views"]


def test_the_reasons_say_what_was_sized_for():
    r = pick()
    assert r.reasons[0] == "sized for 2,000 RGB images of 224 px, streamed; 2 cores, 24.0 GiB available, no GPU"
    assert "batch 64: 31 steps an epoch of 2,000 images (at least 16 where the data allows)" in r.reasons



@pytest.mark.parametrize("res", [CPU2, GPU])
def test_an_init_file_keeps_its_architecture(res):
    """--init takes the backbone from the file (engine/init.py): sizing sets no backbone option, crops and batch
    still."""
    sized = pick(user={"backbone": {"init": "dino_deitsmall16_pretrain.pth"}}, res=res).values
    assert "backbone" not in sized or not sized["backbone"], sized
    assert sized["optim"]["batch_size"] and pick(res=res).values["backbone"]  # without --init: sized


@pytest.mark.parametrize(("method", "momentum"), [("dino", "momentum_teacher"), ("byol", "momentum"),
                                                  ("simclr", None)])
def test_an_init_file_gets_the_continuing_recipe_for_what_the_user_left_open(method, momentum):
    from selfsup.config import build_config
    from selfsup.sizing import continuing

    init = {"backbone": {"init": "run"}, "method": method}
    chosen = pick(user=init)
    scratch_lr = build_config({"data": {"name": "x"}, "method": method}).optim.lr
    assert chosen.values["optim"]["lr"] == pytest.approx(scratch_lr * continuing.LR_SCALE)
    assert chosen.values["optim"]["freeze_backbone_epochs"] == continuing.OPTIM["freeze_backbone_epochs"] > 0
    assert chosen.values.get(method, {}).get(momentum) == (continuing.TEACHER_MOMENTUM if momentum else None)
    assert any("the continuing recipe" in r for r in chosen.reasons)
    mine = pick(user={**init, "optim": {"lr": 0.5}}).values["optim"]
    assert "lr" not in mine and mine["warmup_epochs"] == continuing.OPTIM["warmup_epochs"]  # the user's lr wins
    assert "lr" not in pick(user={"method": method}).values.get("optim", {})  # from scratch: the method's own
