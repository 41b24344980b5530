"""Schedules precomputed per optimisation step (as in DINO's utils.cosine_scheduler)."""

from __future__ import annotations

import numpy as np


def cosine_schedule(base: float, final: float, total_steps: int, warmup_steps: int = 0,
                    warmup_start: float = 0.0) -> np.ndarray:
    """Linear warm-up from `warmup_start` to `base` over `warmup_steps`, then cosine from `base` to `final`.

    Returns an array of length total_steps; element i is the value used at step i. The last value equals
    `final` (to float precision) when total_steps > warmup_steps.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    warmup_steps = min(warmup_steps, total_steps)
    warm = np.linspace(warmup_start, base, warmup_steps, endpoint=False) if warmup_steps else np.array([])
    n = total_steps - warmup_steps
    t = np.arange(n) / max(n - 1, 1)  # 0 .. 1 inclusive, so the last step reaches `final`
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * t))
    return np.concatenate([warm, cos]).astype(np.float64)


def linear_warmup_constant(start: float, end: float, total_steps: int, warmup_steps: int) -> np.ndarray:
    """Linear from `start` to `end` over `warmup_steps`, then constant `end` (DINO's teacher temperature)."""
    warmup_steps = min(warmup_steps, total_steps)
    warm = np.linspace(start, end, warmup_steps) if warmup_steps else np.array([])
    return np.concatenate([warm, np.full(total_steps - warmup_steps, end)]).astype(np.float64)
