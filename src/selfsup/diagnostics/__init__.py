"""Diagnostics of learned embeddings (collapse measures), shared by the methods (logged while training) and
by eval (reported after it). They know no method and no engine: each takes embeddings and returns numbers."""

from selfsup.diagnostics.collapse import collapse_logs, effective_rank, embedding_std, ideal_std

__all__ = ["collapse_logs", "effective_rank", "embedding_std", "ideal_std"]
