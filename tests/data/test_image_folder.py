import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data import DataError
from selfsup.data.folder_index import image_extensions, stratified_split
from selfsup.data.image_folder import load_image_folder


def save(path: Path, image: Image.Image, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)
    return path


def truncated_png(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(buf, "PNG", compress_level=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


@pytest.fixture
def mixed_tree(tmp_path: Path) -> Path:
    """cats: RGB PNG 30x40, RGBA PNG 20x20, JPEG 50x60; dogs: gray PNG 24x24, palette PNG, 16-bit PNG,
    a truncated PNG and a notes file; a hidden file at the top."""
    root = tmp_path / "pets"
    save(root / "cats" / "a.png", Image.new("RGB", (30, 40), (255, 0, 0)))
    save(root / "cats" / "b.png", Image.new("RGBA", (20, 20), (10, 20, 30, 0)))
    save(root / "cats" / "sub" / "c.jpg", Image.new("RGB", (50, 60), (0, 0, 255)), "JPEG")
    save(root / "dogs" / "d.png", Image.new("L", (24, 24), 77))
    save(root / "dogs" / "e.png", Image.new("P", (26, 30), 0))
    save(root / "dogs" / "f.png", Image.fromarray(np.full((22, 22), 65535, np.uint16)))
    truncated_png(root / "dogs" / "broken.png")
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def load_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_image_folder(*args, **kwargs)


def test_mixed_tree(mixed_tree):
    with pytest.warns(UserWarning) as record:
        splits = load_image_folder(mixed_tree)
    assert len(record) == 1
    message = str(record[0].message)
    assert "broken.png" in message and "skipped 1 " in message
    images = torch.cat([splits.train.images, splits.test.images])
    # shorter sides 30, 20, 50, 24, 26, 22 (+ the broken 40x40 header) -> median 26
    assert images.shape == (6, 3, 26, 26) and images.dtype == torch.uint8
    assert splits.train.classes == ["cats", "dogs"]
    assert sorted(torch.cat([splits.train.labels, splits.test.labels]).tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(splits.test) == 2 and sorted(splits.test.labels.tolist()) == [0, 1]  # one of each class
    assert "skipped 1 unreadable" in splits.notice and "ignored 1 non-image" in splits.notice
    assert "80/20" in splits.notice and "26x26" in splits.notice


def test_pixel_values(mixed_tree):
    splits = load_quietly(mixed_tree, image_size=8)
    colours = {tuple(img[:, 4, 4].tolist()) for img in torch.cat([splits.train.images, splits.test.images])}
    # red, RGBA with alpha dropped, blue (JPEG: close to), gray 77 replicated, palette black, 16-bit white
    assert {(255, 0, 0), (10, 20, 30), (77, 77, 77), (0, 0, 0), (255, 255, 255)} <= colours
    assert any(r < 10 and g < 10 and b > 240 for r, g, b in colours)


def test_all_gray_stays_one_channel(tmp_path):
    save(tmp_path / "a" / "x.png", Image.new("L", (10, 12), 200))
    save(tmp_path / "a" / "y.png", Image.fromarray(np.full((10, 10), 32768, np.uint16)))
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 90, 90, 90])
    save(tmp_path / "b" / "z.png", palette)
    save(tmp_path / "b" / "w.bmp", Image.new("1", (10, 10), 1))
    splits = load_image_folder(tmp_path)
    images = torch.cat([splits.train.images, splits.test.images])
    assert images.shape == (4, 1, 10, 10)
    assert sorted(int(img[0, 5, 5]) for img in images) == [90, 128, 200, 255]  # 32768 / 257 -> 128


def test_colour_palette_makes_rgb(tmp_path):
    save(tmp_path / "a" / "x.png", Image.new("L", (10, 10), 200))
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 200, 10, 10])
    save(tmp_path / "a" / "y.png", palette)
    splits = load_image_folder(tmp_path)
    assert splits.train.channels == 3 and splits.test.channels == 3
    assert len(splits.train) == 1 and len(splits.test) == 1  # a class of 2 images still gets a test image


def test_centre_crop_and_size(tmp_path):
    a = np.zeros((40, 20), np.uint8)
    a[10:30] = np.arange(20)[None, :] * 10  # only the centre 20x20 square is non-black
    save(tmp_path / "a" / "tall.png", Image.fromarray(a))
    splits = load_image_folder(tmp_path, image_size=20)
    assert np.array_equal(splits.train.images[0, 0].numpy(), a[10:30])
    assert load_image_folder(tmp_path, image_size=7).train.images.shape == (1, 1, 7, 7)


def test_default_size_capped(tmp_path):
    save(tmp_path / "big.jpg", Image.new("RGB", (300, 260), (9, 9, 9)), "JPEG")
    splits = load_image_folder(tmp_path)
    assert splits.train.images.shape == (1, 3, 224, 224)
    assert "capped at 224" in splits.notice


def test_train_test_layout(tmp_path):
    for split, cls, n in [("train", "ant", 2), ("train", "bee", 3), ("test", "bee", 2)]:
        for i in range(n):
            save(tmp_path / split / cls / f"{i}.png", Image.new("RGB", (8, 8), (i, 0, 0)))
    splits = load_image_folder(tmp_path)
    assert splits.train.classes == ["ant", "bee"] and splits.test.classes == ["ant", "bee"]
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 1] and splits.test.labels.tolist() == [1, 1]
    assert splits.test.images.shape == (2, 3, 8, 8) and splits.notice is None


def test_val_folder_is_the_test_split(tmp_path):
    save(tmp_path / "train" / "a" / "0.png", Image.new("L", (8, 8)))
    save(tmp_path / "val" / "a" / "0.png", Image.new("L", (8, 8)))
    splits = load_image_folder(tmp_path)
    assert len(splits.test) == 1 and "val/" in splits.notice


def test_test_classes_must_be_subset(tmp_path):
    save(tmp_path / "train" / "a" / "0.png", Image.new("L", (8, 8)))
    save(tmp_path / "test" / "zebra" / "0.png", Image.new("L", (8, 8)))
    with pytest.raises(DataError, match="zebra") as info:
        load_image_folder(tmp_path)
    assert str(tmp_path / "test") in str(info.value)


def test_flat_folder_is_unlabeled(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.webp", Image.new("RGB", (12, 12), (0, i, 0)), "WEBP")
    splits = load_image_folder(tmp_path)
    assert splits.train.images.shape == (3, 3, 12, 12)
    assert splits.train.labels is None and splits.test is None and "unlabeled" in splits.notice


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(DataError) as info:
            load_image_folder(path)
        assert str(path) in str(info.value) and "class sub-folders" in str(info.value)


def test_all_unreadable(tmp_path):
    truncated_png(tmp_path / "a" / "x.png")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_image_folder(tmp_path)


def test_warning_names_at_most_five(tmp_path):
    save(tmp_path / "ok.png", Image.new("L", (8, 8)))
    for i in range(7):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning) as record:
        splits = load_image_folder(tmp_path)
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 7 " in message and "and 2 more" in message and message.count("bad") == 5
    assert len(splits.train) == 1 and "skipped 7" in splits.notice


def test_stratified_split():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
    train, test = stratified_split(labels)
    assert np.bincount(labels[test], minlength=3).tolist() == [2, 1, 0]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(16))
    assert np.array_equal(stratified_split(labels)[1], test)  # seeded


def test_image_extensions():
    exts = image_extensions()
    assert {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif"} <= exts and ".txt" not in exts
