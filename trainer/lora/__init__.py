"""LoRA files: module names per layout, reading and writing each format, merging into diffusers weights."""
