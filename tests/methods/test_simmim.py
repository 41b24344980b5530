import pytest
import torch

from selfsup.methods.simmim import SimMIM, SimMIMConfig, default_cell, pixel_mask, simmim_loss
from selfsup.models.vit import VisionTransformer


def simmim(**cfg):
    torch.manual_seed(0)
    return SimMIM(VisionTransformer(img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2),
                  SimMIMConfig(**cfg))


def test_loss_matches_the_official_formula():
    pred, x = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    m = (torch.rand(2, 1, 4, 4) > 0.5).double()
    total = sum(abs(float(pred[b, c, i, j] - x[b, c, i, j])) for b in range(2) for c in range(3)
                for i in range(4) for j in range(4) if m[b, 0, i, j])
    assert simmim_loss(pred, x, m).item() == pytest.approx(total / (float(m.sum()) + 1e-5) / 3)


def test_pixel_mask_repeats_patches():
    mask = torch.tensor([[True, False, False, True]])
    assert pixel_mask(mask, 2, 2)[0, 0].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]


def test_mask_cells_scale_with_the_crop():
    assert default_cell(224, 16) == 32 and default_cell(192, 4) == 28 and default_cell(28, 7) == 7


def test_masked_patches_get_the_mask_token_in_the_full_encoder():
    m = simmim()
    x = torch.randn(3, 3, 16, 16)
    mask = m.draw_mask(x)
    assert mask.shape == (3, 16) and (mask.sum(1) == 10).all()  # ceil(0.6 x 16) one-patch cells
    pix = pixel_mask(mask, 4, 4).bool().expand_as(x)
    a = m.encode_masked(x, mask)
    b = m.encode_masked(torch.where(pix, torch.randn_like(x), x), mask)  # masked pixels never seen
    assert a.shape == (3, 32, 4, 4) and torch.allclose(a, b, atol=1e-6)


def test_loss_only_on_masked_pixels_and_gradient_reaches_the_mask_token():
    m = simmim()
    loss, logs = m([torch.randn(4, 3, 16, 16)], 0)
    loss.backward()
    assert torch.isfinite(loss) and logs["masked"] == pytest.approx(10 / 16)
    assert m.mask_token.grad.abs().sum() > 0 and m.head.conv.weight.grad is not None


def test_block_masking_option():
    m = simmim(mask="block", block_ratio=0.4)
    torch.manual_seed(0)
    ratio = float(torch.cat([m.draw_mask(torch.zeros(16, 3, 16, 16)) for _ in range(4)]).float().mean())
    assert abs(ratio - 0.4) < 0.1


def test_block_masking_masks_beits_75_of_196_patches():
    """microsoft/unilm beit run_beit_pretraining.py: --num_mask_patches 75 on the 14x14 grid of 224-px crops
    (masking_generator.py stops at that count), not round(0.4 x 196) = 78."""
    m = SimMIM(VisionTransformer(img_size=224, patch_size=16, in_chans=3, embed_dim=32, depth=1, num_heads=2),
               SimMIMConfig(mask="block"))
    torch.manual_seed(0)
    counts = m.draw_mask(torch.zeros(16, 3, 224, 224)).sum(1)
    assert counts.max() == 75 and (counts >= 60).all()


def test_reconstruction_keeps_visible_pixels():
    m = simmim()
    x = torch.randn(2, 3, 16, 16)
    out = m.reconstruct(x)
    visible = out["masked"] != 0
    assert torch.equal(out["reconstruction"][visible], x[visible])


def test_a_mask_cell_that_is_not_a_multiple_of_the_patch_is_refused():
    with pytest.raises(ValueError, match="mask-patch-size 6"):
        simmim(mask_patch_size=6)
