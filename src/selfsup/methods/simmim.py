"""SimMIM (Xie et al., 2022), as microsoft/SimMIM (models/simmim.py, data/data_simmim.py); BEiT's block-wise
masking (Bao et al., 2022, microsoft/unilm beit/masking_generator.py) with `--simmim.mask block`.

The full image goes through the encoder, masked patches' embeddings replaced by one learned mask token
(before the position embeddings are added). A one-layer head (1x1 convolution to stride^2 x C, pixel
shuffle) predicts every pixel from the last block's patch tokens, and the loss is the L1 distance on the
masked pixels only, averaged over them and the channels. The mask hides 60% of square cells 32 px wide at
SimMIM's 192-224 px crops, i.e. 1/6-1/7 of the side: `--simmim.mask-patch-size` scales with the crop
(default: the multiple of the patch size nearest to 32/224 of the side, at least one patch).
BEiT predicts discrete visual tokens of a pre-trained dVAE tokenizer (DALL-E's), which cannot be downloaded
here: `--simmim.mask block` keeps BEiT's masking with SimMIM's pixel target (`target` names the target; a
tokenizer's codes would plug in as another target).
SimMIM's ViT uses relative position bias; selfsup's ViT has learned absolute position embeddings (its
`USE_APE: False` has no equivalent here), so the run's ViT is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import Method, one_view
from selfsup.methods.dense import PixelHead, tokens_to_map
from selfsup.methods.masking import block_mask, cell_mask
from selfsup.methods.recipe import optim
from selfsup.models.vit import VisionTransformer
from selfsup.options import opt

MASKS = ("simmim", "block")
TARGETS = ("pixels",)


@dataclass
class SimMIMConfig:
    mask: str = opt("simmim", "simmim (random square cells of --simmim.mask-patch-size px) or block (BEiT's "
                    "block-wise masking: rectangles of at least 16/196 of the patches, aspect 0.3-3.3, "
                    "up to --simmim.block-ratio of the patches).", paper="simmim", choices=MASKS)
    mask_ratio: float = opt(0.6, "Share of cells masked with --simmim.mask simmim. The paper finds 0.5-0.6 "
                            "best with 32-px cells (Table 1); smaller cells want higher ratios.", paper=0.6,
                            above=0, below=1)
    mask_patch_size: int | None = opt(None, "Side of a masked cell in px, a multiple of the patch size "
                                      "(default: 32/224 of the crop, rounded to a multiple of the patch).",
                                      paper=32, low=1)
    block_ratio: float = opt(75 / 196, "Share of patches masked with --simmim.mask block: round(ratio x "
                             "patches), BEiT's 75 of 196 (run_beit_pretraining.py --num_mask_patches 75 at 14x14; "
                             "the paper's \"about 40%\").", paper=75 / 196, above=0, below=1)
    target: str = opt("pixels", "What the head predicts: normalised pixels (L1). BEiT's dVAE tokens need a "
                      "pre-trained tokenizer that is not available offline.", paper="pixels", choices=TARGETS)


def simmim_loss(pred: torch.Tensor, x: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's loss: L1 on masked pixels, / (masked pixels + 1e-5) / channels. pred, x (B, C, H, W);
    pixel_mask (B, 1, H, W) in {0, 1}."""
    l1 = F.l1_loss(pred.float(), x.float(), reduction="none")
    return (l1 * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / x.shape[1]


def pixel_mask(mask: torch.Tensor, h: int, p: int) -> torch.Tensor:
    """Patch mask (B, h*w) bool -> pixel mask (B, 1, h*p, w*p) float."""
    B, L = mask.shape
    grid = mask.view(B, 1, h, L // h).float()
    return grid.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)


def default_cell(size: int, patch: int) -> int:
    """SimMIM's 32-px cell at 224 px, scaled to `size` and rounded to a multiple of `patch` (at least one)."""
    return max(1, round(size * 32 / 224 / patch)) * patch


# microsoft/SimMIM configs/vit_base__800ep/simmim_pretrain__vit_base__img224__800ep.yaml and main_simmim.py:
# AdamW (betas 0.9/0.999), base lr 1e-4 per 512 images (5e-5 per 256), weight decay 0.05, 10 warm-up
# epochs of 800, min lr 5e-6 per 512, gradient clipping 5.0 (config.py) of the global norm
# (torch.nn.utils.clip_grad_norm_ over all parameters, main_simmim.py), drop path 0.1; views
# RandomResizedCrop(scale 0.67-1, ratio 3/4-4/3) + flip, nothing else. Its ViT schedule is multi-step
# (x0.1 at epoch 700); selfsup's schedule is cosine, as SimMIM's Swin recipes. No weight decay on biases,
# norms, [CLS] and the position embeddings (optimizer.py get_pretrain_param_groups with the ViT's
# no_weight_decay() = {pos_embed, cls_token}, models/vision_transformer.py; the mask token is decayed).
RECIPES = {"vit": {"optim": optim("adamw", 5e-5, 0.05, 10, min_lr=2.5e-6, clip_grad=5.0, clip_mode="global",
                                     warmup_of=800),
                   "views": one_view((0.67, 1.0))}}


class SimMIM(Method):
    name = "simmim"
    config_class = SimMIMConfig
    recipes = RECIPES
    n_views = 1
    pooled_only = False
    families = ("vit",)
    no_weight_decay = ("backbone.cls_token", "backbone.pos_embed")

    def __init__(self, backbone: VisionTransformer, cfg: SimMIMConfig, n_global: int = 1) -> None:
        super().__init__(backbone, cfg, n_global)
        p = backbone.patch_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, backbone.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = PixelHead(backbone.embed_dim, backbone.patch_embed.proj.in_channels, p)
        if cfg.mask_patch_size is not None and cfg.mask_patch_size % p:
            raise ValueError(f"--simmim.mask-patch-size {cfg.mask_patch_size} is not a multiple of the patch "
                             f"size {p}: choose a multiple of {p}")

    def draw_mask(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h*w) bool over the patch grid of views (B, C, H, W) (drawn from torch's RNG, not the pixels)."""
        batch, size, device, p = x.shape[0], x.shape[-1], x.device, self.backbone.patch_size
        h = size // p
        if self.cfg.mask == "block":
            return block_mask(batch, h, h, self.cfg.block_ratio, device=device)
        cell = (self.cfg.mask_patch_size or default_cell(size, p)) // p
        return cell_mask(batch, h, h, cell, self.cfg.mask_ratio, device)

    def encode_masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W), mask (B, L) -> the last block's normalised patch tokens as a map (B, D, h, w)."""
        bb = self.backbone
        tokens = bb.encode(bb.prepare_tokens(x, mask, self.mask_token))  # (B, 1 + R + L, D)
        return tokens_to_map(tokens[:, bb.n_prefix:], x.shape[-2] // bb.patch_size)

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        x, p = views[0], self.backbone.patch_size
        mask = self.draw_mask(x)
        features = self.encode_masked(x, mask)  # (B, D, h, w)
        loss = simmim_loss(self.head(features), x, pixel_mask(mask, x.shape[-2] // p, p).to(x))
        if not diagnostics:
            return loss, {}
        return loss, {**collapse_logs(features.detach().mean(dim=(2, 3))), "masked": float(mask.float().mean())}

    @torch.no_grad()
    def reconstruct(self, view: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked input (masked patches at 0), prediction on the masked patches with the visible ones kept,
        and the original: (B, C, H, W) each, normalised."""
        p = self.backbone.patch_size
        mask = self.draw_mask(view)
        m = pixel_mask(mask, view.shape[-2] // p, p).to(view)
        pred = self.head(self.encode_masked(view, mask))
        return {"masked": view * (1 - m), "reconstruction": view * (1 - m) + pred * m, "original": view}
