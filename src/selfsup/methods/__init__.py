"""Pre-training methods: one file each, registered here by name."""

from selfsup.methods.base import Method
from selfsup.methods.dino import DINO
from selfsup.methods.simclr import SimCLR

METHODS: dict[str, type[Method]] = {m.name: m for m in (DINO, SimCLR)}

__all__ = ["METHODS", "Method"]
