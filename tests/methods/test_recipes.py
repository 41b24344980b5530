"""Each method's resolved defaults are its paper's recipe, checked against the official code cited in each
docstring (files at: dino 7c446df, moco 7397dfe, moco-v3 c349e6e, simsiam a7bc177, barlowtwins 8e8d284, dinov2 b8931f7,
ibot da316d8, vicreg 4e12602, swav 06b1b7c, simclr 383d414; BYOL: deepmind-research byol/configs/byol.py)."""

import pytest

from selfsup.config import ConfigError, build_config, merge, recipe
from selfsup.methods import METHODS
from selfsup.methods.recipe import paper, resolve
from selfsup.options import describe


def resolved(method: str, backbone: str = "vit-cpu", **sections) -> dict:
    cfg = build_config({"method": method, "backbone": {"name": backbone}, **sections})
    return cfg.to_dict()


def optim_of(method: str, backbone: str = "vit-cpu") -> dict:
    o = resolved(method, backbone)["optim"]
    return {k: o[k] for k in ("optimizer", "lr", "lr_bias", "min_lr", "warmup_epochs", "weight_decay",
                              "weight_decay_end", "decay_norm_bias", "clip_grad")}


def test_dino_vit():
    """dino main_dino.py: --weight_decay 0.04 (82), --weight_decay_end 0.4 (84), --clip_grad 3.0 (87),
    --lr 0.0005 per 256 (96), --warmup_epochs 10 (99), --min_lr 1e-6 (101), --optimizer adamw (103);
    biases and norms not decayed (utils.py 632-643); DataAugmentationDINO (418-457)."""
    assert optim_of("dino") == dict(optimizer="adamw", lr=5e-4, lr_bias=None, min_lr=1e-6, warmup_epochs=10,
                                    weight_decay=0.04, weight_decay_end=0.4, decay_norm_bias=False, clip_grad=3.0)
    assert resolved("dino")["views"]["recipe"] == "dino"


def test_dino_resnet():
    """dino README.md line 207: --arch resnet50 --optimizer sgd --lr 0.03 --weight_decay 1e-4
    --weight_decay_end 1e-4 --global_crops_scale 0.14 1 --local_crops_scale 0.05 0.14 (other flags default)."""
    assert optim_of("dino", "resnet50") == dict(optimizer="sgd", lr=0.03, lr_bias=None, min_lr=1e-6, warmup_epochs=10,
                                                weight_decay=1e-4, weight_decay_end=1e-4, decay_norm_bias=False,
                                                clip_grad=3.0)
    views = resolved("dino", "resnet50")["views"]
    assert views["global_scale"] == [0.14, 1.0] and views["local_scale"] == [0.05, 0.14]


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_dino_with_sgd_or_lars_never_ramps_coupled_weight_decay(optimizer):
    """The 0.04 -> 0.4 ramp is AdamW's (decoupled); DINO's own SGD command keeps 1e-4 constant (README 207)."""
    o = resolved("dino", optim={"optimizer": optimizer})["optim"]
    assert o["optimizer"] == optimizer and o["weight_decay_end"] == o["weight_decay"] <= 1e-4


def test_moco_v3_vit():
    """moco-v3 CONFIG.md 109-116 (ViT-Small): --optimizer=adamw --lr=1.5e-4 --weight-decay=.1 --epochs=300
    --warmup-epochs=40 --stop-grad-conv1 --moco-m-cos --moco-t=.2; main_moco.py 229: AdamW over every
    parameter; 190: lr x batch / 256; 420-428: cosine to 0; --moco-m 0.99 (99); 3-layer projector and BN
    after the predictor for ViTs (moco/builder.py MoCo_ViT); crops 0.08-1 (--crop-min 0.08, 117)."""
    assert optim_of("moco-v3") == dict(optimizer="adamw", lr=1.5e-4, lr_bias=None, min_lr=0.0, warmup_epochs=40,
                                       weight_decay=0.1, weight_decay_end=0.1, decay_norm_bias=True, clip_grad=0.0)
    r = resolved("moco-v3")
    assert r["moco-v3"]["temperature"] == 0.2 and r["moco-v3"]["proj_layers"] == 3 and r["moco-v3"]["pred_last_bn"]
    assert r["moco-v3"]["momentum"] == 0.99 and r["views"]["global_scale"] == [0.08, 1.0]


def test_moco_v3_resnet():
    """moco-v3 main_moco.py defaults: --lr 0.6 (65), --wd 1e-6 (69), --moco-m 0.99 (99), --moco-t 1.0 (104),
    --optimizer lars (112), --warmup-epochs 10 (115); CONFIG.md ResNet-50 100 epochs: --moco-m-cos
    --crop-min=.2; moco/optimizer.py: LARS trust 0.001 without decay or adaptation of <=1-d parameters;
    moco/builder.py MoCo_ResNet: 2-layer projector, predictor without last BN."""
    assert optim_of("moco-v3", "resnet50") == dict(optimizer="lars", lr=0.6, lr_bias=None, min_lr=0.0,
                                                   warmup_epochs=10, weight_decay=1e-6, weight_decay_end=1e-6,
                                                   decay_norm_bias=False, clip_grad=0.0)
    r = resolved("moco-v3", "resnet50")
    assert r["moco-v3"]["temperature"] == 1.0 and r["moco-v3"]["proj_layers"] == 2
    assert not r["moco-v3"]["pred_last_bn"] and r["views"]["global_scale"] == [0.2, 1.0]


def test_moco_v2():
    """moco main_moco.py (7397dfe): --lr 0.03 (79-85) at --batch-size 256 (68-76), --wd 1e-4 (97-104),
    SGD over model.parameters() (291-296: norms and biases decayed too), --cos (489-492), --moco-m 0.999;
    aug+ (326-338): RandomResizedCrop scale (0.2, 1), ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2,
    blur p 0.5, no solarisation."""
    for backbone in ("vit-cpu", "resnet50"):
        assert optim_of("moco-v2", backbone) == dict(optimizer="sgd", lr=0.03, lr_bias=None, min_lr=0.0,
                                                     warmup_epochs=0, weight_decay=1e-4, weight_decay_end=1e-4,
                                                     decay_norm_bias=True, clip_grad=0.0)
    r = resolved("moco-v2")
    assert r["views"]["recipe"] == "mocov2" and r["views"]["global_scale"] == [0.2, 1.0]
    assert r["run"]["sync_bn"] is False


def test_simsiam():
    """simsiam main_simsiam.py: --lr 0.05 (56) x batch / 256 (157), --wd 1e-4 (60-62) on every parameter
    (SGD over model parameters, 193-201), no warm-up, cosine to 0 (359-366), --fix-pred-lr (README 32,
    190-195); MoCo v2's aug+ with crops 0.2-1 (229-238)."""
    assert optim_of("simsiam") == dict(optimizer="sgd", lr=0.05, lr_bias=None, min_lr=0.0, warmup_epochs=0,
                                       weight_decay=1e-4, weight_decay_end=1e-4, decay_norm_bias=True, clip_grad=0.0)
    r = resolved("simsiam")
    assert r["simsiam"]["fix_pred_lr"] and r["views"]["recipe"] == "mocov2"
    assert r["views"]["global_scale"] == [0.2, 1.0]


def test_simclr():
    """simclr run.py: learning_rate 0.3 per 256 with linear scaling (43-48), warmup_epochs 10 (51),
    optimizer lars (171); model_util.py 95-100: LARS excluding batch_normalization and bias; weight decay
    1e-6 from the SimCLR v1 paper (App. B.9); data_util.py 74-77 colour jitter 0.8 x strength 1."""
    assert optim_of("simclr") == dict(optimizer="lars", lr=0.3, lr_bias=None, min_lr=0.0, warmup_epochs=10,
                                      weight_decay=1e-6, weight_decay_end=1e-6, decay_norm_bias=False, clip_grad=0.0)
    assert resolved("simclr")["views"]["recipe"] == "simclr"


def test_byol():
    """deepmind-research byol/configs/byol.py 21-23: 1000 epochs -> base lr 0.2 (per 256), weight decay
    1.5e-6, target EMA 0.996; LARS eta 1e-3 excluding biases and BN; 10 warm-up epochs; cosine to 0."""
    assert optim_of("byol") == dict(optimizer="lars", lr=0.2, lr_bias=None, min_lr=0.0, warmup_epochs=10,
                                    weight_decay=1.5e-6, weight_decay_end=1.5e-6, decay_norm_bias=False, clip_grad=0.0)
    r = resolved("byol")
    assert r["views"]["recipe"] == "byol" and r["views"]["global_scale"] == [0.08, 1.0]


def test_barlow_twins():
    """barlowtwins main.py: --learning-rate-weights 0.2 (33), --learning-rate-biases 0.0048 (35), both x
    batch / 256 (158, 167-168), --weight-decay 1e-6 (37; the README runs the defaults), 10 warm-up epochs (157),
    end lr 0.001 x base (165: 0.2 x 0.001 x 2048/256 = 0.0016 at --batch-size 2048, 31), LARS eta 0.001
    excluding ndim-1 parameters from decay and adaptation (90-101, 224-233); views Transform (290-320)."""
    assert optim_of("barlow-twins") == dict(optimizer="lars", lr=0.2, lr_bias=0.0048, min_lr=0.0016,
                                            warmup_epochs=10, weight_decay=1e-6, weight_decay_end=1e-6,
                                            decay_norm_bias=False, clip_grad=0.0)
    assert resolved("barlow-twins")["views"]["recipe"] == "byol"


def test_vicreg():
    """vicreg main_vicreg.py: --base-lr 0.2 x batch / 256 (52, 170), --wd 1e-6 (54), LARS excluding biases
    and norms (109-115, eta 0.001 252), 10 warm-up epochs (169), end lr 0.001 x base (177: 0.0016 at
    --batch-size 2048, 50); augmentations.py: BYOL's pair (blur 1.0 / 0.1, solarize 0 / 0.2)."""
    assert optim_of("vicreg") == dict(optimizer="lars", lr=0.2, lr_bias=None, min_lr=0.0016, warmup_epochs=10,
                                      weight_decay=1e-6, weight_decay_end=1e-6, decay_norm_bias=False, clip_grad=0.0)
    assert resolved("vicreg")["views"]["recipe"] == "byol"


def test_swav():
    """swav scripts/swav_800ep_pretrain.sh: --base_lr 4.8 at batch 64 x 64 GPUs = 4096 (0.3 per 256),
    --final_lr 0.0048, --wd 0.000001, --warmup_epochs 10, --nmb_crops 2 6, --min_scale_crops 0.14 0.05,
    --max_scale_crops 1. 0.14; main_swav.py 171-177: SGD over every parameter, LARC trust 0.001, clip=False;
    src/multicropdataset.py 37: get_color_distortion (strength 1) and blur p 0.5 on every crop."""
    assert optim_of("swav") == dict(optimizer="lars", lr=0.3, lr_bias=None, min_lr=0.0048, warmup_epochs=10,
                                    weight_decay=1e-6, weight_decay_end=1e-6, decay_norm_bias=True, clip_grad=0.0)
    v = resolved("swav")["views"]
    assert v["recipe"] == "simclr" and v["n_local"] == 6
    assert v["global_scale"] == [0.14, 1.0] and v["local_scale"] == [0.05, 0.14]


def test_mae():
    """mae PRETRAIN.md / main_pretrain.py: --blr 1.5e-4 (lr = blr x batch / 256), --weight_decay 0.05,
    --warmup_epochs 40, --min_lr 0, AdamW betas (0.9, 0.95), no clipping; norm_pix_loss; RandomResizedCrop
    (0.2, 1) + flip only; timm's Block without drop path."""
    assert optim_of("mae") == dict(optimizer="adamw", lr=1.5e-4, lr_bias=None, min_lr=0.0, warmup_epochs=40,
                                   weight_decay=0.05, weight_decay_end=0.05, decay_norm_bias=False, clip_grad=0.0)
    r = resolved("mae")
    assert r["optim"]["betas"] == [0.9, 0.95] and r["backbone"]["drop_path"] == 0.0
    assert r["optim"]["warmup_max_share"] == 40 / 800  # the 5% of its 800-epoch schedule, kept in shorter runs
    assert r["views"]["resample"] == "bicubic" and r["views"]["crop"] == "resized"  # interpolation=3
    v = r["views"]
    assert (v["n_global"], v["n_local"], v["global_scale"], v["color_jitter"], v["grayscale"], v["blur"],
            v["solarize"]) == (1, 0, [0.2, 1.0], 0.0, 0.0, False, 0.0)
    assert r["mae"]["mask_ratio"] == 0.75 and r["mae"]["norm_pix_loss"]
    with pytest.raises(ConfigError, match="mae needs a vit backbone"):
        from selfsup.engine.build import build_method
        build_method(build_config({"method": "mae", "backbone": {"name": "resnet18"},
                                   "views": {"global_size": 28, "n_global": 1, "n_local": 0}}), 1)


def test_simmim():
    """SimMIM simmim_pretrain__vit_base__img224__800ep.yaml: BASE_LR 1e-4 per 512 images, WARMUP_EPOCHS 10,
    WEIGHT_DECAY 0.05, MIN_LR 5e-6 per 512 (config.py), CLIP_GRAD 5.0, DROP_PATH_RATE 0.1, MASK_RATIO 0.6,
    MASK_PATCH_SIZE 32; data_simmim.py: RandomResizedCrop(scale (0.67, 1)) + flip."""
    assert optim_of("simmim") == dict(optimizer="adamw", lr=5e-5, lr_bias=None, min_lr=2.5e-6, warmup_epochs=10,
                                      weight_decay=0.05, weight_decay_end=0.05, decay_norm_bias=False, clip_grad=5.0)
    r = resolved("simmim")
    assert r["optim"]["clip_mode"] == "global" and r["optim"]["warmup_max_share"] == 10 / 800
    assert r["optim"]["betas"] == [0.9, 0.999] and r["views"]["global_scale"] == [0.67, 1.0]
    assert r["views"]["resample"] == "bilinear"  # data_simmim.py: torchvision's default
    assert r["views"]["n_global"] == 1 and r["simmim"]["mask_ratio"] == 0.6


PRETEXT_VIT_ADAMW = dict(optimizer="adamw", lr=5e-4, lr_bias=None, min_lr=1e-6, warmup_epochs=10, weight_decay=0.05,
                         weight_decay_end=0.05, decay_norm_bias=False, clip_grad=3.0)


def pretext_views(method: str) -> tuple:
    v = resolved(method)["views"]
    return v["n_global"], v["n_local"], v["global_scale"], v["color_jitter"], v["grayscale"], v["blur"], v["solarize"]


def test_rotation():
    """FeatureLearningRotNet config/CIFAR10_RotNet_NIN4blocks.py: SGD lr 0.1 at batch 128, momentum 0.9, weight
    decay 5e-4 over every parameter, no warm-up; dataloader.py for cifar10: RandomCrop(32, padding=4) + flip,
    no colour. ViTs (none in the paper): AdamW."""
    assert optim_of("rotation", "resnet18") == dict(optimizer="sgd", lr=0.2, lr_bias=None, min_lr=0.0, warmup_epochs=0,
                                                    weight_decay=5e-4, weight_decay_end=5e-4, decay_norm_bias=True,
                                                    clip_grad=0.0)
    assert optim_of("rotation") == PRETEXT_VIT_ADAMW
    assert pretext_views("rotation") == (1, 0, [1.0, 1.0], 0.0, 0.0, False, 0.0)
    assert resolved("rotation")["views"]["crop"] == "padded" and resolved("rotation")["views"]["flip"] == 0.5


def test_jigsaw():
    """vissl jigsaw_8gpu_resnet.yaml (Goyal et al. 2019's ResNet-50 jigsaw): SGD lr 0.1 at 256, weight decay
    1e-4, 5 warm-up epochs; the whole image, flips, 30% grayscale (JigsawPuzzlePytorch JigsawImageLoader.py)."""
    assert optim_of("jigsaw", "resnet18") == dict(optimizer="sgd", lr=0.1, lr_bias=None, min_lr=0.0, warmup_epochs=5,
                                                  weight_decay=1e-4, weight_decay_end=1e-4, decay_norm_bias=False,
                                                  clip_grad=0.0)
    assert optim_of("jigsaw") == PRETEXT_VIT_ADAMW
    assert pretext_views("jigsaw") == (1, 0, [1.0, 1.0], 0.0, 0.3, False, 0.0)


def test_relative_position():
    """No ResNet recipe in Doersch et al. 2015: jigsaw's (vissl); patch grids anywhere in the image: crops of
    0.4-1 of the area, no colour augmentation (colour dropping instead)."""
    assert optim_of("relative-position", "resnet18") == optim_of("jigsaw", "resnet18")
    assert optim_of("relative-position") == PRETEXT_VIT_ADAMW
    assert pretext_views("relative-position") == (1, 0, [0.4, 1.0], 0.0, 0.0, False, 0.0)


def test_colorization():
    """richzhang/colorization train/solver.prototxt: Adam base_lr 3e-5, momentum 0.9 / momentum2 0.99 (AdamW's
    betas), weight_decay 1e-3 on every parameter, no warm-up; batch 40 (train_val_v2.prototxt,
    crop + mirror only): 3e-5 x 256/40 per 256 images."""
    for backbone in ("vit-cpu", "resnet18"):
        assert optim_of("colorization", backbone) == dict(optimizer="adamw", lr=pytest.approx(1.92e-4), lr_bias=None,
                                                          min_lr=0.0, warmup_epochs=0, weight_decay=1e-3,
                                                          weight_decay_end=1e-3, decay_norm_bias=True, clip_grad=0.0)
    assert pretext_views("colorization") == (1, 0, [0.4, 1.0], 0.0, 0.0, False, 0.0)
    assert resolved("colorization")["optim"]["betas"] == [0.9, 0.99]


def test_inpainting():
    """pathak22/context-encoder train.lua: Adam lr 2e-4 (betas 0.5, 0.999), batch 64, no weight
    decay, no warm-up: 2e-4 x 256/64 per 256 images; random crops, no colour changes."""
    for backbone in ("vit-cpu", "resnet18"):
        assert optim_of("inpainting", backbone) == dict(optimizer="adamw", lr=8e-4, lr_bias=None, min_lr=0.0,
                                                        warmup_epochs=0, weight_decay=0.0, weight_decay_end=0.0,
                                                        decay_norm_bias=False, clip_grad=0.0)
    assert pretext_views("inpainting") == (1, 0, [0.4, 1.0], 0.0, 0.0, False, 0.0)
    assert resolved("inpainting")["optim"]["betas"] == [0.5, 0.999]
    r = resolved("inpainting")["inpainting"]
    assert r["mask"] == "region" and r["overlap"] == 4 / 128 and r["overlap_weight"] == 10  # Sec. 3.3


def test_distill():
    """lightly-train distillationv2.py: LARS lr 1.5, weight decay 1e-6, gradient clip 1.0 (ResNets); ViTs: DINOv2's
    AdamW (ssl_default_config.yaml: 0.004 at batch 1024 = 1e-3 at 256, weight decay 0.04 -> 0.4, clip 3.0); the
    CPU preset warms up for 0.3 epochs. distillationv2_transform.py: one view, crops 0.14-1, jitter p 0.8,
    grayscale 0.2, no solarisation; 2 teacher blocks, MSE, mixup."""
    assert optim_of("distill") == dict(optimizer="adamw", lr=1e-3, lr_bias=None, min_lr=1e-6, warmup_epochs=0.3,
                                       weight_decay=0.04, weight_decay_end=0.4, decay_norm_bias=False, clip_grad=3.0)
    assert optim_of("distill", "resnet18") == dict(optimizer="lars", lr=1.5, lr_bias=None, min_lr=0.0,
                                                   warmup_epochs=0.3, weight_decay=1e-6, weight_decay_end=1e-6,
                                                   decay_norm_bias=False, clip_grad=1.0)
    assert pretext_views("distill") == (1, 0, [0.14, 1.0], 0.8, 0.2, False, 0.0)
    r = resolved("distill")["distill"]
    assert (r["loss"], r["teacher_blocks"], r["mixup"]) == ("mse", 2, True)


def test_dinov2_vit():
    """dinov2/configs/ssl_default_config.yaml: dino head 65536 / 256 / 2048 / 3 layers, koleo_loss_weight 0.1; ibot
    loss_weight 1.0, mask_sample_probability 0.5, mask_ratio_min_max [0.1, 0.5], separate_head false;
    train.centering "centering"; student layerscale 1e-5, drop_path_rate 0.3; teacher momentum_teacher 0.992,
    warmup_teacher_temp 0.04, teacher_temp 0.07, warmup_teacher_temp_epochs 30; optim weight_decay 0.04 -> 0.4,
    base_lr 0.004 at batch 1024, warmup_epochs 10, min_lr 1e-6, clip_grad 3.0, freeze_last_layer_epochs 1; crops
    0.32-1 and 8 x 0.05-0.32. The CPU preset differs in K, LayerScale, drop path and local crops (docs/options.md)."""
    papers = {name: value for name, _, _, value in describe(METHODS["dinov2"].config_class)}
    assert {k: papers[k] for k in ("out_dim", "hidden_dim", "bottleneck_dim", "koleo_loss_weight",
                                   "patch_loss_weight", "mask_sample_probability", "mask_ratio_min_max",
                                   "separate_head", "centering", "momentum_teacher", "warmup_teacher_temp",
                                   "teacher_temp", "warmup_teacher_temp_epochs", "freeze_last_layer",
                                   "patch_out_dim")} == dict(
        out_dim=65536, hidden_dim=2048, bottleneck_dim=256, koleo_loss_weight=0.1, patch_loss_weight=1.0,
        mask_sample_probability=0.5, mask_ratio_min_max=(0.1, 0.5), separate_head=False, centering="centering",
        momentum_teacher=0.992, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=30,
        freeze_last_layer=1, patch_out_dim=65536)
    recipe = METHODS["dinov2"].recipes["vit"]
    assert recipe["backbone"]["layerscale"].paper == 1e-5 and recipe["backbone"]["drop_path"].paper == 0.3
    assert {k: recipe["optim"][k].paper for k in ("optimizer", "lr", "weight_decay", "weight_decay_end",
                                                 "warmup_epochs", "min_lr", "clip_grad")} == dict(
        optimizer="adamw", lr=0.004 * 256 / 1024, weight_decay=0.04, weight_decay_end=0.4, warmup_epochs=10,
        min_lr=1e-6, clip_grad=3.0)
    assert recipe["views"]["n_local"].paper == 8 and recipe["views"]["global_scale"].paper == (0.32, 1.0)
    r = resolved("dinov2")
    assert r["dinov2"]["koleo_loss_weight"] == 0.1 and r["dinov2"]["mask_ratio_min_max"] == [0.1, 0.5]
    assert r["backbone"]["layerscale"] == 0.1 and r["views"]["local_scale"] == [0.05, 0.32]
    explicit = build_config({"method": "dinov2", "backbone": {"name": "vit-cpu", "layerscale": 1e-5}})
    assert explicit.backbone.layerscale == 1e-5  # a flag or YAML recipe above the CPU preset


def test_ibot_vit():
    """bytedance/ibot README (ViT-S/16): --teacher_temp 0.07 --warmup_teacher_temp_epochs 30 --norm_last_layer
    false --shared_head true --out_dim 8192 --local_crops_number 10 --global_crops_scale 0.25 1
    --local_crops_scale 0.05 0.25; main_ibot.py: lr 5e-4 per 256, weight decay 0.04 -> 0.4, no KoLeo, no LayerScale."""
    r = resolved("ibot")
    assert r["ibot"]["teacher_temp"] == 0.07 and r["ibot"]["warmup_teacher_temp_epochs"] == 30
    assert not r["ibot"]["norm_last_layer"] and not r["ibot"]["separate_head"] and r["ibot"]["koleo_loss_weight"] == 0
    assert r["backbone"]["layerscale"] is None and r["optim"]["lr"] == 5e-4 and r["optim"]["weight_decay_end"] == 0.4
    assert r["views"]["global_scale"] == [0.25, 1.0] and r["views"]["local_scale"] == [0.05, 0.25]
    assert METHODS["ibot"].recipes["vit"]["views"]["n_local"].paper == 10


def test_every_method_has_a_recipe_test():
    tested = {"dino", "moco-v3", "moco-v2", "simsiam", "simclr", "byol", "barlow-twins", "vicreg", "swav", "mae",
              "simmim", "rotation", "jigsaw", "relative-position", "colorization", "inpainting", "distill",
              "ibot", "dinov2"}
    assert set(METHODS) == tested


def test_layers_defaults_method_recipe_yaml_flags():
    """defaults < method recipe < YAML recipe < flags: an explicit value always wins."""
    yaml = {"method": "byol", "optim": {"lr": 0.01, "weight_decay": 0.0}}
    cfg = build_config(merge(yaml, {"optim": {"lr": 0.02}})).optim
    assert (cfg.lr, cfg.weight_decay, cfg.optimizer, cfg.warmup_epochs) == (0.02, 0.0, "lars", 10)
    demo = build_config(recipe("demo"))  # the demo's own optimiser values are kept as it states them
    assert (demo.optim.lr, demo.optim.warmup_epochs, demo.views.solarize) == (0.001, 0.3, 0.0)


def test_a_cpu_value_needs_its_reason():
    s = paper(4096, cpu=64, why="short runs")
    assert (s.paper, s.value, s.differs) == (4096, 64, True)
    assert resolve({"any": {"dino": {"out_dim": s}}}, "vit-cpu") == {"dino": {"out_dim": 64}}
    with pytest.raises(ValueError, match="reason"):
        paper(1, cpu=2)


def test_an_unknown_view_recipe_is_named():
    with pytest.raises(ConfigError, match="views.recipe: got 'simclr2', expected one of 'dino'"):
        build_config({"views": {"recipe": "simclr2"}})
