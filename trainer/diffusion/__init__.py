"""Diffusers models: loading a checkpoint, the demo checkpoint, guided noise prediction and prompt encoding."""
