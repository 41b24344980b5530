"""`moving`: short videos of the cluttered objects moving, turning and passing over each other, with exact
per-frame masks, generated from a seed (no download). For video object segmentation by label propagation.

Each sequence has FRAMES frames of one background crop (as `cluttered`) drifting slowly, and 2 or 3
Fashion-MNIST objects (digits where Fashion-MNIST is absent), each with its own colour, size (35-50% of the
side), start, straight-line velocity (bouncing off the borders) and rotation speed; a later object passes in
front of an earlier one. Masks hold the visible object ids 1..K per frame, exactly where each object's pixels
were painted. As an image dataset (`--data moving`) the frames are flattened in order: sequence s, frame t is
image s * FRAMES + t; train sequences use the source's train objects, test sequences its test objects.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from selfsup.data.cluttered import OBJECT_MIN, background, object_source, random_color
from selfsup.data.dataset import DataError, ImageSet, Splits

SIZE = 64
FRAMES = 16
N_TRAIN, N_TEST = 200, 30  # sequences
SCALE = (0.35, 0.5)
SPEED = (0.01, 0.04)  # px per frame / image side
TURN = 6.0  # max degrees per frame


def rotated_object(obj: np.ndarray, side: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """(28, 28) uint8 object scaled to (side, side) and rotated by `angle` degrees about its centre:
    intensities in [0, 1] and the bool mask of its own pixels (> OBJECT_MIN), both resampled bilinearly."""
    pix = Image.fromarray(obj).resize((side, side), Image.Resampling.BILINEAR)
    own = Image.fromarray(((obj > OBJECT_MIN) * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR)
    pix, own = (im.rotate(angle, Image.Resampling.BILINEAR) for im in (pix, own))
    return np.asarray(pix, dtype=np.float32) / 255, np.asarray(own) >= 128


def sequence(rng: np.random.Generator, objects: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One video: frames (FRAMES, size, size, 3) uint8 and masks (FRAMES, size, size) uint8 ids 1..K."""
    big = background(rng, 2 * size)  # the background drifts across a crop twice the side
    drift = rng.uniform(-0.5, 0.5, size=2) * size / FRAMES
    k = rng.integers(2, 4)
    picks = rng.integers(len(objects), size=k)
    sides = (rng.uniform(*SCALE, size=k) * size).round().astype(int)
    pos = rng.uniform(0, 1, size=(k, 2)) * (size - sides[:, None])
    vel = rng.uniform(*SPEED, size=(k, 2)) * size * rng.choice([-1, 1], size=(k, 2))
    angle0, turn = rng.uniform(-30, 30, size=k), rng.uniform(-TURN, TURN, size=k)
    colors = [random_color(rng) for _ in range(k)]
    frames = np.zeros((FRAMES, size, size, 3), np.uint8)
    masks = np.zeros((FRAMES, size, size), np.uint8)
    for t in range(FRAMES):
        off = (np.array([size / 2, size / 2]) + drift * t).round().astype(int).clip(0, size)
        img = big[off[0]:off[0] + size, off[1]:off[1] + size].astype(np.float32)
        for i in range(k):
            pix, own = rotated_object(objects[picks[i]], sides[i], angle0[i] + turn[i] * t)
            top, left = pos[i].round().astype(int)
            region = (slice(top, top + sides[i]), slice(left, left + sides[i]))
            img[region][own] = pix[own, None] * colors[i] * 255
            masks[t][region][own] = i + 1
        frames[t] = img.round().clip(0, 255).astype(np.uint8)
        pos += vel
        bounce = (pos < 0) | (pos > size - sides[:, None])
        vel[bounce] *= -1
        pos = pos.clip(0, size - sides[:, None])
    return frames, masks


def generate_videos(objects: ImageSet, n: int, size: int, seed: int) -> ImageSet:
    """`n` sequences flattened to (n * FRAMES, 3, size, size) frames with masks; labels are sequence indices."""
    if size < 16:
        raise DataError(f"moving frames must be at least 16 px, got {size}: pass a larger image size")
    rng = np.random.default_rng(seed)
    src = objects.images[:, 0].numpy()
    frames, masks = zip(*(sequence(rng, src, size) for _ in range(n)), strict=True)
    images = torch.from_numpy(np.concatenate(frames)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.arange(n).repeat_interleave(FRAMES), None, torch.from_numpy(np.concatenate(masks)))


def as_videos(images: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened frames back to videos: (S, FRAMES, C, H, W) uint8 and masks (S, FRAMES, H, W)."""
    if images.masks is None or len(images) % FRAMES:
        raise DataError(f"{len(images)} frames are not whole {FRAMES}-frame sequences with masks: use --data moving")
    s = len(images) // FRAMES
    return images.images.reshape(s, FRAMES, *images.images.shape[1:]), images.masks.reshape(s, FRAMES,
                                                                                            *images.masks.shape[1:])


def load_moving(image_size: int | None = None, seed: int = 0) -> Splits:
    """N_TRAIN / N_TEST sequences of FRAMES RGB frames (flattened), side image_size or 64, with masks."""
    size = image_size or SIZE
    source, notice = object_source()
    return Splits("moving", generate_videos(source.train, N_TRAIN, size, seed),
                  generate_videos(source.test, N_TEST, size, seed + 1), notice)


__all__ = ["FRAMES", "as_videos", "generate_videos", "load_moving", "sequence"]
