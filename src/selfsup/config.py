"""The resolved configuration of a pre-training run: dataclass defaults < YAML recipe < command line.

Every option is declared once with its help (see `selfsup.options.opt`); the CLI flags, the saved
`config.yaml` and `docs/options.md` are generated from these classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfsup.data.views import ViewsConfig
from selfsup.methods import METHODS
from selfsup.options import opt


@dataclass
class DataConfig:
    name: str = opt("fashion-mnist", "fashion-mnist, digits, an ImageFolder directory, a directory of "
                    "CIFAR python batches, or an .npz file.")
    image_size: int | None = opt(None, "Side images of an ImageFolder are resized to (default: their median).")


@dataclass
class BackboneConfig:
    name: str = opt("vit-cpu", "vit-tiny, vit-small, vit-base, vit-cpu (width 128, depth 4), vit-cpu-p4, "
                    "resnet18, resnet50.", paper="vit-small")
    patch_size: int | None = opt(None, "ViT patch size (default: the preset's). Smaller patches give more "
                                 "tokens: better features, quadratically more compute.", paper=16)
    drop_path: float = opt(0.1, "Stochastic-depth rate of the last ViT block.", paper=0.1)


@dataclass
class OptimConfig:
    epochs: float = opt(100.0, "Training epochs (fractions allowed). Ignored when --minutes is set.",
                        paper=100)
    minutes: float | None = opt(None, "Wall-clock budget: the step count is calibrated from the measured "
                                "speed so that the schedules end when time is up.")
    batch_size: int = opt(256, "Total batch size over all processes.", paper=1024)
    lr: float = opt(0.0005, "Base learning rate at batch 256, scaled linearly with the batch (lr x batch / "
                    "256, as every method's code does or assumes at its batch). Each method sets its paper's "
                    "(see its section). Raise for short runs; lower if the loss becomes nan.", paper=0.0005)
    lr_bias: float | None = opt(None, "Base learning rate of biases and norm parameters at batch 256 (default: "
                                "--optim.lr). Barlow Twins trains them at 0.0048 against 0.2 for the weights.")
    min_lr: float = opt(1e-6, "Learning rate at the end of the cosine decay.", paper=1e-6)
    warmup_epochs: float = opt(10.0, "Linear learning-rate warm-up epochs.", paper=10)
    weight_decay: float = opt(0.04, "Initial weight decay (of norms and biases too only with "
                              "--optim.decay-norm-bias).", paper=0.04)
    weight_decay_end: float = opt(0.4, "Final weight decay of the cosine schedule; equal to --optim.weight-decay "
                                  "for a constant one (every method but DINO's ViT recipe, whose ramp to 0.4 "
                                  "makes ViT features sparser; never ramp SGD's or LARS's coupled decay).",
                                  paper=0.4)
    decay_norm_bias: bool = opt(False, "Also decay biases and norm parameters, and let LARS adapt their rate "
                                "(MoCo v2, SimSiam, MoCo v3's ViT AdamW and SwAV's LARC do; DINO, BYOL, "
                                "SimCLR, Barlow Twins and VICReg exclude them).", paper=False)
    optimizer: str = opt("adamw", "adamw, lars or sgd. AdamW suits ViTs (DINO, MoCo v3); the ResNet papers use "
                         "LARS (SimCLR, BYOL, Barlow Twins, SwAV, VICReg, MoCo v3: trust coefficient 0.001) "
                         "or SGD (SimSiam, MoCo v2, DINO's ResNet). Setting it picks the method's recipe for "
                         "that optimiser (or a generic one), not the other optimiser's lr and decay.",
                         paper="adamw")
    momentum: float = opt(0.9, "Momentum of SGD and LARS.", paper=0.9)
    clip_grad: float = opt(3.0, "Per-parameter gradient-norm clip (0 disables). Around 0.3-1.0 helps "
                           "optimisation of larger ViTs.", paper=3.0)


@dataclass
class RunConfig:
    out: str = opt("runs/dino", "Output directory (config, metrics, checkpoints, exported backbone).")
    seed: int = opt(0, "Random seed (process r uses seed + r for augmentations).")
    devices: int | str = opt(1, "Devices (processes) per node, or 'auto'. Several on CPU run DDP with gloo.")
    num_nodes: int = opt(1, "Nodes (launch with torchrun or SLURM).")
    accelerator: str = opt("auto", "cpu, cuda, or auto.")
    precision: str | None = opt(None, "Fabric precision; default 32-true on CPU, bf16-mixed on GPU.")
    checkpoint_every: int = opt(200, "Steps between checkpoints: at most this much work is lost on a crash.")
    log_every: int = opt(20, "Steps between metric lines.")
    eval_knn: bool = opt(True, "Run the k-NN evaluation on the test split at the end of training.")
    knn_every: int = opt(0, "Also run it every this many steps (0: only at the end), logged as knn_top1 in "
                         "metrics.jsonl: an accuracy-versus-time curve. Each costs two feature passes.")
    sync_bn: bool = opt(True, "With several GPUs, synchronise BatchNorm statistics across processes (SimCLR, "
                        "BYOL, SimSiam, Barlow Twins need it with small per-GPU batches). CPU runs keep "
                        "per-process statistics (gloo has no SyncBatchNorm).")
    max_nonfinite: int = opt(5, "Stop after this many consecutive steps with a non-finite loss.")


SECTIONS = {"data": DataConfig, "backbone": BackboneConfig, "views": ViewsConfig, "optim": OptimConfig,
            "run": RunConfig}


@dataclass
class PretrainConfig:
    method: str = "dino"
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    method_cfg: Any = None  # the method's own dataclass, stored under the method's name

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown --method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.method_cfg is None:
            self.method_cfg = METHODS[self.method].config_class()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method}
        d.update({k: dataclasses.asdict(getattr(self, k)) for k in SECTIONS})
        d[self.method] = dataclasses.asdict(self.method_cfg)
        return _plain(d)


class ConfigError(ValueError):
    """A bad option or config file; the message names it and the fix."""


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    obj = cls()
    for k, v in values.items():
        if isinstance(getattr(obj, k), tuple) and isinstance(v, list):
            v = tuple(v)
        setattr(obj, k, v)
    return obj


def build_config(raw: dict[str, Any], where: str = "config") -> PretrainConfig:
    """A PretrainConfig from nested plain values ({'method': .., 'optim': {..}, 'dino': {..}})."""
    raw = dict(raw)
    method = raw.pop("method", "dino")
    if method not in METHODS:
        raise ConfigError(f"{where}: unknown method {method!r}: choose one of {', '.join(METHODS)}")
    backbone = (raw.get("backbone") or {}).get("name", BackboneConfig.name)
    optimizer = (raw.get("optim") or {}).get("optimizer")
    raw = merge(METHODS[method].defaults(backbone, optimizer), raw)  # its paper's recipe, below YAML and flags
    kwargs = {k: _section(cls, raw.pop(k, None) or {}, f"{where} [{k}]") for k, cls in SECTIONS.items()}
    mcfg = _section(METHODS[method].config_class, raw.pop(method, None) or {}, f"{where} [{method}]")
    if raw:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(raw)}; known: method, "
                          f"{', '.join(SECTIONS)}, {method}")
    return PretrainConfig(method=method, method_cfg=mcfg, **kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist: pass an existing YAML file to --config")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dict update: overrides win, sections are merged key by key."""
    out = dict(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def save_yaml(cfg: PretrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


RECIPES = Path(__file__).parent / "configs"


def recipe(name: str) -> dict[str, Any]:
    """A bundled YAML recipe by name (e.g. 'demo')."""
    return load_yaml(RECIPES / f"{name}.yaml")
