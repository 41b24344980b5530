"""A small reference copy of the official DINO ViT (facebookresearch/dino vision_transformer.py, num_classes=0,
qkv_bias=True, LayerNorm eps 1e-6), which is also MAE's, MoCo v3's and timm's ViT (timm's VisionTransformer with
the same names), with each source's own position-embedding resizing, and writers of checkpoint files in every
official layout (DINOv2's with tests/models/official_dinov2.py, its verbatim model code), for the conversion and
export tests. Nothing here imports selfsup.

Resizing ("resize"): "dino" is DINO's interpolate_pos_encoding verbatim; "size" MAE's util/pos_embed.py
interpolate_pos_embed (bicubic to the new grid, align_corners False; MoCo v3's code runs at its training size
only, and selfsup resizes its embeddings this way too); "size-antialias" timm's layers/pos_embed.py
resample_abs_pos_embed (bicubic with antialias), which timm's dynamic_img_size applies at every forward.
"""

from __future__ import annotations

import argparse
import math
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3, bias=True), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C)), attn


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

    def forward(self, x, return_attention=False):
        y, attn = self.attn(self.norm1(x))
        if return_attention:
            return attn
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size, self.num_patches = patch_size, (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViT(nn.Module):
    """DINO's VisionTransformer; forward -> the normalised [CLS] token (B, D); `tokens` -> all normalised tokens."""

    def __init__(self, img_size=64, patch_size=8, in_chans=3, embed_dim=48, depth=2, num_heads=3,
                 resize="dino") -> None:
        super().__init__()
        self.resize = resize
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Identity()

    def interpolate_pos_encoding(self, x, w, h):
        if self.resize == "dino":
            return self.dino_interpolate_pos_encoding(x, w, h)
        grid = (w // self.patch_embed.patch_size, h // self.patch_embed.patch_size)
        if self.resize == "size":
            return mae_interpolate_pos_embed(self.pos_embed, grid)
        return resample_abs_pos_embed(self.pos_embed, grid)

    def dino_interpolate_pos_encoding(self, x, w, h):  # verbatim from DINO
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        class_pos_embed = self.pos_embed[:, 0]
        patch_pos_embed = self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0 = w // self.patch_embed.patch_size
        h0 = h // self.patch_embed.patch_size
        w0, h0 = w0 + 0.1, h0 + 0.1
        patch_pos_embed = nn.functional.interpolate(
            patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
            scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
            mode='bicubic',
        )
        assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def prepare_tokens(self, x):
        B, nc, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        return x + self.interpolate_pos_encoding(x, w, h)

    def tokens(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x):
        return self.tokens(x)[:, 0]

    def get_last_selfattention(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks[:-1]:
            x = blk(x)
        return self.blocks[-1](x, return_attention=True)


def mae_interpolate_pos_embed(pos_embed_checkpoint, new_size):
    """MAE's util/pos_embed.py interpolate_pos_embed on one tensor, to an (h, w) grid (MAE's is square only)."""
    embedding_size = pos_embed_checkpoint.shape[-1]
    num_extra_tokens = 1
    orig_size = int((pos_embed_checkpoint.shape[-2] - num_extra_tokens) ** 0.5)
    if (orig_size, orig_size) == tuple(new_size):
        return pos_embed_checkpoint
    extra_tokens = pos_embed_checkpoint[:, :num_extra_tokens]
    pos_tokens = pos_embed_checkpoint[:, num_extra_tokens:]
    pos_tokens = pos_tokens.reshape(-1, orig_size, orig_size, embedding_size).permute(0, 3, 1, 2)
    pos_tokens = torch.nn.functional.interpolate(
        pos_tokens, size=tuple(new_size), mode='bicubic', align_corners=False)
    pos_tokens = pos_tokens.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra_tokens, pos_tokens), dim=1)


def resample_abs_pos_embed(posemb, new_size, old_size=None, num_prefix_tokens=1, interpolation='bicubic',
                           antialias=True):
    """timm's layers/pos_embed.py resample_abs_pos_embed (huggingface/pytorch-image-models at aa4b585)."""
    num_pos_tokens = posemb.shape[1]
    num_new_tokens = new_size[0] * new_size[1] + num_prefix_tokens
    if num_new_tokens == num_pos_tokens and new_size[0] == new_size[1]:
        return posemb
    if old_size is None:
        hw = int(math.sqrt(num_pos_tokens - num_prefix_tokens))
        old_size = hw, hw
    if num_prefix_tokens:
        posemb_prefix, posemb = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    else:
        posemb_prefix, posemb = None, posemb
    embed_dim = posemb.shape[-1]
    orig_dtype = posemb.dtype
    posemb = posemb.float()
    posemb = posemb.reshape(1, old_size[0], old_size[1], -1).permute(0, 3, 1, 2)
    posemb = F.interpolate(posemb, size=new_size, mode=interpolation, antialias=antialias)
    posemb = posemb.permute(0, 2, 3, 1).reshape(1, -1, embed_dim)
    posemb = posemb.to(orig_dtype)
    if posemb_prefix is not None:
        posemb = torch.cat([posemb_prefix, posemb], dim=1)
    return posemb


def reference(seed: int, **kwargs) -> DinoViT:
    """A reference ViT with random weights far from the initialisation (position embeddings of std 1, so that
    the way they are resized shows in the output)."""
    torch.manual_seed(seed)
    model = DinoViT(**kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.pos_embed.normal_()
    return model


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


def _head(prefix: str, dim: int) -> dict:
    return {f"{prefix}mlp.0.weight": torch.randn(32, dim), f"{prefix}mlp.0.bias": torch.zeros(32),
            f"{prefix}last_layer.weight_g": torch.ones(64, 1), f"{prefix}last_layer.weight_v": torch.randn(64, 32)}


def _args() -> argparse.Namespace:
    return argparse.Namespace(arch="vit_small", patch_size=8, out_dim=65536, lr=0.0005, epochs=100,
                              global_crops_scale=(0.4, 1.0), data_path="/path/to/imagenet/train", use_fp16=True)


def _optimizer() -> dict:
    return {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3)}},
            "param_groups": [{"lr": 0.001, "weight_decay": 0.04, "params": [0, 1]}]}


def dino_release(teacher: DinoViT, student: DinoViT) -> dict:
    """dino_deitsmall8_pretrain.pth: the teacher backbone's state_dict."""
    return teacher.state_dict()


def dino_training(teacher: DinoViT, student: DinoViT) -> dict:
    """main_dino.py's checkpoint.pth: teacher (MultiCropWrapper, no DDP), student (DDP), args, optimizer, ..."""
    dim = teacher.norm.weight.shape[0]
    return {"student": {**_prefixed(student.state_dict(), "module.backbone."), **_head("module.head.", dim)},
            "teacher": {**_prefixed(teacher.state_dict(), "backbone."), **_head("head.", dim)},
            "optimizer": _optimizer(), "epoch": 100, "args": _args(),
            "dino_loss": {"center": torch.zeros(1, 64)}, "fp16_scaler": {"scale": 65536.0, "_growth_tracker": 3}}


def mae_pretrain(teacher: DinoViT, student: DinoViT) -> dict:
    """main_pretrain.py's checkpoint-N.pth: the encoder plus MAE's mask token and decoder."""
    dim = teacher.norm.weight.shape[0]
    decoder = {"mask_token": torch.randn(1, 1, 32), "decoder_embed.weight": torch.randn(32, dim),
               "decoder_embed.bias": torch.zeros(32), "decoder_pos_embed": torch.randn(1, 65, 32),
               "decoder_blocks.0.norm1.weight": torch.ones(32), "decoder_norm.weight": torch.ones(32),
               "decoder_pred.weight": torch.randn(192, 32), "decoder_pred.bias": torch.zeros(192)}
    return {"model": {**teacher.state_dict(), **decoder}, "optimizer": _optimizer(), "epoch": 799,
            "scaler": {"scale": 65536.0}, "args": _args()}


def moco_v3(teacher: DinoViT, student: DinoViT) -> dict:
    """main_moco.py's checkpoint_NNNN.pth.tar: DDP MoCo with base and momentum encoders and a predictor."""
    dim = teacher.norm.weight.shape[0]
    state = {**_prefixed(teacher.state_dict(), "module.base_encoder."),
             "module.base_encoder.head.0.weight": torch.randn(64, dim),
             "module.base_encoder.head.1.running_mean": torch.zeros(64),
             **_prefixed(student.state_dict(), "module.momentum_encoder."),
             "module.predictor.0.weight": torch.randn(64, 32)}
    return {"epoch": 300, "arch": "vit_small", "state_dict": state, "optimizer": _optimizer(),
            "scaler": {"scale": 65536.0}}


def timm(teacher: DinoViT, student: DinoViT) -> dict:
    """A timm ViT's state_dict: the same names plus the classifier head."""
    dim = teacher.norm.weight.shape[0]
    return {**teacher.state_dict(), "head.weight": torch.randn(10, dim), "head.bias": torch.zeros(10)}


def timm_headless(teacher: DinoViT, student: DinoViT) -> dict:
    """A timm ViT created with num_classes=0 (its .dino and .mae entries): the backbone's state_dict, as DINO's."""
    return teacher.state_dict()


def timm_train(teacher: DinoViT, student: DinoViT) -> dict:
    """timm's train.py checkpoint (utils/checkpoint_saver.py): the unwrapped model under 'state_dict'."""
    return {"epoch": 9, "arch": "vit_small_patch16_224", "optimizer": _optimizer(), "version": 2,
            "state_dict": timm(teacher, student), "args": _args()}


def mae_release(teacher: DinoViT, student: DinoViT) -> dict:
    """mae_pretrain_vit_base.pth: the encoder only, under 'model'."""
    return {"model": teacher.state_dict()}


def mae_finetuned(teacher: DinoViT, student: DinoViT) -> dict:
    """main_finetune.py with --cls_token (global_pool False): the encoder with its norm and the classifier."""
    dim = teacher.norm.weight.shape[0]
    return {"model": {**teacher.state_dict(), "head.weight": torch.randn(10, dim), "head.bias": torch.zeros(10)},
            "optimizer": _optimizer(), "epoch": 99, "scaler": {"scale": 65536.0}, "args": _args()}


def mae_linprobe(teacher: DinoViT, student: DinoViT) -> dict:
    """main_linprobe.py: the frozen encoder and its head, BatchNorm1d(affine=False) then Linear."""
    dim = teacher.norm.weight.shape[0]
    head = {"head.0.running_mean": torch.zeros(dim), "head.0.running_var": torch.ones(dim),
            "head.0.num_batches_tracked": torch.tensor(5), "head.1.weight": torch.randn(10, dim),
            "head.1.bias": torch.zeros(10)}
    return {"model": {**teacher.state_dict(), **head}, "optimizer": _optimizer(), "epoch": 89, "args": _args()}


def mae_global_pool(teacher: DinoViT, student: DinoViT) -> dict:
    """main_finetune.py's default (global_pool): fc_norm in place of norm (models_vit.py deletes norm)."""
    dim = teacher.norm.weight.shape[0]
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("norm.")}
    return {"model": {**state, "fc_norm.weight": torch.ones(dim), "fc_norm.bias": torch.zeros(dim),
                      "head.weight": torch.randn(10, dim), "head.bias": torch.zeros(10)}, "args": _args()}


def moco_v3_deit(teacher: DinoViT, student: DinoViT) -> dict:
    """convert_to_deit.py's output: module.base_encoder.* without its head, renamed, under 'model'."""
    return {"model": {k[len("module.base_encoder."):]: v for k, v in moco_v3(teacher, student)["state_dict"].items()
                      if k.startswith("module.base_encoder") and not k.startswith("module.base_encoder.head")}}


def moco_v3_lincls(teacher: DinoViT, student: DinoViT) -> dict:
    """main_lincls.py's checkpoint.pth.tar: the DDP-wrapped ViT with its linear head."""
    dim = teacher.norm.weight.shape[0]
    state = {**_prefixed(teacher.state_dict(), "module."), "module.head.weight": torch.randn(10, dim),
             "module.head.bias": torch.zeros(10)}
    return {"epoch": 90, "arch": "vit_small", "state_dict": state, "best_acc1": 70.0, "optimizer": _optimizer()}


# layout -> (source, writer, the source's resizing, layout's guess: its source, or None for a refusal)
LAYOUTS = {
    "dino-release": ("dino", dino_release, "dino", None), "dino-training": ("dino", dino_training, "dino", "dino"),
    "mae": ("mae", mae_pretrain, "size", "mae"), "mae-release": ("mae", mae_release, "size", None),
    "mae-finetuned": ("mae", mae_finetuned, "size", None), "mae-linprobe": ("mae", mae_linprobe, "size", None),
    "moco-v3": ("moco-v3", moco_v3, "size", "moco-v3"), "moco-v3-deit": ("moco-v3", moco_v3_deit, "size", None),
    "moco-v3-lincls": ("moco-v3", moco_v3_lincls, "size", "moco-v3"),
    "timm": ("timm", timm, "size-antialias", "timm"),
    "timm-headless": ("timm", timm_headless, "size-antialias", None),
    "timm-train": ("timm", timm_train, "size-antialias", "timm"),
}


def write_layout(layout: str, teacher: DinoViT, student: DinoViT, path: Path) -> Path:
    torch.save(LAYOUTS[layout][1](teacher, student), path)
    return path


# ---- DINOv2 (official_dinov2.py) --------------------------------------------------------------------------------


def dinov2_reference(registers: bool = False, ffn: str = "mlp", block_chunks: int = 0, seed: int = 0):
    """A small DINOv2 ViT-S (width 384, 2 blocks, 6 heads, patch 14, 56 px) as the hub builds it
    (hub/backbones.py: init_values 1.0; 4 registers, antialias and offset 0 for `_reg`), weights far from init."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "xFormers is not available"
        import official_dinov2
    torch.manual_seed(seed)
    # vit_small's definition (models/vision_transformer.py) with 2 blocks, and _make_dinov2_model's arguments
    model = official_dinov2.DinoVisionTransformer(
        img_size=56, patch_size=14, embed_dim=384, depth=2, num_heads=6, mlp_ratio=4,
        block_fn=partial(official_dinov2.Block, attn_class=official_dinov2.MemEffAttention), init_values=1.0,
        ffn_layer="swiglufused" if ffn == "swiglu" else "mlp", block_chunks=block_chunks,
        num_register_tokens=4 if registers else 0, interpolate_antialias=registers,
        interpolate_offset=0.0 if registers else 0.1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.pos_embed.normal_()
    return model


def dinov2_release(model) -> dict:
    """dinov2_vits14[_reg4]_pretrain.pth: the backbone's state_dict (with mask_token; the hub loads it strictly)."""
    return model.state_dict()


def dinov2_teacher(model) -> dict:
    """train.py do_test's eval/N/teacher_checkpoint.pth: {'teacher': the teacher ModuleDict's state_dict}."""
    dim = model.embed_dim
    heads = {"dino_head.mlp.0.weight": torch.randn(32, dim), "dino_head.last_layer.weight_g": torch.ones(64, 1),
             "ibot_head.mlp.0.weight": torch.randn(32, dim), "ibot_head.last_layer.weight_v": torch.randn(64, 32)}
    return {"teacher": {**_prefixed(model.state_dict(), "backbone."), **heads}}


def timm_dinov2(model) -> dict:
    """timm's vit_small_patch14_reg4_dinov2 weights: DINOv2's file through timm's `_convert_dinov2`
    (vision_transformer.py, verbatim), without its `model` argument."""
    import re

    state_dict = dict(model.state_dict())
    out_dict = {}
    state_dict.pop("mask_token", None)
    if 'register_tokens' in state_dict:
        out_dict['reg_token'] = state_dict.pop('register_tokens')
        out_dict['cls_token'] = state_dict.pop('cls_token') + state_dict['pos_embed'][:, 0]
        out_dict['pos_embed'] = state_dict.pop('pos_embed')[:, 1:]
    for k, v in state_dict.items():
        if re.match(r"blocks\.(\d+)\.mlp\.w12\.(?:weight|bias)", k):
            out_dict[k.replace("w12", "fc1")] = v
            continue
        elif re.match(r"blocks\.(\d+)\.mlp\.w3\.(?:weight|bias)", k):
            out_dict[k.replace("w3", "fc2")] = v
            continue
        out_dict[k] = v
    return out_dict


DINOV2_CASES = {  # name -> (registers, ffn, block_chunks, writer, source)
    "release": (False, "mlp", 0, dinov2_release, "dinov2"),
    "release-reg4": (True, "mlp", 0, dinov2_release, "dinov2"),
    "release-swiglu": (False, "swiglu", 0, dinov2_release, "dinov2"),
    "teacher-chunked": (False, "mlp", 2, dinov2_teacher, "dinov2"),
    "teacher-chunked-reg4": (True, "swiglu", 2, dinov2_teacher, "dinov2"),
    "timm-reg4": (True, "mlp", 0, timm_dinov2, "timm"),
    "timm-swiglu": (False, "swiglu", 0, timm_dinov2, "timm"),
}
