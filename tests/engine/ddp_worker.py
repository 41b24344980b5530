"""Run by the DDP tests under torch.distributed.run: one step of each METHOD on this process's share of a
fixed batch; rank 0 saves the state after each method's step to OUT/METHOD.pt. One launch runs many methods
(starting the processes and the gloo group costs more than the steps).

    python -m torch.distributed.run --nproc_per_node=2 ddp_worker.py METHOD[,METHOD...] OUT [vit|resnet]
"""

import os
import sys
import tempfile
from pathlib import Path

import torch
from lightning.fabric import Fabric

from selfsup.engine.fabric import ddp_strategy
from selfsup.engine.optim import param_groups
from selfsup.engine.step import optimization_step
from selfsup.methods import METHODS, Method
from selfsup.models.resnet import resnet18
from selfsup.models.vit import VisionTransformer


def tiny_teacher() -> str:
    """A 2-block ViT on 12-px 1-channel images (another size than the students' 16 px), seeded, saved as a
    backbone.safetensors: the frozen teacher of `distill` in these tests; one file per process."""
    from selfsup.models.io import BackboneSpec, save_backbone

    path = Path(tempfile.gettempdir()) / f"selfsup-tiny-teacher-{os.getpid()}.safetensors"
    if not path.exists():
        torch.manual_seed(1)
        spec = BackboneSpec("vit-cpu", 12, 1, 4, [0.4], [0.3], width=32, depth=2)
        save_backbone(spec.build(), spec, path)
    return str(path)


# Small heads, and no BatchNorm in them: on CPU, BatchNorm statistics are per process (gloo has no
# SyncBatchNorm), which would differ from the concatenated batch by design.
TINY = {
    "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "freeze_last_layer": 0},
    "simclr": {"proj_hidden_dim": 32, "proj_output_dim": 16, "proj_bn": False},
    "moco-v2": {"proj_hidden_dim": 32, "proj_output_dim": 16, "proj_bn": False, "queue_size": 256},
    "moco-v3": {"proj_hidden_dim": 32, "pred_hidden_dim": 32, "out_dim": 16, "head_bn": False},
    "swav": {"proj_hidden_dim": 32, "proj_output_dim": 16, "n_prototypes": 16, "head_bn": False,
             "freeze_prototypes_iters": 0, "queue_length": 0},
    "byol": {"proj_hidden_dim": 32, "proj_output_dim": 16, "head_bn": False},
    "simsiam": {"proj_dim": 16, "pred_hidden_dim": 8, "head_bn": False},
    "barlow-twins": {"proj_hidden_dim": 32, "proj_output_dim": 16, "head_bn": False},
    "vicreg": {"proj_hidden_dim": 32, "proj_output_dim": 16, "head_bn": False},
    "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_head_dim": 8},
    "simmim": {},
    "rotation": {},
    "jigsaw": {"n_permutations": 8, "tile_dim": 16, "hidden_dim": 32, "dropout": 0.0},
    "relative-position": {"hidden_dim": 16},
    "colorization": {},
    "inpainting": {"disc_width": 8, "mask": "center"},  # the same region on every process
    "distill": {"teacher": tiny_teacher(), "mixup": False},
    "ibot": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "freeze_last_layer": 0},
    "dinov2": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "freeze_last_layer": 0},
}


# Methods that need colour data (the others are tested on 1-channel views).
RGB_DATA = {"colorization"}


def data_channels(name: str) -> int:
    return 3 if name in RGB_DATA else 1


def fixed_views(batch: int, name: str) -> list[torch.Tensor]:
    g, c = torch.Generator().manual_seed(123), data_channels(name)
    views = [torch.randn(batch, c, 16, 16, generator=g) for _ in range(2)] + \
            [torch.randn(batch, c, 8, 8, generator=g) for _ in range(2)]
    return views if METHODS[name].multicrop else views[:METHODS[name].n_views]


def pixel_drawn_masks(method: Method) -> None:
    """Masked image modelling draws a mask per image from the RNG: each process would draw its own, unlike
    one process on the whole batch. For the comparison, masks are made a function of each image (the
    patches whose mean is above the image's median are masked), so both runs mask the same patches."""
    from selfsup.methods.masking import shuffle_of

    def masks(x: torch.Tensor) -> torch.Tensor:
        p = method.backbone.patch_size
        means = torch.nn.functional.avg_pool2d(x.mean(dim=1, keepdim=True), p).flatten(1)  # (B, L)
        order = torch.argsort(means, dim=1, stable=True)
        return torch.zeros_like(means, dtype=torch.bool).scatter_(1, order[:, means.shape[1] // 4:], True)

    if method.name == "mae":
        method.draw_mask = lambda x: (lambda m: (m, *shuffle_of(m)))(masks(x))
    elif method.name in ("simmim", "ibot", "dinov2"):
        method.draw_mask = masks


def pixel_drawn_puzzles(method: Method) -> None:
    """Jigsaw and relative position draw a label (permutation, neighbour) and crop offsets per image from the
    RNG, as masked image modelling draws masks: for the comparison the label is a function of each image (the
    place of its largest pixel) and every crop sits at the same place in its cell."""
    if method.name not in ("jigsaw", "relative-position"):
        return
    random_draw = method.draw

    def draw(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, offsets = random_draw(x)
        labels = x.flatten(1).argmax(dim=1) % method.n_classes
        return labels, torch.full_like(offsets, method.geometry(x.shape[-1]).low)

    method.draw = draw


def build(name: str, backbone: str = "vit", **overrides) -> Method:
    """METHOD around a 2-block ViT on 16 px images (or a ResNet-18 with per-process BatchNorm), with TINY's
    options updated by `overrides`."""
    torch.manual_seed(0)
    c = data_channels(name)
    chans = METHODS[name].input_channels(c)
    if backbone == "vit":
        net = VisionTransformer(img_size=16, patch_size=4, in_chans=chans, embed_dim=32, depth=2, num_heads=2)
    else:  # every BatchNorm scale non-zero, so that every layer gets a gradient in the first step
        net = resnet18(in_chans=chans, zero_init_residual=False)
    method = METHODS[name]
    method = method(net, method.config_class(**{**TINY[name], **overrides}))
    sample = torch.randint(0, 256, (64, c, 16, 16), generator=torch.Generator().manual_seed(7), dtype=torch.uint8)
    method.prepare_data(sample, [0.5] * c, [0.25] * c)
    return method


def initial_state(name: str) -> dict[str, torch.Tensor]:
    return build(name).state_dict()


def one_step(fabric: Fabric, name: str, batch: int = 8, backbone: str = "vit") -> dict[str, torch.Tensor]:
    method = build(name, backbone)
    pixel_drawn_masks(method)
    pixel_drawn_puzzles(method)
    method.setup(total_steps=10, steps_per_epoch=5)
    # SGD, not AdamW: Adam's first step is lr * sign(grad), which turns float noise in gradients that
    # are zero in exact arithmetic (attention key biases) into +-lr differences.
    optimizer = torch.optim.SGD(param_groups(method), lr=0.0)
    model, optimizer = fabric.setup(method, optimizer)
    r, w = fabric.global_rank, fabric.world_size
    share = batch // w
    views = [v[r * share:(r + 1) * share] for v in fixed_views(batch, name)]
    optimization_step(fabric, model, method, optimizer, views, step=0, lr=0.5, wd=0.04, clip=3.0)
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


if __name__ == "__main__":
    fabric = Fabric(accelerator="cpu", devices=2, strategy=ddp_strategy())
    fabric.launch()
    for name in sys.argv[1].split(","):
        state = one_step(fabric, name, backbone=sys.argv[3] if len(sys.argv) > 3 else "vit")
        if fabric.global_rank == 0:
            torch.save(state, Path(sys.argv[2]) / f"{name}.pt")
    # Both processes leave together and close gloo cleanly: a rank that exits while its peer still holds the
    # process group can abort in gloo's teardown ("terminate called without an active exception").
    fabric.barrier()
    torch.distributed.destroy_process_group()
