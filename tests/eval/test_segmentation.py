import pytest
import torch

from selfsup.data.dataset import ImageSet, Splits
from selfsup.eval.context import EvalContext, EvalError
from selfsup.eval.segmentation import SegmentationOptions, best_head_jaccard, jaccard, segmentation_protocol
from selfsup.models.io import BackboneSpec, normalizer


def test_jaccard_on_hand_made_masks():
    truth = torch.zeros(4, 4, dtype=torch.bool)
    truth[:2, :2] = True  # 4 pixels
    pred = torch.zeros(2, 4, 4, dtype=torch.bool)
    pred[0, :2, :] = True  # 8 pixels, 4 shared -> 4 / 8
    pred[1] = truth
    torch.testing.assert_close(jaccard(pred, truth), torch.tensor([0.5, 1.0]))
    assert jaccard(torch.zeros(4, 4, dtype=torch.bool), truth).item() == 0


def test_best_head_per_object_averaged_over_objects():
    objects = torch.zeros(4, 4, dtype=torch.uint8)
    objects[:2, :2], objects[2:, 2:] = 1, 2
    heads = torch.stack([objects == 1, (objects == 2) | (objects == 1)])  # head 0 exact on 1; head 1 covers both
    best, per_head = best_head_jaccard(heads, objects)
    assert best == pytest.approx((1.0 + 0.5) / 2)  # object 1: head 0 (1.0); object 2: head 1 (4/8)
    torch.testing.assert_close(per_head, torch.tensor([0.5, 0.5]))
    with pytest.raises(EvalError, match="without objects"):
        best_head_jaccard(heads, torch.zeros(4, 4, dtype=torch.uint8))


def context(tmp_path, model, spec, masks=True):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8, generator=g)
    m = torch.zeros(6, 32, 32, dtype=torch.uint8)
    m[:, 8:24, 8:24] = 1
    m[:, :8, :8] = 2
    test = ImageSet(images, torch.zeros(6, dtype=torch.int64), ["x"], m if masks else None)
    return EvalContext(backbone=model, spec=spec, prepare=normalizer(spec), run_dir=tmp_path,
                       splits=Splits("toy", test, test), data="toy",
                       options=SegmentationOptions(batch_size=4, rollout=True))


def test_protocol_scores_every_head_and_the_variants(tmp_path):
    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 32, 3, 8, [0.5] * 3, [0.25] * 3)
    out = segmentation_protocol(context(tmp_path, spec.build(), spec))
    for key in ("jaccard", "jaccard_foreground", "jaccard_mean_heads", "jaccard_rollout"):
        assert 0 <= out[key] <= 100
    assert out["settings"]["n_images"] == 6 and len(out["settings"]["per_head"]) == 4
    assert out["jaccard"] >= max(out["settings"]["per_head"]) - 1e-6  # best head per object beats any one head


def test_protocol_needs_masks_and_a_vit(tmp_path):
    spec = BackboneSpec("vit-cpu", 32, 3, 8, [0.5] * 3, [0.25] * 3)
    with pytest.raises(EvalError, match="no object masks"):
        segmentation_protocol(context(tmp_path, spec.build(), spec, masks=False))
    rn = BackboneSpec("resnet18", 32, 3, None, [0.5] * 3, [0.25] * 3, width=8)
    with pytest.raises(EvalError, match="needs a ViT"):
        segmentation_protocol(context(tmp_path, rn.build(), rn))


def test_masks_of_the_conv_stem_cover_the_image_at_any_size():
    from selfsup.eval.segmentation import image_masks

    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 28, 3, 7, [0.5] * 3, [0.25] * 3, stem="conv")  # stride 8: 30 px -> 4 cells
    masks = image_masks(spec.build().eval(), torch.randn(2, 3, 30, 30), 0.6, with_rollout=True)
    assert masks["heads"].shape == (2, 4, 30, 30) and masks["rollout"].shape == (2, 1, 30, 30)
