"""Context encoders: the masks, the loss on the region only, and which parameters each adversarial term trains."""

import sys
from pathlib import Path

import torch

from selfsup.methods.inpainting import (
    Discriminator,
    InpaintingConfig,
    adversarial_losses,
    center_mask,
    erode,
    random_masks,
    reconstruction_loss,
    region_masks,
    region_weights,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from ddp_worker import build  # noqa: E402


def test_center_mask_is_the_central_quarter():
    for size in (16, 28, 128):
        m = center_mask(2, size)[0, 0]
        q = size // 4
        want = torch.zeros(size, size, dtype=torch.bool)
        want[q:q + size // 2, q:q + size // 2] = True
        assert torch.equal(m, want) and m.sum() == size * size // 4


def test_random_masks_cover_a_quarter_and_differ_per_image():
    m = random_masks(64, 32, generator=torch.Generator().manual_seed(0))
    area = m.float().mean((1, 2, 3))
    assert ((area - 0.25).abs() < 0.03).all()
    assert len({tuple(x.flatten().tolist()) for x in m}) > 50
    rows, cols = m.any(3)[:, 0], m.any(2)[:, 0]  # each mask is one rectangle
    assert torch.equal(m[:, 0], rows[:, :, None] & cols[:, None, :])


def test_region_masks_are_smooth_shapes_of_a_quarter_of_the_view():
    """The paper's random region (context-encoder train_random.lua: a thresholded bicubic-upsampled noise
    field, density 0.25): each image's own region, exactly a quarter of the view, in a few connected blobs
    rather than scattered pixels, and the default of the method as the paper's feature learning."""
    m = region_masks(32, 32, generator=torch.Generator().manual_seed(0))
    assert m.shape == (32, 1, 32, 32) and (m.sum((1, 2, 3)) == 256).all()
    assert len({tuple(x.flatten().tolist()) for x in m}) == 32
    edges = (m[..., 1:, :] != m[..., :-1, :]).sum() + (m[..., :, 1:] != m[..., :, :-1]).sum()
    assert edges / 32 < 0.2 * 2 * 32 * 31  # few boundaries: a pixel's neighbours mostly share its side
    assert InpaintingConfig().mask == "region"
    method = build("inpainting", mask="region")
    view = torch.randn(4, 1, 16, 16)
    mask, hole = method.masks(view)
    assert (mask.sum((1, 2, 3)) == 64).all() and not torch.equal(mask[0], mask[1])


def test_overlap_border_stays_visible_and_weighs_more():
    mask = center_mask(1, 128)
    hole = erode(mask, 4)
    assert hole.sum() == 56 * 56 and (hole <= mask).all()  # the paper's 64-px region, 4-px border
    w = region_weights(mask, hole, 10.0)
    assert set(w.unique().tolist()) == {0.0, 1.0, 10.0} and (w[mask & ~hole] == 10).all()


def test_loss_counts_only_the_region():
    g = torch.Generator().manual_seed(1)
    x, pred = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 3, 16, 16, generator=g)
    mask = center_mask(2, 16)
    w = region_weights(mask, mask, 10.0)
    loss = reconstruction_loss(pred, x, w)
    assert torch.allclose(loss, ((pred - x) ** 2)[mask.expand(-1, 3, -1, -1)].mean())
    changed = torch.where(mask, pred, torch.randn(2, 3, 16, 16, generator=g))
    assert torch.equal(reconstruction_loss(changed, x, w), loss)


def test_method_loss_ignores_the_prediction_outside_the_region():
    method = build("inpainting", overlap=0.0)
    view = torch.randn(2, 1, 16, 16)
    base, _ = method([view], 0)
    outside = ~center_mask(2, 16)
    head = method.head.forward
    method.head.forward = lambda f: torch.where(outside, head(f) + 5.0, head(f))
    moved, _ = method([view], 0)
    assert torch.allclose(base, moved)


def test_the_input_has_the_hole_at_the_mean():
    method = build("inpainting")
    view = torch.randn(2, 1, 16, 16)
    out = method.reconstruct(view)
    _, hole = method.masks(view)
    assert (out["masked"][hole.expand_as(view)] == 0).all()
    assert torch.equal(out["masked"][~hole.expand_as(view)], view[~hole.expand_as(view)])
    assert torch.equal(out["original"], view)
    assert torch.equal(out["reconstruction"][~hole.expand_as(view)], view[~hole.expand_as(view)])
    assert {v.shape for v in out.values()} == {view.shape}


def grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor | None]:
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


def test_each_adversarial_term_trains_only_its_player():
    method = build("inpainting", adversarial=0.001, disc_width=8)
    view = torch.randn(4, 1, 16, 16)
    mask, hole = method.masks(view)
    _, pred = method.inpaint(view, hole)
    d_loss, g_loss = adversarial_losses(method.disc, view, torch.where(mask, pred, view))
    disc = list(method.disc.parameters())
    gen = list(method.backbone.parameters()) + list(method.head.parameters())
    assert all(g is None for g in grads(g_loss, disc))  # the generator term leaves the discriminator alone
    assert any(g is not None and g.abs().sum() > 0 for g in grads(g_loss, gen))
    assert all(g is None for g in grads(d_loss, gen))  # the discriminator term leaves the encoder alone
    assert all(g is not None and g.abs().sum() > 0 for g in grads(d_loss, disc))


def test_adversarial_training_runs_in_one_backward():
    method = build("inpainting", adversarial=0.001, disc_width=8, mask="random")
    loss, logs = method([torch.randn(4, 1, 16, 16)], 0)
    loss.backward()
    assert {"rec", "adv_g", "adv_d", "emb_std"} <= set(logs)
    assert all(p.grad is not None for p in method.disc.parameters())
    assert isinstance(method.disc, Discriminator) and build("inpainting").disc is None
