"""A small reference copy of the official DINO ViT (facebookresearch/dino vision_transformer.py, num_classes=0,
qkv_bias=True, LayerNorm eps 1e-6) and writers of checkpoint files in each official layout, for the conversion
and export tests. Its parameter names, attention and position-embedding interpolation are the official ones;
nothing here imports selfsup."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
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
    """DINO's VisionTransformer; forward -> the normalised [CLS] token (B, D)."""

    def __init__(self, img_size=64, patch_size=8, in_chans=3, embed_dim=48, depth=2, num_heads=3) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Identity()

    def interpolate_pos_encoding(self, x, w, h):  # verbatim from DINO
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

    def forward(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]

    def get_last_selfattention(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks[:-1]:
            x = blk(x)
        return self.blocks[-1](x, return_attention=True)


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


LAYOUTS = {"dino-release": ("dino", dino_release), "dino-training": ("dino", dino_training),
           "mae": ("mae", mae_pretrain), "moco-v3": ("moco-v3", moco_v3), "timm": ("timm", timm)}


def write_layout(layout: str, teacher: DinoViT, student: DinoViT, path: Path) -> Path:
    torch.save(LAYOUTS[layout][1](teacher, student), path)
    return path
