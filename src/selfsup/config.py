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
from selfsup.models import BACKBONES
from selfsup.models.vit import POOLS, POS_INTERPS, STEMS, TRAIN_POOLS
from selfsup.models.vit_layers import FFNS
from selfsup.options import opt
from selfsup.validate import ConfigError, check_sections

CLIP_MODES = ("parameter", "global")  # see engine/optim.py clip_gradients
# Fabric's precisions a run may use. bf16-true and 16-true are left out: with every weight in half precision, the
# EMA teacher's, the centre's and AdamW's small updates fall below its resolution and the teacher freezes.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "64-true")


@dataclass
class DataConfig:
    name: str = opt("fashion-mnist", "fashion-mnist, digits, an ImageFolder directory, a directory of "
                    "CIFAR python batches, an .npz file, or tar shards (a folder of .tar files or a brace "
                    "pattern; see --data.stream).")
    image_size: int | None = opt(None, "Side images of an ImageFolder are resized to (default: their median "
                                 "shorter side, capped at 224); for streamed data, the default global crop side.",
                                 low=1)
    stream: str = opt("auto", "Read the training images lazily instead of decoding them all into memory first: "
                      "auto streams image folders and tar shards (WebDataset layout: a folder of .tar files or "
                      "a brace pattern such as shards/train-{000000..000099}.tar) and keeps the small "
                      "built-in sets, .npz files and CIFAR batches in memory; never decodes an image folder "
                      "into memory as before (fastest when it fits in RAM); always insists on streaming. "
                      "Streamed, memory no longer grows with the number of images.",
                      choices=("auto", "always", "never"))
    load_size: int | None = opt(None, "Streamed data: side images are decoded at, the crops being cut from it "
                                "on the device: the shorter side is resized to it, then centre-cropped square "
                                "so that a batch stacks (content beyond the square is lost, as in memory). "
                                "Default: the global crop side x 1.15, rounded (DINO's 224 -> 258); larger "
                                "keeps more detail for small crops and costs decode time and memory.", low=1)
    workers: int = opt(4, "Streamed data: DataLoader worker processes decoding files ahead of the steps (0: "
                       "decode in the training process). Raise until images/s stops growing (about one per "
                       "CPU core the model leaves free). Tar shards read one group of shards per worker, so "
                       "their order, and an exact resume, depend on it: resume with the same value.", low=0)
    eval_images: int = opt(5000, "Streamed image folders: train and test images (each, seeded pick) held in memory "
                           "at the global crop side for the k-NN evaluation during pre-training. More gives a "
                           "steadier k-NN at 3 x side^2 bytes each; `selfsup eval knn` evaluates all of them.",
                           low=1)
    shuffle_buffer: int = opt(1000, "Tar shards: samples (still encoded) held to shuffle within the shards each "
                              "worker reads; larger mixes shards written in class order better, at about one "
                              "file size each. Shards are also shuffled per epoch.", low=1)
    holdout: float = opt(0.0, "Share of the training images (stratified by label, seeded by --run.seed) held "
                         "out as the evaluation split in place of the test split, which is then never read. "
                         "Choose recipes, learning rates and epoch counts this way (e.g. 0.1667: 10,000 of "
                         "Fashion-MNIST's 60,000), and read the test split once for the chosen one.",
                         low=0, below=1)


@dataclass
class BackboneConfig:
    name: str = opt("vit-cpu", "Architecture; vit-cpu is a ViT of width 128 and depth 4 for CPU runs, vit-cpu-p4 "
                    "the same with patches of 4 px.", paper="vit-small", choices=BACKBONES)
    patch_size: int | None = opt(None, "ViT patch size (default: the preset's). Smaller patches give more "
                                 "tokens: better features, quadratically more compute.", paper=16,
                                 low=1)
    width: int | None = opt(None, "ViT width (default: the preset's), in multiples of its channels per head "
                            "(32 for vit-cpu); for ResNets, the first stage's channels (default 64; each later "
                            "stage doubles them). Compute grows with its square: at equal minutes a narrower "
                            "network sees more epochs.", low=1)
    depth: int | None = opt(None, "ViT blocks (default: the preset's). ResNets take their depth from the name.",
                            low=1)
    drop_path: float = opt(0.1, "Stochastic-depth rate of the last ViT block.", paper=0.1, low=0,
                           below=1)
    patch_dropout: float = opt(0.0, "Share of a ViT's patch tokens left out at random of each training view "
                               "(PatchDropout, Liu et al. 2023; FLIP's masking): the blocks cost about (1 - share) "
                               "as much, and each view sees other tokens, a further augmentation. Evaluation, "
                               "attention maps and momentum teachers see all tokens. For joint-embedding and "
                               "pretext methods (MAE, SimMIM, colorization and inpainting mask or read the patch "
                               "grid themselves). 0.5 buys the most epochs per CPU-minute for little loss per "
                               "epoch (docs/demo_sweep.md); 0 is the papers'.", paper=0.0, low=0, below=1)
    stem: str = opt("patch", "How a ViT embeds its input: patch (one patch_size x patch_size conv, the ViT's) or "
                    "conv (MoCo v3's convolutional stem: ceil(log2(patch_size)) 3x3 stride-2 convs with BatchNorm "
                    "and ReLU, then a 1x1 conv; Xiao et al. 2021 find it trains more stably and transfers better "
                    "at a few percent more compute). With conv, crops must be at most 8 patches a side when the "
                    "patch size is not a power of 2.", paper="patch", choices=STEMS)
    layerscale: float | None = opt(None, "LayerScale (CaiT; DINOv2): each ViT block's two residual branches are "
                                   "scaled per channel by a learned vector starting at this value (DINOv2 trains "
                                   "with 1e-5: blocks start near the identity, which steadies deep ViTs). None: no "
                                   "LayerScale, as DINO's and MAE's ViTs.", paper=None, above=0)
    registers: int = opt(0, "Register tokens (Darcet et al. 2024, 'Vision Transformers need registers'): learned "
                         "tokens after [CLS] that no feature reads; large ViTs park global information in them "
                         "instead of in background patches, which cleans their attention maps. DINOv2's _reg "
                         "models have 4.", paper=0, low=0)
    ffn: str = opt("mlp", "Each ViT block's feed-forward: mlp (GELU, the ViT's) or swiglu (DINOv2's ViT-g: "
                   "w3(silu(x1) * x2), hidden width about 2/3 of the MLP's so the cost stays the same).",
                   paper="mlp", choices=tuple(FFNS))
    pool: str = opt("cls", "The ViT feature that evaluation reads (k-NN, linear probe, fine-tuning, the demo's "
                    "rows, learned and random alike; `selfsup eval --feature` overrides it): cls, mean (of the "
                    "patch tokens), cls+mean (both concatenated: DINO's linear evaluation of ViT-B, with "
                    "avgpool) or cls-last4 (the CLS tokens of the last 4 blocks concatenated: DINO's linear "
                    "evaluation of ViT-S) or patches (the patch tokens in raster order, concatenated: keeps where each "
                    "part is, as raw pixels do; for small images, as it grows with the token grid). Pre-training "
                    "heads read --backbone.train-pool. On 28-px images with 16 tokens, patches is worth 2 k-NN "
                    "points over cls+mean, and cls+mean 1-2 over cls (docs/demo_sweep.md). ResNets always "
                    "average-pool.", paper="cls", choices=POOLS)
    train_pool: str = opt("cls", "The ViT feature the method's head reads in pre-training: cls (every paper's) or "
                          "mean (of the patch tokens the view kept, after patch dropout), for the methods whose head "
                          "reads the pooled feature (not the masked or token-grid ones). Training the feature that "
                          "evaluation reads (--backbone.pool) is the direct way to make that feature good. ResNets "
                          "always average-pool.", paper="cls", choices=TRAIN_POOLS)
    num_heads: int | None = opt(None, "ViT attention heads (default: the width over the preset's channels per head). "
                                "Taken from a --backbone.init file (MoCo v3's ViT-S has 12 where DINO's has 6).",
                                low=1)
    pos_interp: str = opt("size", "How a ViT resizes its position embeddings to another token grid (local crops, "
                          "other image sizes): size (bicubic to the grid) or dino (DINO's scale factors, which "
                          "its weights were trained with). Taken from a --backbone.init file.", paper="size",
                          choices=POS_INTERPS)
    init: str | None = opt(None, "Start the backbone, and the method's teacher or momentum copies, from these weights: "
                           "a run directory, a backbone.safetensors or an official checkpoint (--backbone.init-from "
                           "names its layout); the method's heads start fresh, and --resume continues from the "
                           "run's own checkpoint, never from this file. The architecture is taken from the file: "
                           "leave --backbone.name, patch-size, width, depth, num-heads, stem, layerscale, "
                           "registers, ffn and pos-interp unset (a value other than the file's is refused). The "
                           "stored position grid is resampled once to the global crop's grid, as the network "
                           "computes it at that size. The data must have the file's channels. `selfsup pretrain` "
                           "continues with a gentler recipe than from scratch for the values you leave open "
                           "(selfsup/sizing/continuing.py, chosen in docs/continue_screen.md): 0.3x the "
                           "method's learning rate, the backbone frozen while the fresh heads warm up "
                           "(--optim.freeze-backbone-epochs) and a teacher momentum near 1.")
    init_from: str | None = opt(None, "Layout of an official --backbone.init checkpoint, as `selfsup convert --from` "
                                "(dino, mae, moco-v3, timm, ...); default: guessed from the file.")
    init_sha256: str | None = opt(None, "sha256 of the --backbone.init file, recorded in config.yaml by the run; "
                                  "given, a file with another hash is refused (rerunning a run's config.yaml "
                                  "checks that the weights are the same).")


@dataclass
class OptimConfig:
    epochs: float = opt(100.0, "Training epochs (fractions allowed). Ignored when --minutes is set.",
                        paper=100, above=0)
    minutes: float | None = opt(None, "Wall-clock budget: the step count is calibrated from the measured "
                                "speed so that the schedules end when time is up.", above=0)
    batch_size: int = opt(256, "Total batch size over all processes (at least 2: the losses "
                         "compare images of a batch).", paper=1024, low=2)
    micro_batches: int = opt(1, "Gradient accumulation: the backbone runs on this many parts of each "
                             "process's batch, recomputing their activations in backward, so its activation "
                             "memory is that of one part while the loss still sees the whole batch (contrastive "
                             "negatives, DINO's centre and SwAV's codes as with one batch; exact for ViTs, a "
                             "ResNet's BatchNorm sees each part's statistics). Costs one more backbone forward "
                             "per step: raise it only when the batch does not fit in memory.", low=1)
    lr: float = opt(0.0005, "Base learning rate at batch 256, scaled linearly with the batch (lr x batch / "
                    "256, as every method's code does or assumes at its batch). Each method sets its paper's "
                    "(see its section). Raise for short runs; lower if the loss becomes nan.", paper=0.0005,
                    above=0)
    lr_bias: float | None = opt(None, "Base learning rate of biases and norm parameters at batch 256 (default: "
                                "--optim.lr). Barlow Twins trains them at 0.0048 against 0.2 for the weights.",
                                above=0)
    min_lr: float = opt(1e-6, "Learning rate at the end of the cosine decay.", paper=1e-6, low=0)
    warmup_epochs: float = opt(10.0, "Linear learning-rate warm-up epochs (at most --optim.warmup-max-share of "
                               "the run).", paper=10, low=0)
    warmup_max_share: float = opt(1.0, "Largest share of the run the warm-up takes: it lasts min(--optim."
                                  "warmup-epochs, this x the run's epochs). A recipe whose warm-up was set for an "
                                  "800-1600-epoch schedule keeps its official share in a shorter run (MAE: 40 of "
                                  "800 epochs, 0.05, so a 100-epoch run warms up for 5 epochs, not 40; SimMIM: 10 "
                                  "of 800); 1 keeps the warm-up epochs as set, so a run shorter than them never "
                                  "decays. metrics.jsonl records the warm-up's epochs and share of the run "
                                  "(warmup_epochs, warmup_share) at the run's first step.", paper=1.0,
                                  above=0, high=1)
    weight_decay: float = opt(0.04, "Initial weight decay (of norms and biases too only with "
                              "--optim.decay-norm-bias).", paper=0.04, low=0)
    weight_decay_end: float = opt(0.4, "Final weight decay of the cosine schedule; equal to --optim.weight-decay "
                                  "for a constant one (every method but DINO's ViT recipe, whose ramp to 0.4 "
                                  "makes ViT features sparser; never ramp SGD's or LARS's coupled decay).",
                                  paper=0.4, low=0)
    decay_norm_bias: bool = opt(False, "Also decay biases and norm parameters, and let LARS adapt their rate "
                                "(MoCo v2, SimSiam, MoCo v3's ViT AdamW and SwAV's LARC do; DINO, BYOL, "
                                "SimCLR, Barlow Twins and VICReg exclude them).", paper=False)
    optimizer: str = opt("adamw", "adamw, lars or sgd. AdamW suits ViTs (DINO, MoCo v3); the ResNet papers use "
                         "LARS (SimCLR, BYOL, Barlow Twins, SwAV, VICReg, MoCo v3: trust coefficient 0.001) "
                         "or SGD (SimSiam, MoCo v2, DINO's ResNet). Setting it picks the method's recipe for "
                         "that optimiser (or a generic one), not the other optimiser's lr and decay.",
                         paper="adamw", choices=("adamw", "lars", "sgd"))
    momentum: float = opt(0.9, "Momentum of SGD and LARS.", paper=0.9, low=0, below=1)
    betas: tuple[float, float] = opt((0.9, 0.999), "AdamW's (beta1, beta2). MAE uses (0.9, 0.95): a shorter "
                                     "second-moment memory that keeps large-batch masked-image training "
                                     "stable; the other ViT recipes keep torch's default.", paper=(0.9, 0.999),
                                     low=0, below=1)
    clip_grad: float = opt(3.0, "Gradient-norm clip (0 disables), of each parameter or of all together "
                           "(--optim.clip-mode). Around 0.3-1.0 per parameter helps optimisation of larger ViTs.",
                           paper=3.0, low=0)
    clip_mode: str = opt("parameter", "What --optim.clip-grad bounds: parameter (each parameter's gradient norm "
                         "on its own, DINO's utils.clip_gradients) or global (the norm of all gradients together, "
                         "torch's clip_grad_norm_, as SimMIM's main_simmim.py). Each method's recipe takes its "
                         "official code's.", paper="parameter", choices=CLIP_MODES)
    eval_ema: float = opt(0.0, "Evaluate and export an exponential moving average of the backbone's weights "
                          "(Polyak averaging) with this momentum per step instead of the trained weights; 0 "
                          "turns it off. For methods without a momentum teacher (DINO, BYOL and MoCo already "
                          "evaluate theirs); 0.99-0.999, the longer the run the closer to 1. Costs one "
                          "weight update per step and the backbone's memory once more.", paper=0.0,
                          low=0, below=1)
    freeze_patch_embed: bool = opt(False, "Never train a ViT's patch embedding (MoCo v3's stability trick; the "
                                   "first layer of a --backbone.init model keeps its pixel filters, which a "
                                   "small domain set cannot improve much). DINOv2 instead trains it at 0.2x the "
                                   "learning rate.", paper=False)
    freeze_backbone_epochs: float = opt(0.0, "Epochs at the start during which the backbone gets no update and "
                                        "only the method's fresh heads train: with --backbone.init, random heads "
                                        "otherwise send large gradients into good weights and undo them in the "
                                        "first steps (dinov2 issue 204, dino issue 207; LightlyTrain's "
                                        "student_freeze_backbone_epochs). 0 from scratch; `selfsup pretrain "
                                        "--init` sets the continuing recipe's value when you leave it open (see "
                                        "--backbone.init).", paper=0.0, low=0)


@dataclass
class RunConfig:
    out: str = opt("runs/dino", "Output directory (config, metrics, checkpoints, exported backbone).")
    seed: int = opt(0, "Random seed (process r uses seed + r for augmentations).", low=0)
    devices: int | str = opt(1, "Devices (processes) per node, or 'auto'. Several on CPU run DDP with gloo.",
                             low=1, choices=("auto",))
    num_nodes: int = opt(1, "Nodes (launch with torchrun or SLURM).", low=1)
    accelerator: str = opt("auto", "Device type; auto picks cuda when a GPU is visible.",
                           choices=("auto", "cpu", "cuda"))
    precision: str | None = opt(None, "Fabric precision; default 32-true on CPU (bf16 there is ~10x slower), "
                                "bf16-mixed on a GPU that computes in bf16 (Ampere and later), 16-mixed (with "
                                "loss scaling) on older ones (V100, T4). Losses and similarity logits are computed "
                                "in float32 under any of them. The *-true half precisions are refused: the "
                                "teacher's and optimiser's small updates would round away.", choices=PRECISIONS)
    checkpoint_every: int = opt(200, "Steps between checkpoints: at most this much work is lost on a crash.",
                               low=1)
    log_every: int = opt(20, "Steps between metric lines.", low=1)
    eval_knn: bool = opt(True, "Run the k-NN evaluation on the test split at the end of training.")
    knn_every: int = opt(0, "Also run it every this many steps (0: only at the end), logged as knn_top1 in "
                         "metrics.jsonl: an accuracy-versus-time curve. Each costs two feature passes.",
                         low=0)
    sync_bn: bool = opt(True, "With several GPUs, synchronise BatchNorm statistics across processes (SimCLR, "
                        "BYOL, SimSiam, Barlow Twins need it with small per-GPU batches). CPU runs keep "
                        "per-process statistics (gloo has no SyncBatchNorm).")
    max_nonfinite: int = opt(5, "Stop after this many consecutive steps with a non-finite loss.", low=1)


SECTIONS = {"data": DataConfig, "backbone": BackboneConfig, "views": ViewsConfig, "optim": OptimConfig,
            "run": RunConfig}


def option_classes(method: str | None = None) -> dict[str, type]:
    """The options class of each section: the shared ones and `method`'s own (every method's when None)."""
    methods = METHODS if method is None else {method: METHODS[method]}
    return {**SECTIONS, **{name: m.config_class for name, m in methods.items()}}


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
    raw = check_sections(raw, option_classes(method), lambda path: f"{where}: {path}")  # types and ranges
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
