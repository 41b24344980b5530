import json
from pathlib import Path

from selfsup.config import build_config

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_each_candidate_is_a_valid_recipe_on_the_held_out_split(segmentation_screen, tmp_path):
    for name, over in segmentation_screen.CANDIDATES.items():
        raw = segmentation_screen.candidate_raw(over, 3.0, tmp_path / "x")
        cfg = build_config(raw, where=name)
        assert cfg.data.holdout == 0.1 and cfg.optim.minutes == 3.0 and cfg.run.out == str(tmp_path / "x")
        changed = {(s, k) for s, values in raw.items() if isinstance(values, dict) for k, v in values.items()
                   if segmentation_screen.BASE.get(s, {}).get(k) != v}
        assert changed == {("data", "holdout"), ("optim", "minutes"), ("run", "out")} | {
            (s, k) for s, values in over.items() for k in values}, name


def test_the_benchmark_recipe_is_the_validation_winner(segmentation, segmentation_screen):
    best = segmentation_screen.chosen(json.loads((DOCS / "segmentation_screen.json").read_text()), "DINO ")[0]
    raw = segmentation_screen.candidate_raw(segmentation_screen.CANDIDATES[best.removeprefix("DINO ")], 1.0, Path())
    for section in ("method", "backbone", "views", "optim", "dino"):
        expected = raw[section]
        if section == "optim":
            expected = {k: v for k, v in expected.items() if k != "minutes"}
        assert segmentation.RECIPE[section] == expected, section
    assert segmentation.RECIPE["data"] == {"name": "cluttered"}


def test_the_table_names_the_best_candidate(segmentation_screen):
    row = {"per_head": [1.0, 2.0], "knn_top1": 12.0, "steps": 300}
    rec = {"machine": "AMD EPYC, 1 threads", "date": "2026-12-04", "minutes": 12.0,
           "rows": {"random": {**row, "jaccard": 20.0}, "supervised": {**row, "jaccard": 23.0},
                    "DINO lr 0.002": {**row, "jaccard": 25.0}, "DINO lr 0.008": {**row, "jaccard": 34.0}}}
    md = segmentation_screen.markdown(rec)
    assert "Best on validation: DINO lr 0.008 (Jaccard 34.00)" in md
    assert md.count("\n| ") == 5  # header and four rows


def test_rows_at_another_budget_make_a_curve_and_are_not_chosen(segmentation_screen):
    row = {"per_head": [10.0, 20.0], "knn_top1": 12.0, "steps": 300}
    rec = {"machine": "AMD EPYC, 1 threads", "date": "2026-12-04", "minutes": 12.0,
           "rows": {"supervised": {**row, "jaccard": 23.0}, "DINO lr 0.008": {**row, "jaccard": 34.0}}}
    name = segmentation_screen.row_name("DINO lr 0.008", 24.0, rec["minutes"])
    assert name == "DINO lr 0.008, 24 min" and segmentation_screen.row_name("x", 12.0, 12.0) == "x"
    rec["rows"][name] = {**row, "jaccard": 40.0, "per_head": [30.0, 40.0], "minutes": 24.0}
    md = segmentation_screen.markdown(rec)
    assert "Best on validation: DINO lr 0.008 (Jaccard 34.00)" in md  # only rows at the page's budget compete
    assert ("Against minutes, DINO lr 0.008: 12 min 34.00 (mean of heads 15.00); 24 min 40.00 (mean of heads "
            "35.00).") in md
    assert "Against minutes, supervised" not in md  # one budget: no curve


def test_each_mim_candidate_is_segmentations_row_on_the_held_out_split(segmentation, segmentation_screen, tmp_path):
    assert set(segmentation_screen.MIM_NAMES) >= {"iBOT DINO's teacher", "DINOv2 DINO's teacher"}
    for row in segmentation_screen.MIM_ROWS:
        method = segmentation.METHODS[row]
        ref = build_config(segmentation.recipe(3.0, 0, tmp_path / "x", row), where="t")
        for name, over in segmentation_screen.MIM_CANDIDATES.items():
            raw = segmentation_screen.candidate_raw({method: over}, 3.0, tmp_path / "x",
                                                    segmentation.UNTUNED_RECIPES[row])
            cfg = build_config(raw, where=name)
            assert cfg.method == method and cfg.data.holdout == 0.1 and cfg.views == ref.views
            assert cfg.optim.minutes == 3.0 and cfg.optim.lr == ref.optim.lr
            assert cfg.backbone == ref.backbone  # DINOv2's LayerScale stays
            for k, v in over.items():
                assert getattr(cfg.method_cfg, k) == v
    md = segmentation_screen.markdown({"machine": "m", "date": "d", "minutes": 12.0, "rows": {
        name: {"per_head": [1.0], "knn_top1": 1.0, "steps": 1, "jaccard": j}
        for name, j in (("DINO lr 0.008", 34.0), ("iBOT on DINO's recipe", 27.0), ("iBOT DINO's teacher", 30.0),
                        ("DINOv2 DINO's teacher", 36.0), ("DINOv2 on DINO's recipe", 25.0))}})
    assert "best iBOT DINO's teacher (Jaccard 30.00)" in md
    assert "Best on validation: DINO lr 0.008" in md  # a DINOv2 row is not a DINO candidate
    assert "DINOv2 rows: DINO's recipe with DINOv2's additions" in md and "best DINOv2 DINO's teacher (Jaccard 36" in md


def test_the_ibot_and_dinov2_rows_take_their_validation_winners(segmentation, segmentation_screen):
    rec = json.loads((DOCS / "segmentation_screen.json").read_text())
    for row in segmentation_screen.MIM_ROWS:
        assert all(f"{row} {n}" in rec["rows"] for n in segmentation_screen.MIM_CANDIDATES), row  # all measured
        best = segmentation_screen.chosen(rec, f"{row} ")[0].removeprefix(f"{row} ")
        assert segmentation.TUNED.get(row, {}) == segmentation_screen.MIM_CANDIDATES[best], row
        method = segmentation.METHODS[row]
        assert segmentation.SSL_RECIPES[row][method] == {**segmentation.UNTUNED_RECIPES[row][method],
                                                         **segmentation.TUNED.get(row, {})}


def test_a_second_seed_decides_between_the_leaders(segmentation_screen, tmp_path):
    row = {"per_head": [1.0], "knn_top1": 1.0, "steps": 1}
    rec = {"machine": "m", "date": "d", "minutes": 12.0, "rows": {
        "DINO a": {**row, "jaccard": 34.0}, "DINO b": {**row, "jaccard": 36.0}, "DINO c": {**row, "jaccard": 20.0},
        "DINO b, 24 min": {**row, "jaccard": 50.0, "minutes": 24.0}}}
    assert segmentation_screen.chosen(rec, "DINO ") == ("DINO b", 36.0, 1)
    rec["rows"]["DINO a, seed 1"] = {**row, "jaccard": 38.0, "seed": 1}
    rec["rows"]["DINO b, seed 1"] = {**row, "jaccard": 32.0, "seed": 1}
    rec["rows"]["DINO d"] = {**row, "jaccard": 37.0}  # one seed only: not among the leaders run again
    assert segmentation_screen.chosen(rec, "DINO ") == ("DINO a", 36.0, 2)  # 36 against 34 over two seeds
    assert "Best on validation: DINO a (Jaccard 36.00, mean of 2 seeds)" in segmentation_screen.markdown(rec)
    raw = segmentation_screen.candidate_raw({}, 1.0, tmp_path, seed=1)
    assert raw["run"]["seed"] == 1 and "seed" not in segmentation_screen.candidate_raw({}, 1.0, tmp_path)["run"]
