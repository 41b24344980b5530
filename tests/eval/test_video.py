import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.data import moving
from selfsup.data.dataset import ImageSet, Splits
from selfsup.eval.context import EvalContext, EvalError
from selfsup.eval.video import (
    VideoOptions,
    boundary,
    contour_accuracy,
    neighborhood,
    one_hot_patches,
    propagate_video,
    region_similarity,
    score_video,
    video_protocol,
)
from selfsup.models.io import BackboneSpec, normalizer


def blob_features(t_frames=8, side=6):
    """Features of a 2x2 blob moving one patch right per frame on a side x side grid: blob patches share one
    direction, background patches another (with a little per-patch texture)."""
    g = torch.Generator().manual_seed(0)
    feats, ids = [], []
    for t in range(t_frames):
        blob = torch.zeros(side, side, dtype=torch.bool)
        blob[2:4, t % (side - 1):t % (side - 1) + 2] = True
        f = torch.zeros(side * side, 8)
        f[:, 0] = (~blob).flatten().float()
        f[:, 1] = blob.flatten().float()
        f[:, 2:] = 0.05 * torch.randn(side * side, 6, generator=g)
        feats.append(F.normalize(f, dim=-1))
        ids.append(blob.long())
    return torch.stack(feats), torch.stack(ids)  # (T, N, D), (T, side, side)


def test_label_propagation_follows_a_moving_blob():
    feats, truth = blob_features()
    seg0 = F.one_hot(truth[0].flatten(), 2).T.float()  # (K, N)
    opts = VideoOptions(neighborhood=2)
    softs = propagate_video(feats, seg0, opts, neighborhood(6, 6, 2))
    for t, soft in enumerate(softs, start=1):
        assert torch.equal(soft.argmax(0).reshape(6, 6), truth[t]), t
        torch.testing.assert_close(soft.sum(0), torch.ones(36))  # votes are normalised


def test_neighborhood_is_a_square_window():
    near = neighborhood(5, 4, 1)
    assert near.shape == (20, 20) and near.equal(near.T)
    assert int(near[0].sum()) == 4 and int(near[5].sum()) == 9  # corner (0,0); inner (1,1)
    assert neighborhood(5, 4, 10).all()


def test_first_frame_patches_take_their_centre_pixel():
    mask = torch.zeros(8, 8, dtype=torch.uint8)
    mask[4:, 4:] = 2
    oh = one_hot_patches(mask, 4, 3)
    assert oh.shape == (3, 4) and oh.argmax(0).tolist() == [0, 0, 0, 2]


def test_region_similarity_and_contour_accuracy_on_hand_made_masks():
    a = torch.zeros(64, 64, dtype=torch.bool)
    a[10:30, 10:30] = True
    b = torch.roll(a, 1, dims=1)  # one pixel off: within DAVIS's tolerance (ceil(0.008 * 90.5) = 1 px)
    far = torch.roll(a, 8, dims=1)
    assert region_similarity(a, a).item() == 1 and region_similarity(a, b).item() == pytest.approx(380 / 420)
    assert contour_accuracy(a, a) == 1 and contour_accuracy(a, b) == 1
    assert 0 < contour_accuracy(a, far) < 0.5
    empty = torch.zeros_like(a)
    assert region_similarity(empty, empty).item() == 1 and contour_accuracy(empty, empty) == 1
    assert contour_accuracy(empty, a) == 0
    # DAVIS's seg2bmap: the inner right and lower edges (39 px) and the outer left and upper ones with the corner (41)
    assert int(boundary(a).sum()) == 80 and boundary(a)[9, 9] and boundary(a)[29, 29] and not boundary(a)[10, 10]


def test_score_video_drops_the_first_and_last_frames():
    truth = torch.zeros(4, 8, 8, dtype=torch.long)
    truth[:, :4, :4] = 1
    pred = truth.clone()
    pred[0], pred[3] = 0, 0  # wrong only where DAVIS does not look
    assert score_video(pred, truth) == [(1.0, 1.0)]


def test_score_video_scores_ids_1_to_the_first_frames_largest_as_davis():
    truth = torch.zeros(5, 8, 8, dtype=torch.long)  # frames 1..3 are scored
    truth[:, 4:, 4:] = 2  # object 2 throughout
    truth[1:3, :2, :2] = 1  # object 1 hidden in frame 0, seen in frames 1 and 2
    truth[2, 6:, :2] = 3  # object 3 above frame 0's largest id: DAVIS never scores it
    pred = torch.where(truth == 2, 2, 0)  # propagation from frame 0 cannot predict 1 or 3
    # object 1: J = F = 0 in frames 1 and 2, 1 in frame 3 (both masks empty); object 2: perfect
    assert score_video(pred, truth) == [(pytest.approx(1 / 3), pytest.approx(1 / 3)), (1.0, 1.0)]
    truth[0, :2, :2] = 3  # frame 0's largest id is 3 now: object 3 counts, and 2 and 3 are scored as seen
    assert len(score_video(pred, truth)) == 3 and score_video(pred, truth)[2] == (pytest.approx(2 / 3),) * 2
    never = torch.where(truth == 2, 0, truth)  # id 2 never appears, id 3 is in frame 0: id 2 counts 1 each frame
    assert score_video(torch.zeros_like(never), never)[1] == (1.0, 1.0)


def test_moving_masks_are_exact_and_videos_deterministic(monkeypatch):
    monkeypatch.setattr(moving, "background", lambda rng, size: np.zeros((size, size, 3), np.uint8))
    objects = ImageSet(torch.full((3, 1, 28, 28), 200, dtype=torch.uint8), torch.arange(3))
    a = moving.generate_videos(objects, 2, 32, seed=0)
    assert a.images.shape == (2 * moving.FRAMES, 3, 32, 32)
    assert torch.equal(a.images.amax(1) > 0, a.masks > 0)
    b = moving.generate_videos(objects, 2, 32, seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    videos, masks = moving.as_videos(a)
    assert videos.shape[:2] == (2, moving.FRAMES) and masks.shape == (2, moving.FRAMES, 32, 32)
    assert not torch.equal(masks[0, 0], masks[0, -1])  # the objects move


def test_video_protocol_end_to_end(tmp_path):
    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 32, 3, 8, [0.5] * 3, [0.25] * 3)
    test = moving.generate_videos(ImageSet(torch.randint(0, 255, (5, 1, 28, 28), dtype=torch.uint8),
                                           torch.arange(5)), 2, 32, seed=0)
    ctx = EvalContext(backbone=spec.build(), spec=spec, prepare=normalizer(spec), run_dir=tmp_path,
                      splits=Splits("moving", test, test), data="moving", options=VideoOptions())
    out = video_protocol(ctx)
    assert 0 <= out["j"] <= 100 and 0 <= out["f"] <= 100 and out["jf"] == pytest.approx((out["j"] + out["f"]) / 2,
                                                                                          abs=0.01)
    assert out["settings"]["sequences"] == 2 and out["settings"]["objects"] >= 4
    with pytest.raises(EvalError, match="not a video dataset"):
        video_protocol(EvalContext(backbone=spec.build(), spec=spec, prepare=normalizer(spec), run_dir=tmp_path,
                                   splits=Splits("x", test, test), data="cluttered"))


def test_video_protocol_without_objects_in_any_first_frame_says_so(tmp_path):
    spec = BackboneSpec("vit-cpu", 32, 3, 8, [0.5] * 3, [0.25] * 3, width=16, depth=1, num_heads=2)
    frames = torch.zeros(moving.FRAMES, 3, 32, 32, dtype=torch.uint8)
    test = ImageSet(frames, masks=torch.zeros(moving.FRAMES, 32, 32, dtype=torch.uint8))
    ctx = EvalContext(backbone=spec.build(), spec=spec, prepare=normalizer(spec), run_dir=tmp_path,
                      splits=Splits("moving", test, test), data="moving", options=VideoOptions())
    with pytest.raises(EvalError, match="no object in the first frame of any of the 1 test sequences"):
        video_protocol(ctx)


def test_conv_stem_cells_take_the_centre_of_their_part_inside_the_frame():
    mask = torch.zeros(30, 30, dtype=torch.uint8)
    mask[27, 27] = 1  # the centre of the last cells' part inside the frame (pixels 24..29), not 24 + 8 // 2
    oh = one_hot_patches(mask, 8, 2, (4, 4))  # ceil(30 / 8) = 4 cells a side; centres 4, 12, 20, 27
    assert oh.shape == (2, 16) and oh.argmax(0).tolist() == [0] * 15 + [1]


def test_segment_video_on_the_conv_stem_keeps_the_frame_size():
    from selfsup.eval.video import segment_video

    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 28, 3, 7, [0.5] * 3, [0.25] * 3, stem="conv")
    first = torch.zeros(30, 30, dtype=torch.long)
    first[5:15, 5:15] = 1
    pred = segment_video(spec.build().eval(), torch.randn(4, 3, 30, 30), first, VideoOptions(neighborhood=2))
    assert pred.shape == (4, 30, 30) and set(pred.unique().tolist()) <= {0, 1}
