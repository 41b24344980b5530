"""Jigsaw puzzles (Noroozi & Favaro, ECCV 2016), as in the reference code bbrattoli/JigsawPuzzlePytorch.

Facts from its Dataset/JigsawImageLoader.py, JigsawNetwork.py and select_permutations.py (a PyTorch port;
the paper's own code is in Caffe) and from the paper.

The view is cut into a 3x3 grid of cells and a tile is taken at a random place in each cell (64 px:
RandomCrop(64) of each cell), so that no edge or texture runs on from one tile into the next
(methods/grid_crops.py). The paper (Fig. 3) cuts a 225-px crop into 75-px cells: tiles 0-22 px apart, a gap
of 75/64 - 1 = 0.17 of the tile; the PyTorch port at ec85994 cuts a 255-px crop into 85-px cells (its
first version, 0beb2bc, had the paper's 225 px): tiles 0-42 px apart, a gap of 0.33, our default. Each tile is
normalised by its own mean and standard deviation, per channel (JigsawImageLoader.py at ec85994; an earlier
commit used one mean and std over all channels; a constant tile keeps std 1), so that tiles cannot be
matched by their brightness or contrast. The tiles are shuffled by one of `n_permutations` fixed
permutations, drawn uniformly per image: position j of the puzzle holds tile perm[j] (data =
[tiles[perm[t]] for t in range(9)]). The context-free network encodes each tile with shared weights (here
one batched backbone forward of 9B tiles), maps it with a shared fc6 (512 wide in the paper, 1024 in the
reference code), concatenates the nine in puzzle order, and fc7 (4096) and fc8 classify the permutation;
dropout 0.5 after fc6 and fc7 (JigsawNetwork.py).
The permutation set is chosen greedily for large Hamming distances (paper Sec. 3.2, select_permutations.py):
start from a random one of the 9! permutations, then repeatedly add the permutation farthest from the set.
The reference code's "max" criterion is the largest mean distance to the set, which can add a permutation
2 swaps away from a chosen one; here it is the largest minimum distance, ties broken by the largest mean,
so the set's minimum distance is at least the mean-only variant's (seed 0: 6 against 2 for 100
permutations, 5 against 2 for 1000).
The paper also trains on 30% grayscale images (the views' `grayscale` in the recipe) against chromatic
aberration; its spatial jitter of each colour channel by 0-2 px is left out (it would move whole tiles of
small images), as is the reference code's per-channel intensity shift, which per-channel normalisation
removes anyway.
Small images: 16-px views give 5-px cells and 4-px tiles, 28-px views 9-px cells and 7-px tiles; for a ViT
the tiles are resized to a multiple of its patch size, one patch at least (grid_crops.fit_to_patches).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import Method, one_view
from selfsup.methods.grid_crops import GridGeometry, corners, crop, fit_to_patches, sample_offsets
from selfsup.methods.recipe import adamw_for_vit, optim
from selfsup.options import opt

N_TILES = 9


@dataclass
class JigsawConfig:
    n_permutations: int = opt(100, "Permutations to classify (the size of the fixed set). The paper finds "
                              "more permutations (with large Hamming distances) give better features, up to "
                              "1000; 100 learns faster on small data and short runs.", paper=1000,
                              low=2, high=362880)
    permutation_seed: int = opt(0, "Seed of the permutation set's first, random, permutation.", low=0)
    gap: float = opt(0.33, "Room around each tile in its cell, as a fraction of the tile side: tile = "
                     "cell / (1 + gap). The paper's 64-px tiles in 75-px cells of a 225-px crop are 0.17 (Fig. 3); "
                     "the default 0.33 is the PyTorch port's 85-px cells of a 255-px crop (JigsawImageLoader.py "
                     "at ec85994). Larger hides more of the low-level continuity between neighbours but keeps "
                     "less of the image.", paper=round(75 / 64 - 1, 2), low=0)
    tile_dim: int = opt(512, "Width of the shared per-tile layer fc6.", paper=512, low=1)
    hidden_dim: int = opt(1024, "Width of fc7, on the nine concatenated fc6 outputs. The CPU default is "
                          "smaller than the paper's 4096.", paper=4096, low=1)
    dropout: float = opt(0.5, "Dropout after fc6 and fc7.", paper=0.5, low=0, below=1)


@functools.lru_cache(maxsize=1)
def _all_permutations() -> tuple[np.ndarray, np.ndarray]:
    """The 9! permutations of range(9) (9!, 9), and for each position k and value v the indices of those
    with p[k] = v (9, 9, 8!)."""
    perms = np.array(list(itertools.permutations(range(N_TILES))), dtype=np.int8)
    where = np.stack([np.argsort(perms[:, k], kind="stable").reshape(N_TILES, -1) for k in range(N_TILES)])
    return perms, where


@functools.lru_cache(maxsize=16)
def hamming_permutations(n: int, seed: int = 0) -> np.ndarray:
    """n permutations of range(9) (n, 9), greedily far apart: a random first one, then each time the one with
    the largest minimum Hamming distance to those chosen, ties broken by the largest mean distance."""
    perms, where = _all_permutations()
    j = int(np.random.default_rng(seed).integers(len(perms)))
    chosen = [j]
    d_min = np.full(len(perms), N_TILES, dtype=np.int32)  # per candidate, over the chosen set
    d_sum = np.zeros(len(perms), dtype=np.int32)
    for _ in range(n - 1):
        same = np.bincount(where[np.arange(N_TILES), perms[j]].ravel(), minlength=len(perms))  # equal positions
        d = (N_TILES - same).astype(np.int32)  # (9!,) Hamming distances to the last chosen
        np.minimum(d_min, d, out=d_min)
        d_sum += d
        key = d_min * (16 * n)  # lexicographic (min, mean): d_sum < 16 n
        key += d_sum
        j = int(np.argmax(key))
        chosen.append(j)
    out = perms[chosen].astype(np.int64)
    out.setflags(write=False)
    return out


def normalize_tiles(tiles: torch.Tensor) -> torch.Tensor:
    """Each tile (N, C, h, w) to zero mean and unit (unbiased) std per channel; constant channels keep std 1."""
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    std = tiles.std(dim=(-2, -1), keepdim=True)
    return (tiles - mean) / torch.where(std > 1e-6, std, torch.ones_like(std))


def shuffle_tiles(tiles: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Tiles (B, 9, ...) in cell order -> puzzles (B, 9, ...) whose position j holds tile perms[b, j]."""
    return tiles[torch.arange(tiles.shape[0], device=tiles.device)[:, None], perms]


# Recipes: the paper trains an AlexNet-like network without BatchNorm (the reference code: SGD lr 0.001,
# weight decay 5e-4, steps); ResNets follow Goyal et al. (2019)'s ResNet-50 jigsaw, facebookresearch/vissl
# configs/config/pretrain/jigsaw/jigsaw_8gpu_resnet.yaml: SGD momentum 0.9, lr 0.1 at batch 256, weight
# decay 1e-4 (vissl: not on BatchNorm; here not on norms and biases), 5 warm-up epochs (0.047619 of 105),
# steps (a cosine here).
# Views: the whole image (a 255-px crop of the 256-px image), flips (vissl), 30% grayscale
# (JigsawImageLoader.py), no colour jitter or blur.
SGD = optim("sgd", 0.1, 1e-4, 5)
VIEWS = one_view((1.0, 1.0), grayscale=0.3)
RECIPES = {"resnet": {"optim": SGD, "views": VIEWS}, "vit": {"optim": adamw_for_vit(SGD), "views": VIEWS}}


class Jigsaw(Method):
    name = "jigsaw"
    config_class = JigsawConfig
    recipes = RECIPES
    n_views = 1

    def __init__(self, backbone: nn.Module, cfg: JigsawConfig, n_global: int = 1) -> None:
        super().__init__(backbone, cfg, n_global)
        perms = torch.from_numpy(hamming_permutations(cfg.n_permutations, cfg.permutation_seed).copy())
        self.register_buffer("permutations", perms, persistent=False)  # (n, 9), from the options alone
        self.n_classes = cfg.n_permutations
        self.fc6 = nn.Sequential(nn.Linear(backbone.embed_dim, cfg.tile_dim), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.classifier = nn.Sequential(nn.Linear(N_TILES * cfg.tile_dim, cfg.hidden_dim), nn.ReLU(),
                                        nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden_dim, cfg.n_permutations))

    def geometry(self, size: int) -> GridGeometry:
        return GridGeometry.of(size, self.cfg.gap)

    def draw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The random choices for views x (B, C, S, S): permutation indices (B,) and tile offsets (B, 9, 2)."""
        labels = torch.randint(0, self.n_classes, (x.shape[0],), device=x.device)
        return labels, sample_offsets(self.geometry(x.shape[-1]), x.shape[0], N_TILES, x.device)

    def puzzles(self, x: torch.Tensor, labels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Views (B, C, S, S) -> shuffled tiles (B, 9, C, t, t), not yet normalised."""
        g = self.geometry(x.shape[-1])
        cells = torch.arange(N_TILES, device=x.device).expand(x.shape[0], -1)  # (B, 9)
        tiles = crop(x, corners(g, cells, offsets), g.tile)  # (B, 9, C, t, t) in cell order
        return shuffle_tiles(tiles, self.permutations[labels])

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        x = views[0]
        labels, offsets = self.draw(x)
        tiles = self.puzzles(x, labels, offsets).flatten(0, 1)  # (9B, C, t, t)
        tiles = normalize_tiles(fit_to_patches(tiles, getattr(self.backbone, "patch_size", 1)))
        feats = self.backbone(tiles)  # (9B, D): one forward for all tiles
        logits = self.classifier(self.fc6(feats).view(x.shape[0], -1))  # (B, n_permutations)
        loss = F.cross_entropy(logits.float(), labels)
        if not diagnostics:
            return loss, {}
        return loss, {"acc": float((logits.argmax(-1) == labels).float().mean()), **collapse_logs(feats)}
