"""benchmarks/demo_sweep.py: its variants are valid configs, and its table and curve say what was measured."""

from __future__ import annotations

from selfsup.config import build_config


def test_every_variant_is_a_valid_config(sweep):
    for name, overrides in sweep.VARIANTS.items():
        build_config(sweep.variant(overrides), where=name)


def test_crossing_names_the_first_minute_above_pixels_or_the_closest_point(sweep):
    curve = [(4.0, 81.0), (8.0, 84.7), (12.0, 84.5), (16.0, 85.0)]
    assert sweep.crossing(curve, 84.61) == "It first passes raw pixels (84.61) at 8.0 min."
    assert sweep.crossing(curve, 85.5) == "It stays under raw pixels (85.50); closest 85.00 at 16.0 min."
    assert sweep.crossing(curve, None) == ""


def test_table_keeps_the_latest_record_per_variant_and_budget(sweep):
    base = {"cpu": "CPU X", "threads": 2, "date": "2026-12-03", "minutes_budget": 6.0, "train_minutes": 5.9,
            "epochs": 2.0, "images_per_s": 280}
    records = [{"variant": "raw pixels", "val_top1": 84.61, "cpu": "CPU X", "threads": 2, "date": "2026-12-03"},
               {**base, "variant": "a", "val_top1": 80.0}, {**base, "variant": "a", "val_top1": 81.0},
               {**base, "variant": "b", "val_top1": 82.5},
               {**base, "variant": "a", "minutes_budget": 60, "val_top1": 85.0, "curve": [(30.0, 84.0), (60.0, 85.0)]}]
    text = sweep.table(records)
    rows = [line for line in text.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert rows == ["| b | 6.0 | 5.9 | 2.0 | 280 | 82.50 | CPU X, 2 | 2026-12-03 |",
                    "| a | 6.0 | 5.9 | 2.0 | 280 | 81.00 | CPU X, 2 | 2026-12-03 |"]
    assert "first passes raw pixels (84.61) at 60.0 min" in text
