"""What the loop logs per interval: mean loss and diagnostics over its finite steps, and images/s."""

from __future__ import annotations

import time

import torch


class IntervalMeter:
    """Means of the loss and the method's diagnostics over the finite steps of a logging interval (each
    value over the steps that gave it: diagnostics come on logging steps only), and images/s. A loss given as a
    device tensor is summed on the device and read on the host at `flush` only (no host sync a step)."""

    def __init__(self) -> None:
        self.t, self.steps, self.sums, self.counts = time.time(), 0, {}, {}

    def add(self, loss: float | torch.Tensor, finite: bool, logs: dict[str, float]) -> None:
        self.steps += 1
        if finite:
            for k, v in {"loss": loss, **logs}.items():
                self.sums[k] = self.sums.get(k, 0.0) + (v.float() if isinstance(v, torch.Tensor) else float(v))
                self.counts[k] = self.counts.get(k, 0) + 1

    def flush(self, batch: int) -> dict[str, float]:
        now = time.time()
        out = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        out.setdefault("loss", float("nan"))
        out["images_per_s"] = self.steps * batch / max(now - self.t, 1e-9)
        self.t, self.steps, self.sums, self.counts = now, 0, {}, {}
        return out
