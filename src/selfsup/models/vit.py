"""Vision Transformer (ViT / DeiT / DINOv2) with DINO's conventions.

Parameter names follow the official DINO / DINOv2 / timm ViT (`cls_token`, `pos_embed`, `register_tokens`,
`patch_embed.proj`, `blocks.N.attn.qkv`, `blocks.N.ls1.gamma`, `blocks.N.mlp.fc1` or `blocks.N.mlp.w12`, `norm`,
...) so official checkpoints load with `load_state_dict`. What DINOv2's models add is optional here too
(facebookresearch/dinov2 `dinov2/models/vision_transformer.py`, `dinov2/layers/`): LayerScale (`init_values`),
register tokens (Darcet et al. 2024, between [CLS] and the patches), the SwiGLU feed-forward of ViT-g, and its
two ways of resizing position embeddings. Token order, as DINOv2's: [CLS], R registers, h*w patches (raster).
Position embeddings are interpolated (bicubic) to any crop size whose sides the patch size divides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.models.micro_batches import micro_batched
from selfsup.models.vit_layers import FFNS, Block, ConvStem, PatchEmbed


@dataclass(frozen=True)
class ViTPreset:
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    mlp_ratio: float = 4.0


# Official sizes (DeiT / DINO) and small CPU presets. Patch size is a default; any value may be passed.
VIT_PRESETS: dict[str, ViTPreset] = {
    "vit-tiny": ViTPreset(192, 12, 3, 16),
    "vit-small": ViTPreset(384, 12, 6, 16),
    "vit-base": ViTPreset(768, 12, 12, 16),
    "vit-large": ViTPreset(1024, 24, 16, 16),  # MAE's, MoCo v3's, DINOv2's ViT-L (patch 16 or 14)
    "vit-giant": ViTPreset(1536, 40, 24, 14),  # DINOv2's vit_giant2 (models/vision_transformer.py), SwiGLU
    # CPU presets for 28-32 px images: few tokens, shallow, so a 2-core CPU trains them in minutes.
    "vit-cpu": ViTPreset(128, 4, 4, 7),
    "vit-cpu-p4": ViTPreset(128, 4, 4, 4),
}


def pick_patch_size(preset_patch: int, image_size: int) -> int:
    """The preset's patch size if it cuts `image_size` into at least 4x4 patches, else the largest of
    16, 14, 8, 7, 4, 2 that divides it into at least 7x7 (e.g. 16 at 224 px, 4 at 28 or 32 px)."""
    if image_size % preset_patch == 0 and image_size // preset_patch >= 4:
        return preset_patch
    for p in (16, 14, 8, 7, 4, 2):
        if image_size % p == 0 and image_size // p >= 7:
            return p
    return 1


POOLS = ("cls", "mean", "cls+mean", "cls-last4", "patches")
TRAIN_POOLS = ("cls", "mean")  # what a pre-training head may read: one embed_dim vector, patch dropout allowed
# How position embeddings are resized to another patch grid, each bicubic: "size" (to h x w, no antialias: selfsup's
# own runs, MAE's util/pos_embed.py), "dino" (by the scale factor (h + 0.1) / side, no antialias: DINO's
# vision_transformer.py and DINOv2's original models, interpolate_offset 0.1) or "size-antialias" (to h x w,
# antialiased when shrinking: DINOv2's `_reg` models (hub/backbones.py: interpolate_antialias=True, offset 0) and
# timm's resample_abs_pos_embed).
POS_INTERPS = ("size", "dino", "size-antialias")
STEMS = ("patch", "conv")  # patchify conv (ViT) or MoCo v3's convolutional stem
LAST_BLOCKS = 4  # blocks whose CLS tokens "cls-last4" concatenates (DINO's --n_last_blocks for ViT-S)


class VisionTransformer(nn.Module):
    """ViT backbone. forward(x) -> pooled features (B, feature_dim): by default the CLS token.

    `pool` picks the feature, read from the normalised tokens (the final `norm`) of:
      - the last block: "cls" (the [CLS] token, D wide), "mean" (mean of the patch tokens, D) or "cls+mean"
        (both concatenated, 2D): DINO's linear evaluation of ViT-B (eval_linear.py `--n_last_blocks 1
        --avgpool_patchtokens true`; DINO interleaves the two vectors' coordinates, which no linear probe or
        k-NN sees); or "patches" (the h*w patch tokens in raster order, concatenated, h*w*D at the model's
        image size): the token grid keeps where each part of the image is, as raw pixels do, the counterpart
        of a ResNet's last feature map before its average pool; for small images only (it grows with the grid);
      - each of the last 4 blocks (`get_intermediate_layers`): "cls-last4", their CLS tokens concatenated
        (oldest first, 4D): DINO's linear evaluation of ViT-S (`--n_last_blocks 4`); min(4, depth) blocks
        for shallower ViTs.
    Register tokens never enter a feature ("mean" averages the patch tokens only). Pre-training heads read the CLS
    token (pool "cls"); evaluation uses the run's choice or `--feature`. `forward_features` gives every token kind
    at once, in DINOv2's dict.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        pool: str = "cls",
        pos_interp: str = "size",
        stem: str = "patch",
        init_values: float | None = None,
        num_register_tokens: int = 0,
        ffn: str = "mlp",
    ) -> None:
        super().__init__()
        for what, value, allowed in (("pool", pool, POOLS), ("pos_interp", pos_interp, POS_INTERPS),
                                     ("stem", stem, STEMS), ("ffn", ffn, tuple(FFNS))):
            if value not in allowed:
                raise ValueError(f"unknown ViT {what} {value!r}: choose one of {', '.join(allowed)}")
        if num_register_tokens < 0:
            raise ValueError(f"num_register_tokens must be 0 or more, got {num_register_tokens}")
        self.pos_interp = pos_interp
        self.embed_dim, self.patch_size, self.num_heads, self.pool = embed_dim, patch_size, num_heads, pool
        # PatchDropout: share of the patch tokens `forward` leaves out of each image in training (set from
        # --backbone.patch-dropout after construction; not part of the saved spec: evaluation sees all tokens).
        self.patch_dropout = 0.0
        self.micro_batches = 1  # parts of the batch per training forward (--optim.micro-batches)
        self.patch_embed = (ConvStem if stem == "conv" else PatchEmbed)(patch_size, in_chans, embed_dim)
        n_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, embed_dim))
        self.num_register_tokens = num_register_tokens
        # registers have no position embedding (DINOv2's prepare_tokens_with_masks inserts them after adding it)
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) \
            if num_register_tokens else None
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # stochastic depth grows with depth
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, r, init_values, ffn) for r in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)  # DINOv2's init_weights
        self.apply(_init_weights)

    @property
    def n_prefix(self) -> int:
        """Tokens before the patches: [CLS] and the registers."""
        return 1 + self.num_register_tokens

    @property
    def stride(self) -> int:
        """Pixels per token-grid cell: the patch size, or 2^k for the convolutional stem."""
        return self.patch_embed.stride

    def grid_size(self, H: int, W: int) -> tuple[int, int]:
        """The token grid (h, w) this ViT cuts an H x W input into."""
        return self.patch_embed.grid_size(H, W)

    def interpolate_pos_encoding(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for an h x w patch grid: (1, 1 + h*w, D), bicubic-resized from the stored grid
        the `pos_interp` way (see POS_INTERPS), in float32 as DINOv2 does."""
        n = self.pos_embed.shape[1] - 1
        if h * w == n and h == w:
            return self.pos_embed
        side = int(math.isqrt(n))
        grid = self.pos_embed[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, side, side)
        if self.pos_interp == "dino":
            grid = dino_resize_pos_grid(grid, h, w)
        else:
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False,
                                 antialias=self.pos_interp == "size-antialias")
        grid = grid.to(self.pos_embed.dtype)
        return torch.cat([self.pos_embed[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def prepare_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                       mask_token: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1 + R + h*w, D): [CLS] and patch embeddings plus position embeddings, then the R
        register tokens after [CLS]. With a boolean `mask` (B, h*w), masked patch embeddings are replaced by
        `mask_token` (1, 1, D) before the position embeddings are added (SimMIM's, BEiT's and iBOT's input)."""
        h, w = self.grid_size(*x.shape[-2:])
        x = self.patch_embed(x)  # (B, h*w, D)
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), mask_token.to(x.dtype), x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+h*w, D)
        return self.insert_registers(x + self.interpolate_pos_encoding(h, w))

    def insert_registers(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, D) tokens with [CLS] first -> (B, 1 + R + N, D) with the register tokens after [CLS], for
        callers that choose the tokens themselves (MAE's visible patches)."""
        if self.register_tokens is None:
            return x
        return torch.cat([x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Blocks and the final norm on prepared tokens (B, n, D) -> (B, n, D), for callers that choose the
        tokens themselves (MAE's visible patches, after `insert_registers`)."""
        return micro_batched(partial(self._layers, n=1, prepared=True), tokens, self.micro_batches, self)[0]

    @property
    def n_last_blocks(self) -> int:
        """Blocks the feature reads: min(4, depth) for "cls-last4", else 1 (the last)."""
        return min(LAST_BLOCKS, len(self.blocks)) if self.pool == "cls-last4" else 1

    @property
    def feature_dim(self) -> int:
        """Output width: D (cls, mean), 2D (cls+mean), min(4, depth) * D (cls-last4), h*w*D (patches)."""
        if self.pool == "patches":
            return self.embed_dim * (self.pos_embed.shape[1] - 1)
        return self.embed_dim * (2 if self.pool == "cls+mean" else self.n_last_blocks)

    def get_intermediate_layers(self, x: torch.Tensor, n: int = 1, drop: bool = False) -> list[torch.Tensor]:
        """Normalised tokens of the last n blocks, oldest first: n x (B, 1 + R + h*w, D), the shared final `norm`
        applied to each block's output (DINO's vision_transformer.py). With `drop`, a random share
        `patch_dropout` of the patch tokens is left out first: n x (B, 1 + R + keep, D), no longer a grid.
        In training with `micro_batches` > 1 this runs on parts of the batch (models/micro_batches.py)."""
        return list(micro_batched(partial(self._layers, n=n, drop=drop), x, self.micro_batches, self))

    def _layers(self, x: torch.Tensor, n: int, drop: bool = False, prepared: bool = False, norm: bool = True
                ) -> tuple[torch.Tensor, ...]:
        if not prepared:
            x = self.prepare_tokens(x)
            x = drop_patches(x, self.patch_dropout, self.n_prefix) if drop else x
        out = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if len(self.blocks) - i <= n:
                out.append(self.norm(x) if norm else x)
        return tuple(out)

    def forward_features(self, x: torch.Tensor, masks: torch.Tensor | None = None,
                         mask_token: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """Every token kind of the last block from one call, as DINOv2's `forward_features`: (B, C, H, W) ->
        {"x_norm_clstoken": (B, D), "x_norm_regtokens": (B, R, D), "x_norm_patchtokens": (B, h*w, D) in raster
        order, "x_prenorm": (B, 1 + R + h*w, D), "masks": masks}. `masks` (B, h*w) bool replaces those patch
        embeddings by `mask_token` first (iBOT's student input)."""
        tokens = self.prepare_tokens(x, masks, mask_token)  # (B, 1 + R + h*w, D)
        x = micro_batched(partial(self._layers, n=1, prepared=True, norm=False), tokens, self.micro_batches, self)[0]
        x_norm = self.norm(x)
        r = self.n_prefix
        return {"x_norm_clstoken": x_norm[:, 0], "x_norm_regtokens": x_norm[:, 1:r],
                "x_norm_patchtokens": x_norm[:, r:], "x_prenorm": x, "masks": masks}

    def forward_patch_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised patch tokens of the last block as a grid: (B, C, H, W) -> (B, D, h, w)."""
        h, w = self.grid_size(*x.shape[-2:])
        tokens = self.forward_features(x)["x_norm_patchtokens"]  # (B, h*w, D)
        return tokens.transpose(1, 2).reshape(len(x), -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, feature_dim)
        drop = self.training and self.patch_dropout > 0  # pooled features only: token grids stay whole
        if drop and self.pool == "patches":
            raise ValueError("the patches feature reads the whole token grid: patch dropout cannot apply to it")
        layers = self.get_intermediate_layers(x, self.n_last_blocks, drop)  # n x (B, 1 + R + h*w, D)
        if self.pool == "cls-last4":
            return torch.cat([t[:, 0] for t in layers], dim=-1)  # (B, n*D), as DINO's eval_linear.py
        return pool_tokens(layers[0], self.pool, self.n_prefix)

    def get_last_selfattention(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax attention of the last block: (B, heads, T, T), T = 1 + R + h*w tokens in `prepare_tokens`'
        order ([CLS], registers, patches)."""
        x = self.prepare_tokens(x)
        for blk in self.blocks[:-1]:
            x = blk(x)
        return self.blocks[-1](x, return_attention=True)[1]

    def get_selfattentions(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Softmax attention of every block, first to last: depth x (B, heads, T, T), T = 1 + R + h*w."""
        x, out = self.prepare_tokens(x), []
        for blk in self.blocks:
            x, attn = blk(x, return_attention=True)
            out.append(attn)
        return out


def state_on_grid(source: nn.Module, target: nn.Module) -> dict[str, torch.Tensor]:
    """`source`'s state dict with, when both are ViTs, its position embeddings resampled to `target`'s grid by
    `source`'s own interpolation (`interpolate_pos_encoding`): (1, 1 + side^2, D) for target's side. What starts
    one network from another's weights (`--init`, weight selection) loads."""
    state = dict(source.state_dict())
    if isinstance(source, VisionTransformer) and isinstance(target, VisionTransformer):
        side = math.isqrt(target.pos_embed.shape[1] - 1)
        with torch.no_grad():
            state["pos_embed"] = source.interpolate_pos_encoding(side, side).detach().clone()
    return state


def sincos_pos_embed(dim: int, h: int, w: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings (MAE's util/pos_embed.py get_2d_sincos_pos_embed) for an
    h x w grid in raster order: (1 + h*w, dim) with a zero row for [CLS] first, or (h*w, dim). Half of the
    channels encode the column, half the row, each as sin and cos of position x 10000^(-2i/(dim/2))."""
    if dim % 4:
        raise ValueError(f"sine-cosine position embeddings need a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # (dim/4,)

    def one_axis(pos: torch.Tensor) -> torch.Tensor:  # (h, w) -> (h*w, dim/2)
        out = pos.reshape(-1, 1) * omega
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([one_axis(cols), one_axis(rows)], dim=1).float()  # MAE: column (x) first, then row
    return torch.cat([emb.new_zeros(1, dim), emb]) if cls_token else emb


def drop_patches(tokens: torch.Tensor, ratio: float, prefix: int = 1) -> torch.Tensor:
    """PatchDropout (Liu et al., 2023; FLIP's masking, Li et al., 2023): keep a random max(1, int(N * (1 -
    ratio))) of the N patch tokens of each image, in raster order, and the `prefix` tokens ([CLS], registers)
    always: (B, P + N, D) -> (B, P + keep, D). Position embeddings are already added, so the kept tokens keep
    their places."""
    b, n, d = tokens.shape[0], tokens.shape[1] - prefix, tokens.shape[2]
    keep = max(1, int(n * (1 - ratio)))
    ids = torch.rand(b, n, device=tokens.device).argsort(dim=1)[:, :keep].sort(dim=1).values  # (B, keep)
    patches = torch.gather(tokens[:, prefix:], 1, ids.unsqueeze(-1).expand(-1, -1, d))
    return torch.cat([tokens[:, :prefix], patches], dim=1)


def dino_resize_pos_grid(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(1, D, side, side) position grid -> (1, D, h, w) as DINO's `interpolate_pos_encoding`: bicubic with the
    scale factors (h + 0.1) / side and (w + 0.1) / side, which sample other points than resizing to h x w (the
    0.1 keeps floor(side * scale) at h; facebookresearch/dino issue 8)."""
    side = grid.shape[-1]
    return F.interpolate(grid, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic",
                         align_corners=False)


def pool_tokens(tokens: torch.Tensor, pool: str, prefix: int = 1) -> torch.Tensor:
    """(B, P + N, D) tokens of one block, [CLS] and registers first (P of them) -> (B, D) CLS, (B, D) mean of
    the N patch tokens, (B, 2D) both, or (B, N*D) the patch tokens in raster order."""
    if pool == "cls":
        return tokens[:, 0]
    if pool == "patches":
        return tokens[:, prefix:].flatten(1)
    mean = tokens[:, prefix:].mean(dim=1)
    if pool == "mean":
        return mean
    if pool == "cls+mean":
        return torch.cat([tokens[:, 0], mean], dim=1)
    raise ValueError(f"pool {pool!r} is not one of one block's tokens: the ViT's forward computes it")


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def vit(name: str, img_size: int, in_chans: int, patch_size: int | None = None, drop_path_rate: float = 0.0,
        pool: str = "cls", width: int | None = None, depth: int | None = None, num_heads: int | None = None,
        pos_interp: str = "size", stem: str = "patch", init_values: float | None = None, registers: int = 0,
        ffn: str = "mlp") -> VisionTransformer:
    """Build a preset ViT ('vit-tiny', 'vit-small', 'vit-base', 'vit-cpu', ...) for img_size crops; `width`
    and `depth` override the preset's, keeping its width per attention head unless `num_heads` is given (MoCo v3's
    ViT-S has 12 heads of 32 channels where DINO's has 6 of 64). `pos_interp`: see POS_INTERPS; `init_values`
    (LayerScale), `registers` and `ffn` ("mlp" or "swiglu"): see VisionTransformer."""
    p = VIT_PRESETS[name]
    head_dim = p.embed_dim // p.num_heads
    width = width or p.embed_dim
    if num_heads is None and width % head_dim:
        raise ValueError(f"--backbone.width {width} is not a multiple of {name}'s {head_dim} channels per "
                         f"attention head: choose a multiple of {head_dim}")
    return VisionTransformer(img_size=img_size, patch_size=patch_size or p.patch_size, in_chans=in_chans,
                             embed_dim=width, depth=depth or p.depth, num_heads=num_heads or width // head_dim,
                             mlp_ratio=p.mlp_ratio, drop_path_rate=drop_path_rate, pool=pool,
                             pos_interp=pos_interp, stem=stem, init_values=init_values,
                             num_register_tokens=registers, ffn=ffn)
