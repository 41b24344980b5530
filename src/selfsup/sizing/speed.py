"""A CPU's training speed predicted from the work of a step, to size crops before anything is built.

A ViT block costs about 24 d^2 + 4 T d FLOPs per token forward (the qkv, projection and 4x MLP matmuls, and the
attention over T tokens); training costs three forwards (forward and backward) for the student's views and
one for a momentum teacher's global views; the head adds 2 FLOPs per parameter per view forward. The CPU does
`CPU_FLOPS_PER_CORE`, and the augmentation of the views costs `VIEW_CORE_SECONDS_PER_MEGAPIXEL`: both measured
in docs/throughput.md on an AMD EPYC, 2 threads (the demo's step: 44.0 GFLOP of forward and backward in 612 ms,
72 GFLOP/s or 36 per core; the views of ViT-S/16's 12 crops: 326 ms for 16 x 0.19 megapixels, 0.2 core-s per
megapixel). Another CPU differs by its speed per core, which `cores` does not capture: the run's own
calibration (--minutes) then plans the steps from the real speed; this only picks the crop sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

CPU_FLOPS_PER_CORE = 36e9
VIEW_CORE_SECONDS_PER_MEGAPIXEL = 0.2
RESNET_GFLOPS_224 = {"resnet18": 1.82, "resnet50": 4.11}  # forward, one 224-px image, width 64


@dataclass(frozen=True)
class StepShape:
    """What a training image costs: the backbone, its views and the method's extra work."""

    backbone: str
    width: int  # ViT width, or a ResNet's first-stage channels
    depth: int  # ViT blocks (ignored for ResNets)
    global_size: int
    local_size: int
    n_global: int
    n_local: int
    patch: int  # ViT patch size (ignored for ResNets)
    teacher: bool  # a momentum teacher runs the global views forward
    head_params: int  # parameters of the student's head(s), run on every view
    patch_dropout: float = 0.0


def vit_view_flops(width: int, depth: int, side: int, patch: int, keep: float = 1.0) -> float:
    """Forward FLOPs of one ViT view: (side / patch)^2 patches (a share `keep` of them) plus [CLS]."""
    tokens = (side // patch) ** 2 * keep + 1
    return depth * tokens * (24 * width**2 + 4 * tokens * width)


def resnet_view_flops(name: str, width: int, side: int) -> float:
    return 2 * RESNET_GFLOPS_224.get(name, 4.11) * 1e9 * (side / 224) ** 2 * (width / 64) ** 2


def view_flops(s: StepShape, side: int, train: bool) -> float:
    if s.backbone.startswith("resnet"):
        return resnet_view_flops(s.backbone, s.width, side)
    return vit_view_flops(s.width, s.depth, side, s.patch, 1 - s.patch_dropout if train else 1.0)


def image_flops(s: StepShape) -> float:
    """Training FLOPs of one image: 3 forwards of every student view, 1 of the teacher's global views."""
    head = 2 * s.head_params
    student = s.n_global * (view_flops(s, s.global_size, True) + head) + s.n_local * (
        view_flops(s, s.local_size, True) + head)
    teacher = s.n_global * (view_flops(s, s.global_size, False) + head) if s.teacher else 0.0
    return 3 * student + teacher


def images_per_second(s: StepShape, cores: int) -> float:
    """Predicted training images per second on `cores` CPU cores."""
    megapixels = (s.n_global * s.global_size**2 + s.n_local * s.local_size**2) / 1e6
    core_seconds = image_flops(s) / CPU_FLOPS_PER_CORE + megapixels * VIEW_CORE_SECONDS_PER_MEGAPIXEL
    return max(cores, 1) / core_seconds
