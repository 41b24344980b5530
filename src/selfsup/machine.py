"""The machine a number was measured on: every speed or accuracy that selfsup prints or documents names it,
because the same run differs several-fold from one CPU to the next."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), with its family and model numbers where the name has no
    model number (cloud CPUs named just "AMD EPYC" differ: family 25 model 1 runs this project's demo at
    about 0.7x the speed of model 17), else what `platform` knows."""
    if cpuinfo.exists():
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        name = fields.get("model name")
        if name:
            if any(c.isdigit() for c in name) or "cpu family" not in fields:
                return name
            return f"{name} (family {fields['cpu family']} model {fields.get('model', '?')})"
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_words() -> str:
    """'AMD EPYC, 2 threads': the CPU and the threads torch computes with."""
    return f"{cpu_name()}, {torch.get_num_threads()} threads"
