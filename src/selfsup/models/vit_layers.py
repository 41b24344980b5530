"""The layers a ViT is built from (as facebookresearch/dinov2's `dinov2/layers/`): stochastic depth, the GELU MLP
and DINOv2's SwiGLU feed-forward, LayerScale, multi-head self-attention, the pre-norm block, and the two stems
(the patchify convolution, MoCo v3's convolutional stem). Parameter names follow the official codes, so that
official checkpoints load with `load_state_dict` (see `vit.py`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample with probability p."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """DINOv2's SwiGLUFFNFused (layers/swiglu_ffn.py): w3(silu(x1) * x2) with x1, x2 = w12(x).chunk(2), hidden
    width (int(hidden * 2 / 3) + 7) // 8 * 8, so 4 x 1536 -> 4096 in ViT-g/14."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = swiglu_hidden(hidden)
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


def swiglu_hidden(hidden: int) -> int:
    """The hidden width DINOv2's fused SwiGLU uses for an MLP of `hidden` units."""
    return (int(hidden * 2 / 3) + 7) // 8 * 8


FFNS = {"mlp": Mlp, "swiglu": SwiGLU}  # the feed-forward of each block: GELU MLP (ViT) or SwiGLU (DINOv2 ViT-g)


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (CaiT; DINOv2's layers/layer_scale.py), initialised to
    `init_values` (DINOv2: 1e-5 for training from scratch, 1.0 in its released models' definitions)."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, C/heads)
        if return_attention:  # explicit softmax: the maps are the output
            attn = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)  # (B, heads, N, N)
            out = attn @ v
        else:
            attn, out = None, F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(B, N, C))
        return (out, attn) if return_attention else out


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), x + ls2(ffn(norm2(x))), with stochastic depth on each
    branch; ls1, ls2 are LayerScales when `init_values` is given (DINOv2's Block), else identities."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float,
                 init_values: float | None = None, ffn: str = "mlp") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FFNS[ffn](dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if return_attention:
            y, attn = self.attn(self.norm1(x), return_attention=True)
        else:
            y, attn = self.attn(self.norm1(x)), None
        x = x + self.drop_path(self.ls1(y))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return (x, attn) if return_attention else x


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = self.stride = patch_size  # stride: pixels per token-grid cell
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def grid_size(self, H: int, W: int) -> tuple[int, int]:
        """The token grid (h, w) of an H x W input; its sides must be multiples of the patch size."""
        return H // self.patch_size, W // self.patch_size

    def fits(self, H: int, W: int) -> bool:
        """Whether an H x W input maps onto whole patches (else `forward` refuses it)."""
        return H % self.patch_size == 0 and W % self.patch_size == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(
                f"image size {H}x{W} is not divisible by patch size {self.patch_size}: "
                f"choose a crop size that is a multiple of {self.patch_size} (e.g. --global-size) "
                "or another --patch-size"
            )
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, h*w, D)


class ConvStem(nn.Module):
    """MoCo v3's convolutional stem (vits.py ConvStem, after Xiao et al., 2021, "Early convolutions help
    transformers see better") in place of the patchify layer: k = ceil(log2(patch)) 3x3 stride-2 convs with
    BatchNorm and ReLU, channels doubling up to D, then a 1x1 conv to D. (B, C, H, W) -> (B, h*w, D) with
    h = ceil(H / 2^k) for any H: each token covers a `stride` = 2^k-px cell (8 px at patch 7, so a 28-px crop maps to
    the 4 x 4 grid of 7-px patches and a 112-px image to 14 x 14)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        k = max(1, math.ceil(math.log2(patch_size)))
        self.stride = 2**k
        layers: list[nn.Module] = []
        c_in, c_out = in_chans, embed_dim // 2 ** (k - 1)
        for _ in range(k):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c_in, c_out = c_out, c_out * 2
        layers.append(nn.Conv2d(c_in, embed_dim, 1))
        self.proj = nn.Sequential(*layers)

    def grid_size(self, H: int, W: int) -> tuple[int, int]:
        """The token grid (h, w) of an H x W input: each stride-2 conv (kernel 3, padding 1) halves, rounding up."""
        return -(-H // self.stride), -(-W // self.stride)

    def fits(self, H: int, W: int) -> bool:
        """Every input size maps onto a whole grid (the last cells are padded by the convolutions)."""
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, h*w, D)
