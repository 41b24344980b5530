import json

from selfsup.engine import pretrain
from selfsup.engine.pretrain import Trainer


def run_spying(cfg, monkeypatch):
    """Fit `cfg`, recording which module each k-NN evaluated."""
    trainer = Trainer(cfg, progress=False)
    trainer.setup()
    seen, knn_of = [], pretrain.knn_of_weights

    def spy(module, *args):
        seen.append(module)
        return knn_of(module, *args)

    monkeypatch.setattr(pretrain, "knn_of_weights", spy)
    trainer.setup = lambda: None
    result = trainer.fit()
    lines = [json.loads(x) for x in (result.out / "metrics.jsonl").read_text().splitlines()]
    return trainer, result, seen, lines


def test_periodic_knn_evaluates_the_student_beside_the_teacher(tiny_cfg, monkeypatch):
    trainer, result, seen, lines = run_spying(tiny_cfg(optim={"epochs": 2 / 22},
                                                       run={"eval_knn": True, "knn_every": 1}), monkeypatch)
    teacher, student = trainer.method.teacher["backbone"], trainer.method.backbone
    assert seen == [teacher, student, teacher, student]  # periodic at step 1, then the final one at step 2
    knn = [x for x in lines if "knn_top1" in x]
    assert [x["step"] for x in knn] == [1, 2] and all(0 <= x["knn_student_top1"] <= 100 for x in knn)
    assert json.loads((result.out / "eval" / "knn.json").read_text())["top1"] == knn[-1]["knn_top1"]


def test_without_periodic_knn_the_final_evaluation_is_the_teachers_alone(tiny_cfg, monkeypatch):
    trainer, _, seen, lines = run_spying(tiny_cfg(optim={"epochs": 1 / 22}, run={"eval_knn": True}), monkeypatch)
    assert seen == [trainer.method.teacher["backbone"]]
    assert not any("knn_student_top1" in x for x in lines)
