"""A step whose loss is not finite is skipped and leaves no trace: injected NaN batches through the engine."""

import pytest
import torch

from selfsup.engine.pretrain import Trainer

RESNET = {"backbone": {"name": "resnet18", "patch_size": None, "drop_path": 0.0},
          "views": {"global_size": 12, "n_local": 0}}  # 12 px crops: a CPU ResNet step in a fraction of a second
CASES = {  # what each case shows: DINO's centre, BatchNorm statistics (backbone, target), MoCo v2's queue
    "dino": {},
    "byol": {**RESNET, "byol": {"proj_hidden_dim": 32, "proj_output_dim": 16}},
    "moco-v2": {**RESNET, "moco-v2": {"proj_hidden_dim": 32, "proj_output_dim": 16, "queue_size": 256}},
}


def state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.method.state_dict().items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_nan_batch_changes_no_state(name, tiny_cfg):
    trainer = Trainer(tiny_cfg(method=name, optim={"batch_size": 8}, **CASES[name]), progress=False)
    trainer.setup()
    batch = trainer.source.batch(0)
    assert trainer._step(0, batch)[1]  # a finite step first: the centre, queue and statistics are under way
    before = state(trainer)
    trainer.views.mean.fill_(float("nan"))  # every view of the next batch is NaN
    loss, finite, logs = trainer._step(1, batch)
    assert not finite and logs == {}
    after = state(trainer)
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not changed, changed
    trainer.views.mean.fill_(0.5)
    assert trainer._step(2, batch)[1]
    moved = [k for k, v in before.items() if not torch.equal(v, trainer.method.state_dict()[k])]
    watched = {"dino": "loss_fn.center", "byol": "target.backbone.bn1.running_mean", "moco-v2": "queue"}[name]
    assert watched in moved  # the next finite step does update it
