"""Pre-training methods: one file each, registered here by name."""

from selfsup.methods.base import Method
from selfsup.methods.dino import DINO

METHODS: dict[str, type[Method]] = {m.name: m for m in (DINO,)}

__all__ = ["METHODS", "Method"]
