"""Masked autoencoders (He et al., 2022), as facebookresearch/mae models_mae.py; UM-MAE's uniform masking
(Li et al., 2022, implus/UM-MAE models_mae.py, mask_transform.py) with `--mae.mask uniform`.

The encoder is the run's ViT and sees the visible patches only: patch embeddings plus (fixed sin-cos)
position embeddings, 75% of the patches dropped per image by a random shuffle, [CLS] prepended. A
lighter decoder embeds the encoded tokens to its own width, appends a shared mask token for each dropped
patch, restores the raster order, adds its own fixed sin-cos position embeddings, and predicts each
patch's p*p*C pixels. The loss is the mean squared error on the masked patches only, against targets
normalised per patch (`norm_pix_loss`: the paper's better representation, Table 1d).
UM-MAE keeps one random patch of every 2x2 block instead (exactly 75% masked, evenly spread), and
replaces a share of the visible tokens by a learned mask token in the encoder ("secondary masking",
0.25 in its recommended run), so that the encoder cannot just interpolate neighbours; the loss stays on
the 75%.
Decoder size: the paper's 512 wide x 8 blocks (16 heads of 32 channels) for its ViT-B/L/H, and with
`--mae.mask uniform` UM-MAE's 512 x 2 (its ViT-B runs, PRETRAIN.md: mae_vit_base_patch16_dec512d2b); for the
small presets (under 384 wide) the decoder defaults to the encoder's width and half its depth (vit-cpu:
128 x 2, 4 heads), keeping the paper's ratio of a decoder lighter than the encoder. The features evaluated are the
encoder's on the whole image (no masking), [CLS] by default: MAE does not train [CLS] directly, so k-NN
on it is weak by design (the paper reports linear probing and fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import Method, one_view
from selfsup.methods.masking import random_mask, shuffle_of, subset_mask, uniform_mask
from selfsup.methods.recipe import optim, section
from selfsup.models.vit import VisionTransformer, sincos_pos_embed
from selfsup.models.vit_layers import Block
from selfsup.options import opt

MASKS = ("random", "uniform")
UM_MAE_DECODER_DEPTH = 2  # implus/UM-MAE PRETRAIN.md: its ViT-B runs use mae_vit_base_patch16_dec512d2b


@dataclass
class MAEConfig:
    mask_ratio: float = opt(0.75, "Share of patches masked (random masking). The paper's ablation (Fig. 5) "
                            "peaks at 0.75 for both fine-tuning and linear probing; uniform masking is "
                            "always 0.75.", paper=0.75, above=0, below=1)
    mask: str = opt("random", "random (MAE: any patches, per image) or uniform (UM-MAE: one visible patch per "
                    "2x2 block; needs an even patch grid).", paper="random", choices=MASKS)
    secondary_ratio: float = opt(0.25, "With --mae.mask uniform, share of the visible tokens replaced by a "
                                 "mask token in the encoder (UM-MAE's vis_mask_ratio; 0 turns it off).",
                                 paper=0.25, low=0, below=1)
    norm_pix_loss: bool = opt(True, "Normalise each target patch by its own pixel mean and std (the paper's "
                              "default in its recommended runs: +0.5-1 point fine-tuning, better linear probe).",
                              paper=True)
    decoder_dim: int | None = opt(None, "Decoder width (default: 512, the paper's, for encoders 384 wide or "
                                  "more; else the encoder's width). Its own width lets a deep encoder keep "
                                  "a light decoder.", paper=512, low=4)
    decoder_depth: int | None = opt(None, "Decoder blocks (default: 8, the paper's, for encoders 384 wide or "
                                    "more, 2 with --mae.mask uniform as UM-MAE's runs (dec512d2b); else half "
                                    "the encoder's depth). A 1-block decoder is enough for fine-tuning; linear "
                                    "probing gains from 8 (paper Table 1a).", paper=8, low=1)
    decoder_head_dim: int = opt(32, "Channels per decoder attention head (the paper's 512 / 16 heads).",
                                paper=32, low=1)
    sincos_pos: bool = opt(True, "Fixed 2-D sin-cos position embeddings in the encoder (frozen), as the "
                           "paper; off keeps the ViT's learned ones.", paper=True)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, h*w, p*p*C), patches in raster order, each flattened as (row, col, channel)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(x: torch.Tensor, p: int, h: int, channels: int) -> torch.Tensor:
    """(B, h*w, p*p*C) -> (B, C, h*p, w*p): the inverse of `patchify`."""
    B, L, _ = x.shape
    w = L // h
    x = x.reshape(B, h, w, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, h * p, w * p)


def normalize_patches(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """norm_pix_loss targets: each patch (..., p*p*C) minus its mean, over sqrt(its unbiased variance + eps)."""
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps) ** 0.5


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked patches of the per-patch mean squared error: pred, target (B, L, P); mask (B, L)."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)  # (B, L)
    m = mask.float()
    return (per_patch * m).sum() / m.sum()


def mae_init(backbone: VisionTransformer, sincos: bool) -> None:
    """MAE's initialisation (initialize_weights): xavier-uniform Linear layers and patch projection (as a
    linear map), zero biases, normal(0.02) [CLS]; with `sincos`, fixed sin-cos position embeddings."""
    for m in backbone.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    w = backbone.patch_embed.proj.weight.data
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.normal_(backbone.cls_token, std=0.02)
    if sincos:
        n = backbone.pos_embed.shape[1] - 1
        side = int(n ** 0.5)
        backbone.pos_embed.data.copy_(sincos_pos_embed(backbone.embed_dim, side, side).unsqueeze(0))
        backbone.pos_embed.requires_grad_(False)


# facebookresearch/mae PRETRAIN.md and main_pretrain.py: AdamW betas (0.9, 0.95), blr 1.5e-4 x batch/256,
# weight decay 0.05 (not on norms and biases), 40 warm-up epochs of 800 (or 1600; a shorter run keeps their
# 5% share: --optim.warmup-max-share), cosine to 0, no gradient clipping; views
# RandomResizedCrop(scale 0.2-1, interpolation=3, bicubic) + flip, nothing else; no drop path.
RECIPES = {"vit": {"optim": optim("adamw", 1.5e-4, 0.05, 40, betas=(0.9, 0.95), warmup_of=800),
                   "views": one_view((0.2, 1.0), resample="bicubic"),
                   "backbone": section(drop_path=0.0)}}


class MAE(Method):
    name = "mae"
    config_class = MAEConfig
    recipes = RECIPES
    n_views = 1
    pooled_only = False
    families = ("vit",)

    def __init__(self, backbone: VisionTransformer, cfg: MAEConfig, n_global: int = 1) -> None:
        super().__init__(backbone, cfg, n_global)
        d = backbone.embed_dim
        small = d < 384
        dd = cfg.decoder_dim or (d if small else 512)
        depth = cfg.decoder_depth or (max(1, len(backbone.blocks) // 2) if small else
                                      UM_MAE_DECODER_DEPTH if cfg.mask == "uniform" else 8)
        if dd % cfg.decoder_head_dim or dd % 4:
            raise ValueError(f"--mae.decoder-dim {dd} must be a multiple of --mae.decoder-head-dim "
                             f"{cfg.decoder_head_dim} and of 4")
        side = int((backbone.pos_embed.shape[1] - 1) ** 0.5)  # patch grid of the crops it was built for
        if cfg.mask == "uniform" and side % 2:
            raise ValueError(f"--mae.mask uniform keeps one patch in each 2x2 block, but the crops make a {side}x"
                             f"{side} patch grid: choose a --views.global-size that is an even multiple of the "
                             f"patch size {backbone.patch_size} (or another --backbone.patch-size)")
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_blocks = nn.ModuleList(Block(dd, dd // cfg.decoder_head_dim, 4.0, 0.0) for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(dd, eps=1e-6)
        self.decoder_pred = nn.Linear(dd, backbone.patch_size ** 2 * backbone.patch_embed.proj.in_channels)
        # only where it is used: a parameter without a gradient makes DDP raise at its second step
        secondary = cfg.mask == "uniform" and cfg.secondary_ratio > 0
        self.vis_mask_token = nn.Parameter(torch.zeros(1, 1, d)) if secondary else None
        self._decoder_pos: dict[tuple, torch.Tensor] = {}  # (h, w, device, dtype) -> fixed sin-cos table
        mae_init(backbone, cfg.sincos_pos)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for token in (self.mask_token, self.vis_mask_token):
            if token is not None:
                nn.init.normal_(token, std=0.02)

    def draw_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For views (B, C, H, W): mask (B, h*w) bool, ids_shuffle (visible first) and ids_restore, per the
        configured masking (drawn from torch's RNG, not from the pixels)."""
        batch, device = x.shape[0], x.device
        h, w = x.shape[-2] // self.backbone.patch_size, x.shape[-1] // self.backbone.patch_size
        if self.cfg.mask == "uniform":
            mask = uniform_mask(batch, h, w, device)
            return (mask, *shuffle_of(mask))
        return random_mask(batch, h * w, self.cfg.mask_ratio, device)

    def visible_count(self, n: int) -> int:
        """Visible patches of n per image: one per 2x2 block (uniform), or int(n x (1 - ratio)) as MAE."""
        return n // 4 if self.cfg.mask == "uniform" else int(n * (1 - self.cfg.mask_ratio))

    def decoder_pos(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """The decoder's fixed sin-cos position table (1 + h*w, Dd), built once per grid, device and dtype."""
        key = (h, w, like.device, like.dtype)
        if key not in self._decoder_pos:
            self._decoder_pos[key] = sincos_pos_embed(like.shape[-1], h, w).to(like)
        return self._decoder_pos[key]

    def forward_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> latent (B, 1 + keep, D), mask (B, L), ids_restore (B, L)."""
        bb = self.backbone
        h, w = x.shape[-2] // bb.patch_size, x.shape[-1] // bb.patch_size
        pos = bb.interpolate_pos_encoding(h, w)  # (1, 1 + L, D)
        tokens = bb.patch_embed(x) + pos[:, 1:]  # (B, L, D), position added before masking
        B, L, D = tokens.shape
        mask, ids_shuffle, ids_restore = self.draw_mask(x)
        keep = ids_shuffle[:, : self.visible_count(L)]  # (B, keep); a count from the options: no host sync
        visible = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, D))  # (B, keep, D)
        if self.vis_mask_token is not None:
            hidden = subset_mask(B, keep.shape[1], self.cfg.secondary_ratio, x.device).unsqueeze(-1)
            token_pos = torch.gather(pos[:, 1:].expand(B, -1, -1), 1, keep.unsqueeze(-1).expand(-1, -1, D))
            visible = torch.where(hidden, self.vis_mask_token + token_pos, visible)
        cls = (bb.cls_token + pos[:, :1]).expand(B, -1, -1)
        latent = bb.encode(bb.insert_registers(torch.cat([cls, visible], dim=1)))  # (B, 1 + R + keep, D)
        return torch.cat([latent[:, :1], latent[:, bb.n_prefix:]], dim=1), mask, ids_restore  # registers dropped

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor, h: int) -> torch.Tensor:
        """latent (B, 1 + keep, D) -> predicted pixels of every patch (B, L, p*p*C)."""
        x = self.decoder_embed(latent)  # (B, 1 + keep, Dd)
        B, L = ids_restore.shape
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(B, L + 1 - x.shape[1], -1)], dim=1)  # shuffled
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # raster
        pos = self.decoder_pos(h, L // h, x)  # (1 + L, Dd), fixed
        x = torch.cat([x[:, :1], tokens], dim=1) + pos
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # [CLS] dropped

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        x, p = views[0], self.backbone.patch_size
        latent, mask, ids_restore = self.forward_encoder(x)
        pred = self.forward_decoder(latent, ids_restore, x.shape[-2] // p)
        target = patchify(x, p)
        loss = mae_loss(pred, normalize_patches(target) if self.cfg.norm_pix_loss else target, mask)
        if not diagnostics:
            return loss, {}
        return loss, {**collapse_logs(latent[:, 0].detach()), "masked": float(mask.float().mean())}

    @torch.no_grad()
    def reconstruct(self, view: torch.Tensor) -> dict[str, torch.Tensor]:
        """The paper's figure for a batch of normalised views (B, C, H, W): the masked input (masked patches
        at 0, the data mean), the reconstruction with the visible patches pasted back, and the original; with
        norm_pix_loss each predicted patch is brought back with its original's mean and std, as MAE's demo."""
        p, C, h = self.backbone.patch_size, view.shape[1], view.shape[-2] // self.backbone.patch_size
        latent, mask, ids_restore = self.forward_encoder(view)
        pred, target = self.forward_decoder(latent, ids_restore, h), patchify(view, p)
        if self.cfg.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            pred = pred * (var + 1e-6) ** 0.5 + mean
        m = mask.unsqueeze(-1).to(view.dtype)  # (B, L, 1)
        return {"masked": unpatchify(target * (1 - m), p, h, C),
                "reconstruction": unpatchify(target * (1 - m) + pred * m, p, h, C), "original": view}
