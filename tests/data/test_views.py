"""Named view recipes: each paper's jitter, blur and solarisation, on colour and 1-channel images."""

import dataclasses

import kornia.augmentation as K
import pytest
import torch

from selfsup.data.views import VIEW_RECIPES, MultiCropViews, ViewsConfig


def views(recipe: str, channels: int = 3, **options) -> MultiCropViews:
    cfg = dataclasses.replace(ViewsConfig(), recipe=recipe, global_size=16, local_size=8, n_local=1, **options)
    return MultiCropViews(cfg, channels, [0.5] * channels, [0.25] * channels)


def ops(pipeline, kind):
    return [m for m in pipeline if isinstance(m, kind)]


def probabilities(pipeline, kind) -> list[float]:
    return [m.p for m in ops(pipeline, kind)]


@pytest.mark.parametrize("recipe, jitter", [("simclr", (0.8, 0.8, 0.8, 0.2)), ("mocov2", (0.4, 0.4, 0.4, 0.1)),
                                            ("byol", (0.4, 0.4, 0.2, 0.1)), ("dino", (0.4, 0.4, 0.2, 0.1))])
def test_jitter_strengths(recipe, jitter):
    """simclr data_util.py 74-77 (0.8 x strength 1, hue 0.2); moco main_moco.py 331 aug+ (0.4, 0.4, 0.4, 0.1);
    dino main_dino.py 424 and BYOL Table 6 (0.4, 0.4, 0.2, 0.1); all with p 0.8 and grayscale p 0.2."""
    v = views(recipe)
    (j,) = ops(v.globals[0], K.ColorJitter)
    assert (j.brightness, j.contrast, j.saturation, j.hue, j.p) == (*jitter, 0.8)
    assert probabilities(v.globals[0], K.RandomGrayscale) == [0.2]


@pytest.mark.parametrize("strength, channels, jitter", [(1.25, 3, (1.0, 1.0, 1.0, 0.25)),
                                                       (3.0, 3, (2.4, 2.4, 2.4, 0.5)), (0.5, 1, (0.4, 0.4, 0, 0))])
def test_jitter_strength_scales_the_recipe(strength, channels, jitter):
    """SimCLR's colour-distortion strength s: (0.8s, 0.8s, 0.8s, 0.2s), hue capped at 0.5; 1-channel data
    gets brightness and contrast only."""
    (j,) = ops(views("simclr", channels, jitter_strength=strength).globals[0], K.ColorJitter)
    assert (j.brightness, j.contrast, j.saturation, j.hue) == pytest.approx(jitter)


@pytest.mark.parametrize("recipe, blur, solarize", [("simclr", [0.5, 0.5], [0, 0]), ("mocov2", [0.5, 0.5], [0, 0]),
                                                    ("byol", [1.0, 0.1], [0, 0.2]), ("dino", [1.0, 0.1], [0, 0.2])])
def test_blur_and_solarisation_per_view(recipe, blur, solarize):
    """SimCLR and MoCo v2 blur both views with p 0.5 and never solarise; BYOL/DINO's pair is asymmetric."""
    v = views(recipe)
    assert [probabilities(g, K.RandomGaussianBlur) for g in v.globals] == [[p] for p in blur]
    assert [sum(probabilities(g, K.RandomSolarize)) for g in v.globals] == solarize
    assert probabilities(v.local, K.RandomGaussianBlur) == [0.5]


def test_explicit_options_still_win_over_the_recipe():
    v = views("simclr", solarize=0.3, blur=False, color_jitter=0.0, flip=0.0)
    assert probabilities(v.globals[1], K.RandomSolarize) == [0.3]
    assert not ops(v.globals[0], K.RandomGaussianBlur) and not ops(v.globals[0], K.ColorJitter)
    assert not ops(v.globals[0], K.RandomHorizontalFlip)


@pytest.mark.parametrize("recipe", sorted(VIEW_RECIPES))
def test_one_channel_images_skip_colour_ops(recipe):
    v = views(recipe, channels=1)
    (j,) = ops(v.globals[0], K.ColorJitter)
    assert (j.saturation, j.hue) == (0.0, 0.0)
    assert not ops(v.globals[0], K.RandomGrayscale)
    out = v(torch.randint(0, 256, (4, 1, 20, 20), dtype=torch.uint8))
    assert [tuple(o.shape) for o in out] == [(4, 1, 16, 16)] * 2 + [(4, 1, 8, 8)]
    assert all(torch.isfinite(o).all() for o in out)


def test_crops_are_cut_by_one_batched_warp_on_a_gpu_and_by_slicing_on_a_cpu():
    from selfsup.data.views import cropping_mode, set_cropping

    assert cropping_mode(torch.device("cuda")) == "resample" and cropping_mode(torch.device("cpu")) == "slice"
    views = MultiCropViews(ViewsConfig(global_size=16, local_size=8, n_local=1), 1, [0.5], [0.5])
    crops = [m for m in views.modules() if isinstance(m, K.RandomResizedCrop)]
    assert len(crops) == 3
    set_cropping(views, torch.device("cuda"))  # what forward does with a batch on a GPU (no tensor moves here)
    assert all(m.flags["cropping_mode"] == "resample" and not m._compute_matrix_lazily for m in crops)
    out = views(torch.randint(0, 256, (4, 1, 20, 20), dtype=torch.uint8))  # a CPU batch switches back
    assert all(m.flags["cropping_mode"] == "slice" for m in crops)
    assert [tuple(v.shape) for v in out] == [(4, 1, 16, 16), (4, 1, 16, 16), (4, 1, 8, 8)]


def test_padded_crops_shift_the_image_without_resizing_it():
    """RotNet's CIFAR views (FeatureLearningRotNet dataloader.py): RandomCrop(32, padding=4), i.e. the image
    shifted by up to 1/8 of its side, black where it moved in from the padding, its pixels not resampled."""
    cfg = dataclasses.replace(ViewsConfig(), global_size=16, local_size=8, n_global=1, n_local=0, crop="padded",
                              flip=0.0, color_jitter=0.0, grayscale=0.0, blur=False, solarize=0.0)
    v = MultiCropViews(cfg, 1, [0.0], [1.0])
    assert not ops(v.globals[0], K.RandomResizedCrop)
    torch.manual_seed(0)
    images = torch.randint(1, 256, (32, 1, 16, 16), dtype=torch.uint8)  # no black pixel of their own
    (out,) = v(images)
    padded = torch.nn.functional.pad(images.float() / 255, (2, 2, 2, 2))  # 16 / 8 = 2 px per side
    shifts = set()
    for b in range(len(images)):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(out[b], padded[b, :, dy:dy + 16, dx:dx + 16])]
        assert len(found) == 1, b
        shifts.add(found[0])
    assert len(shifts) > 5  # a random place per image


def test_bicubic_crops_stay_in_the_pixel_range():
    """MAE's RandomResizedCrop(interpolation=3): bicubic, which overshoots at sharp edges; clamped to [0, 1] as
    PIL's 8-bit output is."""
    cfg = dataclasses.replace(ViewsConfig(), global_size=32, local_size=8, n_global=1, n_local=0, resample="bicubic",
                              global_scale=(0.05, 0.1), color_jitter=0.0, grayscale=0.0, blur=False, solarize=0.0)
    v = MultiCropViews(cfg, 1, [0.0], [1.0])
    (crop,) = ops(v.globals[0], K.RandomResizedCrop)
    assert crop.flags["resample"].name == "BICUBIC"
    cells = torch.arange(16) // 4
    board = (cells[:, None] + cells[None]) % 2 * 255  # a checkerboard of 4-px squares: steps it overshoots at
    (out,) = v(board.to(torch.uint8).expand(8, 1, 16, 16))
    assert out.min() >= 0 and out.max() <= 1 and ((out > 0) & (out < 1)).any()
    bilinear = MultiCropViews(dataclasses.replace(cfg, resample="bilinear"), 1, [0.0], [1.0])
    assert ops(bilinear.globals[0], K.RandomResizedCrop)[0].flags["resample"].name == "BILINEAR"
