"""Looking inside a ViT: the [CLS] attention per head, mass-threshold masks, rollout, and their figures.
Used by the `attention` command, by eval (segmentation from attention) and by the web page; knows no method
and no engine."""

from selfsup.insight.attention import cls_attention, crop_to_grid, crop_to_patches, mass_masks, rollout, upsample

__all__ = ["cls_attention", "crop_to_grid", "crop_to_patches", "mass_masks", "rollout", "upsample"]
