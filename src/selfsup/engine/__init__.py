"""The training engine: Lightning Fabric loop, checkpoints, logging."""
