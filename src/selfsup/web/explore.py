"""What the web page computes, as plain functions a Python user (and the tests) can call: the runs it may
show, the example and uploaded images, the attention grid of one image and its nearest training images."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.insight.visualize import BACKBONE_FILE, image_attention, save_attention
from selfsup.models.io import BackboneSpec, load_backbone
from selfsup.models.vit import VisionTransformer

EXAMPLES = ("chelsea", "astronaut", "coffee", "rocket", "camera")  # scikit-image's bundled photos
DEFAULT_UPLOAD_MB = 5.0
RUNS_ENV, UPLOAD_ENV = "SELFSUP_SERVE_RUNS", "SELFSUP_SERVE_MAX_UPLOAD_MB"
MAX_DEPTH = 3  # folders below --runs searched for runs


class UploadError(ValueError):
    """An uploaded file the page refuses; the message says why and what to do."""


def find_runs(root: str | Path) -> dict[str, Path]:
    """Runs under `root` (folders holding backbone.safetensors, at most MAX_DEPTH levels down), by relative
    name. Only these paths are ever opened: the page offers them in a list, it never takes a typed path."""
    root = Path(root).resolve()
    found = {}
    for depth in range(MAX_DEPTH + 1):
        for f in sorted(root.glob("/".join(["*"] * depth + [BACKBONE_FILE]))):
            run = f.parent.resolve()
            if run.is_relative_to(root):  # a symlink out of --runs is not followed
                found[str(run.relative_to(root)) or "."] = run
    return found


def example_image(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos as (H, W, 3) uint8."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}: choose one of {', '.join(EXAMPLES)}")
    from skimage import data as photos

    img = np.asarray(getattr(photos, name)())
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def decode_upload(data: bytes, limit_mb: float = DEFAULT_UPLOAD_MB) -> np.ndarray:
    """Uploaded bytes -> (H, W, 3) uint8, refused with UploadError when over `limit_mb` or not an image."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > limit_mb * 2**20:
        raise UploadError(f"the file is {len(data) / 2**20:.1f} MB, over this page's limit of {limit_mb:g} MB: "
                          "upload a smaller image (or restart selfsup serve with a larger --max-upload-mb)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width * im.height > 40_000_000:
                raise UploadError(f"the image is {im.width}x{im.height} pixels: upload one under 40 megapixels")
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise UploadError(f"the file does not decode as an image ({type(e).__name__}): upload a PNG, JPEG or "
                          "another format Pillow reads") from e


def to_tensor(image: np.ndarray, channels: int, short_side: int | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 -> (channels, H', W') uint8, the shorter side resized to `short_side` when given."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # a copy: PIL arrays are read-only
    if channels == 1:
        x = (x.float() * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    if short_side is not None:
        scale = short_side / min(x.shape[-2:])
        size = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
        x = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=scale < 1, align_corners=False)[0]
    return x.round().clamp(0, 255).to(torch.uint8)


def default_side(spec: BackboneSpec) -> int:
    """A display size for a run: four times its training side, at most 256 px."""
    return min(4 * spec.img_size, 256)


def attention_png(model: VisionTransformer, spec: BackboneSpec, image: torch.Tensor, threshold: float,
                  title: str = "") -> tuple[bytes, tuple[int, int]]:
    """The attention grid (heads, mean, rollout, masks) of one (C, H, W) uint8 image as PNG bytes, and the
    patch grid (h, w)."""
    import tempfile

    result = image_attention(model, spec, image, threshold, with_rollout=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = save_attention(result, model.patch_size, Path(tmp), "page", title)
        return Path(files["png"]).read_bytes(), tuple(result.maps.shape[-2:])


@dataclass
class Neighbours:
    """The k training images nearest to a query in the run's feature space (cosine)."""

    images: torch.Tensor  # (k, C, S, S) uint8
    similarity: list[float]
    labels: list[str | None]


def nearest_training_images(run: Path, image: torch.Tensor, k: int = 8) -> Neighbours:
    """The k nearest images of the run's own training data to a (C, H, W) uint8 image (features cached in
    RUN/eval/features/ by the evaluation code, so only the first query of a run pays for them)."""
    from selfsup.eval.context import build_context

    ctx = build_context(run)
    train = ctx.split("train", labelled=False)
    bank, _ = ctx.features("train", labelled=False)  # (N, D)
    x = ctx.prepare(image[None].float() / 255)
    with torch.no_grad():
        ctx.backbone.eval()
        q = ctx.backbone(x.to(ctx.device)).cpu()
    sim = F.normalize(bank, dim=1) @ F.normalize(q, dim=1)[0]
    top = sim.topk(min(k, len(sim)))
    names = train.classes
    labels = [names[int(train.labels[i])] if names and train.labels is not None else None for i in top.indices]
    return Neighbours(train.images[top.indices], [round(v, 3) for v in top.values.tolist()], labels)


def load_run(run: Path) -> tuple[torch.nn.Module, BackboneSpec]:
    """The run's backbone in eval mode."""
    model, spec = load_backbone(run / BACKBONE_FILE)
    return model.eval(), spec


__all__ = ["EXAMPLES", "Neighbours", "UploadError", "attention_png", "decode_upload", "default_side",
           "example_image", "find_runs", "load_run", "nearest_training_images", "to_tensor"]
