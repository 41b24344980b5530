"""Crops from a 3x3 grid of cells, with a gap between them and a random jitter: the tiles of Noroozi & Favaro's
jigsaw puzzle (methods/jigsaw.py) and the patch pairs of Doersch et al.'s relative position
(methods/relative_position.py), both made for a whole batch at once.

The view (B, C, S, S) is cut into 3x3 cells of side S // 3 (the grid centred when 3 does not divide S). A
crop of side `tile` = cell / (1 + gap) sits in each cell it is asked for, shifted at random (per image, per
cell, per axis) within a range that keeps it inside its cell: two neighbouring crops are therefore at least
cell - tile - 2 x jitter pixels apart, a gap that hides the low-level cues (continuing edges and textures)
which would otherwise solve both tasks trivially.
On small images the sides are rounded: at 16 px the cells are 5 px, at 28 px 9 px; `fit_to_patches` then
resizes the crops to a whole number of ViT patches (one patch at least).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class GridGeometry:
    cell: int  # side of a grid cell
    tile: int  # side of a crop
    low: int  # smallest offset of a crop's corner in its cell, per axis
    high: int  # largest one (low = high: no jitter)
    origin: int  # offset of the 3 x cell grid in the view

    @classmethod
    def of(cls, size: int, gap: float, jitter: float | None = None) -> GridGeometry:
        """The grid of a view of side `size`: crops of side cell / (1 + gap) (at least 1 px); with `jitter`
        (a fraction of the crop side) each crop is centred in its cell and shifted by up to that much, inside
        the cell; without it (None) a crop may sit anywhere in its cell (the jigsaw's tiles)."""
        cell = size // 3
        if cell < 1:
            raise ValueError(f"a 3x3 grid needs views of 3 px at least, got {size} px")
        tile = max(1, min(cell, round(cell / (1 + gap))))
        if jitter is None:
            low, high = 0, cell - tile
        else:
            centre = (cell - tile) // 2
            shift = min(centre, round(jitter * tile))
            low, high = centre - shift, centre + shift
        return cls(cell, tile, low, high, (size - 3 * cell) // 2)


def sample_offsets(g: GridGeometry, batch: int, n: int, device: torch.device | None = None) -> torch.Tensor:
    """Offsets (B, n, 2) of n crops per image in their cells, (row, column) each drawn uniformly in
    [low, high] with the global torch RNG."""
    return torch.randint(g.low, g.high + 1, (batch, n, 2), device=device)


def corners(g: GridGeometry, cells: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Top-left corners (B, n, 2) as (row, column) in the view of crops in `cells` (B, n) (0..8, row-major)
    at `offsets` (B, n, 2) in their cells."""
    grid_pos = torch.stack([cells // 3, cells % 3], dim=-1)  # (B, n, 2) row and column of the cell
    return g.origin + grid_pos * g.cell + offsets


def crop(x: torch.Tensor, corners: torch.Tensor, side: int) -> torch.Tensor:
    """Square crops of side `side` of views x (B, C, S, S) at corners (B, n, 2) -> (B, n, C, side, side)."""
    ar = torch.arange(side, device=x.device)
    rows = corners[..., 0:1] + ar  # (B, n, side)
    cols = corners[..., 1:2] + ar
    b = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1, 1)
    out = x.permute(0, 2, 3, 1)[b, rows[..., :, None], cols[..., None, :]]  # (B, n, side, side, C)
    return out.permute(0, 1, 4, 2, 3)


def fit_to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Crops (N, C, t, t) resized (bilinear) to the nearest multiple of `patch`, one patch at least; unchanged
    when t already is one (always for ResNets, patch 1)."""
    side = max(patch, round(x.shape[-1] / patch) * patch)
    if side == x.shape[-1]:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                         antialias=side < x.shape[-1])
