"""The machine a number was measured on: every speed or accuracy that selfsup prints or documents names it,
because the same run differs several-fold from one CPU to the next."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows."""
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_words() -> str:
    """'AMD EPYC, 2 threads': the CPU and the threads torch computes with."""
    return f"{cpu_name()}, {torch.get_num_threads()} threads"
