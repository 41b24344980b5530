"""Run by test_ddp.py under torch.distributed.run: one DINO step on this process's half of a fixed batch."""

import sys

import torch
from lightning.fabric import Fabric

from selfsup.engine.optim import param_groups
from selfsup.engine.pretrain import optimization_step
from selfsup.methods.dino import DINO, DinoConfig
from selfsup.models.vit import VisionTransformer


def fixed_views(batch: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return [torch.randn(batch, 1, 16, 16, generator=g) for _ in range(2)] + \
           [torch.randn(batch, 1, 8, 8, generator=g) for _ in range(2)]


def build() -> DINO:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    return DINO(vit, DinoConfig(out_dim=64, hidden_dim=32, bottleneck_dim=16, freeze_last_layer=0))


def initial_state() -> dict[str, torch.Tensor]:
    return build().state_dict()


def one_step(fabric: Fabric, batch: int = 8) -> dict[str, torch.Tensor]:
    method = build()
    method.setup(total_steps=10, steps_per_epoch=5)
    # SGD, not AdamW: Adam's first step is lr * sign(grad), which turns float noise in gradients that
    # are zero in exact arithmetic (attention key biases) into +-lr differences.
    optimizer = torch.optim.SGD(param_groups(method), lr=0.0)
    model, optimizer = fabric.setup(method, optimizer)
    r, w = fabric.global_rank, fabric.world_size
    share = batch // w
    views = [v[r * share:(r + 1) * share] for v in fixed_views(batch)]
    optimization_step(fabric, model, method, optimizer, views, step=0, lr=0.5, wd=0.04, clip=3.0)
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


if __name__ == "__main__":
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    fabric.launch()
    state = one_step(fabric)
    if fabric.global_rank == 0:
        torch.save(state, sys.argv[1])
