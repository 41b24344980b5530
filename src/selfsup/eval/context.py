"""What every evaluation protocol is handed: the frozen backbone, its input spec, the evaluation data
(already adapted to the backbone's channels and side), where to write, the device, the seed and the
protocol's options; and the `Protocol` type the registry in `protocols.py` holds.

A protocol is a function `run(ctx) -> dict`: the dict's numbers (accuracies in percent, counts) are the
results; an optional "settings" entry (a dict) adds what the protocol decided while running (e.g. the
learning rate a sweep chose) to the options recorded with them. Its options are a dataclass declared with
`selfsup.options.opt` (default, help with tuning advice, the paper's value): the CLI makes one flag per field.

An image folder can be streamed (`--data-stream`, `streamed_split.py`): its splits then hold file names and
labels, and `features` (through `feature_source.py`, which serves both kinds of split and owns the cache)
computes the frozen features batch by batch from the files, never holding the images.
Only protocols that read nothing but `features` (`Protocol.features_only`) get such a context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from selfsup.data import ImageSet, Splits, load_data
from selfsup.errors import SelfsupError
from selfsup.eval.adapt import adapt_splits
from selfsup.eval.feature_cache import FeatureCache
from selfsup.eval.feature_source import FeatureSource
from selfsup.eval.streamed_split import StreamedSplit, open_streamed_folder
from selfsup.models.io import BackboneSpec, file_sha256, load_backbone, normalizer
from selfsup.models.vit import POOLS, VIT_PRESETS

Prepare = Callable[[torch.Tensor], torch.Tensor]
BACKBONE_FILE = "backbone.safetensors"
DATA_STREAMS = ("auto", "always", "never")  # --data-stream


class EvalError(SelfsupError, ValueError):
    """An evaluation that cannot run on the given run, data or options; the message names it and the fix."""


@dataclass
class EvalContext:
    """Inputs of one protocol run. `spec` is None (and `backbone` a flatten) for the raw-pixel baseline."""

    backbone: nn.Module
    spec: BackboneSpec | None
    prepare: Prepare | None  # uint8 or [0, 1] images -> normalised backbone input
    run_dir: Path  # eval/<protocol>.json is written here
    splits: Splits  # adapted to the backbone's channels and side; StreamedSplit's (no images) when streamed
    data: str  # the --data value
    options: Any = None  # the protocol's options dataclass
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    checkpoint: str | None = None  # sha256 of the backbone file; None: features are not cached
    cache: FeatureCache | None = None
    batch_size: int = 512  # feature extraction only
    adaptation: list[str] = field(default_factory=list)
    pretrain: dict[str, Any] = field(default_factory=dict)  # method, data, backbone of the run (config.yaml)

    def split(self, split: str, labelled: bool = True) -> ImageSet | StreamedSplit:
        """The train or test split; with `labelled`, checked to have labels."""
        images = self.splits.train if split == "train" else self.splits.test
        if images is None or (labelled and images.labels is None):
            raise EvalError(f"--data {self.data} has no {'labelled ' if labelled else ''}{split} split: evaluation "
                            "needs labelled train and test splits (a named dataset, an .npz with x_test/y_test, or "
                            "a folder with train/ and test/ class sub-folders)")
        return images

    def require_backbone(self) -> None:
        """Refuses the raw-pixel baseline for protocols that train the backbone (finetune, supervised, ...)."""
        if self.spec is None:
            raise EvalError("this protocol trains the backbone: it needs a run (--checkpoint), not raw pixels")

    def labelled(self, split: str) -> ImageSet:
        return self.split(split, labelled=True)

    @property
    def num_classes(self) -> int:
        return max(self.labelled("train").num_classes, self.labelled("test").num_classes)

    @property
    def source(self) -> FeatureSource:
        """Where `features` come from (`feature_source.py`): this context's backbone, device and cache."""
        return FeatureSource(self.backbone, self.prepare, self.device, self.batch_size, self.cache, self.checkpoint,
                             self.data, self.spec.feature if self.spec is not None else "pixels")

    def features(self, split: str, labelled: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frozen features and labels of a split: (N, D) float32 and (N,) int64 (None if unlabelled and not
        `labelled`) on the CPU, cached on disk when the context has a cache (no augmentation, eval mode)."""
        return self.source.features(split, self.split(split, labelled))

    @property
    def streamed(self) -> bool:
        return isinstance(self.splits.train, StreamedSplit)

    @property
    def skipped_files(self) -> int | None:
        """Unreadable files a streamed folder's features left out so far (None for data held in memory, whose
        loader reports them in the splits' notice)."""
        return self.splits.train.skips.count if self.streamed else None

    def data_notice(self) -> str | None:
        """The data source's notice, and how many unreadable files streaming skipped so far."""
        skips = self.splits.train.skips.notice() if self.streamed else None
        return "; ".join(n for n in (self.splits.notice, skips) if n) or None

    def with_options(self, options: Any) -> EvalContext:
        return dataclasses.replace(self, options=options)


@dataclass(frozen=True)
class Protocol:
    """A registered protocol: `run(ctx)` -> results, its options dataclass, a one-line help, and whether it
    also makes sense for raw pixels (no backbone to train or fine-tune)."""

    run: Callable[[EvalContext], dict[str, Any]]
    options: type
    help: str
    pixels: bool = False
    features_only: bool | Callable[[Any], bool] = False  # reads ctx.features only (with these options): may stream

    def __call__(self, ctx: EvalContext) -> dict[str, Any]:
        return self.run(ctx)

    def reads_images(self, options: Any) -> bool:
        """Whether the protocol, run with `options`, reads the images themselves and not only frozen features."""
        only = self.features_only(options) if callable(self.features_only) else self.features_only
        return not only


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> the first GPU if there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def run_info(run_dir: Path) -> dict[str, Any]:
    """Method and pre-training data of a run, from its config.yaml (empty when there is none)."""
    path = Path(run_dir) / "config.yaml"
    try:
        cfg = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    data = cfg.get("data")
    return {k: v for k, v in {"method": cfg.get("method"),
                              "data": data.get("name") if isinstance(data, dict) else None}.items() if v}


def streams(data: str, mode: str) -> bool:
    """Whether `--data-stream mode` streams `data`: auto and always stream an image folder (always refuses
    anything else), never streams nothing."""
    if mode not in DATA_STREAMS:
        raise EvalError(f"--data-stream {mode!r} is unknown: choose one of {', '.join(DATA_STREAMS)}")
    if mode == "never":
        return False
    from selfsup.data import stream_kind

    if stream_kind(data) == "folder":
        return True
    if mode == "always":
        raise EvalError(f"--data-stream always: evaluation streams image folders, and --data {data} is none (a "
                        "named set, an .npz file, CIFAR batches or tar shards, read into memory): use --data-stream "
                        "auto")
    return False


def load_eval_data(data: str, channels: int, size: int, stream: str = "never",
                   workers: int = 4) -> tuple[Splits, list[str]]:
    """`--data` loaded at the backbone's side (fixed-size sources are resized once, image folders are read
    straight at it), then brought to its channels (and side, if still needed). With `stream` ("auto" or
    "always", see `streams`), an image folder is opened for streaming by `workers` DataLoader processes
    instead: its splits hold file names, and the images are converted as they are decoded."""
    if streams(data, stream):
        return open_streamed_folder(data, channels, size, workers)
    return adapt_splits(load_data(data, image_size=size), channels, size)


def with_feature(backbone: nn.Module, spec: BackboneSpec, feature: str | None) -> tuple[nn.Module, BackboneSpec]:
    """The backbone rebuilt to output `feature` (a ViT pool; None: the run's own) with the same weights."""
    if feature is None or feature == spec.pool:
        return backbone, spec
    if feature not in POOLS:
        raise EvalError(f"--feature {feature!r} is unknown: choose one of {', '.join(POOLS)}")
    if spec.name not in VIT_PRESETS:
        raise EvalError(f"--feature {feature} picks a ViT's feature, but {spec.name} is a ResNet, which always "
                        "average-pools: drop --feature")
    spec = dataclasses.replace(spec, pool=feature)
    model = spec.build()
    model.load_state_dict(backbone.state_dict())
    return model, spec


def build_context(run_dir: str | Path, data: str | None = None, options: Any = None, device: str = "auto",
                  seed: int = 0, batch_size: int = 512, cache: bool = True, feature: str | None = None,
                  data_stream: str = "never", data_workers: int = 4) -> EvalContext:
    """The context for evaluating the backbone of `run_dir` (its backbone.safetensors) on `data` (default:
    the data the run was pre-trained on) through `feature` (a ViT pool, see `VisionTransformer`; default: the
    run's --backbone.pool). Features are cached under `run_dir/eval/features/`, one file per feature.
    `data_stream` "auto" or "always" streams an image folder (`load_eval_data`): give such a context only to
    protocols that read features alone (`Protocol.reads_images`, `protocols.data_stream`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvalError(f"--checkpoint {run_dir} is not a directory: pass the --out directory of a pretrain run")
    info = run_info(run_dir)
    data = data or info.get("data")
    if not data:
        raise EvalError(f"{run_dir} names no data to evaluate on (its config.yaml has no data: a converted run "
                        "made without --data, or none at all): pass --data")
    path = run_dir / BACKBONE_FILE
    backbone, spec = with_feature(*load_backbone(path), feature)
    if data_workers < 0:
        raise EvalError(f"--data-workers must be >= 0 (0: decode in this process), got {data_workers}")
    splits, changes = load_eval_data(data, spec.in_chans, spec.img_size, data_stream, data_workers)
    dev = pick_device(device)
    return EvalContext(backbone=backbone.to(dev), spec=spec, prepare=normalizer(spec), run_dir=run_dir,
                       splits=splits, data=data, options=options, device=dev, seed=seed,
                       checkpoint=file_sha256(path) if cache else None,
                       cache=FeatureCache(run_dir / "eval" / "features") if cache else None,
                       batch_size=batch_size, adaptation=changes, pretrain={**info, "backbone": spec.name})


def pixels_context(out_dir: str | Path, data: str, options: Any = None, seed: int = 0) -> EvalContext:
    """The raw-pixel baseline: features are the [0, 1] pixels themselves (flattened), nothing is cached."""
    splits = load_data(data)
    return EvalContext(backbone=nn.Flatten(), spec=None, prepare=None, run_dir=Path(out_dir), splits=splits,
                       data=data, options=options, seed=seed, pretrain={"method": "raw pixels"})


__all__ = ["DATA_STREAMS", "EvalContext", "EvalError", "Protocol", "build_context", "load_eval_data",
           "pick_device", "pixels_context", "run_info", "streams", "with_feature"]
