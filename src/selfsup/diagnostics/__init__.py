"""Diagnostics of learned embeddings (collapse measures), shared by the methods (logged while training) and
by eval (reported after it). They know no method and no engine: each takes embeddings and returns numbers."""

from selfsup.diagnostics.collapse import collapse_logs, effective_rank, embedding_std, ideal_std
from selfsup.diagnostics.distillation import batch_entropy, entropy_split, weighted_entropy_split
from selfsup.diagnostics.modes import MODES, collapse_modes

__all__ = ["MODES", "batch_entropy", "collapse_logs", "collapse_modes", "effective_rank", "embedding_std",
           "entropy_split", "ideal_std", "weighted_entropy_split"]
