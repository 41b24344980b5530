from selfsup.config import build_config


def record(jaccards):
    row = {"jaccard_foreground": 30.0, "jaccard_mean_heads": 9.0, "per_head": [1.0, 2.0], "knn_top1": 20.0,
           "video_jf": 50.0, "video_j": 45.0, "video_f": 55.0}
    return {"machine": "AMD EPYC, 2 threads", "date": "2026-12-03", "backbone": "vit-cpu", "dino_minutes": 15,
            "dino_steps": 700, "supervised_minutes": 15, "n_images": 1000,
            "rows": {name: {**row, "jaccard": j} for name, j in jaccards.items()}}


def test_table_has_the_three_rows_beside_the_thesis_and_says_the_ordering(segmentation):
    md = segmentation.markdown(record({"random": 14.0, "supervised": 18.5, "DINO": 16.0}))
    rows = [line for line in md.splitlines() if line.startswith("| ") and "weights" not in line]
    assert [r.split(" | ")[0] for r in rows] == ["| random", "| supervised", "| DINO"]
    assert "| 45.8 | 44.6 |" in rows[2] and "| 18.50 |" in rows[1]
    assert "Ordering here (best head, mean): random < DINO < supervised." in md


def test_the_dino_recipe_is_a_valid_config(segmentation):
    cfg = build_config({**segmentation.RECIPE, "optim": {**segmentation.RECIPE["optim"], "minutes": 1}}, where="t")
    assert cfg.method == "dino" and cfg.data.name == "cluttered" and cfg.backbone.patch_size == 8


def test_seeds_are_combined_into_a_mean_with_its_spread(segmentation):
    def rows(dino):
        base = record({"random": 20.0, "supervised": 26.0, "DINO": dino})["rows"]
        return {name: {**row, "per_head": [dino, 1.0]} for name, row in base.items()}

    combined = segmentation.combine([rows(30.0), rows(34.0), rows(38.0)])
    assert combined["DINO"]["jaccard"] == 34.0 and combined["DINO"]["jaccard_std"] == 4.0
    assert combined["DINO"]["jaccard_seeds"] == [30.0, 34.0, 38.0] and combined["DINO"]["per_head"] == [30.0, 1.0]
    assert combined["supervised"]["jaccard_std"] == 0.0 and combined["random"]["video_jf"] == 50.0
    assert segmentation.combine([rows(30.0)])["DINO"]["jaccard_std"] is None
    md = segmentation.markdown({**record({}), "rows": combined, "seeds": [0, 1, 2]})
    assert "| DINO | 34.00 ± 4.00 |" in md and "DINO 30.00, 34.00, 38.00" in md and "Mean over 3 seed(s)" in md
    assert ("DINO's best-head Jaccard is above the supervised ViT's on 3 of 3 seeds, by +8.00 points on average "
            "(+4.00, +8.00, +12.00)") in md
    assert "DINO's mean of heads is above the supervised ViT's on 0 of 3 seeds, by +0.00 points" in md


def test_ibot_and_dinov2_rows_take_dinos_recipe_but_their_methods(segmentation):
    dino = build_config(segmentation.recipe(1.0, 3, "out"), where="t")
    for row, method in (("iBOT", "ibot"), ("DINOv2", "dinov2")):
        cfg = build_config(segmentation.recipe(1.0, 3, "out", row), where="t")
        assert cfg.method == method and cfg.run.seed == 3 and cfg.optim.minutes == 1.0
        assert cfg.views == dino.views and cfg.optim.lr == dino.optim.lr  # DINO's crops, not the method's own
        head = ("out_dim", "hidden_dim", "momentum_teacher")
        assert [getattr(cfg.method_cfg, k) for k in head] == [getattr(dino.method_cfg, k) for k in head]
        assert cfg.method_cfg.patch_loss_weight > 0
        for k, v in segmentation.TUNED.get(row, {}).items():  # what the validation split chose on top
            assert getattr(cfg.method_cfg, k) == v


def test_every_self_supervised_row_is_compared_with_supervised_seed_by_seed(segmentation):
    def rows(gap):
        base = record({"random": 20.0, "supervised": 26.0, "DINO": 30.0, "iBOT": 26.0 + gap, "DINOv2": 20.0})
        return base["rows"]

    combined = segmentation.combine([rows(1.0), rows(-3.0)])
    md = segmentation.markdown({**record({}), "rows": combined, "seeds": [0, 1],
                                "ssl": {"DINO": {"minutes": 12.1, "steps": 400}, "iBOT": {"minutes": 12.2,
                                                                                         "steps": 300}}})
    table = [line.split(" | ")[0] for line in md.splitlines() if line.startswith("| ") and "weights" not in line]
    assert table == ["| random", "| supervised", "| DINO", "| iBOT", "| DINOv2"]
    assert "| iBOT | 25.00 ± 2.83 |" in md and "| 55.00 | - | - |" in md  # no thesis number for iBOT
    assert "iBOT's best-head Jaccard is above the supervised ViT's on 1 of 2 seeds, by -1.00 points" in md
    assert "DINOv2's best-head Jaccard is above the supervised ViT's on 0 of 2 seeds" in md
    assert "iBOT, 12.2 min, 300 steps" in md and "iBOT and DINOv2 rows take DINO's recipe" in md
    assert "nothing of theirs was tuned" in md  # a record from before the validation choice says so
    tuned = segmentation.markdown({**record({}), "rows": combined, "seeds": [0, 1], "tuned": {
        "iBOT": segmentation.DINO_TEACHER, "DINOv2": {}}})
    assert ("on the validation split (docs/segmentation_screen.md) iBOT with DINO's teacher (temperature 0.04 "
            "throughout, the last layer's norm fixed), the rest as it is.") in tuned


def test_the_header_says_how_far_each_teacher_left_its_uniform_start(segmentation, tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "teacher_entropy": 6.9}\n'
                                            '{"step": 2, "teacher_entropy": 5.917, "log_K": 6.9315}\n')
    ssl = {"DINO": {"minutes": 12.1, "steps": 2, **segmentation.end_entropy(tmp_path)}}
    md = segmentation.markdown({**record({"random": 1.0, "supervised": 2.0, "DINO": 3.0}), "ssl": ssl})
    assert "DINO, 12.1 min, 2 steps, teacher entropy 5.92 of log K 6.93 at the end" in md


def test_the_page_says_what_the_scored_runs_trained_with(segmentation, tmp_path):
    import yaml

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"views": {"global_scale": [0.4, 1.0]},  # as iBOT ran
                                                          "ibot": {"teacher_temp": 0.07, "norm_last_layer": False}}))
    assert segmentation.ran_with(tmp_path, "iBOT") == {"crops": [0.4, 1.0], "tuned": False}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"views": {"global_scale": [0.14, 1.0]},
                                                          "ibot": dict(segmentation.DINO_TEACHER)}))
    assert segmentation.ran_with(tmp_path, "iBOT") == {"crops": [0.14, 1.0], "tuned": True}
    ssl = {"DINO": {"minutes": 12.0, "steps": 400, "crops": [0.14, 1.0]},
           "iBOT": {"minutes": 12.0, "steps": 300, "crops": [0.4, 1.0]}}
    rows = record({"random": 20.0, "supervised": 26.0, "DINO": 30.0, "iBOT": 27.0, "DINOv2": 20.0})["rows"]
    md = segmentation.markdown({**record({}), "rows": rows, "ssl": ssl, "tuned": {"iBOT": {}, "DINOv2": {}}})
    assert "DINO, 12.0 min, 400 steps, global crops 0.14-1" in md
    assert "iBOT, 12.0 min, 300 steps, global crops 0.4-1" in md
    assert "Their runs took global crops of 0.4-1, DINO's row 0.14-1" in md and "nothing of theirs was tuned" in md
    same = {**ssl, "iBOT": {**ssl["iBOT"], "crops": [0.14, 1.0]}}
    assert "Their runs took" not in segmentation.markdown({**record({}), "rows": rows, "ssl": same})
