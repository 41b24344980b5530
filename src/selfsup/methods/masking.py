"""Which patches masked image modelling hides: the masks of MAE, UM-MAE, SimMIM and BEiT.

Every mask is boolean over the patch grid in raster order, (B, h*w), True where a patch is masked, drawn
from torch's global RNG (so a resumed run draws the same masks) and different for every image:
  - `random_mask`   MAE (models_mae.py random_masking): argsort of uniform noise, the first
                    int(L * (1 - ratio)) patches of the shuffle stay visible; also returns the shuffle and
                    its inverse `ids_restore`, with which the decoder puts tokens back in place.
  - `uniform_mask`  UM-MAE (mask_transform.py, `regular`): one visible patch in each 2x2 block, at a random
                    place in the block, so exactly 75% are masked and the visible ones stay evenly spread.
  - `cell_mask`     SimMIM (data_simmim.py MaskGenerator): ceil(ratio x cells) random cells of `cell` x
                    `cell` patches masked (32-px cells at 192-224 px: 2x2 ViT patches of 16 px).
  - `block_mask`    BEiT (masking_generator.py): rectangles of at least `min_patches` patches with aspect
                    ratio in [0.3, 1/0.3] added until about `ratio` of the grid is masked.
  - `dinov2_masks`  iBOT/DINOv2 (dinov2/data/collate.py collate_data_and_cast + masking.py MaskingGenerator):
                    BEiT's blocks on a share `probability` of the images, with ratios spread over `ratio_range`
                    (stratified over the batch), at most half the grid per block; the other images unmasked.
"""

from __future__ import annotations

import math

import torch


def random_mask(batch: int, n: int, ratio: float, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-sample shuffle: -> mask (B, n) bool, ids_shuffle (B, n) visible first, ids_restore (B, n)."""
    keep = int(n * (1 - ratio))
    ids_shuffle = torch.argsort(torch.rand(batch, n, device=device), dim=1)  # ascending noise: kept first
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, n, device=device)
    mask[:, :keep] = 0
    return torch.gather(mask, 1, ids_restore).bool(), ids_shuffle, ids_restore


def shuffle_of(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A shuffle that puts a mask's visible patches first (in raster order), and its inverse: (B, n) each.
    Every row must mask the same number of patches."""
    ids_shuffle = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    return ids_shuffle, torch.argsort(ids_shuffle, dim=1)


def uniform_mask(batch: int, h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """UM-MAE's uniform sampling on an h x w grid (both even): (B, h*w) bool, one visible patch per 2x2 block."""
    if h % 2 or w % 2:
        raise ValueError(f"uniform masking keeps one patch in each 2x2 block: the {h}x{w} patch grid must have "
                         "even sides (choose a crop size that is an even multiple of the patch size)")
    pick = torch.randint(0, 4, (batch, h // 2, w // 2), device=device)  # visible place in each block
    blocks = torch.ones(batch, h // 2, w // 2, 4, dtype=torch.bool, device=device)
    blocks.scatter_(-1, pick.unsqueeze(-1), False)
    grid = blocks.view(batch, h // 2, w // 2, 2, 2).permute(0, 1, 3, 2, 4)  # (B, h/2, 2, w/2, 2)
    return grid.reshape(batch, h * w)


def subset_mask(batch: int, n: int, ratio: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """UM-MAE's secondary masking: int(n * (1 - ratio)) of n tokens kept per sample -> (B, n) bool, True =
    replaced by the mask token."""
    return random_mask(batch, n, ratio, device)[0]


def cell_mask(batch: int, h: int, w: int, cell: int, ratio: float, device: torch.device | str = "cpu"
              ) -> torch.Tensor:
    """SimMIM's mask: ceil(ratio x cells) of the (h/cell) x (w/cell) cells masked, each cell x cell patches
    -> (B, h*w) bool."""
    if h % cell or w % cell:
        raise ValueError(f"mask cells of {cell} patches do not tile the {h}x{w} patch grid: choose a mask "
                         "patch size that divides the crop")
    ch, cw = h // cell, w // cell
    count = math.ceil(ch * cw * ratio)
    order = torch.argsort(torch.rand(batch, ch * cw, device=device), dim=1)
    cells = torch.zeros(batch, ch * cw, dtype=torch.bool, device=device)
    cells.scatter_(1, order[:, :count], True)
    grid = cells.view(batch, ch, 1, cw, 1).expand(batch, ch, cell, cw, cell)
    return grid.reshape(batch, h * w)


def block_boxes(h: int, w: int, target: int, min_patches: int, aspect: float = 0.3, attempts: int = 10,
                max_patches: float | None = None) -> list[tuple[int, int, int, int]]:
    """BEiT's MaskingGenerator for one image: rectangles (top, left, height, width) whose union masks at most
    `target` patches, each of at least `min_patches` patches and aspect ratio in [aspect, 1/aspect]. A block
    is kept only if it adds between 1 and the remaining count of new patches (at most `max_patches`: DINOv2's
    max_num_patches); after `attempts` failed tries in a row the image stops short of the target."""
    taken = torch.zeros(h, w, dtype=torch.bool)
    boxes: list[tuple[int, int, int, int]] = []
    count, log_aspect = 0, (math.log(aspect), math.log(1 / aspect))
    while count < target:
        added = 0
        for r in torch.rand(attempts, 4).tolist():
            left_over = min(target - count, max_patches if max_patches is not None else target)
            area = min_patches + r[0] * (left_over - min_patches)
            ratio = math.exp(log_aspect[0] + r[1] * (log_aspect[1] - log_aspect[0]))
            bh, bw = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if not (0 < bh < h and 0 < bw < w):
                continue
            top, left = int(r[2] * (h - bh + 1)), int(r[3] * (w - bw + 1))
            new = bh * bw - int(taken[top:top + bh, left:left + bw].sum())
            if 0 < new <= left_over:
                taken[top:top + bh, left:left + bw] = True
                boxes.append((top, left, bh, bw))
                added = new
                break
        if not added:
            break
        count += added
    return boxes


def block_masks(targets: torch.Tensor, h: int, w: int, min_patches: int, aspect: float = 0.3, attempts: int = 10,
                max_patches: float | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """`block_boxes` for a batch at once, on `device`: targets (B,) int -> masks (B, h, w) bool. Each round draws
    `attempts` candidate blocks for every image still short of its target, keeps each image's first candidate
    that adds between 1 and its remaining count of new patches, and retires the images with none (BEiT's
    MaskingGenerator, image by image, stops after `attempts` failed tries in a row too): the same distribution
    of masks, in a few tensor operations a block rather than a Python loop over images and tries."""
    targets = targets.to(device=device, dtype=torch.long)
    B = len(targets)
    taken = torch.zeros(B, h, w, dtype=torch.bool, device=device)
    count = torch.zeros(B, dtype=torch.long, device=device)
    active = targets > 0
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    lo, hi = math.log(aspect), math.log(1 / aspect)
    for _ in range(h * w):  # each round masks at least one new patch of every image it keeps active
        if not bool(active.any()):
            break
        r = torch.rand(B, attempts, 4, device=device)
        left_over = targets - count  # (B,)
        if max_patches is not None:
            left_over = left_over.clamp(max=int(max_patches))
        area = min_patches + r[..., 0] * (left_over[:, None] - min_patches)  # (B, A)
        ratio = torch.exp(lo + r[..., 1] * (hi - lo))
        bh, bw = torch.round(torch.sqrt(area * ratio)).long(), torch.round(torch.sqrt(area / ratio)).long()
        fits = (bh > 0) & (bh < h) & (bw > 0) & (bw < w)
        top = (r[..., 2] * (h - bh + 1)).long()
        left = (r[..., 3] * (w - bw + 1)).long()
        inside = ((rows >= top[..., None]) & (rows < (top + bh)[..., None]))[..., :, None] & \
                 ((cols >= left[..., None]) & (cols < (left + bw)[..., None]))[..., None, :]  # (B, A, h, w)
        new = (inside & ~taken[:, None]).flatten(2).sum(-1)  # (B, A) patches a candidate would add
        ok = fits & (new > 0) & (new <= left_over[:, None]) & active[:, None]
        first = ok.float().argmax(dim=1)  # (B,) the first acceptable candidate
        chosen = ok.any(dim=1)
        pick = inside[torch.arange(B, device=device), first]  # (B, h, w)
        taken |= pick & chosen[:, None, None]
        count += torch.where(chosen, new[torch.arange(B, device=device), first], 0)
        active &= chosen & (count < targets)
    return taken


def block_mask(batch: int, h: int, w: int, ratio: float = 75 / 196, min_patches: int | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """BEiT's block-wise mask for each image -> (B, h*w) bool: up to round(ratio x h x w) patches, BEiT's 75
    of 196 by default (run_beit_pretraining.py --num_mask_patches 75). `min_patches` defaults to BEiT's 16 of
    a 14x14 grid (--min_mask_patches_per_block) scaled to this grid's size (at least 1): 16 patches would not
    fit in a 4x4 grid."""
    n = h * w
    min_patches = min_patches or max(1, round(16 * n / 196))
    targets = torch.full((batch,), round(ratio * n))
    return block_masks(targets, h, w, min_patches).view(batch, n).to(device)  # drawn on the host: CPU RNG, no syncs


def dinov2_masks(batch: int, h: int, w: int, ratio_range: tuple[float, float] = (0.1, 0.5),
                 probability: float = 0.5, min_patches: int | None = None, max_share: float = 0.5,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """DINOv2's masks for a batch of global crops -> (B, h*w) bool (dinov2/data/collate.py): int(B x
    `probability`) images are masked, image i of them with int(h*w x U(r_i, r_i+1)) patches as the target of
    BEiT's blocks, r_0..r_n the n + 1 evenly spaced points of `ratio_range` (so the ratios cover the range over
    the batch); the others not at all; the masks are shuffled over the batch. Blocks have at least
    `min_patches` (DINOv2's 4 of a 14x14 or 16x16 grid, scaled to this grid as `block_mask` does) and add at most
    `max_share` of the grid each (train.py: max_num_patches = 0.5 x h x w). The ratios are drawn at once, the
    blocks of every image together (`block_masks`)."""
    n = h * w
    n_masked = int(batch * probability)
    bounds = torch.linspace(*ratio_range, n_masked + 1)
    ratios = bounds[:-1] + torch.rand(n_masked) * (bounds[1:] - bounds[:-1])  # (n_masked,) one per stratum
    targets = torch.cat([(n * ratios).int(), torch.zeros(batch - n_masked, dtype=torch.int32)])[torch.randperm(batch)]
    min_patches = min_patches or max(1, round(4 * n / 196))
    return block_masks(targets, h, w, min_patches, max_patches=max_share * n).view(batch, n).to(device)
