"""The machine a number was measured on: every speed or accuracy that selfsup prints or documents names it,
because the same run differs several-fold from one CPU to the next."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Resources:
    """What a run may use: CPU cores, memory available to this process (bytes) and the GPU, if any. The
    sized recipe and the memory guard read these, never the machine directly, so tests inject them."""

    cores: int
    memory: int  # bytes available now (MemAvailable, or the cgroup's limit less its usage where lower)
    gpu: str | None = None  # the GPU's name
    gpu_memory: int = 0  # bytes

    def words(self) -> str:
        """'2 cores, 23.4 GiB available' or '16 cores, ..., NVIDIA H100 (79.1 GiB)'."""
        gpu = f", {self.gpu} ({self.gpu_memory / GIB:.1f} GiB)" if self.gpu else ", no GPU"
        return f"{self.cores} cores, {self.memory / GIB:.1f} GiB available{gpu}"


GIB = 1024**3


def _meminfo_available(meminfo: Path) -> int | None:
    for line in meminfo.read_text().splitlines() if meminfo.exists() else []:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _cgroup_room(cgroup: Path) -> int | None:
    """Bytes the cgroup (v2) still allows, or None without a limit."""
    limit, current = cgroup / "memory.max", cgroup / "memory.current"
    if not limit.exists() or limit.read_text().strip() == "max":
        return None
    used = int(current.read_text()) if current.exists() else 0
    return int(limit.read_text()) - used


def available_memory(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Bytes a new allocation can take before the kernel's OOM killer acts: the least of the kernel's
    MemAvailable and the room left under a cgroup memory limit (containers); torch's view as a last resort."""
    rooms = [r for r in (_meminfo_available(meminfo), _cgroup_room(cgroup)) if r is not None]
    if rooms:
        return max(0, min(rooms))
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity; a container's CPU set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resources() -> Resources:
    """This machine's resources now."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Resources(usable_cores(), available_memory(), props.name, props.total_memory)
    return Resources(usable_cores(), available_memory())
