"""What the web page computes, as plain functions a Python user (and the tests) can call: the runs it may show
(files under --runs only), the example and uploaded images (checked, upright, shrunk to a bounded token count)
and the attention grid of one image. Its nearest training images: `neighbours.py`."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.data.dataset import DataError
from selfsup.data.decode import decode, to_array
from selfsup.insight.visualize import BACKBONE_FILE, image_attention, save_attention
from selfsup.models.io import BackboneFileError, BackboneSpec, load_backbone
from selfsup.models.vit import VisionTransformer

EXAMPLES = ("chelsea", "astronaut", "coffee", "rocket", "camera")  # scikit-image's bundled photos
DEFAULT_UPLOAD_MB = 5.0
RUNS_ENV, UPLOAD_ENV, DATA_ROOT_ENV = "SELFSUP_SERVE_RUNS", "SELFSUP_SERVE_MAX_UPLOAD_MB", "SELFSUP_SERVE_DATA_ROOT"
MAX_DEPTH = 3  # folders below --runs searched for runs
UPLOAD_MAX_PIXELS = 40_000_000  # read from the header before decoding: at most 120 MB once decoded as RGB
# Tokens (cells of the backbone's stride) an image is shrunk to at most. Attention holds heads x T^2 floats per
# block: at 1024 tokens, ViT-B's 12 heads take 48 MiB, and rollout keeps one block's at a time (plus the
# (T, T) product), so a page stays within a few hundred MB whatever the upload's shape. 1024 tokens is a 32x32
# grid: 512 px with 16-px patches, 256 px with 8-px ones.
MAX_TOKENS = 1024
RESNET_STRIDE = 32  # a ResNet's output stride: its cells, for the same bound on pixels


class UploadError(ValueError):
    """An uploaded file the page refuses; the message says why and what to do."""


class RunError(ValueError):
    """A run (or its data) the page cannot show; the message names the run, says why and what to do."""


def inside(path: str | Path, root: str | Path) -> bool:
    """Whether `path`, symlinks resolved, lies under `root` (resolved too)."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def find_runs(root: str | Path) -> dict[str, Path]:
    """Runs under `root` (folders holding backbone.safetensors, at most MAX_DEPTH levels down), by relative
    name. Only these paths are ever opened: the page offers them in a list, it never takes a typed path. A run
    folder or backbone file that is a symlink out of `root` is not offered."""
    root = Path(root).resolve()
    found = {}
    for depth in range(MAX_DEPTH + 1):
        for f in sorted(root.glob("/".join(["*"] * depth + [BACKBONE_FILE]))):
            run = f.parent.resolve()
            if run.is_relative_to(root) and inside(f, root):  # a symlink out of --runs is not followed
                found[str(run.relative_to(root)) or "."] = run
    return found


def run_file(run: Path, name: str, root: str | Path) -> Path | None:
    """RUN/name when it is a file inside `root` (symlinks out are not followed), else None."""
    path = run / name
    return path if path.is_file() and inside(path, root) else None


def file_key(path: Path) -> tuple[str, int, int]:
    """(path, size, modification time in ns): what the page's caches are keyed by, so a rewritten file is read
    again."""
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def example_image(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos as (H, W, 3) uint8."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}: choose one of {', '.join(EXAMPLES)}")
    from skimage import data as photos

    img = np.asarray(getattr(photos, name)())
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def decode_upload(data: bytes, limit_mb: float = DEFAULT_UPLOAD_MB, max_pixels: int = UPLOAD_MAX_PIXELS) -> np.ndarray:
    """Uploaded bytes -> (H, W, 3) uint8, upright (the one decoder, `data/decode.py`); refused with UploadError
    when over `limit_mb`, when its header declares more than `max_pixels` (checked before decoding), or when
    not an image."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > limit_mb * 2**20:
        raise UploadError(f"the file is {len(data) / 2**20:.1f} MB, over this page's limit of {limit_mb:g} MB: "
                          "upload a smaller image (or restart selfsup serve with a larger --max-upload-mb)")
    try:
        im = decode(io.BytesIO(data), 3, max_pixels=max_pixels)
    except DataError as e:
        raise UploadError(f"{e}: upload an image under {max_pixels / 1e6:g} megapixels") from e
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UploadError(f"the file does not decode as an image ({type(e).__name__}): upload a PNG, JPEG or "
                          "another format Pillow reads") from e
    return to_array(im).transpose(1, 2, 0)


def token_stride(model: torch.nn.Module) -> int:
    """Pixels per cell of the model's output grid: a ViT's patch size or conv-stem stride, a ResNet's 32."""
    return model.stride if isinstance(model, VisionTransformer) else RESNET_STRIDE


def display_size(h: int, w: int, short_side: int | None, stride: int, max_tokens: int = MAX_TOKENS
                 ) -> tuple[int, int]:
    """The (H, W) an h x w image is resized to: its shorter side to `short_side` (kept when None), then shrunk
    until its grid of `stride`-px cells (partial cells counted) has at most `max_tokens` cells, each side at
    least one cell."""
    scale = 1.0 if short_side is None else short_side / min(h, w)
    H, W = max(1, round(h * scale)), max(1, round(w * scale))
    cells = math.ceil(H / stride) * math.ceil(W / stride)
    if cells <= max_tokens:
        return H, W
    f = math.sqrt(max_tokens / cells)
    H, W = max(stride, int(H * f) // stride * stride), max(stride, int(W * f) // stride * stride)
    W = min(W, max_tokens // math.ceil(H / stride) * stride)  # a side held at one cell leaves the other fewer
    return min(H, max_tokens // math.ceil(W / stride) * stride), W


def to_tensor(image: np.ndarray, channels: int, short_side: int | None = None, stride: int = 16,
              max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    """(H, W, 3) uint8 -> (channels, H', W') uint8 at `display_size` (the shorter side at `short_side`, at most
    `max_tokens` cells of `stride` px); grayscale by luma (BT.601, as PIL's convert("L"))."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # a copy: PIL arrays are read-only
    if channels == 1:
        x = (x.float() * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    size = display_size(*x.shape[-2:], short_side, stride, max_tokens)
    if size != tuple(x.shape[-2:]):
        shrink = size[0] < x.shape[-2]
        x = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=shrink, align_corners=False)[0]
    return x.round().clamp(0, 255).to(torch.uint8)


def default_side(spec: BackboneSpec) -> int:
    """A display size for a run: four times its training side, at most 256 px."""
    return min(4 * spec.img_size, 256)


def attention_png(model: VisionTransformer, spec: BackboneSpec, image: torch.Tensor, threshold: float,
                  title: str = "") -> tuple[bytes, tuple[int, int]]:
    """The attention grid (heads, mean, rollout, masks) of one (C, H, W) uint8 image as PNG bytes, and the
    token grid (h, w) (registers left out: `cls_attention`)."""
    import tempfile

    result = image_attention(model, spec, image, threshold, with_rollout=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = save_attention(result, model.stride, Path(tmp), "page", title)
        return Path(files["png"]).read_bytes(), tuple(result.maps.shape[-2:])


def load_run(run: Path, root: str | Path | None = None) -> tuple[torch.nn.Module, BackboneSpec]:
    """The run's backbone in eval mode; a damaged, half-written or foreign backbone file is one RunError that
    names the file from `root` (the page shows no server paths)."""
    try:
        model, spec = load_backbone(run / BACKBONE_FILE)
    except BackboneFileError as e:
        where = str(run.resolve().parent) if root is None else str(Path(root).resolve())
        raise RunError(str(e).replace(where + "/", "").replace(where, ".")) from e
    return model.eval(), spec


__all__ = ["DATA_ROOT_ENV", "EXAMPLES", "MAX_TOKENS", "RunError", "UploadError", "attention_png", "decode_upload",
           "default_side", "display_size", "example_image", "file_key", "find_runs", "inside", "load_run",
           "run_file", "to_tensor", "token_stride"]
