"""`selfsup attention`: the attention maps of a ViT run on image files, saved as PNG grids and .npy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.data.dataset import DataError
from selfsup.data.decode import decode, to_array
from selfsup.insight.attention import cls_attention, crop_to_grid, mass_masks, rollout, upsample
from selfsup.insight.figure import attention_figure
from selfsup.models.io import BackboneFileError, BackboneSpec, load_backbone
from selfsup.models.vit import VisionTransformer

BACKBONE_FILE = "backbone.safetensors"


@dataclass
class AttentionMaps:
    """One image's maps at token-grid resolution: image (C, H, W) uint8 as the stem saw it (cropped to whole
    patches for a patch stem), maps (heads, h, w) CLS attention of the last block, masks (heads, h, w) bool,
    rollout (h, w) or None."""

    image: torch.Tensor
    maps: torch.Tensor
    masks: torch.Tensor
    rollout: torch.Tensor | None = None


def load_vit(checkpoint: str | Path) -> tuple[VisionTransformer, BackboneSpec]:
    """A ViT from a run directory or a backbone.safetensors file, in eval mode; a ResNet is refused."""
    path = Path(checkpoint)
    model, spec = load_backbone(path / BACKBONE_FILE if path.is_dir() else path)
    if not isinstance(model, VisionTransformer):
        raise BackboneFileError(f"{checkpoint} holds a {spec.name}, which has no attention: attention maps need "
                                "a ViT run (--backbone vit-cpu, vit-tiny, vit-small or vit-base)")
    return model.eval(), spec


def read_image(path: str | Path, channels: int, size: int | None = None) -> torch.Tensor:
    """An image file -> (channels, H, W) uint8, upright (the one decoder, `data/decode.py`), its shorter side
    resized to `size` when given (bicubic)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        im = decode(path, channels)
        if size is not None:
            scale = size / min(im.size)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.Resampling.BICUBIC)
    except FileNotFoundError as e:
        raise DataError(f"--image {path}: no such file") from e
    except DataError as e:  # over the pixel limit
        raise DataError(f"--image {path}: {e}: pass a smaller image") from e
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise DataError(f"--image {path} cannot be decoded as an image ({e}): pass a PNG, JPEG or other file "
                        "Pillow reads") from e
    return torch.from_numpy(to_array(im))


def normalise(image: torch.Tensor, spec: BackboneSpec) -> torch.Tensor:
    """(C, H, W) uint8 -> (1, C, H, W) float with the backbone's mean and std, at the image's own size."""
    mean, std = torch.tensor(spec.mean).view(-1, 1, 1), torch.tensor(spec.std).view(-1, 1, 1)
    return ((image.float() / 255 - mean) / std).unsqueeze(0)


def image_attention(model: VisionTransformer, spec: BackboneSpec, image: torch.Tensor, threshold: float = 0.6,
                    with_rollout: bool = False) -> AttentionMaps:
    """The maps of one (C, H, W) uint8 image, cropped to whole patches for a patch stem (any size for the
    convolutional one)."""
    image = crop_to_grid(model, image)
    x = normalise(image, spec)
    maps = cls_attention(model, x)[0]  # (heads, h, w)
    roll = rollout(model, x)[0] if with_rollout else None
    return AttentionMaps(image, maps, mass_masks(maps, threshold), roll)


def save_attention(result: AttentionMaps, stride: int, out: Path, stem: str, title: str = "") -> dict[str, str]:
    """Write STEM.png (the grid; maps upsampled by the `stride` pixels per token cell and cropped to the image),
    STEM.npy (heads, h, w) and, with rollout, STEM_rollout.npy (h, w) to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"{stem}.npy", result.maps.numpy().astype(np.float32))
    files = {"npy": str(out / f"{stem}.npy")}
    if result.rollout is not None:
        np.save(out / f"{stem}_rollout.npy", result.rollout.numpy().astype(np.float32))
        files["rollout_npy"] = str(out / f"{stem}_rollout.npy")
    size = tuple(result.image.shape[-2:])
    big = upsample(result.maps, stride, size)
    roll = None if result.rollout is None else upsample(result.rollout, stride, size)
    files["png"] = str(attention_figure(result.image, big, upsample(result.masks, stride, size),
                                        out / f"{stem}.png", title, roll))
    return files


def unique_stems(paths: list[Path]) -> list[str]:
    """File stems, numbered where two images share one (a/cat.png, b/cat.png -> cat, cat-2)."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        seen[p.stem] = seen.get(p.stem, 0) + 1
        stems.append(p.stem if seen[p.stem] == 1 else f"{p.stem}-{seen[p.stem]}")
    return stems


def visualize(checkpoint: str | Path, images: list[str | Path], out: str | Path, threshold: float = 0.6,
              with_rollout: bool = False, size: int | None = None) -> list[dict[str, object]]:
    """Attention of `checkpoint`'s ViT on each image file; one entry per image: its files and grid size."""
    if not 0.0 < threshold <= 1.0:
        raise DataError(f"--threshold {threshold} must be in (0, 1]: the share of attention mass a mask keeps")
    if size is not None and size < 1:
        raise DataError(f"--size {size} must be a positive number of pixels")
    model, spec = load_vit(checkpoint)
    paths = [Path(p) for p in images]
    entries = []
    for path, stem in zip(paths, unique_stems(paths), strict=True):
        result = image_attention(model, spec, read_image(path, spec.in_chans, size), threshold, with_rollout)
        title = f"{path.name}: {spec.name}/{model.patch_size}, mask keeps {threshold:.0%} of the mass"
        files = save_attention(result, model.stride, Path(out), stem, title)
        entries.append({"image": str(path), "grid": list(result.maps.shape[-2:]), "heads": result.maps.shape[0],
                        **files})
    return entries


__all__ = ["AttentionMaps", "image_attention", "load_vit", "read_image", "save_attention", "visualize"]
