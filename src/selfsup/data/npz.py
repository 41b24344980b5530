"""Images from a NumPy .npz file.

Two layouts: Keras' (x_train, y_train, x_test, y_test) and an unlabeled one (images, optionally labels).
Images are uint8 (N, H, W), (N, H, W, C) with C in {1, 3, 4} (alpha is dropped) or (N, C, H, W), or floats
in [0, 1], which are scaled to 0..255. An optional `classes` array of strings names the labels.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from selfsup.data.dataset import DataError, ImageSet, Splits

KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
LAYOUTS = ("x_train, y_train, x_test, y_test (Keras' layout), or images with optional labels; optional "
           "classes (strings)")


def to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """An image array -> (N, C, H, W) uint8 with C in {1, 3}.

    Accepts (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3, 4} (a 4th channel is alpha and is
    dropped); uint8, or floats in [0, 1] (scaled by 255 and rounded). `where` names the array in errors.
    """
    x = _to_uint8(x, where)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[3] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3, 4)):
        raise DataError(f"{where} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C in 1, 3, 4")
    return np.ascontiguousarray(x[:, :3])


def _to_uint8(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
            raise DataError(f"{where} is {x.dtype} with values outside [0, 1]: save uint8 images (0..255) "
                            "or floats in [0, 1]")
        return np.rint(x * 255).astype(np.uint8)
    raise DataError(f"{where} is {x.dtype}: save uint8 images (0..255) or floats in [0, 1]")


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # Keras' CIFAR stores (N, 1)
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where} has shape {y.shape}; expected ({n},), one label per image")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DataError(f"{where} must hold integer class indices >= 0, got {y.dtype}")
    return y.astype(np.int64)


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path} does not exist: expected an .npz file holding {LAYOUTS}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz of plain arrays ({e})") from e


def load_npz(path: str | Path) -> Splits:
    """An .npz file -> Splits of (N, C, H, W) uint8 images; labels int64 (N,) where the file has them.

    Keras layout: train and test sets. `images` layout: one train set, test None (labels optional).
    """
    path = Path(path)
    arrays = _read(path)
    if set(KERAS_KEYS) <= arrays.keys():
        train = to_nchw(arrays["x_train"], f"{path}:x_train")
        test = to_nchw(arrays["x_test"], f"{path}:x_test")
        if train.shape[1:] != test.shape[1:]:
            raise DataError(f"{path}: x_train images are {train.shape[1:]} but x_test ones {test.shape[1:]}")
        y_train = _labels(arrays["y_train"], len(train), f"{path}:y_train")
        y_test = _labels(arrays["y_test"], len(test), f"{path}:y_test")
        classes = _classes(arrays, path, [y_train, y_test])
        return Splits(path.name, _set(train, y_train, classes), _set(test, y_test, classes))
    if "images" in arrays:
        images = to_nchw(arrays["images"], f"{path}:images")
        labels = _labels(arrays["labels"], len(images), f"{path}:labels") if "labels" in arrays else None
        classes = _classes(arrays, path, [labels]) if labels is not None else None
        return Splits(path.name, _set(images, labels, classes))
    raise DataError(f"{path} holds the arrays {', '.join(sorted(arrays)) or '(none)'}; expected {LAYOUTS}")


def _classes(arrays: dict[str, np.ndarray], path: Path, labels: list[np.ndarray]) -> list[str]:
    top = max((int(y.max()) + 1 for y in labels if len(y)), default=0)
    if "classes" not in arrays:
        return [str(i) for i in range(top)]
    names = [str(c) for c in arrays["classes"].reshape(-1)]
    if len(names) < top:
        raise DataError(f"{path}: labels go up to {top - 1} but `classes` names only {len(names)} classes")
    return names


def _set(images: np.ndarray, labels: np.ndarray | None, classes: list[str] | None) -> ImageSet:
    return ImageSet(torch.from_numpy(images), None if labels is None else torch.from_numpy(labels), classes)
