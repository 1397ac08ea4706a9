"""Conversions between ComfyUI's IMAGE / MASK tensors and the core's RGB uint8 arrays."""

from __future__ import annotations

import numpy as np
import torch


def images_to_tensor(images: list[np.ndarray], like: torch.Tensor | None = None) -> torch.Tensor:
    """RGB uint8 arrays (same size) -> IMAGE: float (B, H, W, 3) in [0, 1]."""
    if not images:
        shape = (0, *like.shape[1:3], 3) if like is not None and like.ndim == 4 else (0, 64, 64, 3)
        return torch.zeros(shape)
    return torch.from_numpy(np.stack(images).astype(np.float32) / 255.0)


def masks_to_tensor(masks: list[np.ndarray], like: torch.Tensor | None = None) -> torch.Tensor:
    """float (H, W) masks -> MASK: float (B, H, W)."""
    if not masks:
        shape = (0, *like.shape[1:3]) if like is not None and like.ndim == 4 else (0, 64, 64)
        return torch.zeros(shape)
    return torch.from_numpy(np.stack(masks).astype(np.float32))


def keep_exact_pixels(original: torch.Tensor, processed: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Outside the masks, the exact input floats (no uint8 round trip); inside, the processed pixels."""
    if original.shape != processed.shape:
        return processed
    inside = masks[..., None] > 0
    original = original.to(processed).nan_to_num(0.0).clamp(0.0, 1.0)
    return torch.where(inside.to(processed.device), processed, original)
