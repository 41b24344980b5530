"""selfsup: self-supervised visual representation learning: pre-train without labels, evaluate, inspect, fine-tune.

    import selfsup
    backbone = selfsup.load_backbone("runs/dino")  # a run directory, a backbone.safetensors, or an official file
    backbone = selfsup.load_backbone("dino_deitsmall16_pretrain.pth", source="dino")
    features = selfsup.embed(backbone, "my_images/")  # (N, D)
    selfsup.pretrain(data={"name": "my_images/"}, backbone={"init": "dino_deitsmall16_pretrain.pth"})
    selfsup.distill("runs/dino", data={"name": "my_images/"}, backbone={"width": 64}, run={"out": "runs/small"})
    selfsup.evaluate("runs/small", "knn")  # the record `selfsup eval knn --json` prints

See selfsup/api.py.
"""

from __future__ import annotations

from selfsup.api import (
                         BackboneConfig,
                         DataConfig,
                         DistillConfig,
                         OptimConfig,
                         PretrainConfig,
                         RunConfig,
                         ViewsConfig,
                         distill,
                         embed,
                         evaluate,
                         load_backbone,
                         make_config,
                         pretrain,
)

__all__ = ["BackboneConfig", "DataConfig", "DistillConfig", "OptimConfig", "PretrainConfig", "RunConfig",
           "ViewsConfig", "distill", "embed", "evaluate", "load_backbone", "make_config", "pretrain"]
