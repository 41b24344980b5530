"""Run logging: metrics.jsonl, TensorBoard events and a progress bar with images/s and ETA."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm


class RunLogger:
    """Rank-0 logger. `log(step, values)` appends a JSON line and TensorBoard scalars; a `warning` among the
    values is also printed on stderr, above the progress bar."""

    def __init__(self, out: Path, total_steps: int, start_step: int, enabled: bool = True,
                 progress: bool = True) -> None:
        self.enabled = enabled
        self.metrics = out / "metrics.jsonl"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                        disable=not (enabled and progress), smoothing=0.1)

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.metrics.open("a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, step)
        if "warning" in values:
            self.bar.write(f"warning: step {step}: {values['warning']}", file=sys.stderr)

    def progress(self, steps: int, **postfix: Any) -> None:
        self.bar.update(steps)
        if postfix:
            self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()},
                                 refresh=False)

    def set_total(self, total_steps: int) -> None:
        """The run was re-planned: the bar's total and ETA follow."""
        self.bar.total = total_steps
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
