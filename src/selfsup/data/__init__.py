"""Data sources: each returns a `Splits` of in-memory uint8 images (N, C, H, W).

`load_data(spec)` picks the source from a string: "fashion-mnist", "digits", "cluttered", a path to an .npz file, a
folder of CIFAR python batches, or any other folder of images.

Pre-training reads image folders and tar shards lazily instead (`streaming.py`, `shards.py`), through the batch
source of `batch_source.py` that in-memory data also offers; `engine/data.py` chooses (--data.stream).
"""

from __future__ import annotations

from pathlib import Path

from selfsup.data.dataset import DataError, DataNotFound, ImageSet, Splits

__all__ = ["NAMED_SOURCES", "DataError", "DataNotFound", "ImageSet", "Splits", "available_sources", "is_named",
           "load_data", "stream_kind"]



NAMED_SOURCES = ("fashion-mnist", "fashionmnist", "digits", "cluttered", "cluttered-96", "moving")  # not paths


def is_named(spec: str) -> bool:
    """Whether `spec` names one of selfsup's own datasets (read from where selfsup keeps them), not a path."""
    return spec.strip().lower().replace("_", "-") in NAMED_SOURCES


def stream_kind(name: str) -> str | None:
    """"shards" for tar shards, "folder" for an image folder, None for what is only read into memory (the
    named sets, .npz files, CIFAR batches)."""
    from selfsup.data.cifar import is_cifar_dir
    from selfsup.data.shards import is_shards

    path = Path(name).expanduser()
    if is_shards(name):
        return "shards"
    return "folder" if path.is_dir() and not is_cifar_dir(path) else None


def available_sources() -> list[str]:
    """One short line per accepted `--data` value, for --help texts and error messages."""
    return [
        "fashion-mnist: Fashion-MNIST, 60000/10000 28x28 grayscale (apt-get install dataset-fashion-mnist, "
        "or set SELFSUP_FASHION_MNIST_DIR)",
        "digits: scikit-learn's 8x8 digits upsampled to 28x28, 1437/360 (no download)",
        "cluttered (64 px) or cluttered-96: 1-3 Fashion-MNIST objects on textured photo backgrounds with exact "
        "object masks, 10000/1000 RGB, generated from seed 0 at any --data image size (no download)",
        "moving: 200/30 videos of 16 frames (flattened) of cluttered objects moving and occluding each other, "
        "with per-frame masks, 64 px (no download; for selfsup eval video)",
        "PATH.npz: x_train, y_train, x_test, y_test (Keras layout) or images [+ labels]",
        "DIR of CIFAR-10 (data_batch_1..5, test_batch, batches.meta) or CIFAR-100 (train, test, meta) "
        "python batches",
        "DIR of images: class sub-folders (optionally under train/ and test/ or val/), or a flat folder "
        "(unlabeled)",
    ]


def load_data(spec: str, image_size: int | None = None) -> Splits:
    """`spec` -> Splits with images (N, C, H, W) uint8.

    image_size: the side image folders are resized to (default: their median shorter side, capped at 224);
    the fixed-size sources are resized to it when given (digits upsampled from 8x8 to it, default 28).
    """
    from selfsup.data.resize import resize_splits

    key = spec.strip().lower().replace("_", "-")
    if key in ("fashion-mnist", "fashionmnist"):
        from selfsup.data.fashion_mnist import load_fashion_mnist

        return resize_splits(load_fashion_mnist(), image_size)
    if key == "digits":
        from selfsup.data.digits import load_digits

        return load_digits(image_size or 28)
    if key in ("cluttered", "cluttered-96"):
        from selfsup.data.cluttered import load_cluttered

        return load_cluttered(key, image_size)
    if key == "moving":
        from selfsup.data.moving import load_moving

        return load_moving(image_size)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".npz":
        from selfsup.data.npz import load_npz

        return resize_splits(load_npz(path), image_size)
    if path.is_dir():
        from selfsup.data.cifar import is_cifar_dir, load_cifar

        if is_cifar_dir(path):
            return resize_splits(load_cifar(path), image_size)
        from selfsup.data.image_folder import load_image_folder

        return load_image_folder(path, image_size)
    raise DataError(f"unknown data {spec!r}: not a named dataset, an .npz file or a folder. Accepted:\n  "
                    + "\n  ".join(available_sources()))
