"""Test images that compress small, decode fast and differ per seed (image-folder and streaming tests)."""

import numpy as np
from PIL import Image


def wave_photo(size: tuple[int, int], seed: int, mode: str = "RGB") -> Image.Image:
    """Smooth colour waves of (width, height) `size`, different per seed, in PIL `mode`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]] / max(size)
    a, b, c = rng.uniform(0, 8, 3)
    rgb = np.stack([np.sin(a * xx + b * yy + c), np.cos(b * xx - a * yy), np.sin(c * xx * yy + a)], -1)
    return Image.fromarray(((rgb + 1) * 127.5).astype(np.uint8)).convert(mode)
