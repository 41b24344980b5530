"""Colorization: Lab round trip, the gamut bins, soft-encoding, class rebalancing, the loss of eq. 2, and the
error on grayscale data."""

import math
import sys
from pathlib import Path

import pytest
import torch
from kornia.color import lab_to_rgb, rgb_to_lab

from selfsup.config import build_config
from selfsup.engine.build import build_method, resolve_sizes
from selfsup.methods.colorization import (
    Colorization,
    ColorizationConfig,
    bin_counts,
    gamut_bins,
    rebalance_weights,
    rebalanced_cross_entropy,
    rgb_to_ab,
    smoothed_prior,
    soft_encode,
)
from selfsup.validate import ConfigError

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from ddp_worker import build  # noqa: E402


def every_8bit_colour(step: int = 3) -> torch.Tensor:
    """(1, 3, n, 1) RGB colours of the 8-bit cube, every `step` levels and the last."""
    levels = torch.cat([torch.arange(0, 256, step), torch.tensor([255])]).unique().float() / 255
    cube = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij")).reshape(3, -1)
    return cube.view(1, 3, -1, 1)


def test_lab_round_trip():
    rgb = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max() < 1e-3


def test_gamut_bins_are_deterministic_and_hold_every_colour():
    bins = gamut_bins()
    assert torch.equal(bins, gamut_bins()) and len(bins) == 261  # the paper's pts_in_hull.npy: 313
    assert torch.equal(bins, torch.round(bins / 10) * 10)  # centres on the 10-spaced grid
    ab = rgb_to_ab(every_8bit_colour())[0, :, :, 0].T  # (n, 2)
    nearest = torch.cdist(ab, bins).min(1).values
    assert nearest.max() < 10 / math.sqrt(2) + 1e-3  # every colour's cell is a bin


def test_soft_encoding_spreads_each_pixel_on_its_5_nearest_bins():
    bins = gamut_bins()
    ab = torch.tensor([[0.4, 0.7], [12.3, -26.1], [41.7, 62.9]])  # no ties among the 6 nearest
    z = soft_encode(ab, bins)
    assert torch.allclose(z.sum(1), torch.ones(3)) and ((z > 0).sum(1) == 5).all()
    d = torch.cdist(ab, bins)
    for i in range(3):
        near = d[i].argsort()[:5]
        want = torch.exp(-d[i, near] ** 2 / 50)
        assert torch.allclose(z[i, near], want / want.sum(), atol=1e-6)
    assert z[0].argmax() == d[0].argmin()  # the largest weight is the nearest bin's


def test_soft_encoding_keeps_to_the_active_bins():
    bins = gamut_bins()
    active = torch.zeros(len(bins), dtype=torch.bool)
    active[:10] = True
    z = soft_encode(torch.tensor([[0.0, 0.0]]), bins, active)
    assert z[0, ~active].sum() == 0 and (z[0] > 0).sum() == 5


def test_rebalancing_weights_have_unit_mean_under_the_prior_and_favour_rare_colours():
    bins = gamut_bins()
    images = (torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)) ** 3 * 255).to(torch.uint8)
    active = torch.ones(len(bins), dtype=torch.bool)
    prior = smoothed_prior(bin_counts(images, bins), bins, active)
    assert prior.sum() == pytest.approx(1, abs=1e-5)
    w = rebalance_weights(prior, active, 0.5)
    assert (prior * w).sum() == pytest.approx(1, abs=1e-5)
    order = prior.argsort()
    assert (w[order].diff() <= 1e-4).all()  # weights fall as the prior rises
    assert w[order[0]] > w[order[-1]]
    assert torch.allclose(rebalance_weights(prior, active, 1.0), torch.ones(len(bins)))  # λ = 1: no rebalancing


def test_prior_is_the_smoothed_histogram():
    """One colour only: its bin's mass spread by a Gaussian of sigma 5 over the bins (10 apart)."""
    bins = gamut_bins()
    counts = torch.zeros(len(bins))
    grey = int(torch.cdist(torch.zeros(1, 2), bins).argmin())
    counts[grey] = 7
    p = smoothed_prior(counts, bins, torch.ones(len(bins), dtype=torch.bool))
    d = torch.cdist(bins[grey:grey + 1], bins)[0]
    assert torch.allclose(p, torch.exp(-d ** 2 / 50) / torch.exp(-d ** 2 / 50).sum(), atol=1e-6)


def test_prior_of_data_bins_lands_on_the_bins_the_data_uses_only():
    """`bins: data`: a colour next to unused bins spreads its mass over the used bins alone (the kernel masks
    the destination bins), and the prior still sums to 1."""
    bins = gamut_bins()
    grey = int(torch.cdist(torch.zeros(1, 2), bins).argmin())
    d = torch.cdist(bins[grey:grey + 1], bins)[0]
    active = d <= 15  # grey and its ring of neighbours 10-14 px away
    counts = torch.zeros(len(bins))
    counts[grey], counts[int(torch.where(active & (d > 0))[0][0])] = 5, 3
    counts[~active] = 0
    p = smoothed_prior(counts, bins, active)
    assert p[~active].sum() == 0 and p.sum() == pytest.approx(1.0)
    assert (p[active] > 0).all()
    method = build("colorization", bins="data")  # the same on a data sample's bins
    assert method.bin_prior[~method.bin_active].sum() == 0 and float(method.bin_prior.sum()) == pytest.approx(1.0)


def test_loss_is_eq_2_with_the_rebalancing_weights():
    """-1/N sum_pixels v(Z) sum_q Z_q log softmax(logits)_q, v(Z) the weight of the pixel's nearest bin."""
    g = torch.Generator().manual_seed(2)
    logits, target = torch.randn(3, 4, generator=g), torch.rand(3, 4, generator=g)
    target = target / target.sum(1, keepdim=True)
    weight = torch.tensor([0.5, 2.0, 1.0])
    by_hand = 0.0
    for n in range(3):
        log_z = [float(logits[n, q]) - math.log(sum(math.exp(float(x)) for x in logits[n])) for q in range(4)]
        by_hand -= float(weight[n]) * sum(float(target[n, q]) * log_z[q] for q in range(4))
    assert float(rebalanced_cross_entropy(logits, target, weight)) == pytest.approx(by_hand / 3, rel=1e-5)


def test_forward_weighs_each_pixel_by_its_nearest_bin():
    method = build("colorization")
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    target, weight = method.targets(rgb)
    assert target.shape == (2 * 4 * 4, len(method.bin_ab))  # 1/4 of the 16-px input
    ab = torch.nn.functional.avg_pool2d(rgb_to_ab(rgb), 4).permute(0, 2, 3, 1).reshape(-1, 2)
    assert torch.equal(weight, method.bin_weight[torch.cdist(ab, method.bin_ab).argmin(1)])


def test_data_bins_keep_only_the_colours_of_the_sample():
    method = build("colorization", bins="data")
    assert 0 < method.bin_active.sum() < len(method.bin_ab)
    assert (method.bin_weight[~method.bin_active] == 0).all()
    loss, _ = method([torch.randn(4, 3, 16, 16)], 0)
    assert torch.isfinite(loss)


def test_input_is_the_luma_evaluation_uses():
    method = build("colorization")
    rgb = torch.rand(1, 3, 4, 4)
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    want = (luma - method.luma_mean.flatten()) / method.luma_std.flatten()
    assert torch.allclose(method.lightness(rgb)[:, 0], want, atol=1e-6)


def test_grayscale_data_is_refused_with_the_option_to_change():
    with pytest.raises(ConfigError, match="--data.name.*RGB data.*--method"):
        Colorization.input_channels(1)
    cfg = resolve_sizes(build_config({"method": "colorization", "backbone": {"name": "vit-cpu"}}), 28)
    with pytest.raises(ConfigError, match="--data.name"):
        build_method(cfg, channels=1)
    assert Colorization.input_channels(3) == 1


def test_every_option_builds():
    assert {f for f in ColorizationConfig.__dataclass_fields__} == {"bins", "rebalance"}
    for backbone in ("vit", "resnet"):
        method = build("colorization", backbone)
        loss, logs = method([torch.randn(2, 3, 16, 16)], 0)
        assert torch.isfinite(loss) and 0 <= logs["bin_acc"] <= 1
