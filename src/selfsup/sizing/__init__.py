"""The recipe sized to the machine and the images (`recipe.py`), and the checks that keep a run inside the
machine before its first step (`guard.py`: the batch against the data, the workers against the cores, the peak
memory of `memory.py` against the memory available). `sized_config` applies both to the user's values."""

from __future__ import annotations

from typing import Any

from selfsup.config import PretrainConfig, build_config, merge
from selfsup.machine import Resources, resources
from selfsup.sizing.data_facts import DataFacts, probe_data
from selfsup.sizing.guard import Probe, fit_batch_to_data, fit_memory, fit_workers
from selfsup.sizing.memory import probe_method
from selfsup.sizing.recipe import SizedRecipe, choose


def sized_config(user: dict[str, Any], where: str = "command line", res: Resources | None = None,
                 probe: Probe = probe_method, facts: DataFacts | None = None) -> tuple[PretrainConfig, list[str]]:
    """The configuration of `user`'s values (YAML and flags, nested) with every value they leave open sized to
    the data and the machine (`res`, detected when None), checked against the data, the cores and the memory;
    and the lines that say what was chosen and why."""
    from selfsup.engine.build import resolve_sizes

    checked = build_config(user, where)  # the user's own values are checked first: an error names their flag
    facts = facts or probe_data(checked.data, checked.run.seed)
    res = res or resources()
    chosen = choose(user, facts, res)
    cfg = resolve_sizes(build_config(merge(chosen.values, user), where), facts.side)
    lines = list(chosen.reasons)
    for fit in (lambda c: fit_batch_to_data(c, facts), lambda c: fit_workers(c, facts, res)):
        cfg, more = fit(cfg)
        lines += more
    cfg, more = fit_memory(cfg, user, facts, res, probe)
    return cfg, lines + more


__all__ = ["DataFacts", "SizedRecipe", "choose", "probe_data", "sized_config"]
