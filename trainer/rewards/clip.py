"""CLIP image-text alignment over open_clip: how faithful an image is to a text.

The score is the cosine similarity of open_clip's normalised image and text embeddings, in
[-1, 1] (matching pairs with real weights typically land around 0.25-0.35, unrelated ones
near 0.1). Weights come from a local file (safetensors, or a PyTorch file read with
`weights_only=True`), or from an open_clip pretrained tag, which downloads only because the
user chose that tag. Without weights nothing is guessed: the error says which file to put where.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..images import to_rgb_uint8

__all__ = ["CLIP_FOLDER_HINT", "ClipScorer", "ClipSpec", "ClipWeightsError", "get_clip_scorer"]

log = logging.getLogger(__name__)

CLIP_FOLDER_HINT = "ComfyUI/models/shielddiff_clip/"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class ClipWeightsError(RuntimeError):
    """CLIP weights are missing or do not fit the architecture; the message says what to do."""


@dataclass(frozen=True)
class ClipSpec:
    """Which CLIP to score with.

    architecture: an open_clip model name (e.g. "ViT-B-32", "ViT-L-14"), or "auto": the open_clip
        config JSON beside the weights file (same name, .json) describes the architecture.
    weights: a local weights file for that architecture, or None.
    pretrained: an open_clip pretrained tag (e.g. "laion2b_s34b_b79k"), used when no file is given.
    random_weights: only for tests and timing: a randomly initialised model, never for scoring.
    """

    architecture: str = "ViT-B-32"
    weights: str | None = None
    pretrained: str | None = None
    random_weights: bool = False

    def describe(self) -> str:
        source = self.weights or (f"pretrained:{self.pretrained}" if self.pretrained else "random weights")
        return f"{self.architecture} ({source})"


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ClipWeightsError(f"{path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


class ClipScorer:
    """An open_clip model and tokenizer, loaded on first use, scoring batches of images."""

    def __init__(
        self,
        spec: ClipSpec = ClipSpec(),
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
    ):
        """offload=True keeps the model in CPU memory between calls (ComfyUI owns the GPU memory)."""
        self.spec = spec
        self.device = torch.device(device)
        self.offload = offload and self.device.type != "cpu"
        self.dtype = dtype
        self._model = None
        self._preprocess = None
        self._tokenizer = None
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()

    def _build(self):
        import open_clip

        spec = self.spec
        if spec.architecture == "auto":
            spec = self._with_sidecar_config(spec)
        if spec.architecture not in open_clip.list_models():
            raise ClipWeightsError(
                f"unknown CLIP architecture {spec.architecture!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14"
            )
        if spec.weights is None and spec.pretrained is None and not spec.random_weights:
            raise ClipWeightsError(
                f"no CLIP weights given for {spec.architecture}: put the open_clip weights file for it "
                f"(e.g. open_clip_model.safetensors) in {CLIP_FOLDER_HINT} and choose it, "
                "or choose an open_clip pretrained tag (downloads once, needs the internet)"
            )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.architecture, pretrained=spec.pretrained if spec.weights is None else None
            )
        except Exception as exc:  # a hub download that failed, most often offline
            raise ClipWeightsError(
                f"could not get CLIP weights {spec.pretrained!r} for {spec.architecture}: {exc}. "
                f"Offline, put the weights file in {CLIP_FOLDER_HINT} and choose it instead"
            ) from exc
        if spec.weights is not None:
            path = Path(spec.weights)
            if not path.is_file():
                raise ClipWeightsError(f"CLIP weights file {path} does not exist; put it in {CLIP_FOLDER_HINT}")
            try:
                state = _read_state_dict(path)
            except ClipWeightsError:
                raise
            except Exception as exc:
                raise ClipWeightsError(
                    f"could not read {path} safely ({_first_line(exc)}): only .safetensors files and plain "
                    "PyTorch state dicts (tensors only, read with weights_only=True) are accepted"
                ) from exc
            try:
                model.load_state_dict(state, strict=True)
            except Exception as exc:
                raise ClipWeightsError(
                    f"{path} is not open_clip {spec.architecture} weights ({_first_line(exc)}); "
                    "choose the architecture the file was trained with"
                ) from exc
        model = model.to("cpu" if self.offload else self.device, self.dtype).eval().requires_grad_(False)
        return model, preprocess, open_clip.get_tokenizer(spec.architecture)

    @staticmethod
    def _with_sidecar_config(spec: ClipSpec) -> ClipSpec:
        import open_clip

        config = Path(spec.weights).with_suffix(".json") if spec.weights else None
        if config is None or not config.is_file():
            raise ClipWeightsError(
                f"CLIP architecture 'auto' needs an open_clip config JSON beside the weights file "
                f"({config or 'no weights file given'} is missing); or choose the architecture by name"
            )
        # Registered under a name of its own: a sidecar can never replace a built-in architecture.
        text = config.read_text()
        name = "shielddiff-sidecar-" + hashlib.sha256(text.encode()).hexdigest()[:12]
        if name not in open_clip.list_models():
            staged = Path(tempfile.mkdtemp(prefix="shielddiff-clip-")) / f"{name}.json"
            staged.write_text(text)
            open_clip.add_model_config(staged)
        return ClipSpec(name, spec.weights, spec.pretrained, spec.random_weights)

    def _load(self):
        with self._lock:
            if self._model is None:
                self._model, self._preprocess, self._tokenizer = self._build()
                log.info("loaded CLIP %s on %s", self.spec.describe(), self.device)
        return self._model, self._preprocess, self._tokenizer

    @torch.no_grad()
    def embed_images(self, images: Any) -> torch.Tensor:
        from PIL import Image

        model, preprocess, _ = self._load()
        arrays = to_rgb_uint8(images)
        if not arrays:
            return torch.zeros((0, model.visual.output_dim if hasattr(model.visual, "output_dim") else 0))
        pixels = torch.stack([preprocess(Image.fromarray(a)) for a in arrays]).to(self.device, self.dtype)
        feats = model.encode_image(pixels).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        model, _, tokenizer = self._load()
        feats = model.encode_text(tokenizer(list(texts)).to(self.device)).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def __call__(self, images: Any, texts: str | list[str]) -> list[float]:
        """Cosine similarity of each image with its text (one text for all, or one per image)."""
        if not self.offload:
            return self._score(images, texts)
        model = self._load()[0]
        with self._run_lock:  # one call at a time moves the model on and off the device
            try:
                model.to(self.device)
                return self._score(images, texts)
            finally:
                model.to("cpu")

    def _score(self, images: Any, texts: str | list[str]) -> list[float]:
        image_feats = self.embed_images(images)
        n = image_feats.shape[0]
        if n == 0:
            return []
        texts = [texts] * n if isinstance(texts, str) else list(texts)
        if len(texts) != n:
            raise ValueError(f"got {n} images but {len(texts)} texts; give one text, or one per image")
        unique = sorted(set(texts))
        text_feats = self.embed_texts(unique)
        index = torch.tensor([unique.index(t) for t in texts])
        sims = (image_feats * text_feats[index]).sum(dim=-1)
        return [s if math.isfinite(s) else 0.0 for s in sims.cpu().tolist()]


@lru_cache(maxsize=1)  # CLIP models are large: keep only the most recent one
def get_clip_scorer(
    spec: ClipSpec, device: str = "cpu", dtype: torch.dtype = torch.float32, offload: bool = False
) -> ClipScorer:
    """A shared scorer per (spec, device, dtype, offload); only the most recent is kept in memory."""
    return ClipScorer(spec, device, dtype, offload)
