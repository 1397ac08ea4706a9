"""Diffusers models: loading a checkpoint (SD1.x, SDXL), its family, the demo checkpoints, guided noise prediction and prompt encoding."""
