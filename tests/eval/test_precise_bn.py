import pytest
import torch
from torch import nn

from selfsup.eval.precise_bn import batch_bounds, recompute_bn_stats


def test_statistics_are_the_data_statistics():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    model = nn.Sequential(nn.BatchNorm2d(3))
    model[0].momentum = 0.3
    assert recompute_bn_stats(model, lambda x: x * 2, images, batch_size=8) == 1
    x = images.float() / 255 * 2  # (40, 3, 4, 4)
    assert model[0].running_mean == pytest.approx(x.mean(dim=(0, 2, 3)), abs=1e-6)
    assert model[0].running_var == pytest.approx(x.var(dim=(0, 2, 3), unbiased=False), abs=1e-6)
    assert model[0].momentum == 0.3 and not model.training


@pytest.mark.parametrize("batch_size", [3, 7, 40, 64])  # 3 and 7 do not divide the 40 images; 64 exceeds them
def test_the_statistics_do_not_depend_on_how_the_images_are_batched(batch_size):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    images[:20] //= 4  # batches differ: the mean of per-batch variances would miss the spread between them
    model = nn.Sequential(nn.BatchNorm2d(3))
    recompute_bn_stats(model, lambda x: x, images, batch_size=batch_size)
    x = images.float() / 255
    torch.testing.assert_close(model[0].running_mean, x.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[0].running_var, x.var(dim=(0, 2, 3), unbiased=False), rtol=1e-5, atol=1e-6)


def test_models_without_batchnorm_are_untouched():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LayerNorm(2))
    model.train()
    assert recompute_bn_stats(model, lambda x: x, torch.zeros(4, 1, 5, 5, dtype=torch.uint8)) == 0
    assert model.training


def test_a_trailing_single_image_joins_the_batch_before_it():
    assert batch_bounds(5, 2) == [(0, 2), (2, 5)] and batch_bounds(4, 2) == [(0, 2), (2, 4)]
    assert batch_bounds(1, 2) == [(0, 1)] and batch_bounds(0, 2) == []
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4))
    images = torch.arange(20, dtype=torch.uint8).view(5, 1, 2, 2)
    recompute_bn_stats(model, lambda x: x, images, batch_size=2)  # batches of 2 and 3: BatchNorm1d needs >= 2
    assert model[1].running_mean == pytest.approx(images.float().div(255).view(5, 4).mean(0), abs=1e-6)
