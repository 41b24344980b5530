import pytest
import torch

from selfsup.methods.grid_crops import GridGeometry, corners, sample_offsets
from selfsup.methods.relative_position import NOISE_STD, RelativePosition, RelativePositionConfig, drop_colors

# (row, column) step from the centre cell to the neighbour of each label: reading order, paper Fig. 2
OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def method_for(channels: int = 1, **options) -> RelativePosition:
    from selfsup.models.vit import VisionTransformer

    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=channels, embed_dim=32, depth=2, num_heads=2)
    method = RelativePosition(vit, RelativePositionConfig(hidden_dim=16, **options))
    method.prepare_data(torch.zeros(1, channels, 4, 4, dtype=torch.uint8), [0.4] * channels, [0.2] * channels)
    return method


@pytest.mark.parametrize("size, gap", [(16, 0.5), (28, 0.5), (60, 0.5), (17, 0.5), (17, 0.0), (29, 0.0), (62, 0.0)])
def test_the_label_names_the_neighbours_cell(cell_image, size, gap):
    """Sizes 17, 29 and 62 centre the grid 1 px from the view's corner; with no gap (and so no jitter) each
    patch fills its cell, so a patch placed off the grid's origin would take in a row of its neighbour's."""
    method = method_for(gap=gap)
    x = cell_image(64, size)
    labels, offsets = method.draw(x)
    pairs = method.pairs(x, labels, offsets)  # (B, 2, C, p, p)
    cells = pairs[:, :, 0, 0, 0].long() // 10  # every pixel of a patch holds its cell's value
    assert torch.equal(pairs, (10 * cells[..., None] + torch.arange(3)).float()[..., None, None].expand_as(pairs))
    assert (cells[:, 0] == 4).all()
    step = torch.stack([cells[:, 1] // 3 - 1, cells[:, 1] % 3 - 1], dim=1)
    assert torch.equal(step, torch.tensor(OFFSETS)[labels])
    assert set(labels.tolist()) == set(range(8))


def test_patches_stay_in_their_cells_and_apart_by_the_gap():
    assert GridGeometry.of(16, 0.5, 0.073) == GridGeometry(cell=5, tile=3, low=1, high=1, origin=0)
    assert GridGeometry.of(28, 0.5, 0.073) == GridGeometry(cell=9, tile=6, low=1, high=1, origin=0)
    assert GridGeometry.of(29, 0.5, 0.073) == GridGeometry(cell=9, tile=6, low=1, high=1, origin=1)
    g = GridGeometry.of(432, 0.5, 0.073)  # the paper's 96-px patches, 48-px gaps, up to 7 px of jitter
    assert (g.cell, g.tile, g.high - g.low) == (144, 96, 14)
    cells = torch.arange(9).repeat(4000, 1)  # (B, 9)
    offsets = sample_offsets(g, 4000, 9)
    assert set(offsets.flatten().tolist()) == set(range(g.low, g.high + 1))
    top_left = corners(g, cells, offsets)  # (B, 9, 2)
    cell_corner = g.origin + torch.stack([cells // 3, cells % 3], -1) * g.cell
    inside = top_left - cell_corner
    assert inside.min() >= 0 and (inside + g.tile).max() <= g.cell
    # horizontal neighbours (columns 0-1, 1-2) and vertical ones: the gap minus the two jitters at least
    right_gap = top_left[:, [1, 2, 4, 5, 7, 8], 1] - (top_left[:, [0, 1, 3, 4, 6, 7], 1] + g.tile)
    down_gap = top_left[:, 3:, 0] - (top_left[:, :6, 0] + g.tile)
    smallest = g.cell - g.tile - (g.high - g.low)  # 48 - 14 = 34 px
    assert min(right_gap.min(), down_gap.min()) == smallest == 34


def test_colour_dropping_keeps_exactly_one_channel_per_patch():
    patches = torch.randn(200, 2, 3, 4, 4) + 3
    out = drop_colors(patches)
    same = (out == patches).flatten(3).all(-1)  # (B, 2, 3) channel kept whole
    assert (same.sum(-1) == 1).all()
    assert set(same.float().argmax(-1).flatten().tolist()) == {0, 1, 2}  # each channel is sometimes kept
    noise = out[~same]
    assert noise.abs().max() < 10 * NOISE_STD and 0.5 * NOISE_STD < noise.std() < 2 * NOISE_STD


def test_gray_patches_have_equal_channels_and_one_channel_data_is_untouched():
    method = method_for(3, color="gray")
    patches = torch.randn(4, 2, 3, 5, 5)
    pixels = method.pixels(method.guard_colors(patches))
    assert torch.allclose(pixels[:, :, 0], pixels[:, :, 1], atol=1e-6)
    assert torch.allclose(pixels[:, :, 0], pixels[:, :, 2], atol=1e-6)
    assert torch.equal(method_for(3, color="keep").guard_colors(patches), patches)
    one = torch.randn(4, 2, 1, 5, 5)
    assert torch.equal(method_for(1, color="drop").guard_colors(one), one)


def test_loss_is_the_cross_entropy_of_the_neighbour_position():
    method = method_for()
    x = torch.randn(5, 1, 16, 16)
    torch.manual_seed(4)
    loss, logs = method([x], 0, diagnostics=True)
    torch.manual_seed(4)
    labels, offsets = method.draw(x)
    pairs = method.pairs(x, labels, offsets).flatten(0, 1)  # (10, 1, 3, 3)
    big = torch.nn.functional.interpolate(pairs, size=4, mode="bilinear", align_corners=False)  # one ViT patch
    logits = method.classifier(method.fc6(method.backbone(big)).reshape(5, 32))
    p = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    assert torch.allclose(loss, -p[torch.arange(5), labels].log().mean(), atol=1e-5)
    assert set(logs) == {"acc", "emb_std", "emb_std_ideal", "emb_rank"}


def test_relative_position_trains_on_rgb_with_colour_dropping():
    method = method_for(3)
    loss, _ = method([torch.randn(4, 3, 28, 28)], 0, diagnostics=False)
    loss.backward()
    assert torch.isfinite(loss) and method.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
