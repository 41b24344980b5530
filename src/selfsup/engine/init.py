"""`--backbone.init`: a run's backbone starts from existing weights (a run directory, a backbone.safetensors or an
official checkpoint, read by models/convert.py's `load_pretrained`). The architecture is the file's: the backbone
options a user left at their defaults take the file's values, and one set to another value is refused in one line.
The evaluated feature (--backbone.pool) is the file's too unless given: a run continued from the demo is judged on
the demo's `patches`, as the demo was. The stored position grid is resampled once to the global crop's grid with the
file's own interpolation (`interpolate_pos_encoding`), so that the run's network computes at its crop size exactly
what the file's computes there, and its spec (img_size = crop side) holds. The method is built around the loaded
backbone, so its teacher, momentum encoder or EMA copy starts from the same weights and its heads start fresh (DINO,
DINOv2 and MoCo v3 load a backbone the same way; dinov2 ssl_meta_arch.py `student.pretrained_weights`). A resumed run
takes the architecture from its checkpoint's configuration and its weights from the checkpoint: the file is neither
read nor needed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.config import BackboneConfig, ConfigError, PretrainConfig
from selfsup.models.io import BackboneSpec, file_sha256
from selfsup.models.vit import state_on_grid

# BackboneConfig fields that the file decides.
ARCHITECTURE = ("name", "patch_size", "width", "depth", "num_heads", "stem", "layerscale", "registers", "ffn",
                "pos_interp")


def weights_file(path: str | Path) -> Path:
    """The file a path names: a run directory's backbone.safetensors, or the path itself."""
    path = Path(path)
    return path / "backbone.safetensors" if path.is_dir() else path


def architecture(spec: BackboneSpec) -> dict[str, Any]:
    """The BackboneConfig values of a spec's architecture."""
    return {k: getattr(spec, "name" if k == "name" else k) for k in ARCHITECTURE}


def check_given(b: BackboneConfig, arch: dict[str, Any], source: str) -> None:
    """Refuse an architecture option set (to other than its default) to another value than `arch`'s."""
    defaults = BackboneConfig()
    for k, v in arch.items():
        given = getattr(b, k)
        if given != getattr(defaults, k) and given != v:
            raise ConfigError(f"--backbone.{k.replace('_', '-')} {given} conflicts with {source}, whose backbone has "
                              f"{k} {v}: drop the option (with --backbone.init the architecture is the file's)")


def resolve_init(cfg: PretrainConfig, channels: int, saved: dict[str, Any] | None = None
                 ) -> tuple[PretrainConfig, nn.Module | None]:
    """`cfg` with the --backbone.init file's architecture, absolute path and sha256, and the file's backbone
    (None without --backbone.init). `channels` are those the method's backbone reads. With `saved` (the
    backbone section of a resumed run's checkpoint) the architecture is taken from there and nothing is read."""
    b = cfg.backbone
    if b.init is None:
        return cfg, None
    if saved is not None:
        arch = {k: saved.get(k, getattr(BackboneConfig(), k)) for k in ARCHITECTURE}
        check_given(b, arch, "the resumed run")
        keep = {k: saved.get(k) for k in ("init", "init_from", "init_sha256")}
        return dataclasses.replace(cfg, backbone=dataclasses.replace(b, **arch, **keep)), None
    from selfsup.models.convert import load_pretrained  # reads official layouts; a heavier import

    file = weights_file(b.init)
    if not file.is_file():
        raise ConfigError(f"--backbone.init {b.init}: no such file (pass a run directory, a backbone.safetensors or "
                          "an official checkpoint)")
    digest = file_sha256(file)
    if b.init_sha256 and b.init_sha256 != digest:
        raise ConfigError(f"--backbone.init {file} has sha256 {digest[:16]}..., not the recorded "
                          f"--backbone.init-sha256 {b.init_sha256[:16]}...: pass the original file, or drop "
                          "--backbone.init-sha256 to start from this one")
    model, spec = load_pretrained(file, b.init_from)
    arch = architecture(spec)
    check_given(b, arch, str(file))
    if spec.in_chans != channels:
        raise ConfigError(f"--backbone.init {file} reads {spec.in_chans}-channel images but the data "
                          f"{cfg.data.name} gives the backbone {channels}: use {spec.in_chans}-channel images "
                          "(convert them) or weights trained on your channels")
    # the file's evaluated feature unless one is given: what its own runs were judged on (the demo's `patches`)
    pool = spec.pool if b.pool == BackboneConfig().pool and spec.pool else b.pool
    backbone = dataclasses.replace(b, **arch, pool=pool, init=str(file.resolve()), init_sha256=digest)
    return dataclasses.replace(cfg, backbone=backbone), model


@torch.no_grad()
def load_init(backbone: nn.Module, source: nn.Module) -> None:
    """`source`'s weights into the freshly built `backbone` of the same architecture; a ViT's position grid
    resampled from the source's to the backbone's with the source's interpolation."""
    state = state_on_grid(source, backbone)
    try:
        backbone.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"--backbone.init does not fit the configured backbone ({str(e).splitlines()[-1][:200]})"
                          ": leave the architecture options unset") from None
