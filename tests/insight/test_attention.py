import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfsup.insight.attention import (
    cls_attention,
    crop_to_grid,
    crop_to_patches,
    mass_masks,
    rollout,
    rollout_step,
    upsample,
)
from selfsup.models.vit import VisionTransformer


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=4).eval()


@pytest.mark.parametrize("size", [(28, 28), (14, 42), (49, 21)])
def test_attention_rows_sum_to_one_and_maps_have_the_grid_shape(size):
    model, x = tiny_vit(), torch.randn(2, 1, *size)
    attn = model.get_last_selfattention(x)
    n = 1 + (size[0] // 7) * (size[1] // 7)
    assert attn.shape == (2, 4, n, n)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, n))
    maps = cls_attention(model, x)
    assert maps.shape == (2, 4, size[0] // 7, size[1] // 7)
    torch.testing.assert_close(maps.flatten(-2).sum(-1), 1 - attn[:, :, 0, 0])  # CLS row minus its own key


def test_every_blocks_attention_and_the_last_agree():
    model, x = tiny_vit(), torch.randn(1, 1, 28, 28)
    attns = model.get_selfattentions(x)
    assert len(attns) == 2
    torch.testing.assert_close(attns[-1], model.get_last_selfattention(x))


def test_mass_mask_keeps_the_stated_share_on_a_hand_made_map():
    m = torch.tensor([[0.05, 0.5], [0.3, 0.15]])
    assert mass_masks(m, 0.6).tolist() == [[False, True], [True, False]]  # 0.5 + 0.3 >= 0.6
    assert mass_masks(m, 0.5).tolist() == [[False, True], [False, False]]  # 0.5 alone holds half
    assert mass_masks(m, 0.9).tolist() == [[False, True], [True, True]]
    assert mass_masks(m * 7, 0.6).tolist() == mass_masks(m, 0.6).tolist()  # unnormalised maps alike


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.001, 1.0), min_size=4, max_size=4 * 4), st.floats(0.05, 0.95))
def test_mass_mask_is_the_smallest_top_set_holding_the_share(values, threshold):
    m = torch.tensor(values, dtype=torch.float64).reshape(1, -1)
    keep = mass_masks(m, threshold)[0]
    share = m[0] / m[0].sum()
    assert share[keep].sum() >= threshold - 1e-9 or keep.all()
    assert share[keep].min() >= share[~keep].max() if (~keep).any() else True  # the most attended cells
    assert share[keep].sum() - share[keep].min() < threshold + 1e-9  # dropping the least kept cell falls short


def test_mass_mask_rejects_a_threshold_outside_0_1():
    with pytest.raises(ValueError, match="threshold"):
        mass_masks(torch.ones(2, 2), 1.5)


def test_rollout_of_identity_attention_is_the_identity():
    eye = torch.eye(5).expand(2, 3, 5, 5)  # (B, heads, T, T)
    torch.testing.assert_close(rollout_step(eye), torch.eye(5).expand(2, 5, 5))


def test_rollout_step_is_mean_plus_identity_renormalised():
    a = torch.softmax(torch.randn(1, 2, 3, 3), -1)
    want = (a.mean(1) + torch.eye(3)) / 2  # rows of mean + I sum to 2
    torch.testing.assert_close(rollout_step(a), want)


def test_rollout_multiplies_the_blocks_first_to_last():
    model, x = tiny_vit(), torch.randn(1, 1, 28, 28)
    a1, a2 = (rollout_step(a) for a in model.get_selfattentions(x))
    want = (a2 @ a1)[:, 0, 1:].reshape(1, 4, 4)
    torch.testing.assert_close(rollout(model, x), want)


def test_crop_and_upsample():
    img = torch.arange(2 * 10 * 17).reshape(2, 10, 17)
    assert crop_to_patches(img, 4).shape == (2, 8, 16)
    with pytest.raises(ValueError, match="smaller than one"):
        crop_to_patches(img, 11)
    up = upsample(torch.tensor([[1, 2], [3, 4]]), 3)
    assert up.shape == (6, 6) and up[2, 2] == 1 and up[3, 2] == 3 and up[0, 5] == 2


def test_upsample_crops_the_conv_stems_last_cells_to_the_image():
    up = upsample(torch.tensor([[1, 2], [3, 4]]), 8, (12, 9))  # ceil(12 / 8) x ceil(9 / 8) cells
    assert up.shape == (12, 9) and up[7, 7] == 1 and up[8, 0] == 3 and up[11, 8] == 4


@pytest.mark.parametrize("stem, size, grid", [("patch", (30, 45), (4, 6)), ("conv", (30, 45), (4, 6))])
def test_the_grid_follows_the_stem(stem, size, grid):
    torch.manual_seed(0)
    model = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=4,
                              stem=stem).eval()
    x = crop_to_grid(model, torch.randn(1, 1, *size))
    assert x.shape[-2:] == ((28, 42) if stem == "patch" else size)  # the conv stem takes any size
    assert cls_attention(model, x).shape == (1, 4, *grid) and rollout(model, x).shape == (1, *grid)


def test_registers_are_left_out_of_rollout():
    torch.manual_seed(0)
    model = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=4,
                              num_register_tokens=3, init_values=1e-5).eval()
    x = torch.randn(1, 1, 28, 28)
    a1, a2 = (rollout_step(a) for a in model.get_selfattentions(x))
    torch.testing.assert_close(rollout(model, x), (a2 @ a1)[:, 0, 4:].reshape(1, 4, 4))
