"""benchmarks/demo_results.py: the README block says what the validation records measured."""

from __future__ import annotations

import sys

import torch


def test_validation_summary_gives_the_budget_run_and_the_long_curve(results):
    """The run of today's demo recipe at its own budget (10 min), not a shorter screening run, one with other
    threads, or a run of an earlier recipe (whatever its variant name)."""
    assert results.recipe("demo")["optim"]["minutes"] == 10.0
    t = torch.get_num_threads()
    demo = sys.modules["demo_sweep"].variant({})  # today's demo recipe, as the sweep records it
    base = {"variant": "conv stem + patch dropout 0.5", "recipe": demo, "cpu": "CPU X", "threads": t}
    earlier = {**base, "variant": "demo recipe", "recipe": {**demo, "method": "dino"}}
    records = [{"variant": "raw pixels", "val_top1": 84.61},
               {**base, "minutes_budget": 10.0, "train_minutes": 11.9, "epochs": 6.8, "val_top1": 84.04,
                "curve": [(4.0, 81.7)]},
               {**base, "minutes_budget": 60, "train_minutes": 60.2, "epochs": 33.0, "val_top1": 86.0,
                "curve": [(7.5, 83.5), (28.0, 84.9)]},
               {**base, "threads": t + 1, "minutes_budget": 6.0, "train_minutes": 6, "epochs": 2, "val_top1": 81},
               {**base, "minutes_budget": 5.0, "train_minutes": 5.5, "epochs": 3.0, "val_top1": 82.2},  # a screen
               {**earlier, "minutes_budget": 10.0, "train_minutes": 11, "epochs": 4, "val_top1": 80},  # other recipe
               {"variant": "demo recipe", "cpu": "CPU X", "threads": t, "minutes_budget": 10.0, "train_minutes": 11,
                "epochs": 4, "val_top1": 79}]  # recorded before records kept their recipe
    text = results.validation_summary(records)
    assert "reached 84.04% in 11.9 min of training (6.8 epochs) against 84.61% for raw pixels" in text
    assert "Planned for 60 minutes it ends at 86.00% (33.0 epochs)" in text
    assert "first passes raw pixels (84.61) at 28.0 min" in text


def test_validation_summary_without_records_says_so(results):
    assert "No validation runs" in results.validation_summary([])
