"""Pre-training methods: one file each, registered here by name."""

from selfsup.methods.barlow_twins import BarlowTwins
from selfsup.methods.base import Method
from selfsup.methods.byol import BYOL
from selfsup.methods.dino import DINO
from selfsup.methods.moco_v2 import MoCoV2
from selfsup.methods.moco_v3 import MoCoV3
from selfsup.methods.simclr import SimCLR
from selfsup.methods.simsiam import SimSiam
from selfsup.methods.swav import SwAV
from selfsup.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {m.name: m for m in (DINO, SimCLR, BYOL, SimSiam, BarlowTwins, VICReg, SwAV, MoCoV2,
                                                            MoCoV3)}

__all__ = ["METHODS", "Method"]
