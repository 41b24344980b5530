"""The one image decoder: every reader of image files (folders, shards, `selfsup attention`, the page's uploads)
gets the same upright 8-bit pixels, and an image too large is refused from its header, before decoding."""

import io

import numpy as np
import pytest
from photos import png_claiming, sideways_jpeg  # tests/photos.py
from PIL import Image

from selfsup.data.dataset import DataError
from selfsup.data.decode import decode, default_max_pixels, to_array
from selfsup.data.image_folder import decode_image
from selfsup.insight.visualize import read_image
from selfsup.web.explore import decode_upload


def upright_red_over_blue(chw: np.ndarray) -> bool:
    """(3, H, W): taller than wide, red on the top quarter, blue on the bottom quarter."""
    h, w = chw.shape[1:]
    top, bottom = chw[:, : h // 4].reshape(3, -1).mean(1), chw[:, -h // 4 :].reshape(3, -1).mean(1)
    return h > w and top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]


def test_exif_orientation_is_applied_by_every_reader(tmp_path):
    path = tmp_path / "phone.jpg"
    path.write_bytes(sideways_jpeg((40, 20)))
    assert upright_red_over_blue(to_array(decode(path, 3)))
    assert upright_red_over_blue(read_image(path, 3).numpy())  # selfsup attention's reader
    assert upright_red_over_blue(decode_upload(path.read_bytes()).transpose(2, 0, 1))  # the page's uploads
    square = decode_image(path, 3, 20)  # training and evaluation: centre square of the upright image
    assert square[0, :5].mean() > 200 > square[2, :5].mean()  # red on top


@pytest.mark.parametrize("make, gray", [
    (lambda: Image.fromarray(np.full((6, 8), 65535, np.uint16)), True),  # 16-bit
    (lambda: Image.new("RGBA", (8, 6), (255, 0, 0, 0)), False),  # alpha dropped
    (lambda: Image.new("LA", (8, 6), (77, 10)), True),
    (lambda: Image.new("F", (8, 6), 1.0), True),  # float in [0, 1]
])
def test_modes_come_out_8_bit(make, gray):
    buf = io.BytesIO()
    make().save(buf, "TIFF")
    im = decode(io.BytesIO(buf.getvalue()))  # by content
    assert im.mode == ("L" if gray else "RGB") and im.size == (8, 6)
    assert to_array(decode(io.BytesIO(buf.getvalue()), 3)).shape == (3, 6, 8)
    if gray:
        assert int(np.asarray(im).max()) in (77, 255)


def test_a_palette_decodes_through_its_colours():
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 200, 10, 10])
    buf = io.BytesIO()
    im.save(buf, "PNG")
    assert to_array(decode(io.BytesIO(buf.getvalue()))).tolist()[0][0][0] == 200


def test_too_many_pixels_are_refused_from_the_header_before_decoding():
    # the header says 8000x6000; the data is one pixel, so decoding first would fail as "truncated" instead
    with pytest.raises(DataError, match="8000x6000 pixels, over the limit of 40.0 megapixels"):
        decode(io.BytesIO(png_claiming(8000, 6000)), 3, max_pixels=40_000_000)
    with pytest.raises(OSError, match="truncated"):  # within the limit, the same file is decoded (and fails)
        decode(io.BytesIO(png_claiming(800, 600)), 3, max_pixels=40_000_000)


def test_the_default_limit_holds_when_pillows_is_switched_off(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # some libraries do this
    assert default_max_pixels() == 2 * 89_478_485
    with pytest.raises(DataError, match="over the limit"):
        decode(io.BytesIO(png_claiming(20_000, 10_000)))

