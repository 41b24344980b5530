"""The floor of an ablation row: k-NN of the row's own network at its random initialisation (the run's seed,
before step 0). Rows that change the architecture start from different floors (a 14-px patch ViT at random
init is a better k-NN feature on 28-px images than a 4-px one), and a row below its floor has learned nothing
k-NN can use yet. Evaluated once per distinct starting network: <out>/random-init.json keys each result by a
hash of the initial weights, the backbone spec and the data settings, so recipes and reruns share it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

from torch import nn

from selfsup.ablate.recipe import AblationRecipe, Variant
from selfsup.config import PretrainConfig
from selfsup.engine.pretrain import initial_network
from selfsup.eval.knn import knn_of_weights
from selfsup.machine import machine_words
from selfsup.models.io import BackboneSpec

CACHE = "random-init.json"


def random_init_knn(recipe: AblationRecipe, variant: Variant, out: Path) -> float:
    """k-NN top-1 of `variant`'s backbone as its run starts, evaluated as the run's final k-NN is."""
    cfg = recipe.config(variant, out)
    with tempfile.TemporaryDirectory() as tmp:  # building the run's start writes its config.yaml there
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out=tmp))
        backbone, spec, splits = initial_network(cfg)
    key, path = start_key(backbone, spec, cfg), out / CACHE
    cache = json.loads(path.read_text()) if path.exists() else {}
    if key not in cache:
        cache[key] = {"knn_top1": knn_of_weights(backbone, spec, splits)["top1"], "data": cfg.data.name,
                      "backbone": cfg.backbone.name, "patch_size": spec.patch_size, "seed": cfg.run.seed,
                      "machine": machine_words()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
        os.replace(tmp_path, path)
    return cache[key]["knn_top1"]


def start_key(backbone: nn.Module, spec: BackboneSpec, cfg: PretrainConfig) -> str:
    """What decides the floor: the initial weights, how they are read (spec) and the evaluated data."""
    h = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    h.update(json.dumps(dataclasses.asdict(cfg.data), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
