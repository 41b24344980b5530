"""MoCo's shuffled BatchNorm (He et al., 2020, Sec. 3.3; facebookresearch/moco builder.py
`_batch_shuffle_ddp`), shared by MoCo v2's key encoder and MoCo v3's momentum encoder.

With per-process BatchNorm a query and its positive key are normalised with statistics of the same images,
which the negatives' statistics lack: the model can single the key out by them ("cheat"). The key encoder
therefore sees a batch shuffled across processes and unshuffled after.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.methods.distributed import shuffle_batch, unshuffle_batch, world_size


def has_local_batch_norm(module: nn.Module) -> bool:
    """BatchNorm whose statistics are per process (SyncBatchNorm's are global: shuffling cannot change them)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
               for m in module.modules())


@torch.no_grad()
def momentum_forward(encoder: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
    """The modules of `encoder` applied in order to x (B, ...), without gradient. With several processes and
    per-process BatchNorm, on a batch shuffled across processes and unshuffled after (MoCo's shuffled BN):
    each process then normalises a random mix of every process's images, so batch statistics shared by
    a query and its key cannot single the key out from the negatives."""
    shuffle = world_size() > 1 and has_local_batch_norm(encoder)
    if shuffle:
        x, inverse = shuffle_batch(x)
    for module in encoder.values():
        x = module(x)
    return unshuffle_batch(x, inverse) if shuffle else x
