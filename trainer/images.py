"""Turn the image types users hand us into one form: a list of RGB uint8 arrays (H, W, 3).

Accepted: ComfyUI IMAGE tensors (B, H, W, C float in [0, 1]), single (H, W, C) tensors,
numpy arrays (uint8, or float in [0, 1]), PIL images, and lists of any of these.
Grayscale becomes RGB, alpha is dropped, NaN becomes 0 and values are clipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["ImageInputError", "to_rgb_uint8"]


class ImageInputError(ValueError):
    """The value given as an image has a shape or type we cannot read."""


def _array_to_rgb_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ImageInputError(f"{where}: expected an image of shape (H, W, C), got shape {tuple(arr.shape)}")
    h, w, c = arr.shape
    if h == 0 or w == 0:
        raise ImageInputError(f"{where}: the image is empty (shape {tuple(arr.shape)})")
    if c == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif c == 2:  # grayscale + alpha
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif c == 4:
        arr = arr[:, :, :3]
    elif c != 3:
        raise ImageInputError(f"{where}: expected 1, 3 or 4 channels, got {c} (shape {tuple(arr.shape)})")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.ascontiguousarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _float_tensor_batch(tensor: Any) -> np.ndarray:
    """(B, H, W, 3) float tensor -> (B, H, W, 3) uint8 in one pass on the tensor's device."""
    import torch

    x = torch.nan_to_num(tensor.detach().float(), nan=0.0, posinf=1.0, neginf=0.0)
    return x.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8).cpu().numpy()


def _one(image: Any, where: str) -> list[np.ndarray]:
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor
        if image.ndim == 4 and image.shape[-1] == 3 and image.is_floating_point() and image.shape[1] and image.shape[2]:
            return list(_float_tensor_batch(image))  # the common case: a ComfyUI IMAGE batch
        import torch

        image = image.detach().cpu()
        image = (image if image.dtype == torch.uint8 else image.float()).numpy()
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return [np.asarray(image.convert("RGB"), dtype=np.uint8)]
    if isinstance(image, np.ndarray):
        if image.ndim == 4:
            return [_array_to_rgb_uint8(image[i], f"{where}[{i}]") for i in range(image.shape[0])]
        return [_array_to_rgb_uint8(image, where)]
    raise ImageInputError(
        f"{where}: cannot read an image from a {type(image).__name__}; give a tensor, a numpy array or a PIL image"
    )


def to_rgb_uint8(images: Any) -> list[np.ndarray]:
    """A batch (tensor/array with a batch axis, or a list) or one image -> list of RGB uint8."""
    if isinstance(images, (list, tuple)) or (
        isinstance(images, Iterable) and not hasattr(images, "shape") and not hasattr(images, "convert")
    ):
        out: list[np.ndarray] = []
        for i, image in enumerate(images):
            out.extend(_one(image, f"image {i}"))
        return out
    return _one(images, "image")
