"""Training: losses, the trainer loop, checkpoints and validation images."""
