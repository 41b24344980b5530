"""The pre-training loop on Lightning Fabric: devices, DDP, precision, checkpoints, resume, logging."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from selfsup.config import ConfigError, PretrainConfig, save_yaml
from selfsup.data import Splits
from selfsup.data.batch_source import Layout
from selfsup.data.views import MultiCropViews, channel_stats
from selfsup.engine.build import backbone_spec, build_method, resolve_sizes
from selfsup.engine.checkpoint import (
    atomic_save,
    check_compatible,
    last_checkpoint,
    length_option,
    read_resume,
    resume_length,
    unfit,
)
from selfsup.engine.collapse_watch import CollapseWatch
from selfsup.engine.data import open_data, skipped_files
from selfsup.engine.fabric import make_fabric, precision_words
from selfsup.engine.init import resolve_init
from selfsup.engine.logging import RunLogger
from selfsup.engine.meter import IntervalMeter
from selfsup.engine.optim import optim_schedules, optimizer_for, warmup_steps
from selfsup.engine.rng import gather_rng_states, restore_rng_states
from selfsup.engine.step import optimization_step
from selfsup.engine.stop import StopRequest
from selfsup.engine.time_budget import TimeBudget
from selfsup.errors import SelfsupError
from selfsup.eval.knn import knn_of_weights
from selfsup.insight.reconstruction import save_reconstructions
from selfsup.methods import METHODS
from selfsup.models.io import BackboneSpec, save_backbone
from selfsup.models.running_stats import RunningStats


class TrainingDiverged(SelfsupError, RuntimeError):
    """The loss stayed non-finite for several steps in a row."""


@dataclass
class RunResult:
    is_main: bool  # False on the other processes of a distributed run, which report nothing
    out: Path
    steps: int
    total_steps: int
    minutes: float  # training time of the whole run, over every resume (evaluations excluded)
    images_per_s: float  # of this process's steps
    interrupted: bool
    knn: dict[str, Any] | None
    splits: Splits | None = None  # the data of the run, for callers that evaluate further
    replanned: bool = False  # resumed with another --optim.epochs/--optim.minutes: schedules re-planned


class Trainer:
    """One pre-training run. `fit()` trains to the end (or until stopped) and evaluates."""

    def __init__(self, cfg: PretrainConfig, resume: bool = False, progress: bool = True,
                 stop_at_step: int | None = None, clock: Callable[[], float] = time.time) -> None:
        """`clock`: the wall clock of the time budget (tests inject one that moves with the steps)."""
        self.cfg, self.resume, self.show_progress, self.clock = cfg, resume, progress, clock
        self.stop_at_step = stop_at_step  # behave as if interrupted after this step (tests of resume)
        self.out = Path(cfg.run.out)
        self.fabric = make_fabric(cfg)
        self.collapse = CollapseWatch(cfg.method)  # one warning per cause per run

    # -- setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Everything a run needs before its first step: devices, data, the method and its optimiser, the
        schedules, a resumed state; `fit` calls it, and so does `initial_network` (which trains nothing)."""
        f, cfg = self.fabric, self.cfg
        f.launch()
        self.precision = f.strategy.precision.precision
        if f.device.type != "cpu" or cfg.run.precision:
            f.print(precision_words(f.device.type, self.precision, cfg.run.precision), file=sys.stderr)
        self.data = open_data(cfg.data, cfg.run.seed)  # in memory, or streamed (--data.stream)
        ckpt = read_resume(self.out, self.resume)
        saved = ckpt["config"].get("backbone", {}) if ckpt is not None else None
        cfg, init = resolve_init(cfg, METHODS[cfg.method].input_channels(self.data.channels), saved)
        self.cfg = cfg = resolve_sizes(cfg, self.data.size)
        self.splits: Splits = self.data.eval_splits(cfg.views.global_size, labelled=cfg.run.eval_knn)
        self.images = self.data.sample(cfg.views.global_size)  # all training images, or a stream's sample
        channels = self.data.channels
        mean, std = channel_stats(self.images)
        self.spec = backbone_spec(cfg, self.images, channels, mean, std)
        torch.manual_seed(cfg.run.seed)  # identical initialisation on every process
        self.method = build_method(cfg, channels, init)  # a resumed run's weights come from its checkpoint
        self.method.prepare_data(self.images, mean, std)
        self.views = MultiCropViews(cfg.views, channels, mean, std).to(f.device)
        self.world_batch = cfg.optim.batch_size
        if self.world_batch % f.world_size:
            raise ConfigError(f"--batch-size {self.world_batch} is not divisible by the {f.world_size} "
                              "processes: choose a multiple")
        self.local_batch = self.world_batch // f.world_size
        layout = Layout(cfg.run.seed, self.world_batch, f.global_rank, f.world_size)
        self.source = self.data.source(layout, cfg.views.global_size)  # the uint8 batch of each step
        self.steps_per_epoch = self.source.steps_per_epoch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"--batch-size {self.world_batch} is larger than the {self.data.count} "
                              f"training images of {cfg.data.name}: lower it")
        if f.world_size > 1 and f.device.type == "cuda" and cfg.run.sync_bn:
            self.method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.optimizer = optimizer_for(self.method, cfg.optim, self.world_batch)
        self.start_step, self.nonfinite, self.total_steps, self.replanned = 0, 0, 0, None
        self.prior_seconds = 0.0
        self._load_resume(ckpt)
        self.budget = TimeBudget(cfg.optim.minutes, self.prior_seconds, fresh=ckpt is None, clock=self.clock)
        self.model, self.optimizer = f.setup(self.method, self.optimizer)
        if ckpt is not None:  # after setup, so that the optimiser's state lands on its parameters' device
            with unfit(last_checkpoint(self.out)):
                self.optimizer.load_state_dict(ckpt["optimizer"])
        self.running_stats = RunningStats(self.method)  # the buffers on their device
        self.total_steps = self._plan_steps() if ckpt is None else self._resume_length(ckpt)
        self.method.setup(self.total_steps, self.steps_per_epoch)
        self.sched = optim_schedules(cfg.optim, self.total_steps, self.steps_per_epoch, self.world_batch)
        torch.manual_seed(cfg.run.seed + f.global_rank)  # different augmentations per process
        if ckpt is not None:
            restore_rng_states(f, ckpt["rng"])
        if f.is_global_zero:
            self.out.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, self.out / "config.yaml")

    def _load_resume(self, ckpt: dict[str, Any] | None) -> None:
        """The checkpoint's model state, step, counters and training time (nothing for a fresh run)."""
        if ckpt is None:
            return
        path = last_checkpoint(self.out)
        check_compatible(ckpt, self.cfg.method, self.cfg.backbone.name, path)
        with unfit(path):
            self.method.load_state_dict(ckpt["model"])
        self.start_step = ckpt["step"]
        self.nonfinite = ckpt.get("nonfinite", 0)
        self.prior_seconds = ckpt.get("train_seconds", 0.0)  # trained before this process (absent: older run)

    def _resume_length(self, ckpt: dict[str, Any]) -> int:
        """The resumed run's step count (engine/checkpoint.py `resume_length`), saying when it is re-planned."""
        total, self.replanned = resume_length(ckpt, dataclasses.asdict(self.cfg.optim), self.start_step,
                                              self._plan_steps, self.out)
        if self.replanned:
            asked = length_option(dataclasses.asdict(self.cfg.optim))
            planned = length_option(ckpt.get("config", {}).get("optim", {}))
            self.fabric.print(f"notice: resuming at step {self.start_step} with --optim.{asked[0]} {asked[1]} "
                              f"instead of {planned[1]}: the lr, weight-decay and method schedules are re-planned "
                              f"for {total} steps instead of {self.replanned[0]}, so this resume is not bit-exact",
                              file=sys.stderr)
        return total

    def _plan_steps(self) -> int:
        """The run's step count: --optim.epochs of the data, or as many steps as --optim.minutes allow."""
        o = self.cfg.optim
        if o.minutes is None:
            return max(1, math.ceil(o.epochs * self.steps_per_epoch))
        seconds = self._calibrate()
        total = int(o.minutes * 60 / seconds)
        return int(self.fabric.broadcast(max(total, 1)))

    def _calibrate(self, warm: int = 2, timed: int = 4) -> float:
        """Seconds per step, measured on the real model; every state it touches is restored afterwards."""
        saved = (copy.deepcopy(self.method.state_dict()), copy.deepcopy(self.optimizer.state_dict()),
                 torch.get_rng_state())
        self.method.setup(warm + timed, self.steps_per_epoch)
        self.sched = optim_schedules(self.cfg.optim, warm + timed, self.steps_per_epoch, self.world_batch)
        batch = self.source.batch(0)
        for i in range(warm + timed):
            if i == warm:
                t0 = self.clock()
            self._step(i, batch)
        seconds = (self.clock() - t0) / timed
        self.method.load_state_dict(saved[0])
        self.optimizer.load_state_dict(saved[1])
        torch.set_rng_state(saved[2])
        return seconds

    # -- one step ----------------------------------------------------------------------------------
    def _step(self, step: int, images: torch.Tensor) -> tuple[float, bool, dict[str, float]]:
        """One optimisation step on this process's uint8 batch `images`; returns (loss, finite, diagnostics)."""
        views = self.views(self.fabric.to_device(images))
        return optimization_step(self.fabric, self.model, self.method, self.optimizer, views, step,
                                 float(self.sched["lr"][step]), float(self.sched["wd"][step]),
                                 self.cfg.optim.clip_grad, self._is_log_step(step), self.running_stats,
                                 step < self.cfg.optim.freeze_backbone_epochs * self.steps_per_epoch,
                                 self.cfg.optim.clip_mode)


    def _is_log_step(self, step: int) -> bool:
        """Whether `step` ends a logging interval: the method's diagnostics are computed on these only."""
        return (step + 1) % self.cfg.run.log_every == 0 or step + 1 == self.total_steps

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self, next_step: int) -> None:
        rng = gather_rng_states(self.fabric)  # collective: every process takes part
        if self.fabric.is_global_zero:
            atomic_save({"method": self.cfg.method, "backbone": self.cfg.backbone.name,
                         "model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "step": next_step, "total_steps": self.total_steps, "rng": rng,
                         "steps_per_epoch": self.steps_per_epoch, "nonfinite": self.nonfinite,
                         "train_seconds": self.budget.run_seconds(),
                         "config": self.cfg.to_dict()}, last_checkpoint(self.out))
            save_backbone(self.method.evaluated_backbone(), self.spec, self.out / "backbone.safetensors")
        self.fabric.barrier()

    # -- loop --------------------------------------------------------------------------------------
    def _batches(self) -> Iterator[tuple[int, torch.Tensor]]:
        """(step, this process's uint8 batch) from start_step on, in the source's seeded order (resumable)."""
        batches, step = self.source.batches(self.start_step), self.start_step
        try:
            while step < self.total_steps:  # total_steps may be re-planned during the run (_replan_for_time)
                yield step, next(batches)
                step += 1
        finally:
            batches.close()  # stops a stream's workers

    def _replan_for_time(self, done: int, seconds_per_step: float, log: RunLogger) -> None:
        """Re-plan a --minutes run for the time left at the speed its real steps reached (engine/time_budget.py):
        a plan more than 3% off would end the run early or cut its schedules short. Schedules are recomputed
        for the new length (the lr is still warming up or barely past its peak, so it hardly moves)."""
        left = self.budget.left()
        total = done + int(self.fabric.broadcast(max(int(left / seconds_per_step), 1)))
        if abs(total - self.total_steps) <= 0.03 * self.total_steps:
            return
        log.set_total(total)
        planned, self.total_steps = self.total_steps, total
        self.method.setup(total, self.steps_per_epoch)
        self.sched = optim_schedules(self.cfg.optim, total, self.steps_per_epoch, self.world_batch)
        log.log(done, {"time_replanned_from_steps": planned, "time_replanned_to_steps": total,
                       **self._warmup_values()})

    STOP_CHECK_EVERY = 10  # steps between the processes' agreements on a stop (and on every log step)

    def _stop_flags(self, step: int, stop: StopRequest) -> tuple[bool, bool]:
        """(interrupted, out of time). One process decides alone; several agree (a collective, so a host sync on
        a GPU) every STOP_CHECK_EVERY steps, on log steps and at --stop-at-step, so that a signal or the
        deadline is acted on within a few steps, together."""
        asked = stop.requested or step + 1 == self.stop_at_step
        late = self.budget.late()
        if self.fabric.world_size == 1:
            return asked, late
        if not ((step + 1) % self.STOP_CHECK_EVERY == 0 or self._is_log_step(step) or step + 1 == self.stop_at_step):
            return False, False
        flags = self.fabric.all_reduce(torch.tensor([float(asked), float(late)]), reduce_op="max")
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def fit(self) -> RunResult:
        self.setup()
        run = self.cfg.run
        log = RunLogger(self.out, self.total_steps, self.start_step, self.fabric.is_global_zero,
                        self.show_progress)
        replanned = {"replanned_from_steps": self.replanned[0], "replanned_to_steps": self.replanned[1]} \
            if self.replanned else {}
        log.log(self.start_step, {**replanned, **self._warmup_values(), "precision": self.precision})
        meter, step, in_a_row, interrupted = IntervalMeter(), self.start_step - 1, 0, False
        self.budget.start(self.total_steps)
        with StopRequest() as stop:
            for step, images in self._batches():
                loss, finite, logs = self._step(step, images)
                in_a_row = 0 if finite else in_a_row + 1
                self.nonfinite += not finite
                if in_a_row >= run.max_nonfinite:
                    self._diverged(step)
                meter.add(loss, finite, logs)
                log.progress(1)
                if self._is_log_step(step):
                    self._log(log, step, meter.flush(self.world_batch))
                if run.knn_every and (step + 1) % run.knn_every == 0 and step + 1 < self.total_steps:
                    meter.t += self._timed_knn(log, step + 1)
                interrupted, late = self._stop_flags(step, stop)
                seconds_per_step = self.budget.observe(step + 1, self.total_steps)
                if seconds_per_step is not None:  # a --minutes run's check of its speed
                    self._replan_for_time(step + 1, seconds_per_step, log)
                    self.budget.replanned(step + 1, self.total_steps)
                if (interrupted or late) and step + 1 < self.total_steps:
                    break
                if (step + 1) % run.checkpoint_every == 0:
                    self.save(step + 1)
        last = step + 1
        self.save(last)
        if self.fabric.is_global_zero:  # MAE, SimMIM, inpainting: masked, reconstructed and original images
            save_reconstructions(self.method, self.images, self.views, self.cfg.views.global_size,
                                 self.out / "reconstructions.png", self.cfg.run.seed)
        log.close()
        ips = (last - self.start_step) * self.world_batch / max(self.budget.seconds(), 1e-9)  # this process's
        minutes = self.budget.run_seconds() / 60
        knn = None if interrupted else self._final_eval(log)
        return RunResult(self.fabric.is_global_zero, self.out, last, self.total_steps, minutes, ips, interrupted, knn,
                         self.splits, replanned=self.replanned is not None)

    def _timed_knn(self, log: RunLogger, step: int) -> float:
        """The k-NN of the student during training, left out of the training time; returns its seconds."""
        with self.budget.excluded_time():
            t0 = self.clock()
            self._knn(log, step, student=True)
            return self.clock() - t0

    def _warmup_values(self) -> dict[str, float]:
        """The lr warm-up of the planned run, for metrics.jsonl: its epochs and its share of the run's steps
        (a warm-up set for a long schedule can take much of a short run; --optim.warmup-max-share caps it)."""
        warm = warmup_steps(self.cfg.optim, self.total_steps, self.steps_per_epoch)
        return {"warmup_epochs": round(warm / self.steps_per_epoch, 4),
                "warmup_share": round(warm / self.total_steps, 4)}

    def _log(self, log: RunLogger, step: int, interval: dict[str, float]) -> None:
        values = {"epoch": round((step + 1) / self.steps_per_epoch, 4), **interval, "nonfinite_steps": self.nonfinite,
                  "lr": float(self.sched["lr"][step]), "wd": float(self.sched["wd"][step]),
                  **self.method.schedule_values(step), **skipped_files(self.fabric, self.source)}
        # judged once the lr warm-up is over: before, the network is near its initialisation (a ResNet's identity
        # blocks, LayerScale, a distilled student that first learns its teacher's mean feature), and the
        # warning's advice (a lower lr, a longer warm-up) would not apply
        warm = step < warmup_steps(self.cfg.optim, self.total_steps, self.steps_per_epoch)
        warning = None if warm else self.collapse.check(values)
        log.log(step + 1, values if warning is None else {**values, "warning": warning})
        log.progress(0, loss=values["loss"], img_s=round(values["images_per_s"]))

    def _diverged(self, step: int) -> None:
        raise TrainingDiverged(
            f"the loss was not finite for {self.cfg.run.max_nonfinite} steps in a row (last at step {step}). "
            "Usual causes: a learning rate too high for the batch (lower --optim.lr), a teacher temperature "
            "above 0.07 (lower --dino.teacher-temp), too short a warm-up (--optim.warmup-epochs), fp16 "
            "overflow (use --run.precision bf16-mixed or 32-true), or degenerate input images. The last "
            f"checkpoint is in {self.out / 'checkpoints'}."
        )

    def _final_eval(self, log: RunLogger) -> dict[str, Any] | None:
        result = self._knn(log, self.total_steps, student=self.cfg.run.knn_every > 0)
        if result is not None:
            (self.out / "eval").mkdir(exist_ok=True)
            (self.out / "eval" / "knn.json").write_text(json.dumps(result, indent=1))
        return result

    def _knn(self, log: RunLogger, step: int, student: bool = False) -> dict[str, Any] | None:
        """k-NN of the evaluated backbone on the test split (rank 0), logged at `step`; with `student`, also
        knn_student_top1 of the trained one where another is evaluated (a teacher, --optim.eval-ema)."""
        test = self.splits.test
        if not (self.cfg.run.eval_knn and test is not None and test.labels is not None
                and self.splits.train.labels is not None):
            return None
        result, trained = None, self.budget.run_seconds()  # before this evaluation's own time
        if self.fabric.is_global_zero:
            evaluated = self.method.evaluated_backbone()
            result = knn_of_weights(evaluated, self.spec, self.splits, self.fabric.device)
            values = {f"knn_{k}": v for k, v in result.items()}
            if student and evaluated is not self.method.backbone:
                student_knn = knn_of_weights(self.method.backbone, self.spec, self.splits, self.fabric.device)
                values["knn_student_top1"] = student_knn["top1"]
            log.log(step, {**values, "train_minutes": round(trained / 60, 3)})
        self.fabric.barrier()
        return result


def pretrain(cfg: PretrainConfig, resume: bool = False, progress: bool = True) -> RunResult:
    return Trainer(cfg, resume, progress).fit()


def initial_network(cfg: PretrainConfig) -> tuple[torch.nn.Module, BackboneSpec, Splits]:
    """What a run of `cfg` starts from: the evaluated backbone at its seed's initialisation, its spec and the
    run's evaluation splits (the floor its training is read against). Trains nothing; writes
    cfg.run.out/config.yaml, so pass a folder of its own."""
    trainer = Trainer(cfg, progress=False)
    trainer.setup()
    return trainer.method.evaluated_backbone(), trainer.spec, trainer.splits
