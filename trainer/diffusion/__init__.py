"""Diffusion models: loading checkpoints offline, their families, and conditioning."""
