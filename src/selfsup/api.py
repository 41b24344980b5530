"""The Python API: what the commands do, as functions returning what their JSON lines hold.

    import selfsup
    run = selfsup.pretrain(data={"name": "digits"}, optim={"minutes": 1}, run={"out": "runs/mine"})
    small = selfsup.distill("runs/mine", data={"name": "digits"}, backbone={"width": 64}, run={"out": "runs/small"})
    record = selfsup.evaluate("runs/small", "knn")            # the dict `selfsup eval knn --json` prints
    model = selfsup.load_backbone("runs/small")
    features = selfsup.embed(model, "my_images/")              # (N, D)

A configuration is given as a `PretrainConfig`, a YAML file, or nested sections (the YAML's and the flags':
`optim={"lr": 1e-3}` is `--optim.lr 1e-3`), the later overriding the earlier; `selfsup pretrain` and
`selfsup distill` call `pretrain` and `distill` with the configuration their flags make.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selfsup.config import (
    BackboneConfig,
    ConfigError,
    DataConfig,
    OptimConfig,
    PretrainConfig,
    RunConfig,
    build_config,
    load_yaml,
    merge,
)
from selfsup.data.views import ViewsConfig
from selfsup.methods.distill import DistillConfig
from selfsup.models.io import BackboneSpec, normalizer

Config = PretrainConfig | dict[str, Any] | str | Path | None


def load_backbone(path: str | Path, source: str | None = None, *, return_spec: bool = False, **options: Any):
    """The backbone at `path` in eval mode, mapping normalised images (B, C, H, W) to features (B, feature_dim).

    `path` is a run directory, a backbone.safetensors (selfsup's, with its spec) or an official checkpoint:
    `source` names its layout, one of "dino", "dinov2", "mae", "moco-v3", "timm" (None: guessed from the file's
    keys; a layout two sources share, e.g. {'model': ...} of MAE and MoCo v3, is refused naming them). For
    official files `options` are those of `selfsup.models.convert.convert_checkpoint`: backbone ("vit-small",
    ...), patch_size, width, depth (checked against or read off the tensors, as are registers, LayerScale and
    SwiGLU), num_heads, pos_interp, mean, std and pool (default: the source's, models/sources.py) and student
    (DINO's student instead of its teacher). Inputs are normalised with the spec's mean and std, which `embed`
    does; the spec is the model's `spec` attribute, and `return_spec=True` returns (backbone, spec).
    """
    from selfsup.models.convert import load_pretrained

    model, spec = load_pretrained(path, source, **options)
    model.spec = spec
    return (model, spec) if return_spec else model


def images_of(images_or_folder: Any, channels: int, size: int) -> torch.Tensor:
    """Images as uint8 (N, channels, H, W): a folder's image files (sorted by path, each resized and centre-cropped
    to `size`), or an array/tensor (N, C, H, W) / (N, H, W) of uint8, or of floats in [0, 1]."""
    from selfsup.data.channels import to_channels
    from selfsup.data.dataset import DataError
    from selfsup.data.folder_index import image_extensions, scan_folder
    from selfsup.data.image_folder import decode_image

    if isinstance(images_or_folder, (str, Path)):
        folder = Path(images_or_folder)
        try:  # the files every reader of a folder sees (data/folder_index.py), all splits, sorted by path
            train, test, _ = scan_folder(folder, image_extensions()) if folder.is_dir() else (None, None, None)
        except DataError:
            train = test = None
        files = sorted(train.files + (test.files if test else [])) if train else []
        if not files:
            raise ConfigError(f"{folder} holds no image files: pass a folder of images, or an array (N, C, H, W)")
        decoded = [decode_image(p, channels, size) for p in files]
        bad = [(p, d) for p, d in zip(files, decoded, strict=True) if isinstance(d, str)]
        if bad:
            raise ConfigError(f"{bad[0][0]} cannot be read ({bad[0][1]}): remove it or pass another folder")
        return torch.from_numpy(np.stack(decoded))
    x = torch.as_tensor(images_or_folder)
    x = x.unsqueeze(1) if x.ndim == 3 else x
    if x.ndim != 4:
        raise ConfigError(f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return to_channels(x, channels)


def embed(model: nn.Module | str | Path, images_or_folder: Any, *, spec: BackboneSpec | None = None,
          batch_size: int = 256, device: str = "cpu") -> torch.Tensor:
    """Features (N, D) float32 of images through a backbone of `load_backbone` (or the path of one): the images
    of a folder, or an array (N, C, H, W) of uint8 or [0, 1] floats, brought to the backbone's channels and
    side and normalised with its spec (the model's `spec` unless `spec` is given)."""
    from selfsup.eval.features import extract_features

    if isinstance(model, (str, Path)):
        model = load_backbone(model)
    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise ConfigError("embed needs the backbone's spec: load it with selfsup.load_backbone, or pass spec=")
    images = images_of(images_or_folder, spec.in_chans, spec.img_size)
    return extract_features(model.to(device), images, batch_size, device, normalizer(spec))


def make_config(config: Config = None, **sections: Any) -> PretrainConfig:
    """A PretrainConfig from a config object, a YAML file or a dict of sections, with `sections` on top."""
    if isinstance(config, PretrainConfig):
        if not sections:
            return config
        config = config.to_dict()
    raw = load_yaml(config) if isinstance(config, (str, Path)) else dict(config or {})
    return build_config(merge(raw, sections), where=str(config) if isinstance(config, (str, Path)) else "api")


def summary(result: Any) -> dict[str, Any]:
    """What `selfsup pretrain --json` prints of a run's result."""
    out = {"out": str(result.out), "steps": result.steps, "total_steps": result.total_steps,
           "minutes": round(result.minutes, 2), "images_per_s": round(result.images_per_s, 1),
           "interrupted": result.interrupted}
    if result.knn:
        out["knn_top1"] = result.knn["top1"]
        out["knn"] = result.knn
    return out


def pretrain(config: Config = None, *, resume: bool = False, progress: bool = False, sized: bool = True,
             **sections: Any) -> dict[str, Any] | None:
    """Pre-train (`selfsup pretrain`): returns its JSON summary (out, steps, minutes, images_per_s, knn_top1, ...),
    None on the non-main processes of a distributed run. `resume` continues the run in run.out. With `sized`, the
    values a YAML file or dict of sections leaves open are sized to the data and this machine, and the batch is
    checked against the data, the cores and the memory, as `selfsup pretrain` does (the lines saying what was
    chosen go to stderr); a PretrainConfig, a resumed run, or sized=False is run exactly as given."""
    from selfsup.engine.pretrain import pretrain as run

    if sized and not resume and not isinstance(config, PretrainConfig):
        cfg = sized_config(config, sections)
    else:
        cfg = make_config(config, **sections)
    result = run(cfg, resume=resume, progress=progress)
    return summary(result) if result.is_main else None


def sized_config(config: Config, sections: dict[str, Any]) -> PretrainConfig:
    """`make_config`'s values with those left open sized (selfsup.sizing), the reasons printed to stderr."""
    from selfsup.sizing import sized_config as size

    raw = load_yaml(config) if isinstance(config, (str, Path)) else dict(config or {})
    cfg, lines = size(merge(raw, sections), where=str(config) if isinstance(config, (str, Path)) else "api")
    for line in lines:
        print(line, file=sys.stderr)
    return cfg


def distill(teacher: str | Path | None = None, config: Config = None, *, resume: bool = False,
            progress: bool = False, **sections: Any) -> dict[str, Any] | None:
    """Distil the frozen `teacher` (a run directory, a backbone.safetensors or an official checkpoint) into the
    configured student backbone (`selfsup distill`); returns the summary `pretrain` returns."""
    cfg = make_config(config, **{"method": "distill", **sections})
    if cfg.method != "distill":
        raise ConfigError(f"distill runs the distill method, but the configuration asks for {cfg.method}: drop method")
    if teacher is not None:
        cfg = dataclasses.replace(cfg, method_cfg=dataclasses.replace(cfg.method_cfg, teacher=str(teacher)))
    if not cfg.method_cfg.teacher:
        raise ConfigError("distill needs a teacher: pass --teacher RUN|FILE (a run directory, a backbone.safetensors "
                          "or an official checkpoint)")
    return pretrain(cfg, resume=resume, progress=progress)


def evaluate(run: str | Path, protocol: str = "knn", data: str | None = None, *, feature: str | None = None,
             device: str = "auto", seed: int = 0, write: bool = True, **options: Any) -> dict[str, Any]:
    """Evaluate a run's backbone with `protocol` (knn, linear, fewshot, finetune, ...: `selfsup eval --help`) on
    `data` (default: its pre-training data); `options` are the protocol's (`k=20`, `temperature=0.07`, ...).
    Returns the record `selfsup eval PROTOCOL --json` prints, and writes it to RUN/eval/PROTOCOL.json."""
    from selfsup.eval.context import build_context
    from selfsup.eval.protocols import get_protocol, run_protocol
    from selfsup.validate import check_options

    cls = get_protocol(protocol).options
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"{protocol} has no option {unknown[0]}: choose among "
                          f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    opts = cls(**check_options(cls, options, lambda name: name))
    ctx = build_context(run, data, opts, device, seed, feature=feature)
    return run_protocol(protocol, ctx, write=write, echo=False)


__all__ = ["BackboneConfig", "DataConfig", "DistillConfig", "OptimConfig", "PretrainConfig", "RunConfig",
           "ViewsConfig", "distill", "embed", "evaluate", "load_backbone", "make_config", "pretrain"]
