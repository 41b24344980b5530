"""DINO's teachers built from the student (--dino.teacher): each follows the student as defined."""

import pytest
import torch

from selfsup.methods.dino import DINO, DinoConfig
from selfsup.methods.teachers import TeacherUpdate
from selfsup.models.vit import VisionTransformer


def tiny(teacher: str) -> DINO:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2)
    return DINO(vit, DinoConfig(out_dim=32, hidden_dim=16, bottleneck_dim=8, freeze_last_layer=0, teacher=teacher))


def weights(m: DINO, teacher: bool) -> list[torch.Tensor]:
    mods = [m.teacher["backbone"], m.teacher["head"]] if teacher else [m.backbone, m.head]
    return [p.detach().clone() for mod in mods for p in mod.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def train(m: DINO, steps: int, steps_per_epoch: int):
    """Yields (step, student before the step, student after, teacher after) for each step."""
    m.setup(steps, steps_per_epoch)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        views = [torch.randn(4, 1, 16, 16, generator=g) for _ in range(2)]
        loss, _ = m(views, step, diagnostics=False)
        opt.zero_grad()
        loss.backward()
        m.on_after_backward(step)
        before = weights(m, teacher=False)
        opt.step()
        m.on_after_step(step)
        yield step, before, weights(m, teacher=False), weights(m, teacher=True)


def test_copy_equals_the_student_after_every_step():
    m = tiny("copy")
    for _, before, after, teacher in train(m, 4, 2):
        assert not same(before, after) and same(teacher, after)
    assert "momentum" not in m.schedule_values(0)  # no EMA to log


def test_previous_iteration_lags_by_exactly_one_step():
    for _, before, after, teacher in train(tiny("previous-iteration"), 4, 2):
        assert same(teacher, before) and not same(teacher, after)


def test_previous_epoch_changes_only_at_epoch_boundaries():
    m = tiny("previous-epoch")
    start = weights(m, teacher=True)
    held, changes = start, []
    for step, _, after, teacher in train(m, 7, 3):
        if not same(teacher, held):
            changes.append(step)
            assert same(teacher, after)  # the student at the boundary
        held = teacher
    assert changes == [2, 5]


def test_momentum_is_the_ema_of_the_schedule():
    m = tiny("momentum")
    prev = weights(m, teacher=True)
    for step, _, after, teacher in train(m, 3, 2):
        mom = float(m.momentum[step])
        assert all(torch.allclose(t, mom * p + (1 - mom) * s, atol=1e-6)
                   for t, p, s in zip(teacher, prev, after, strict=True))
        prev = teacher
    assert "momentum" in m.schedule_values(0)


def test_an_unknown_teacher_names_the_option():
    with pytest.raises(ValueError, match="--dino.teacher 'ema'"):
        TeacherUpdate("ema", torch.ones(2).numpy(), 1)
