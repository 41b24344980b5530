"""Run by the DDP tests under torch.distributed.run: one step of METHOD on this process's share of a fixed
batch; rank 0 saves the state after the step to OUT.

    python -m torch.distributed.run --nproc_per_node=2 ddp_worker.py METHOD OUT [vit|resnet]
"""

import sys

import torch
from lightning.fabric import Fabric

from selfsup.engine.fabric import ddp_strategy
from selfsup.engine.optim import param_groups
from selfsup.engine.pretrain import optimization_step
from selfsup.methods import METHODS, Method
from selfsup.models.resnet import resnet18
from selfsup.models.vit import VisionTransformer

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
}


def fixed_views(batch: int, name: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    views = [torch.randn(batch, 1, 16, 16, generator=g) for _ in range(2)] + \
            [torch.randn(batch, 1, 8, 8, generator=g) for _ in range(2)]
    return views if METHODS[name].multicrop else views[:2]


def build(name: str, backbone: str = "vit", **overrides) -> Method:
    """METHOD around a 2-block ViT on 16 px images (or a ResNet-18 with per-process BatchNorm), with TINY's
    options updated by `overrides`."""
    torch.manual_seed(0)
    if backbone == "vit":
        net = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    else:  # every BatchNorm scale non-zero, so that every layer gets a gradient in the first step
        net = resnet18(in_chans=1, zero_init_residual=False)
    method = METHODS[name]
    return method(net, method.config_class(**{**TINY[name], **overrides}))


def initial_state(name: str) -> dict[str, torch.Tensor]:
    return build(name).state_dict()


def one_step(fabric: Fabric, name: str, batch: int = 8, backbone: str = "vit") -> dict[str, torch.Tensor]:
    method = build(name, backbone)
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
    state = one_step(fabric, sys.argv[1], backbone=sys.argv[3] if len(sys.argv) > 3 else "vit")
    if fabric.global_rank == 0:
        torch.save(state, sys.argv[2])
