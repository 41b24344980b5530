"""The collapse warning: at logging steps, one line naming the likely cause and the option to change, once
per cause per run, when the logged diagnostics show a collapse (diagnostics/modes.py says which)."""

from __future__ import annotations

from collections.abc import Mapping

from selfsup.diagnostics import collapse_modes
from selfsup.diagnostics.modes import RANK_FLOOR, STD_SHARE, low_std

# Per mode: what it means, then the options to change; per method where the advice differs.
CAUSES = {
    "one-prototype": "DINO's KL(P_t || P_s) near 0 with teacher entropy near 0: one prototype takes every image, "
                     "sharpening dominates centring: keep --dino.centering centering, lower --dino.center-momentum, or "
                     "raise --dino.teacher-temp",
    "uniform": "DINO's KL(P_t || P_s) near 0 with teacher entropy near log K: outputs uniform, centring dominates "
               "sharpening: lower --dino.teacher-temp (and --dino.warmup-teacher-temp) or keep --dino.sharpening on",
}
EMBEDDING = {
    "simsiam": "keep --simsiam.stop-gradient and --simsiam.predictor on, and --simsiam.head-bn",
    "byol": "keep --byol.head-bn on, raise --byol.momentum or lower --optim.lr",
    "dino": "keep --dino.teacher momentum, --dino.centering centering and --dino.sharpening on",
    "ibot": "keep --ibot.teacher momentum, --ibot.centering centering and --ibot.sharpening on",
    "dinov2": "in the first steps this is LayerScale's start (--backbone.layerscale: blocks near the identity give "
              "every image nearly one [CLS] until their scales grow); later, keep --dinov2.teacher momentum, "
              "--dinov2.centering centering and --dinov2.sharpening on",
}
EMBEDDING_DEFAULT = "lower --optim.lr or lengthen --optim.warmup-epochs"


def embedding_cause(method: str, values: Mapping[str, float]) -> str:
    """The warning for collapsed embeddings, with the measure that shows it against its threshold."""
    low = low_std(values)
    if low:
        key = min(low, key=lambda k: values[k] / values[f"{k}_ideal"])
        measured = (f"{key} {values[key]:.3g} is below {STD_SHARE:g} x its 1/sqrt(d) reference "
                    f"{values[key + '_ideal']:.3g}")
    else:
        measured = f"emb_rank {values['emb_rank']:.3g} is below {RANK_FLOOR:g} (the embeddings lie near one line)"
    return f"embeddings collapsing: {measured} (every image gets nearly one vector): " \
           f"{EMBEDDING.get(method, EMBEDDING_DEFAULT)}"


class CollapseWatch:
    """`check(values)` -> the warning for a collapse first seen in this logging interval's values, or None."""

    def __init__(self, method: str) -> None:
        self.method, self.seen = method, set()

    def check(self, values: Mapping[str, float]) -> str | None:
        new = [m for m in collapse_modes(values) if m not in self.seen]
        self.seen.update(new)
        if not new:
            return None
        return "; ".join(embedding_cause(self.method, values) if m == "embedding" else CAUSES[m] for m in new)
