"""ShieldDiff core: rewards, LoRA formats, model loading and training, free of ComfyUI.

Nothing heavy happens at import: models load when first used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
