"""DINOv2 (Oquab et al., 2024): DINO, iBOT and KoLeo, as facebookresearch/dinov2 dinov2/train/ssl_meta_arch.py.

DINO's [CLS] loss, iBOT's masked patch loss (methods/ibot.py) and KoLeo on the student's [CLS] embeddings
(methods/koleo.py), with a ViT with LayerScale.

The losses, masks and heads are iBOT's as DINOv2 computes them; what DINOv2 changes is its recipe
(dinov2/configs/ssl_default_config.yaml, the ViT-L/16 of train/vitl16_short.yaml): KoLeo at weight 0.1 per global
crop, 65536 prototypes with a trainable last-layer norm (layers/dino_head.py: weight_g filled with 1, not frozen),
teacher momentum 0.992 -> 1, teacher temperature 0.04 -> 0.07 over 30 epochs, LayerScale 1e-5 and drop path 0.3 in
the ViT (0.1 and 0.1 in the CPU preset), crops of 0.32-1 and 8 of 0.05-0.32; the patch centre averages the masked
tokens only (its teacher head sees no other). `--dinov2.centering sinkhorn_knopp` and `--dinov2.separate-head` give
its ViT-L/14 and ViT-g/14 recipes (train/vitl14.yaml, vitg14.yaml; with --backbone.ffn swiglu for ViT-g),
`--backbone.registers 4` the "_reg" models (Darcet et al., 2024).
Not reproduced: the layer-wise learning-rate decay (0.9) and the patch embedding's learning rate x 0.2
(optim.layerwise_decay, patch_embed_lr_mult), DINOv2's square-root learning-rate scaling (0.004 at batch 1024:
here 0.001 per 256 scaled linearly, the same at 1024), and drop path equal in every block (drop_path_uniform; here
it grows to the rate with depth). Two quirks of ssl_meta_arch.py are not copied: without local crops its
max(n_local * 2, 1) counts a missing local term and scales the [CLS] loss by 2/3 (here it stays the mean over the
pairs of views), and its patch centre also averages the head's outputs for the zero rows that pad its buffer to
`upperbound` (here the mean over the masked tokens of all processes).
"""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.methods.ibot import IBOT, LOCAL_CROPS_WHY, IBOTConfig
from selfsup.methods.recipe import optim, paper, section
from selfsup.options import opt


@dataclass
class DINOv2Config(IBOTConfig):
    # ssl_default_config.yaml: dino.head_n_prototypes 65536, head_bottleneck_dim 256, head_hidden_dim 2048,
    # head_nlayers 3, koleo_loss_weight 0.1; ibot: loss_weight 1.0, mask_sample_probability 0.5, mask_ratio_min_max
    # [0.1, 0.5], separate_head false (its head 65536/256/2048); teacher: momentum_teacher 0.992, warmup_teacher_temp
    # 0.04, teacher_temp 0.07, warmup_teacher_temp_epochs 30; optim.freeze_last_layer_epochs 1; train.centering.
    out_dim: int = opt(4096, "Prototypes K of the [CLS] head (and of the patch head when shared). DINOv2's 65536 "
                       "make each head's last layer 256 x 65536 (17M weights, the teacher's copy as many again, 20 "
                       "times the CPU ViT): the CPU preset uses DINO's 4096 on 10-class data.", paper=65536, low=1)
    norm_last_layer: bool = opt(False, "Fix the norm of the heads' last-layer weights; DINOv2 trains it.",
                                paper=False)
    momentum_teacher: float = opt(0.992, "Base EMA momentum of the teacher, raised to 1 with a cosine. Higher (0.994: "
                                  "DINOv2's ViT-L/g) for longer runs.", paper=0.992, low=0, high=1)
    patch_out_dim: int = opt(4096, "Prototypes of the separate patch head (--dinov2.separate-head), 65536 as the "
                             "[CLS] head's in DINOv2 (131072 each for ViT-L/g); 4096 on CPU for the same reason.",
                             paper=65536, low=1)
    koleo_loss_weight: float = opt(0.1, "Weight of KoLeo on the student's [CLS] embeddings, summed over the global "
                                   "crops (each on its own batch): it spreads the embeddings of a batch over the "
                                   "sphere, which helps nearest-neighbour retrieval. 0 turns it off.", paper=0.1,
                                   low=0)


# ssl_default_config.yaml optim: AdamW (betas 0.9, 0.999), base_lr 0.004 at batch 1024 with sqrt_wrt_1024 scaling
# (0.001 per 256 here, linear: equal at 1024), weight decay 0.04 -> 0.4, 10 warm-up epochs, min lr 1e-6, clip 3.0;
# student: layerscale 1e-5, drop_path_rate 0.3, num_register_tokens 0, ffn mlp; crops: global 0.32-1, 8 local of
# 0.05-0.32 (224 and 96 px); DataAugmentationDINO is DINO's.
RECIPES = {"vit": {
    "optim": optim("adamw", 1e-3, 0.04, 10, weight_decay_end=0.4, min_lr=1e-6, clip_grad=3.0),
    "views": section(recipe="dino", n_local=paper(8, cpu=6, why=LOCAL_CROPS_WHY), global_scale=(0.32, 1.0),
                     local_scale=(0.05, 0.32)),
    "backbone": section(
        layerscale=paper(1e-5, cpu=0.1, why="CaiT (Touvron et al. 2021, Sec. 3) starts LayerScale at 0.1 up to 18 "
                         "blocks and 1e-5 from 24 (DINOv2's ViT-L): in a 4-block CPU ViT at 1e-5 the blocks would "
                         "barely act in a short run"),
        drop_path=paper(0.3, cpu=0.1, why="0.3 is the rate of DINOv2's 24-block ViT-L: a 4-block CPU ViT underfits "
                        "with it (DINO's 0.1)")),
}}


class DINOv2(IBOT):
    name = "dinov2"
    config_class = DINOv2Config
    recipes = RECIPES
    center_on_all_patches = False  # ssl_meta_arch.py: the teacher's head sees the masked patch tokens only
