"""In-memory image sets: the one type every data source returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.errors import SelfsupError


class DataError(SelfsupError, ValueError):
    """Bad or missing input data; the message names the file or option and the fix."""


@dataclass(frozen=True)
class ImageSet:
    """A stack of same-sized images with optional labels.

    images: (N, C, H, W) uint8, C in {1, 3}
    labels: (N,) int64 or None when the source has no labels
    classes: class names indexed by label, or None
    masks: (N, H, W) uint8 object masks (0 background, 1..K the objects of each image) or None; only
        generated sources have them (`cluttered`), and they must be resized with the images (nearest)
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    classes: list[str] | None = None
    masks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                            f"{tuple(self.images.shape)}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{len(self.labels)} labels for {len(self.images)} images")
        if self.masks is not None and (self.masks.shape != (len(self.images), *self.images.shape[-2:])
                                       or self.masks.dtype != torch.uint8):
            raise DataError(f"masks must be uint8 (N, H, W) matching images {tuple(self.images.shape)}, got "
                            f"{self.masks.dtype} {tuple(self.masks.shape)}: generate the data at the size it is "
                            "evaluated at instead of resizing it")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: torch.Tensor) -> ImageSet:
        """The images (with their labels and masks) at `idx`."""
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx]

        return ImageSet(self.images[idx], pick(self.labels), self.classes, pick(self.masks))

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(self.labels.max()) + 1 if self.labels is not None and len(self.labels) else 0


@dataclass(frozen=True)
class Splits:
    """A dataset as its source splits it. `test` is None for unlabeled sources."""

    name: str
    train: ImageSet
    test: ImageSet | None = None
    notice: str | None = None  # one line the user should see (e.g. a fallback or a count of skipped files)


class DataNotFound(DataError):
    """A named data source is not installed or not where it is looked for (callers may fall back)."""
