"""Video object segmentation by label propagation (`selfsup eval video`), as DINO's eval_video_segmentation.py.

The first frame's object masks are carried forward with no training: each frame's last-block patch tokens are
L2-normalised; a target patch's affinity to a source patch is exp(f_t . f_s / 0.1), kept only within a square
neighbourhood of 12 patches, and only the top 5 sources over the whole context (the first frame with its true
masks plus the 7 previous frames with their propagated, soft masks) vote, weighted by their normalised
affinity. Soft masks are upsampled bilinearly, each channel min-max normalised, and the argmax is the
prediction. Scored as DAVIS 2017 is: per object, region similarity J (IoU) and contour accuracy F (boundary
F-measure, tolerance 0.8% of the diagonal) averaged over the frames other than the first and the last, then
over objects; J&F is their mean. DINO builds its neighbourhood on CUDA; here it is made on the frames' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from selfsup.data.moving import as_videos
from selfsup.eval.context import EvalContext, EvalError
from selfsup.models.vit import VisionTransformer
from selfsup.options import opt

BOUNDARY_TOLERANCE = 0.008  # DAVIS: share of the image diagonal a contour may be off


@dataclass
class VideoOptions:
    """Options of `selfsup eval video` (DINO eval_video_segmentation.py's values)."""

    n_last_frames: int = opt(7, "Previous frames (with their propagated masks) in the context beside the first "
                             "frame. More frames smooth over occlusions but carry drift along.", paper=7, low=0)
    neighborhood: int = opt(12, "Source patches are at most this many patches away (rows and columns) from the "
                            "target patch; 0 allows any. Small values suit slow motion.", paper=12, low=0)
    topk: int = opt(5, "Source patches that vote for each target patch.", paper=5, low=1)
    temperature: float = opt(0.1, "Affinity exp(cosine / T): lower T trusts the most similar patches more.",
                             paper=0.1, above=0)
    max_sequences: int = opt(30, "Test sequences scored (the first ones).", low=1)


def patch_features(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) normalised frames -> (T, h*w, D) L2-normalised last-block patch tokens."""
    with torch.no_grad():
        return F.normalize(model.forward_features(x)["x_norm_patchtokens"], dim=-1)


def neighborhood(h: int, w: int, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(h*w, h*w) bool: patch i may take labels from patch j when both row and column differ by <= size."""
    rows, cols = torch.arange(h, device=device).repeat_interleave(w), torch.arange(w, device=device).repeat(h)
    return ((rows[:, None] - rows[None]).abs() <= size) & ((cols[:, None] - cols[None]).abs() <= size)


def propagate(target: torch.Tensor, sources: torch.Tensor, segs: torch.Tensor, opts: VideoOptions,
              near: torch.Tensor | None = None) -> torch.Tensor:
    """Soft masks of one frame from its context.

    target (N, D) and sources (n, N, D) normalised features; segs (n, K, N) the sources' soft masks (K channels,
    background first); near (N, N) bool or None -> (K, N) the target's soft masks."""
    aff = torch.exp(sources @ target.T / opts.temperature)  # (n, N source, N target)
    if near is not None:
        aff = aff * near  # near[source, target]; symmetric
    aff = aff.reshape(-1, target.shape[0])  # (n*N, N target)
    k = min(opts.topk, aff.shape[0])
    floor = aff.topk(k, dim=0).values.min(dim=0).values  # (N target,)
    aff = torch.where(aff >= floor, aff, torch.zeros_like(aff))
    aff = aff / aff.sum(dim=0, keepdim=True)
    return segs.permute(1, 0, 2).reshape(segs.shape[1], -1) @ aff  # (K, N target)


def one_hot_patches(mask: torch.Tensor, stride: int, k: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, W) ids -> (K, h*w) one-hot of each token cell's centre pixel (DINO: nearest downsampling); `grid`
    (h, w) defaults to whole cells of `stride` px. A cell reaching past the image (the convolutional stem's last
    ones) takes the centre of its part inside."""
    h, w = grid or (mask.shape[0] // stride, mask.shape[1] // stride)
    rows, cols = (cell_centres(n, stride, side, mask.device) for n, side in zip((h, w), mask.shape, strict=True))
    small = mask[rows[:, None], cols[None]].long()  # (h, w)
    return F.one_hot(small.flatten(), k).T.float()


def cell_centres(n: int, stride: int, side: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n,) pixel index of each of n cells of `stride` px along a side of `side` px: the centre of the cell's part
    inside the image (start + stride // 2 for a whole cell)."""
    start = torch.arange(n, device=device) * stride
    return (start + ((start + stride).clamp_max(side) - start) // 2).clamp_max(side - 1)


def norm_channels(soft: torch.Tensor) -> torch.Tensor:
    """(K, H, W): each channel with a positive maximum min-max scaled to [0, 1] (DINO's norm_mask)."""
    lo = soft.flatten(1).min(1).values[:, None, None]
    hi = soft.flatten(1).max(1).values[:, None, None]
    scaled = (soft - lo) / (hi - lo).clamp_min(1e-12)
    return torch.where(hi > 0, scaled, soft)


def propagate_video(feats: torch.Tensor, seg0: torch.Tensor, opts: VideoOptions,
                    near: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Soft masks (K, N) of frames 1..T-1 from features (T, N, D) and the first frame's masks seg0 (K, N): the
    context of each frame is the first frame and the `n_last_frames` frames before it."""
    recent: list[tuple[torch.Tensor, torch.Tensor]] = []
    out = []
    for t in range(1, len(feats)):
        sources = torch.stack([feats[0]] + [f for f, _ in recent])
        segs = torch.stack([seg0] + [s for _, s in recent])
        soft = propagate(feats[t], sources, segs, opts, near)  # (K, N)
        recent = (recent + [(feats[t], soft)])[-opts.n_last_frames:] if opts.n_last_frames else []
        out.append(soft)
    return out


def segment_video(model: VisionTransformer, x: torch.Tensor, first: torch.Tensor, opts: VideoOptions
                  ) -> torch.Tensor:
    """Normalised frames (T, C, H, W) and the first frame's ids (H, W) -> predicted ids (T, H, W)."""
    s, (h, w), (H, W) = model.stride, model.grid_size(*x.shape[-2:]), x.shape[-2:]
    k = int(first.max()) + 1
    near = neighborhood(h, w, opts.neighborhood, x.device) if opts.neighborhood > 0 else None
    preds = [first.long()]
    for soft in propagate_video(patch_features(model, x), one_hot_patches(first, s, k, (h, w)), opts, near):
        up = F.interpolate(soft.reshape(1, k, h, w), scale_factor=s, mode="bilinear", align_corners=False)[0]
        preds.append(norm_channels(up[:, :H, :W]).argmax(0))  # cropped back to the frame (conv stem: past it)
    return torch.stack(preds)


def region_similarity(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """J: IoU of bool masks (..., H, W) -> (...); 1 where both are empty (DAVIS)."""
    inter = (pred & truth).flatten(-2).sum(-1).float()
    union = (pred | truth).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def boundary(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) bool -> its one-pixel contour (DAVIS's seg2bmap at the same size): pixels that differ from the
    neighbour to the right, below, or below-right."""
    e, s, se = (torch.zeros_like(mask) for _ in range(3))
    e[:, :-1], s[:-1, :], se[:-1, :-1] = mask[:, 1:], mask[1:, :], mask[1:, 1:]
    b = (mask ^ e) | (mask ^ s) | (mask ^ se)
    b[-1, :] = mask[-1, :] ^ e[-1, :]
    b[:, -1] = mask[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(H, W) bool dilated by a disk of `radius` pixels (skimage's disk)."""
    r = torch.arange(-radius, radius + 1)
    disk = ((r[:, None] ** 2 + r[None] ** 2) <= radius ** 2).float()[None, None]
    return F.conv2d(mask.float()[None, None], disk, padding=radius)[0, 0] > 0


def contour_accuracy(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """F: the F-measure of pred's contour against truth's (H, W bool), each matched within a tolerance of
    0.8% of the image diagonal (DAVIS's f_measure)."""
    radius = math.ceil(BOUNDARY_TOLERANCE * math.hypot(*truth.shape))
    bp, bt = boundary(pred), boundary(truth)
    n_p, n_t = int(bp.sum()), int(bt.sum())
    if n_p == 0 or n_t == 0:
        return 1.0 if n_p == n_t else 0.0  # both empty: perfect; one empty: precision or recall is 0
    precision = (bp & dilate(bt, radius)).sum().item() / n_p
    recall = (bt & dilate(bp, radius)).sum().item() / n_t
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def score_video(pred: torch.Tensor, truth: torch.Tensor) -> list[tuple[float, float]]:
    """(J, F) of objects 1..(the first frame's largest id), each averaged over frames 1..T-2 (DAVIS drops the
    first and the last): pred and truth (T, H, W) ids.

    As DAVIS 2017 (davisvideochallenge/davis2017-evaluation, davis2017/davis.py `get_all_masks`: one mask per
    id in 1..max of frame 0; evaluation.py drops the frames): an id under that maximum but absent from frame 0
    still counts (J and F are 0 where it appears unpredicted), an id that never appears counts 1 in each frame
    that also predicts none of it (metrics.py: both masks empty), and ids above the maximum are not scored."""
    out = []
    for i in range(1, int(truth[0].max()) + 1):
        frames = range(1, len(truth) - 1)
        j = [region_similarity(pred[t] == i, truth[t] == i).item() for t in frames]
        f = [contour_accuracy(pred[t] == i, truth[t] == i) for t in frames]
        out.append((sum(j) / len(j), sum(f) / len(f)))
    return out


def video_protocol(ctx: EvalContext) -> dict[str, Any]:
    """J, F and J&F of label propagation on the test sequences of `--data moving`."""
    opts = ctx.options or VideoOptions()
    if not isinstance(ctx.backbone, VisionTransformer):
        raise EvalError(f"label propagation reads ViT patch tokens, but {ctx.run_dir} holds a "
                        f"{ctx.pretrain.get('backbone', 'ResNet')}")
    if not ctx.data.startswith("moving"):
        raise EvalError(f"--data {ctx.data} is not a video dataset: use --data moving")
    videos, masks = as_videos(ctx.split("test", labelled=False))
    ctx.backbone.eval()
    scores, n = [], min(opts.max_sequences, len(videos))
    for v in range(n):
        pred = segment_video(ctx.backbone, ctx.prepare(videos[v].to(ctx.device)), masks[v, 0].to(ctx.device), opts)
        scores += score_video(pred.cpu(), masks[v])
    if not scores:
        raise EvalError(f"--data {ctx.data}: no object in the first frame of any of the {n} test sequences scored, "
                        "so there is nothing to propagate")
    j = 100 * sum(s[0] for s in scores) / len(scores)
    f = 100 * sum(s[1] for s in scores) / len(scores)
    settings = {"sequences": n, "objects": len(scores),
                "frames": videos.shape[1], "image_size": list(videos.shape[-2:])}
    return {"jf": round((j + f) / 2, 2), "j": round(j, 2), "f": round(f, 2), "settings": settings}


__all__ = ["VideoOptions", "boundary", "contour_accuracy", "neighborhood", "propagate", "propagate_video",
           "region_similarity",
           "segment_video", "video_protocol"]
