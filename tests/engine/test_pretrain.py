import json

import pytest
import torch

from selfsup.config import ConfigError
from selfsup.engine.checkpoint import CheckpointError
from selfsup.engine.pretrain import Trainer, pretrain
from selfsup.models.io import load_backbone


def test_two_step_smoke_run_writes_the_run_directory(tiny_cfg):
    cfg = tiny_cfg(optim={"epochs": 2 / 22}, run={"eval_knn": True, "knn_every": 1})
    result = pretrain(cfg, progress=False)
    out = result.out
    assert result.steps == 2 and not result.interrupted
    for name in ["config.yaml", "metrics.jsonl", "checkpoints/last.pt", "backbone.safetensors", "eval/knn.json"]:
        assert (out / name).exists(), name
    assert list((out / "tensorboard").iterdir())
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2]
    assert all(x["loss"] > 0 for x in lines if "loss" in x)
    assert [x["step"] for x in lines if "knn_top1" in x] == [1, 2]  # periodic, then final
    assert all(0 < x["teacher_entropy"] <= x["log_K"] + 1e-6 for x in lines if "loss" in x)
    assert 0 <= result.knn["top1"] <= 100 and result.knn["n_test"] == 360
    backbone, spec = load_backbone(out / "backbone.safetensors")
    assert spec.in_chans == 1 and spec.img_size == 28
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    teacher = {k[len("teacher.backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("teacher.backbone.")}
    assert all(torch.equal(teacher[k], v) for k, v in backbone.state_dict().items())


def test_the_log_says_what_share_of_the_run_the_warmup_takes(tiny_cfg):
    """A 22-step epoch of warm-up in a 4-step run, capped at half of it: 2 steps, logged at the first step."""
    result = pretrain(tiny_cfg(optim={"warmup_epochs": 1.0, "warmup_max_share": 0.5}), progress=False)
    lines = [json.loads(x) for x in (result.out / "metrics.jsonl").read_text().splitlines()]
    first = {"step": 0, "warmup_epochs": round(2 / 22, 4), "warmup_share": 0.5, "precision": "32-true"}
    assert first.items() <= lines[0].items()


def test_resume_is_exact(tiny_cfg, tmp_path):
    straight = pretrain(tiny_cfg(run={"out": str(tmp_path / "a")}), progress=False)
    cfg = tiny_cfg(run={"out": str(tmp_path / "b")})
    first = Trainer(cfg, progress=False, stop_at_step=2).fit()
    assert first.interrupted and first.steps == 2
    second = pretrain(cfg, resume=True, progress=False)
    assert second.steps == straight.steps == 4
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["rng"].keys() == {"cpu"} and torch.equal(a["rng"]["cpu"], b["rng"]["cpu"])  # "cuda" too on GPUs
    assert not second.replanned


def test_a_resumed_run_counts_the_training_time_before_its_resume(tiny_cfg):
    """RunResult.minutes is the whole run's training time: the checkpoint carries what earlier processes spent."""
    cfg = tiny_cfg()
    first = Trainer(cfg, progress=False, stop_at_step=2).fit()
    path = first.out / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    assert 0 < ckpt["train_seconds"] <= first.minutes * 60 + 1e-6
    ckpt["train_seconds"] = 600.0  # as if the first two steps had taken ten minutes
    torch.save(ckpt, path)
    second = pretrain(cfg, resume=True, progress=False)
    assert 10 < second.minutes < 10 + first.minutes + 1  # not only the resumed process's few seconds
    assert second.images_per_s > 2 * 32 / 60  # speed is of this process's steps, not diluted by the 600 s


def test_resume_with_a_longer_run_replans_the_schedules(tiny_cfg, tmp_path, capsys):
    """A finished 2-step run resumed with twice the epochs trains 2 more steps on re-planned schedules."""
    first = pretrain(tiny_cfg(optim={"epochs": 2 / 22}), progress=False)
    assert first.steps == first.total_steps == 2
    second = pretrain(tiny_cfg(optim={"epochs": 4 / 22}), resume=True, progress=False)
    assert second.replanned and second.steps == second.total_steps == 4
    err = capsys.readouterr().err
    assert "re-planned for 4 steps instead of 2" in err and "not bit-exact" in err
    lines = [json.loads(x) for x in (first.out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4]
    replanned = next(x for x in lines if "replanned_from_steps" in x)
    assert {"step": 2, "replanned_from_steps": 2, "replanned_to_steps": 4}.items() <= replanned.items()
    ckpt = torch.load(first.out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["total_steps"] == 4 and ckpt["config"]["optim"]["epochs"] == 4 / 22


def test_resume_with_a_length_already_trained_is_refused(tiny_cfg):
    pretrain(tiny_cfg(optim={"epochs": 2 / 22}), progress=False)
    with pytest.raises(ConfigError, match="plans 1 steps, but the run in .* has trained 2 of its 2"):
        pretrain(tiny_cfg(optim={"epochs": 1 / 22}), resume=True, progress=False)


def test_existing_run_needs_resume_and_matching_method(tiny_cfg):
    cfg = tiny_cfg(optim={"epochs": 1 / 22})
    pretrain(cfg, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        pretrain(cfg, progress=False)
    other = tiny_cfg(optim={"epochs": 1 / 22}, backbone={"name": "vit-cpu-p4", "patch_size": 7})
    with pytest.raises(CheckpointError, match="backbone 'vit-cpu'"):
        pretrain(other, resume=True, progress=False)


def test_resume_without_checkpoint_says_how(tiny_cfg):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        pretrain(tiny_cfg(), resume=True, progress=False)


def test_patch_size_that_does_not_divide_the_crop(tiny_cfg):
    with pytest.raises(ConfigError, match="views.global_size 28 is not a multiple of the patch size 5"):
        pretrain(tiny_cfg(backbone={"patch_size": 5}), progress=False)


def test_non_finite_loss_stops_with_explanation(tiny_cfg):
    cfg = tiny_cfg(optim={"epochs": 10 / 22}, run={"max_nonfinite": 3})
    trainer = Trainer(cfg, progress=False)
    trainer.setup()
    trainer.views.mean.fill_(float("nan"))  # every view is NaN -> every loss is NaN
    trainer.setup = lambda: None
    from selfsup.engine.pretrain import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="3 steps in a row.*learning rate"):
        trainer.fit()


def test_minutes_budget_calibrates_the_step_count(tiny_cfg):
    result = pretrain(tiny_cfg(optim={"minutes": 0.05, "epochs": 1000}), progress=False)
    assert 1 <= result.total_steps < 1000 * 22
    assert result.steps == result.total_steps or result.minutes <= 0.1


def test_resume_with_other_model_options_is_refused(tiny_cfg):
    pretrain(tiny_cfg(optim={"epochs": 1 / 22}), progress=False)
    other = tiny_cfg(optim={"epochs": 1 / 22}, dino={"out_dim": 96})
    with pytest.raises(CheckpointError, match="does not fit this run's model"):
        pretrain(other, resume=True, progress=False)


def test_several_devices_use_ddp_without_buffer_broadcast(tiny_cfg):
    from lightning.fabric.strategies import DDPStrategy

    from selfsup.engine.fabric import make_fabric

    fabric = make_fabric(tiny_cfg(run={"devices": 2, "accelerator": "cpu"}))
    assert isinstance(fabric.strategy, DDPStrategy)
    assert fabric.strategy._ddp_kwargs == {"broadcast_buffers": False}


def test_diagnostics_are_computed_on_logging_steps_only(tiny_cfg):
    """Each diagnostic is a device sync on a GPU: the engine asks the method for them when it logs."""
    trainer = Trainer(tiny_cfg(run={"log_every": 2}), progress=False)
    trainer.setup()
    asked, forward = [], trainer.method.forward

    def spy(views, step, diagnostics=True):
        asked.append(diagnostics)
        return forward(views, step, diagnostics)

    trainer.method.forward = spy
    trainer.setup = lambda: None
    result = trainer.fit()
    assert result.steps == 4 and asked == [False, True, False, True]
    lines = [json.loads(x) for x in (result.out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "emb_std" in x and "teacher_entropy" in x] == [2, 4]


class StepClock:
    """A clock for the engine that moves only when a training step runs, by `seconds` a step: the time-budget
    logic is tested without depending on the machine's speed or load."""

    def __init__(self, seconds: float) -> None:
        self.now, self.seconds = 1000.0, seconds

    def time(self) -> float:
        return self.now

    perf_counter = time

    def step(self) -> None:
        self.now += self.seconds


def test_a_minutes_run_replans_when_its_calibration_was_off(tiny_cfg, monkeypatch):
    # A 24-s budget that the calibration says takes 1/8 s a step (a plan of 192 steps); the real steps, on an
    # injected clock, take 1/4 s. The run re-measures its real steps at step 20 (a tenth of the plan, at least 20)
    # and re-plans its length and schedules for the time left: 20 steps took 5 s, so 19 / 0.25 = 76 more fit, 96
    # in all. It ends at that new length with its schedules complete instead of being cut off by the deadline
    # mid-schedule. Half-way and at four fifths it checks again and, the speed unchanged, keeps the plan.
    from selfsup.engine.pretrain import Trainer

    clock = StepClock(0.25)
    monkeypatch.setattr(Trainer, "_calibrate", lambda self: 0.125)
    real_step = Trainer._step

    def timed_step(self, step, images):
        clock.step()
        return real_step(self, step, images)

    monkeypatch.setattr(Trainer, "_step", timed_step)
    cfg = tiny_cfg(optim={"minutes": 0.4, "epochs": 1000}, views={"n_local": 0}, run={"log_every": 50})
    result = Trainer(cfg, progress=False, clock=clock.time).fit()
    lines = [json.loads(x) for x in (result.out / "metrics.jsonl").read_text().splitlines()]
    replans = [x for x in lines if "time_replanned_from_steps" in x]
    assert [(x["step"], x["time_replanned_from_steps"], x["time_replanned_to_steps"]) for x in replans] == [
        (20, 192, 96)]
    assert result.steps == result.total_steps == 96
    assert not result.interrupted


def test_a_minutes_run_checks_its_speed_a_tenth_in_half_way_and_at_four_fifths():
    from selfsup.engine.time_budget import TimeBudget

    budget = TimeBudget(1.0)
    assert [budget.check_after(a, 1000) for a in (0, 100, 500)] == [100, 500, 800]
    assert budget.check_after(800, 1000) is None
    assert budget.check_after(500, 1100) == 880  # re-planned longer half-way: four fifths, not 550 again
    assert [budget.check_after(a, 60) for a in (0, 20, 48)] == [20, 48, None]  # checks at least 20 steps apart
    assert budget.check_after(20, 30) is None  # too short for a second check
    assert TimeBudget(None).check_after(0, 1000) is None and TimeBudget(1.0, fresh=False).check_after(0, 1000) is None


def test_the_time_budget_leaves_evaluations_out_and_is_late_after_its_slack():
    """On an injected clock: training seconds exclude the time inside `excluded_time`, which moves the deadline
    (1.1 x the budget) by as much; the speed check returns the seconds a step took since step 5."""
    from selfsup.engine.time_budget import TimeBudget

    now = [100.0]
    budget = TimeBudget(1.0, prior_seconds=30.0, clock=lambda: now[0])
    budget.start(total_steps=200)  # checks at 20, 100, 160
    for done in range(1, 21):
        now[0] += 0.5 if done <= 5 else 2.0  # slow first steps, then 2 s a step
        rate = budget.observe(done, 200)
        assert rate is None or (done == 20 and rate == 2.0)
    assert rate == 2.0 and budget.next_check == 20
    budget.replanned(20, 200)
    assert budget.next_check == 100 and budget.seconds() == 32.5 and budget.run_seconds() == 62.5
    with budget.excluded_time():
        now[0] += 40.0  # an evaluation
    assert budget.seconds() == 32.5 and not budget.late() and budget.left() == 27.5
    now[0] += 66.0 - 32.5  # exactly at the deadline: not yet late
    assert not budget.late()
    now[0] += 0.01
    assert budget.late()


def test_logged_training_minutes_leave_out_the_evaluations(tiny_cfg, monkeypatch):
    """A periodic or final k-NN logs the training time before it: its own (here 1 s each) is not training."""
    import time

    import selfsup.engine.pretrain as engine

    real = engine.knn_of_weights
    monkeypatch.setattr(engine, "knn_of_weights", lambda *a, **k: time.sleep(1) or real(*a, **k))
    result = pretrain(tiny_cfg(optim={"epochs": 2 / 22}, run={"eval_knn": True, "knn_every": 1}), progress=False)
    logged = [json.loads(x) for x in (result.out / "metrics.jsonl").read_text().splitlines()]
    minutes = [x["train_minutes"] for x in logged if "knn_top1" in x]
    assert len(minutes) == 2 and minutes[0] < minutes[-1]
    assert abs(minutes[-1] - result.minutes) * 60 < 0.5  # the final evaluation's 1 s is not in either
