"""Losses in float32 under any autocast.

Under bf16 autocast `.float()` does not leave autocast: the next matmul or einsum casts back to bf16 (8 bits of
mantissa), so a cross-correlation, a covariance, DINO's mse form (qq + pp - 2 q.p) or logits divided by a small
temperature round to noise. The official codes compute these in float32 where it matters (DINOv2's losses run
outside the autocast of the backbone; MoCo v3 and SimCLR cast logits). `fp32` runs a loss function with autocast
off and its half-precision tensor arguments in float32 (float64 stays); gradients flow back through the casts to
the bf16 graph.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


HALF = (torch.float16, torch.bfloat16)


def _float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in HALF:
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_float32(v) for v in value)
    return value


def _device_type(args: tuple, kwargs: dict) -> str:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device.type
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
            return value[0].device.type
    return "cpu"


def fp32(fn: F) -> F:
    """Decorator: `fn` runs with autocast disabled on its tensors' device, its bf16/fp16 tensor arguments cast to
    float32 (lists and tuples of tensors included); other arguments pass unchanged."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(_device_type(args, kwargs), enabled=False):
            return fn(*(_float32(a) for a in args), **{k: _float32(v) for k, v in kwargs.items()})

    return wrapped  # type: ignore[return-value]
