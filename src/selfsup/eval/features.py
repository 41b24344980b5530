"""Frozen-backbone feature extraction for evaluation protocols (k-NN, linear probe)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn


def extract_features(model: nn.Module, images: torch.Tensor, batch_size: int = 512,
                     device: str | torch.device = "cpu",
                     normalize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Features of uint8 images: (N, C, H, W) uint8 -> (N, D) float32 on the CPU.

    Batches are moved to `device`, scaled to [0, 1], passed through `normalize` (if given) and the model
    in eval mode under `torch.inference_mode`; only one batch is held as float at a time. The model's
    training flag is restored afterwards, even on error.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) uint8 tensor, got {tuple(images.shape)} "
                         f"{images.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return features_of_batches(model, (images[i:i + batch_size] for i in range(0, len(images), batch_size)),
                               device, normalize)


def features_of_batches(model: nn.Module, batches: Iterable[torch.Tensor], device: str | torch.device = "cpu",
                        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Features of a stream of uint8 batches (b, C, H, W) -> (N, D) float32 on the CPU, N the sum of the b,
    computed as `extract_features` computes them; empty batches are passed over. Only the features are kept:
    this is how a streamed folder's images are read without ever holding them all."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tf32_matmuls(device):
            chunks = [_embed_batch(model, batch, device, normalize) for batch in batches if len(batch)]
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("images is empty: nothing to extract")
    return torch.cat(chunks)  # (N, D)


@contextlib.contextmanager
def tf32_matmuls(device: str | torch.device) -> Iterator[None]:
    """fp32 matmuls and convolutions on TensorFloat-32 tensor cores while features are extracted on a CUDA device
    (Ampere and later: ~8x the fp32 rate, 10-bit mantissa inputs, fp32 accumulation; features for k-NN and probes
    do not need more); the global settings are put back afterwards. Nothing changes on a CPU."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


def _embed_batch(model: nn.Module, batch: torch.Tensor, device: str | torch.device,
                 normalize: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    x = batch.to(device, non_blocking=True).float().div_(255)  # (b, C, H, W) in [0, 1]
    if normalize is not None:
        x = normalize(x)
    feats = model(x)  # (b, D), often a view of the (b, T, D) tokens
    return feats.reshape(len(batch), -1).to("cpu", torch.float32, copy=True)  # its own (b, D) storage
