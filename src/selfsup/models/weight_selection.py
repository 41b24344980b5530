"""Weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024): a smaller network of the same
family starts from a subset of a larger one's weights instead of random ones.

The paper's rules: layer selection keeps the larger network's first N blocks (first-N, their choice over evenly
spaced blocks); element selection keeps evenly spaced indices along each dimension that shrinks, the same
indices for every dimension of a given size ("consistency"), so that the residual stream, a BatchNorm's
statistics and the next layer's input channels stay aligned from layer to layer. Here a ViT's attention keeps
whole heads where the head width allows (heads and head channels are selected separately), so a query and its
key always keep the same channels. Selected weights are taken as they are, without rescaling (the paper's).

A student that is not a slimmer copy of the larger network (another family, another stem, a deeper stack, a
wider layer) cannot be selected: `unselectable` says why in one line.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models.vit import VisionTransformer, state_on_grid


def evenly(large: int, small: int) -> torch.Tensor:
    """`small` evenly spaced indices of range(large), the first always kept: every other one for half the size."""
    return torch.arange(small) * large // small


def head_indices(dim: int, heads: int, s_dim: int, s_heads: int, parts: int = 1) -> torch.Tensor:
    """Indices of the channels of `parts` stacked (heads * head_dim) blocks (qkv: 3) that a network of s_dim
    channels in s_heads heads keeps: evenly spaced heads, and evenly spaced channels within each kept head."""
    hd, s_hd = dim // heads, s_dim // s_heads
    heads_kept, channels_kept = evenly(heads, s_heads), evenly(hd, s_hd)  # (s_heads,), (s_hd,)
    one = (heads_kept[:, None] * hd + channels_kept[None, :]).flatten()  # (s_dim,)
    return torch.cat([p * dim + one for p in range(parts)])


def special_indices(key: str, axis: int, student: nn.Module, teacher: nn.Module) -> torch.Tensor | None:
    """The head-aware indices of a ViT attention tensor's head-structured axis; None for every other axis."""
    if not (isinstance(student, VisionTransformer) and isinstance(teacher, VisionTransformer)):
        return None
    args = (teacher.embed_dim, teacher.num_heads, student.embed_dim, student.num_heads)
    if key.endswith(("attn.qkv.weight", "attn.qkv.bias")) and axis == 0:
        return head_indices(*args, parts=3)
    if key.endswith("attn.proj.weight") and axis == 1:
        return head_indices(*args)
    return None


def source_state(student: nn.Module, teacher: nn.Module) -> dict[str, torch.Tensor]:
    """The teacher's state with a ViT's position grid resampled to the student's (as `--init` does)."""
    return state_on_grid(teacher, student)


def unselectable(student: nn.Module, teacher: nn.Module) -> str | None:
    """Why `student` cannot take a selection of `teacher`'s weights (None: it can)."""
    if type(student) is not type(teacher):
        return f"the student is a {type(student).__name__} and the teacher a {type(teacher).__name__}"
    if isinstance(student, VisionTransformer) and (student.num_heads > teacher.num_heads
                                                   or student.embed_dim % student.num_heads):
        return f"the student has {student.num_heads} heads and the teacher {teacher.num_heads}"
    s_in, t_in = first_conv(student).in_channels, first_conv(teacher).in_channels
    if s_in != t_in:
        return f"the student reads {s_in}-channel images and the teacher {t_in}-channel ones"
    theirs = source_state(student, teacher)
    for key, mine in student.state_dict().items():
        t = theirs.get(key)
        if t is None:
            return f"the teacher has no {key} (a deeper or differently built student)"
        if t.ndim != mine.ndim or any(s > b for s, b in zip(mine.shape, t.shape, strict=True)) \
                or mine.shape[2:] != t.shape[2:] and mine.ndim == 4:  # kernels: the same size (patch, stem)
            return f"{key} is {tuple(mine.shape)} in the student and {tuple(t.shape)} in the teacher"
    return None


def first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


@torch.no_grad()
def select_weights(student: nn.Module, teacher: nn.Module) -> None:
    """Load into `student` the selection of `teacher`'s weights (first blocks, evenly spaced channels and heads).
    Raises ValueError (`unselectable`'s reason) when the student is no slimmer copy of the teacher."""
    why = unselectable(student, teacher)
    if why:
        raise ValueError(why)
    theirs = source_state(student, teacher)
    state = {}
    for key, mine in student.state_dict().items():
        t = theirs[key]
        for axis, (s, b) in enumerate(zip(mine.shape, t.shape, strict=True)):
            if s < b:
                idx = special_indices(key, axis, student, teacher)
                t = t.index_select(axis, (evenly(b, s) if idx is None else idx).to(t.device))
        state[key] = t.to(mine.dtype)
    student.load_state_dict(state)
