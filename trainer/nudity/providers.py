"""Which onnxruntime execution provider runs NudeNet: a user's choice, or the best one installed.

"auto" takes CUDA, then DirectML, then CoreML, whichever the installed onnxruntime offers
(onnxruntime-gpu, onnxruntime-directml, the macOS build), and falls back to the CPU; the CPU
provider always comes last, so a provider that cannot start (e.g. onnxruntime-gpu without the
CUDA libraries) leaves the session on the CPU rather than failing.
"""

from __future__ import annotations

__all__ = ["PROVIDERS", "ProviderError", "execution_providers"]

PROVIDERS = {
    "auto": None,
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
AUTO_ORDER = ("cuda", "directml", "coreml")


class ProviderError(ValueError):
    """The provider choice is unknown, or not offered by the installed onnxruntime; the message says what to do."""


def execution_providers(choice: str, available: list[str] | None = None) -> list[str]:
    """The providers to give onnxruntime.InferenceSession for `choice`, best first, CPU last."""
    if choice not in PROVIDERS:
        raise ProviderError(f"unknown onnxruntime provider {choice!r}: choose one of {', '.join(PROVIDERS)}")
    if available is None:
        import onnxruntime

        available = list(onnxruntime.get_available_providers())
    cpu = PROVIDERS["cpu"]
    if choice == "auto":
        best = [PROVIDERS[c] for c in AUTO_ORDER if PROVIDERS[c] in available]
        return [*best[:1], cpu]
    wanted = PROVIDERS[choice]
    if wanted not in available:
        package = {"cuda": "onnxruntime-gpu", "directml": "onnxruntime-directml", "coreml": "onnxruntime (macOS)"}
        raise ProviderError(
            f"onnxruntime provider {choice!r} ({wanted}) is not in this onnxruntime (it offers {', '.join(available)}): "
            f"install {package.get(choice, 'onnxruntime')} in ComfyUI's Python, or choose 'auto' or 'cpu'"
        )
    return [wanted] if wanted == cpu else [wanted, cpu]
