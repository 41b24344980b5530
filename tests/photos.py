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


def sideways_jpeg(size: tuple[int, int] = (40, 20)) -> bytes:
    """A JPEG stored sideways as a phone writes one: (width, height) `size`, its left half red and its right half
    blue, with EXIF orientation 6 (turn 90 degrees clockwise to view). Upright it is size[1] wide and size[0]
    tall, red on top and blue below."""
    import io

    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2, 0] = 255
    a[:, w // 2 :, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels but that holds the data of a 1x1 image: decoding it
    fails, so only a check of the header before decoding can refuse it for its size."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])  # width, height, then depth, colour, ...
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)
