"""Pre-training methods: one file each, registered here by name."""

from selfsup.methods.barlow_twins import BarlowTwins
from selfsup.methods.base import Method
from selfsup.methods.byol import BYOL
from selfsup.methods.colorization import Colorization
from selfsup.methods.dino import DINO
from selfsup.methods.dinov2 import DINOv2
from selfsup.methods.distill import Distill
from selfsup.methods.ibot import IBOT
from selfsup.methods.inpainting import Inpainting
from selfsup.methods.jigsaw import Jigsaw
from selfsup.methods.mae import MAE
from selfsup.methods.moco_v2 import MoCoV2
from selfsup.methods.moco_v3 import MoCoV3
from selfsup.methods.relative_position import RelativePosition
from selfsup.methods.rotation import Rotation
from selfsup.methods.simclr import SimCLR
from selfsup.methods.simmim import SimMIM
from selfsup.methods.simsiam import SimSiam
from selfsup.methods.swav import SwAV
from selfsup.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {m.name: m for m in (DINO, SimCLR, BYOL, SimSiam, BarlowTwins, VICReg, SwAV, MoCoV2,
                                                            MoCoV3, MAE, SimMIM, Rotation, Jigsaw,
                                                            RelativePosition, Colorization, Inpainting, Distill, IBOT,
                                                            DINOv2)}

__all__ = ["METHODS", "Method"]
