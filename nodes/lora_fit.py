"""Which of a LoRA's patches ComfyUI can really apply: each patch is computed once, by ComfyUI's own
weight calculation, against a zero weight of the target's shape.

ComfyUI accepts a patch by name alone and drops it only when it samples (an `ERROR lora ... shape`
line in the server log, and the image of the base model). The loader asks here first, so that its
count is what will change the model's weights.
"""

from __future__ import annotations

import logging
import threading

import comfy.lora
import torch


class _Failures(logging.Filter):
    """Takes what ComfyUI's weight calculation logs at WARNING or above while a probe runs, so that a
    probe's failure is a finding of the loader, not an error line in the server log."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread or record.levelno < logging.WARNING:
            return True  # another thread's message, or no failure: logged as usual
        self.messages.append(record.getMessage())
        return False


def _target(key) -> tuple[str, tuple | None]:
    return (key, None) if isinstance(key, str) else (key[0], key[1])


def patch_fits(patch, key, weight: torch.Tensor) -> tuple[bool, str]:
    """(True, "") when ComfyUI adds `patch` to a weight shaped like `weight`; (False, its reason) when it drops it."""
    name, offset = _target(key)
    probe = torch.zeros(weight.shape, dtype=torch.float32)
    failures = _Failures()
    root = logging.getLogger()
    root.addFilter(failures)
    try:
        comfy.lora.calculate_weight([(1.0, patch, 1.0, offset, None)], probe, name)
    except Exception as e:  # a patch that raises is one ComfyUI cannot apply
        failures.messages.append(f"{type(e).__name__}: {e}")
    finally:
        root.removeFilter(failures)
    return (not failures.messages, failures.messages[0] if failures.messages else "")


def fitting_patches(loaded: dict, weights: dict[str, torch.Tensor]) -> tuple[dict, dict[str, str]]:
    """Split ComfyUI's loaded patches ({model key: patch}) into those that apply to `weights` and,
    for the others, the reason each is dropped."""
    fits, dropped = {}, {}
    for key, patch in loaded.items():
        name, _ = _target(key)
        if name not in weights:
            dropped[name] = "no such weight in this model"
            continue
        ok, reason = patch_fits(patch, key, weights[name])
        if ok:
            fits[key] = patch
        else:
            dropped[name] = reason
    return fits, dropped
