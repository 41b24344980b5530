import math

import pytest
import torch

from selfsup.methods.masking import (
    block_boxes,
    block_mask,
    cell_mask,
    dinov2_masks,
    random_mask,
    shuffle_of,
    subset_mask,
    uniform_mask,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("n,ratio", [(16, 0.75), (196, 0.75), (49, 0.6)])
def test_random_mask_has_exactly_the_ratio_and_differs_per_sample(n, ratio):
    mask, ids_shuffle, ids_restore = random_mask(32, n, ratio)
    keep = int(n * (1 - ratio))
    assert (mask.sum(dim=1) == n - keep).all()
    assert len({tuple(row.tolist()) for row in mask}) > 16  # per image, not one mask for the batch
    # ids_restore inverts the shuffle, and the shuffle lists the visible patches first
    assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore), torch.arange(n).expand(32, n))
    assert not torch.gather(mask, 1, ids_shuffle[:, :keep]).any()
    assert torch.gather(mask, 1, ids_shuffle[:, keep:]).all()


def test_shuffle_of_a_mask_puts_visible_patches_first_in_raster_order():
    mask = torch.tensor([[True, False, True, False], [False, True, True, False]])
    ids_shuffle, ids_restore = shuffle_of(mask)
    assert ids_shuffle.tolist() == [[1, 3, 0, 2], [0, 3, 1, 2]]
    assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore), torch.arange(4).expand(2, 4))


@pytest.mark.parametrize("h,w", [(4, 4), (14, 14), (6, 8)])
def test_uniform_mask_keeps_exactly_one_patch_per_2x2_block(h, w):
    mask = uniform_mask(64, h, w).view(64, h, w)
    visible_per_block = (~mask).view(64, h // 2, 2, w // 2, 2).sum(dim=(2, 4))
    assert (visible_per_block == 1).all()
    assert mask.float().mean() == 0.75
    places = (~mask).view(64, h // 2, 2, w // 2, 2)[:, 0, :, 0, :].reshape(64, 4).float().mean(0)
    assert (places > 0.1).all()  # every place of the block is used


def test_uniform_mask_refuses_odd_grids():
    with pytest.raises(ValueError, match="even sides"):
        uniform_mask(2, 7, 7)


def test_secondary_mask_hides_its_share_of_visible_tokens():
    hidden = subset_mask(16, 49, 0.25)
    assert (hidden.sum(dim=1) == 49 - int(49 * 0.75)).all()


@pytest.mark.parametrize("h,cell,ratio", [(14, 2, 0.6), (4, 1, 0.6), (12, 3, 0.5)])
def test_cell_mask_masks_whole_cells_at_simmim_count(h, cell, ratio):
    mask = cell_mask(8, h, h, cell, ratio).view(8, h // cell, cell, h // cell, cell)
    per_cell = mask.float().mean(dim=(2, 4))  # (B, cells, cells): each cell all or nothing
    assert ((per_cell == 0) | (per_cell == 1)).all()
    assert (per_cell.flatten(1).sum(1) == math.ceil((h // cell) ** 2 * ratio)).all()


@pytest.mark.parametrize("h,ratio", [(14, 0.4), (8, 0.4), (4, 0.4)])
def test_block_mask_hits_its_ratio_with_rectangles(h, ratio):
    torch.manual_seed(1)
    n, target = h * h, round(ratio * h * h)
    min_patches = max(1, round(16 * n / 196))
    ratios = []
    for _ in range(20):
        boxes = block_boxes(h, h, target, min_patches)
        union = torch.zeros(h, h, dtype=torch.bool)
        for top, left, bh, bw in boxes:  # each block a rectangle inside the grid, narrower than it
            assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= h and bh < h and bw < h
            assert bh * bw >= 1
            union[top:top + bh, left:left + bw] = True
        assert union.sum() <= target
        ratios.append(float(union.float().mean()))
    assert abs(sum(ratios) / len(ratios) - ratio) < 0.06, ratios
    mask = block_mask(32, h, h, ratio)
    assert abs(float(mask.float().mean()) - ratio) < 0.06
    assert len({tuple(row.tolist()) for row in mask}) > 16


def test_block_mask_blocks_have_beit_aspect_ratios():
    torch.manual_seed(2)
    shapes = [(bh, bw) for _ in range(50) for _, _, bh, bw in block_boxes(14, 14, 78, 16)]
    # aspect drawn in [0.3, 1/0.3], then each side rounded: a 16-patch block is at most 7 x 2 (3.5), and
    # blocks are only smaller than 16 when fewer patches than that are left to mask
    big = [(bh, bw) for bh, bw in shapes if bh * bw >= 16]
    assert len(big) > 50 and all(1 / 4.2 <= bh / bw <= 4.2 for bh, bw in big)
    assert sum(bh != bw for bh, bw in big) > len(big) / 2


def test_block_boxes_add_at_most_max_patches_each():
    """DINOv2's MaskingGenerator(max_num_patches=0.5 * h * w): each block adds at most that many new patches."""
    torch.manual_seed(3)
    taken, added = torch.zeros(14, 14, dtype=torch.bool), []
    for top, left, bh, bw in block_boxes(14, 14, 150, 4, max_patches=12):
        added.append(int((~taken[top:top + bh, left:left + bw]).sum()))
        taken[top:top + bh, left:left + bw] = True
    assert len(added) > 5 and max(added) <= 12 and sum(added) == int(taken.sum()) <= 150


def test_dinov2_masks_mask_half_the_images_with_ratios_spread_over_the_range():
    """collate.py: int(B x 0.5) images masked, the k-th smallest target int(N x U(r_k, r_k+1)) of the strata of
    linspace(0.1, 0.5, n + 1), the masked images shuffled over the batch; masking.py: no more than the target."""
    torch.manual_seed(4)
    B, h = 64, 14
    n = h * h
    masks = dinov2_masks(B, h, h, (0.1, 0.5), 0.5)
    assert masks.shape == (B, n) and masks.dtype == torch.bool
    counts = masks.sum(-1)
    masked = counts[counts > 0].sort().values
    assert len(masked) == B // 2
    bounds = torch.linspace(0.1, 0.5, B // 2 + 1)
    assert all(c <= int(n * bounds[k + 1]) for k, c in enumerate(masked.tolist()))  # each within its stratum's top
    assert masked[-1] > 0.4 * n and masked[0] < 0.15 * n  # the ratios cover the range
    assert (counts[: B // 2] > 0).sum() not in (0, B // 2)  # shuffled: the masked ones are not all first
    torch.manual_seed(4)
    assert torch.equal(dinov2_masks(B, h, h, (0.1, 0.5), 0.5), masks)  # from torch's RNG: a resume redraws them


def test_dinov2_masks_on_a_small_grid_and_without_masking():
    torch.manual_seed(5)
    masks = dinov2_masks(8, 4, 4, (0.1, 0.5), 0.5)
    assert (masks.sum(-1) > 0).sum() <= 4 and masks.sum(-1).max() <= 8
    assert not dinov2_masks(8, 4, 4, (0.1, 0.5), 0.0).any()


def test_batched_block_masks_draw_as_beits_generator_image_by_image():
    """block_masks (all images at once) against block_boxes (BEiT's MaskingGenerator, one image at a time): the
    same distribution of masked counts, never above an image's own target, every image within its target."""
    from selfsup.methods.masking import block_masks

    torch.manual_seed(6)
    h, min_patches, n_images = 14, 16, 300
    targets = torch.randint(20, 100, (n_images,))
    batched = block_masks(targets, h, h, min_patches).flatten(1).sum(-1)
    reference = []
    for t in targets.tolist():
        union = torch.zeros(h, h, dtype=torch.bool)
        for top, left, bh, bw in block_boxes(h, h, t, min_patches):
            union[top:top + bh, left:left + bw] = True
        reference.append(int(union.sum()))
    reference = torch.tensor(reference)
    assert (batched <= targets).all() and (batched > 0).all()
    assert abs(batched.float().mean() - reference.float().mean()) < 2.5  # patches; means of ~55
    assert abs(batched.float().std() / reference.float().std() - 1) < 0.2
    shortfall = (targets - batched).float().mean(), (targets - reference).float().mean()
    assert abs(shortfall[0] - shortfall[1]) < 2.5, shortfall
