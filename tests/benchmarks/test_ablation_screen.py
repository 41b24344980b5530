import json
from pathlib import Path

from selfsup.ablate import ABLATIONS, load_recipe
from selfsup.config import build_config, merge

DOCS = Path(__file__).resolve().parents[2] / "docs"
DINO_RECIPES = sorted(p for p in ABLATIONS.glob("dino-*.yaml"))


def test_each_candidate_changes_only_what_it_names_on_the_held_out_split(ablation_screen, tmp_path):
    for name, over in ablation_screen.CANDIDATES.items():
        raw = ablation_screen.candidate_raw(name, tmp_path / "x")
        cfg = build_config(raw, where=name)
        assert cfg.data.holdout == 0.1 and cfg.optim.epochs == 1 and cfg.run.out == str(tmp_path / "x")
        changed = {(s, k) for s, values in raw.items() if isinstance(values, dict) for k, v in values.items()
                   if ablation_screen.BASE.get(s, {}).get(k) != v}
        named = {(s, k) for s, values in over.items() for k, v in values.items()
                 if ablation_screen.BASE[s].get(k) != v}  # "lr 0.001" is BASE itself
        assert changed == {("data", "holdout"), ("run", "out")} | named, name


def test_every_dino_recipe_takes_the_validation_winner(ablation_screen):
    rec = json.loads((DOCS / "ablation_screen.json").read_text())
    winner = ablation_screen.CANDIDATES[ablation_screen.best(rec)]
    expected = merge(ablation_screen.BASE, winner)
    assert len(DINO_RECIPES) == 6
    for path in DINO_RECIPES:
        base = load_recipe(path).base
        for section in ("optim", "dino"):
            ours = dict(base[section])
            if path.stem == "dino-batch-size" and section == "optim":  # its rows set the batch size
                ours.pop("batch_size")
            assert ours == {k: v for k, v in expected[section].items()
                            if k not in ("epochs",) and (k, path.stem) != ("batch_size", "dino-batch-size")
                            }, (path.name, section)


def test_the_table_names_the_best_candidate(ablation_screen):
    names = list(ablation_screen.CANDIDATES)
    rows = [{"name": "random init", "knn_top1": 90.0}] + [
        {"name": n, "knn_top1": 60.0 + i, "steps": 210, "train_minutes": 10.0, "teacher_entropy": 6.5,
         "log_K": 6.93, "teacher_student_kl": 0.2} for i, n in enumerate(names)]
    rec = {"machine": "AMD EPYC, 1 threads", "date": "2026-12-04", "rows": rows}
    md = ablation_screen.markdown(rec)
    assert f"Best on validation: {names[-1]}," in md  # the random row is a reference, never the winner
    assert md.count("\n| ") == len(names) + 2  # header, random init and the candidates
