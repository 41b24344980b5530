import json
import math

from selfsup.engine.collapse_watch import CollapseWatch
from selfsup.engine.pretrain import Trainer

LOG_K = math.log(128)
HEALTHY = {"loss": 4.0, "emb_std": 0.05, "emb_std_ideal": 0.07, "teacher_entropy": 2.0,
           "teacher_student_kl": 1.0, "log_K": LOG_K}


def test_uniform_teacher_names_the_teacher_temperature_once():
    watch = CollapseWatch("dino")
    assert watch.check(HEALTHY) is None
    uniform = {**HEALTHY, "teacher_entropy": LOG_K - 0.01, "teacher_student_kl": 1e-4}
    warning = watch.check(uniform)
    assert "log K" in warning and "--dino.teacher-temp" in warning and "centring dominates" in warning
    assert watch.check(uniform) is None  # once per cause per run
    one = watch.check({**HEALTHY, "teacher_entropy": 0.01, "teacher_student_kl": 1e-4})
    assert "one prototype" in one and "--dino.centering" in one  # another cause: warned too


def test_collapsed_embeddings_name_the_methods_switches():
    warning = CollapseWatch("simsiam").check({"emb_std": 0.001, "emb_std_ideal": 0.07})
    assert "emb_std 0.001" in warning and "--simsiam.stop-gradient" in warning
    backbone = CollapseWatch("vicreg").check({"emb_std": 0.06, "emb_std_ideal": 0.07, "backbone_std": 1e-4,
                                              "backbone_std_ideal": 0.09})
    assert "backbone_std 0.0001" in backbone and "--optim.lr" in backbone


def test_embeddings_on_one_line_are_named_by_their_rank():
    """SimSiam without its predictor: std at a quarter of the reference, rank 1.1 (docs/ablations)."""
    warning = CollapseWatch("simsiam").check({"emb_std": 0.012, "emb_std_ideal": 0.044, "emb_rank": 1.09})
    assert "emb_rank 1.09 is below 1.5" in warning and "--simsiam.predictor" in warning
    assert CollapseWatch("simsiam").check({"emb_std": 0.012, "emb_std_ideal": 0.044, "emb_rank": 8.0}) is None


def test_the_engine_writes_the_warning_once_to_metrics_and_stderr(tiny_cfg, capsys):
    trainer = Trainer(tiny_cfg(optim={"epochs": 3 / 22}), progress=False)
    trainer.setup()
    forward = trainer.method.forward

    def collapsed(views, step, diagnostics=True):  # a fake logs dict: the teacher's outputs uniform
        loss, logs = forward(views, step, diagnostics)
        return loss, {**logs, "teacher_entropy": logs["log_K"], "teacher_student_kl": 0.0} if diagnostics else {}

    trainer.method.forward = collapsed
    trainer.setup = lambda: None
    result = trainer.fit()
    lines = [x for x in map(json.loads, (result.out / "metrics.jsonl").read_text().splitlines()) if "loss" in x]
    warned = [x["step"] for x in lines if "warning" in x]
    # the first step is the lr warm-up's (0.05 epochs): judged from the first step after it on, once
    assert warned == [2] and "--dino.teacher-temp" in lines[1]["warning"]
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(err) == 1 and "step 2" in err[0] and "--dino.teacher-temp" in err[0]
