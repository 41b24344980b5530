import pytest
import torch
import torch.nn.functional as F

from selfsup.data.dataset import ImageSet, Splits
from selfsup.eval.context import EvalContext, EvalError
from selfsup.eval.segmentation import SegmentationOptions, best_head_jaccard, jaccard, segmentation_protocol
from selfsup.insight.attention import rollout_step
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


def _cells(values: dict[tuple[int, int], int]) -> torch.Tensor:
    """A (32, 32) plane whose 8x8 patch (row, col) holds values[(row, col)] (0 elsewhere)."""
    plane = torch.zeros(32, 32, dtype=torch.uint8)
    for (r, c), v in values.items():
        plane[8 * r:8 * r + 8, 8 * c:8 * c + 8] = v
    return plane


def _controlled_attention(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, 32, 32) in [0, 1] -> (B, 2, 17, 17) attention whose head h's [CLS] row spreads its mass over the
    patches as channel h of the image does (each patch's mean, normalised)."""
    cells = F.avg_pool2d(x[:, :2], 8).flatten(2)  # (B, 2, 16)
    attn = torch.zeros(len(x), 2, 17, 17)
    attn[:, :, 0, 1:] = cells / cells.sum(-1, keepdim=True)
    return attn


def _controlled_case(tmp_path, monkeypatch, batch_size: int) -> dict:
    """Images A, B, A, C scored with --max-images 3: each head's attention mask is laid out by hand (threshold
    0.6 keeps the smallest set of patches holding over 60% of the mass), so every Jaccard is known."""
    spec = BackboneSpec("vit-cpu", 32, 3, 8, [0.0] * 3, [1.0] * 3, width=16, depth=1, num_heads=2)
    model = spec.build()
    monkeypatch.setattr(model, "get_last_selfattention", _controlled_attention)
    # rollout of this one-block model: its one step on the same attention (insight/attention.py, block by block)
    monkeypatch.setattr("selfsup.eval.segmentation.rollout",
                        lambda m, x: rollout_step(_controlled_attention(x))[:, 0, 1:].reshape(len(x), 4, 4))
    zero = _cells({})
    # A: head 0 keeps patch (1,1); head 1 (masses .5 .3 .2) keeps (0,0) and (0,1); their mean keeps (1,1), (0,0)
    a = torch.stack([_cells({(1, 1): 200}), _cells({(0, 0): 250, (0, 1): 150, (3, 3): 100}), zero])
    a_objects = _cells({(1, 1): 1, (1, 2): 1, (0, 0): 2})
    # B: head 0 keeps (2,2), exactly its object; head 1 (masses .7 .3) keeps (3,0); their mean (3,0) and (2,2)
    b = torch.stack([_cells({(2, 2): 200}), _cells({(3, 0): 210, (0, 3): 90}), zero])
    b_objects = _cells({(2, 2): 1})
    c = torch.stack([_cells({(3, 3): 200}), _cells({(3, 3): 200}), zero])  # perfect, but past --max-images
    c_objects = _cells({(3, 3): 1})
    test = ImageSet(torch.stack([a, b, a, c]), torch.zeros(4, dtype=torch.int64), ["x"],
                    torch.stack([a_objects, b_objects, a_objects, c_objects]))
    ctx = EvalContext(backbone=model, spec=spec, prepare=lambda x: x.float() / 255, run_dir=tmp_path,
                      splits=Splits("toy", test, test), data="toy",
                      options=SegmentationOptions(max_images=3, batch_size=batch_size, rollout=True))
    return segmentation_protocol(ctx)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])  # 2 does not divide the 3 images; 5 exceeds them all
def test_protocol_scores_a_constructed_case_exactly_at_any_batch_size(tmp_path, monkeypatch, batch_size):
    out = _controlled_case(tmp_path, monkeypatch, batch_size)
    # A: object 1 (patches (1,1), (1,2)) best by head 0, 1/2; object 2 (patch (0,0)) by head 1, 1/2. B: 1.
    assert out["jaccard"] == round(100 * (0.5 + 1 + 0.5) / 3, 2)
    # foreground (all objects): A's head 0 covers 1 of its 3 patches (1/3); B's head 0 is exact (1)
    assert out["jaccard_foreground"] == round(100 * (1 / 3 + 1 + 1 / 3) / 3, 2)
    # mean of the heads: A's objects 1/3 and 1/2 (5/12), B's object 1/2; rollout of one block = that mean
    assert out["jaccard_mean_heads"] == out["jaccard_rollout"] == round(100 * (5 / 12 + 1 / 2 + 5 / 12) / 3, 2)
    # each head over the objects of each image: head 0 (1/4, 1, 1/4), head 1 (1/4, 0, 1/4)
    assert out["settings"]["per_head"] == [round(100 * 1.5 / 3, 2), round(100 * 0.5 / 3, 2)]
    assert out["settings"]["n_images"] == 3


def test_masks_of_the_conv_stem_cover_the_image_at_any_size():
    from selfsup.eval.segmentation import image_masks

    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 28, 3, 7, [0.5] * 3, [0.25] * 3, stem="conv")  # stride 8: 30 px -> 4 cells
    masks = image_masks(spec.build().eval(), torch.randn(2, 3, 30, 30), 0.6, with_rollout=True)
    assert masks["heads"].shape == (2, 4, 30, 30) and masks["rollout"].shape == (2, 1, 30, 30)
