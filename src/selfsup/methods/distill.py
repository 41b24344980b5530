"""Distillation: a student backbone learns to reproduce a frozen teacher's features on unlabeled images.

What the official codes do, and what is taken here:
- LightlyTrain's `distillation` (v2; lightly-ai/lightly-train _methods/distillationv2): one augmented view per
  image, mixed up with a shuffled copy of the batch (lambda ~ U(0, 1)); the teacher's normalised patch tokens of
  its last `n_teacher_blocks` = 2 blocks concatenated; the student's feature map through a learned linear
  projection (truncated-normal init, std 0.02) to that width, bilinearly resized to the teacher's token grid;
  the mean squared error, features not normalised; LARS at lr 1.5, weight decay 1e-6, gradient clip 1.0; crops
  of 0.14-1 of the area with DINO's colour jitter. The teacher is dropped from the checkpoints.
- DINOv2's distillation (Oquab et al. 2023, Sec. 5: a frozen large teacher, the same training loop) matches the
  teacher's DINO and iBOT head outputs; a backbone file carries no heads, so here the student regresses the
  teacher's features themselves, which is the loss above.
Beside the token grid, the pooled feature (the CLS tokens of the same blocks; a ResNet's average pool) goes
through its own projection: the feature k-NN, linear probes and retrieval read. With two views per image
(`--views.n-global 2`) and `--distill.contrastive-weight`, the student also learns on its own: SimCLR's NT-Xent
between its two views' pooled features through SimCLR's projection MLP, so that it is not capped by a teacher
it already nearly matches (a student pre-trained alone reaches within 0.2 k-NN points of the demo's teacher).

The teacher is a run directory, a backbone.safetensors or an official checkpoint (models/convert.py). It runs
in eval mode without gradients on the same augmented view as the student, brought to its own channels, side
and normalisation (its spec's), and is kept outside the module tree: no optimiser, clip or DDP sees it and the
state dict holds only its file's sha256 (`teacher_digest`), which a resume checks against the file it loads
again. The student is any selfsup backbone; the run exports it like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.channels import LUMA
from selfsup.diagnostics import collapse_logs, embedding_std
from selfsup.methods.base import Method, one_view
from selfsup.methods.recipe import optim, paper
from selfsup.methods.simclr import SimCLRConfig, nt_xent
from selfsup.models.heads import mlp
from selfsup.models.io import BackboneSpec, file_sha256
from selfsup.models.vit import VisionTransformer
from selfsup.models.weight_selection import select_weights, unselectable
from selfsup.options import opt
from selfsup.validate import ConfigError

LOSSES = ("mse", "cosine")
STUDENT_INITS = ("auto", "select", "random")


@dataclass
class DistillConfig:
    teacher: str | None = opt(None, "The frozen teacher (required; `selfsup distill --teacher`): a run directory, a "
                              "backbone.safetensors or an official checkpoint (--distill.teacher-from). It may read "
                              "other channels, image sizes and normalisation than the student: each gets its own.")
    teacher_from: str | None = opt(None, "Layout of an official teacher checkpoint, as `selfsup convert --from` "
                                   "(default: guessed from the file).")
    teacher_sha256: str | None = opt(None, "sha256 of the teacher file, recorded in config.yaml by the run; given, "
                                     "a teacher file with another hash is refused (a resume checks it too).")
    loss: str = opt("mse", "Distance between the projected student features and the teacher's: mse (LightlyTrain's: "
                    "features not normalised, so their scale is learned too) or cosine (1 - cosine similarity per "
                    "token: only directions, what a cosine k-NN reads; try it when the teacher's feature norms vary "
                    "a lot).", paper="mse", choices=LOSSES)
    teacher_blocks: int = opt(2, "Last teacher blocks whose normalised tokens are concatenated as the target "
                              "(LightlyTrain: 2). 1 targets the final feature only, cheaper to project; more carry "
                              "more of the teacher's intermediate features. ResNet teachers: their last stage.",
                              paper=2, low=1)
    pooled_weight: float = opt(1.0, "Weight of the pooled-feature term (the CLS tokens, a ResNet's average pool): "
                               "what k-NN and linear probes read. 0 leaves only the token grid (LightlyTrain's).",
                               paper=0.0, low=0)
    patch_weight: float = opt(1.0, "Weight of the token-grid term (patch tokens, a ResNet's last feature map, the "
                              "student's resized to the teacher's grid): dense features for segmentation and "
                              "attention maps, and the 'patches' feature. 0 distils the pooled feature only.",
                              paper=1.0, low=0)
    student_init: str = opt("random", "How the student starts. random: a fresh init (LightlyTrain's); select: a "
                            "selection of the teacher's own weights (Xu et al. 2024: its first blocks, evenly spaced "
                            "channels and whole heads), for a student that is a slimmer or shallower copy of the "
                            "teacher's architecture; auto: select where the student allows it, else random. The run "
                            "records which in config.yaml. On the demo's teacher and a half-width student, 5 CPU "
                            "minutes ended at the same validation k-NN either way (docs/distill_screen.md); "
                            "selection starts from the teacher's features, which shorter runs may keep.",
                            paper="random", choices=STUDENT_INITS)
    mixup: bool = opt(True, "Mix each image with another of the batch (lambda ~ U(0, 1)) before both networks see "
                      "it: more distinct inputs per image for the teacher to label (LightlyTrain's). With two "
                      "views, both mix with the same partner and lambda, so they stay a positive pair.", paper=True)
    contrastive_weight: float = opt(0.0, "Weight of the student's own SimCLR term (NT-Xent between its two views' "
                                    "pooled features through SimCLR's projection MLP); needs --views.n-global 2. "
                                    "0: distillation only (LightlyTrain's, DINOv2's). Worth it when the student "
                                    "alone comes close to its teacher, where regression alone has little to give.",
                                    paper=0.0, low=0)
    temperature: float = opt(0.2, "NT-Xent temperature of the contrastive term (SimCLR's small-batch value).",
                             paper=0.2, above=0)


# lightly-train distillationv2.py DistillationV2LARSArgs (lr 1.5, weight decay 1e-6, clip 1.0) for ResNets; ViTs
# take DINOv2's AdamW (ssl_default_config.yaml: base_lr 0.004 at batch 1024, i.e. 1e-3 at 256 linearly; weight
# decay 0.04 -> 0.4; 10 warm-up epochs; clip 3.0). Views: distillationv2_transform.py (crop 0.14-1, flip, colour
# jitter p 0.8 of DINO's strengths, grayscale 0.2, no solarisation, blur sigma <= 0.1, i.e. none).
SHORT = "runs of minutes last a few epochs: 10 warm-up epochs would take most of the run"
VIEWS = one_view((0.14, 1.0), recipe="dino", color_jitter=0.8, grayscale=0.2)
RECIPES = {
    "vit": {"optim": optim("adamw", 1e-3, 0.04, paper(10, cpu=0.3, why=SHORT), weight_decay_end=0.4, min_lr=1e-6,
                           clip_grad=3.0), "views": VIEWS},
    "resnet": {"optim": optim("lars", 1.5, 1e-6, paper(10, cpu=0.3, why=SHORT), clip_grad=1.0), "views": VIEWS},
}


def features(net: nn.Module, x: torch.Tensor, blocks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A backbone's pooled feature (B, n*D) and feature grid (B, n*D, h, w): a ViT's normalised CLS and patch
    tokens of its last n = min(blocks, depth) blocks concatenated; a ResNet's average pool and last feature map."""
    if isinstance(net, VisionTransformer):
        h, w = net.grid_size(*x.shape[-2:])
        layers = net.get_intermediate_layers(x, min(blocks, len(net.blocks)))  # n x (B, P + h*w, D)
        pooled = torch.cat([t[:, 0] for t in layers], dim=-1)
        grid = torch.cat([t[:, net.n_prefix:] for t in layers], dim=-1)  # (B, h*w, n*D)
        return pooled, grid.transpose(1, 2).unflatten(2, (h, w))
    fmap = net.forward_features(x)  # (B, D, h, w)
    return fmap.mean(dim=(2, 3)), fmap


def feature_dim(net: nn.Module, blocks: int = 1) -> int:
    """Width of `features`' outputs."""
    n = min(blocks, len(net.blocks)) if isinstance(net, VisionTransformer) else 1
    return n * net.embed_dim


def feature_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """pred, target (..., D) -> mean squared error over all elements, or mean of 1 - cosine over the vectors."""
    if kind == "mse":
        return F.mse_loss(pred.float(), target.float())
    return (1 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


def mixup(views: list[torch.Tensor]) -> list[torch.Tensor]:
    """V x (B, C, H, W) -> lambda x + (1 - lambda) x[perm] per view, one lambda ~ U(0, 1) and one permutation per
    batch (LightlyTrain), shared by the views so that the views of an image stay views of one mixed image."""
    lam = float(torch.rand(()))
    perm = torch.randperm(len(views[0]), device=views[0].device)
    return [lam * x + (1 - lam) * x[perm] for x in views]


def projection(d_in: int, d_out: int) -> nn.Linear:
    layer = nn.Linear(d_in, d_out)
    nn.init.trunc_normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)
    return layer


def digest_tensor(hexdigest: str) -> torch.Tensor:
    return torch.tensor(list(bytes.fromhex(hexdigest)), dtype=torch.uint8)  # (32,)


class Distill(Method):
    name = "distill"
    config_class = DistillConfig
    recipes = RECIPES
    n_views = 1
    n_views_allowed = (1, 2)  # two with the contrastive term
    pooled_only = False  # reads the token grid

    def __init__(self, backbone: nn.Module, cfg: DistillConfig, n_global: int = 1) -> None:
        super().__init__(backbone, cfg, n_global)
        teacher, self.teacher_spec, digest = load_teacher(cfg)
        object.__setattr__(self, "teacher", teacher)  # outside the module tree: not trained, not saved
        self.register_buffer("teacher_digest", digest_tensor(digest))
        cfg.teacher_sha256 = digest  # recorded in config.yaml, with the file's absolute path
        cfg.teacher = str(Path(cfg.teacher).resolve())
        cfg.student_init = init_student(backbone, teacher, cfg.student_init)
        t_dim, s_dim = feature_dim(teacher, cfg.teacher_blocks), feature_dim(backbone)
        self.pooled_proj = projection(s_dim, t_dim) if cfg.pooled_weight else None
        self.patch_proj = projection(s_dim, t_dim) if cfg.patch_weight else None
        if cfg.contrastive_weight and n_global != 2:
            raise ConfigError(f"--distill.contrastive-weight compares two views of each image: set --views.n-global 2 "
                             f"(got {n_global}), or the weight to 0")
        head = SimCLRConfig()
        self.projector = mlp(s_dim, head.proj_hidden_dim, head.proj_output_dim, head.proj_layers, batch_norm=True,
                             act="relu") if cfg.contrastive_weight else None
        spec = self.teacher_spec
        self.register_buffer("teacher_mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("teacher_std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)

    def _apply(self, fn, recurse: bool = True):  # .to(device), .half(), ...: the teacher moves along
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> Distill:
        super().train(mode)
        self.teacher.eval()  # always: no dropout, no BatchNorm statistics of its own
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        theirs = state_dict.get("teacher_digest")
        if theirs is not None and not torch.equal(theirs.cpu(), self.teacher_digest.cpu()):
            was = bytes(theirs.tolist()).hex()[:16]
            raise ValueError(f"the checkpoint was distilled from a teacher file with sha256 {was}..., but "
                             f"--distill.teacher {self.cfg.teacher} has {self.cfg.teacher_sha256[:16]}...: "
                             "pass the original teacher")
        return super().load_state_dict(state_dict, strict, assign)

    def teacher_input(self, view: torch.Tensor) -> torch.Tensor:
        """A view normalised for the student (B, C, h, w) -> the same pixels at the teacher's channels, side
        and normalisation (B, C_t, H_t, W_t)."""
        x, spec = self.pixels(view), self.teacher_spec
        if x.shape[1] == 1 and spec.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and spec.in_chans == 1:
            x = (x * torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        if x.shape[-1] != spec.img_size or x.shape[-2] != spec.img_size:
            x = F.interpolate(x, size=(spec.img_size, spec.img_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return (x - self.teacher_mean) / self.teacher_std

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.cfg
        x = torch.cat(mixup(views) if c.mixup else views)  # (V*B, C, H, W), view by view
        with torch.no_grad():
            t_pooled, t_grid = features(self.teacher, self.teacher_input(x), c.teacher_blocks)
        s_pooled, s_grid = features(self.backbone, x)  # (V*B, D), (V*B, D, h, w)
        terms = {}
        if self.pooled_proj is not None:
            terms["pooled"] = (c.pooled_weight, self.pooled_proj(s_pooled), t_pooled)  # (B, D_t) each
        if self.patch_proj is not None:
            grid = self.patch_proj(s_grid.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, D_t, h, w)
            if grid.shape[-2:] != t_grid.shape[-2:]:
                grid = F.interpolate(grid, size=t_grid.shape[-2:], mode="bilinear", align_corners=False)
            terms["patch"] = (c.patch_weight, grid.flatten(2).transpose(1, 2), t_grid.flatten(2).transpose(1, 2))
        loss = sum(w * feature_loss(p, t, c.loss) for w, p, t in terms.values())
        own = nt_xent(self.projector(s_pooled), c.temperature) if self.projector is not None else None
        loss = loss + c.contrastive_weight * own if own is not None else loss
        if not diagnostics:
            return loss, {}
        logs = {f"{k}_cos": float(F.cosine_similarity(p.detach().float(), t.float(), dim=-1).mean())
                for k, (_, p, t) in terms.items()}
        logs = {**logs, "contrastive": float(own.detach())} if own is not None else logs
        return loss, {**logs, **student_spread(s_pooled, terms.get("pooled"))}


def student_spread(s_pooled: torch.Tensor, pooled: tuple | None) -> dict[str, float]:
    """The collapse measures of the student's pooled feature; with a pooled term, of its projection against the
    teacher's own spread (emb_std_ideal: the teacher's embedding_std, not 1/sqrt(d)). A regressed student first
    learns the teacher's mean feature: early in a run its spread is small, and only small against its target's
    spread is it a collapse (the teacher's features are rarely isotropic)."""
    if pooled is None:
        return collapse_logs(s_pooled.detach())
    _, projected, target = pooled
    return {**collapse_logs(projected.detach()), "emb_std_ideal": embedding_std(target)}


def init_student(student: nn.Module, teacher: nn.Module, how: str) -> str:
    """Start `student` as --distill.student-init says; returns what was done ("select" or "random")."""
    if how == "random":
        return how
    why = unselectable(student, teacher)
    if why and how == "select":
        raise ValueError(f"--distill.student-init select: the student is no slimmer copy of the teacher ({why}): "
                         "use --distill.student-init random, or a student of the teacher's family and stem")
    if why:
        return "random"
    select_weights(student, teacher)
    return "select"


def load_teacher(cfg: DistillConfig) -> tuple[nn.Module, BackboneSpec, str]:
    """The teacher backbone (frozen, eval mode), its spec, and its file's sha256 (checked against a recorded one)."""
    from selfsup.models.convert import load_pretrained  # official layouts; a heavier import

    if not cfg.teacher:
        raise ValueError("distill needs a teacher: pass --teacher RUN|FILE (a run directory, a backbone.safetensors "
                         "or an official checkpoint)")
    path = Path(cfg.teacher)
    file = path / "backbone.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"--teacher {cfg.teacher}: no such file (pass a run directory, a backbone.safetensors or an "
                         "official checkpoint)")
    digest = file_sha256(file)
    if cfg.teacher_sha256 and cfg.teacher_sha256 != digest:
        raise ValueError(f"--teacher {file} has sha256 {digest[:16]}..., not the recorded {cfg.teacher_sha256[:16]}"
                         "...: pass the original teacher file, or drop --distill.teacher-sha256")
    model, spec = load_pretrained(file, cfg.teacher_from)
    model.requires_grad_(False)
    return model.eval(), spec, digest
