import pytest
import torch
from torch import nn

from selfsup.eval.precise_bn import recompute_bn_stats


def test_statistics_are_the_data_statistics():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    model = nn.Sequential(nn.BatchNorm2d(3))
    model[0].momentum = 0.3
    assert recompute_bn_stats(model, lambda x: x * 2, images, batch_size=8) == 1
    x = images.float() / 255 * 2  # (40, 3, 4, 4): equal batches, so the mean of batch means is the mean
    assert model[0].running_mean == pytest.approx(x.mean(dim=(0, 2, 3)), abs=1e-6)
    batch_vars = torch.stack([x[i:i + 8].var(dim=(0, 2, 3)) for i in range(0, 40, 8)])  # unbiased, per batch
    assert model[0].running_var == pytest.approx(batch_vars.mean(0), abs=1e-6)
    assert model[0].momentum == 0.3 and not model.training


def test_models_without_batchnorm_are_untouched():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LayerNorm(2))
    model.train()
    assert recompute_bn_stats(model, lambda x: x, torch.zeros(4, 1, 5, 5, dtype=torch.uint8)) == 0
    assert model.training


def test_a_trailing_single_image_is_skipped():
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4))
    images = torch.arange(20, dtype=torch.uint8).view(5, 1, 2, 2)
    recompute_bn_stats(model, lambda x: x, images, batch_size=2)  # batches of 2, 2 and a lone 1
    assert model[1].running_mean == pytest.approx(images[:4].float().div(255).view(4, 4).mean(0), abs=1e-6)
