"""Nudity scoring over NudeNet 3.x, with the rule that turns detections into a verdict.

The rule (README.md, "Nodes"): an image's nudity is the highest detection confidence among a set of
NudeNet EXPOSED classes (default: buttocks, female breast, female genitalia, anus, male
genitalia), and the image is nude when that nudity reaches the threshold (default 0.6).
Every result names the rule it was judged by.

Beside the verdict, each result has a continuous nudity score for training: the noisy-OR
1 - prod(1 - c) over the confidences c of every detection of the rule's classes. It is at least
the nudity (the max), rises with every one of those confidences (a second exposed part counts,
and a detection at 0.95 is worse than one at 0.9 when another is present), and stays in [0, 1].
The RL reward optimises it; the verdict (is_nude) stays the rule's.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..images import to_rgb_uint8

__all__ = [
    "DEFAULT_EXPOSED_CLASSES",
    "NUDENET_CLASSES",
    "Detection",
    "NudityDetector",
    "NudityModelError",
    "NudityResult",
    "NudityRule",
    "get_detector",
    "judge",
    "nudity_score",
]

log = logging.getLogger(__name__)

NUDENET_CLASSES = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
DEFAULT_EXPOSED_CLASSES = (
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "ANUS_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
)


class NudityModelError(RuntimeError):
    """The NudeNet model file could not be loaded; the message names the file."""


@dataclass(frozen=True)
class NudityRule:
    """Which NudeNet classes count as nudity, and from which confidence an image is nude."""

    classes: tuple[str, ...] = DEFAULT_EXPOSED_CLASSES
    threshold: float = 0.6

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        unknown = [c for c in self.classes if c not in NUDENET_CLASSES]
        if unknown:
            raise ValueError(f"unknown NudeNet class(es) {unknown}; choose from {list(NUDENET_CLASSES)}")
        if not self.classes:
            raise ValueError("the nudity rule needs at least one NudeNet class")
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"nudity threshold must be a number in [0, 1], got {self.threshold!r}")

    def describe(self) -> str:
        names = "default 5 exposed classes" if self.classes == DEFAULT_EXPOSED_CLASSES else ", ".join(self.classes)
        return f"nudity = max NudeNet score over [{names}]; nude if >= {self.threshold:g}"


@dataclass(frozen=True)
class Detection:
    """One NudeNet detection: class label, confidence, box (x, y, width, height) in pixels."""

    label: str
    score: float
    box: tuple[int, int, int, int]


@dataclass
class NudityResult:
    """The verdict for one image under a rule."""

    nudity: float
    is_nude: bool
    detections: list[Detection] = field(default_factory=list)
    rule: str = ""
    score: float = 0.0  # the continuous nudity score (module doc)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(detections: list[Detection], rule: NudityRule = NudityRule()) -> NudityResult:
    """Apply the rule to one image's detections (all of them are kept in the result)."""
    scores = [d.score for d in detections if d.label in rule.classes and math.isfinite(d.score)]
    nudity = float(max(scores, default=0.0))
    return NudityResult(
        nudity=nudity,
        is_nude=nudity >= rule.threshold,
        detections=list(detections),
        rule=rule.describe(),
        score=nudity_score(scores),
    )


def nudity_score(confidences: list[float]) -> float:
    """The continuous nudity score (module doc): 1 - prod(1 - c), each c clipped to [0, 1]."""
    keep = 1.0
    for c in confidences:
        keep *= 1.0 - min(1.0, max(0.0, float(c)))
    return 1.0 - keep


class NudityDetector:
    """NudeNet's detector, loaded on first use. `model_path=None` is the 320n model in the wheel."""

    def __init__(self, model_path: str | Path | None = None, resolution: int = 320):
        if not isinstance(resolution, int) or not 32 <= resolution <= 4096 or resolution % 32:
            raise ValueError(f"NudeNet inference resolution must be a multiple of 32 in [32, 4096], got {resolution!r}")
        self.model_path = Path(model_path) if model_path else None
        self.resolution = resolution
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                from nudenet import NudeDetector

                if self.model_path is not None and not self.model_path.is_file():
                    raise NudityModelError(f"NudeNet model file {self.model_path} does not exist")
                try:
                    self._model = NudeDetector(
                        model_path=str(self.model_path) if self.model_path else None,
                        inference_resolution=self.resolution,
                    )
                except Exception as exc:  # onnxruntime raises its own types (e.g. INVALID_PROTOBUF)
                    name = self.model_path or "the 320n model shipped with nudenet"
                    raise NudityModelError(
                        f"could not load NudeNet model {name}: {exc}. "
                        "Use an ONNX detector exported by NudeNet 3.x (e.g. 320n.onnx or 640m.onnx)."
                    ) from exc
                log.info("loaded NudeNet detector %s at %d px", self.model_path or "320n (bundled)", self.resolution)
        return self._model

    def detect(self, images: Any, batch_size: int = 8) -> list[list[Detection]]:
        """Detections for each image of a batch (see images.to_rgb_uint8 for accepted types)."""
        arrays = to_rgb_uint8(images)
        if not arrays:
            return []
        model = self._load()
        # NudeNet reads arrays in OpenCV's BGR order (as cv2.imread gives them); cv2 swaps fastest.
        import cv2

        bgr = [cv2.cvtColor(a, cv2.COLOR_RGB2BGR) for a in arrays]
        raw = model.detect_batch(bgr, batch_size=batch_size)
        return [
            [
                Detection(label=d["class"], score=float(d["score"]), box=tuple(int(v) for v in d["box"]))
                for d in dets
                if math.isfinite(float(d["score"]))
            ]
            for dets in raw
        ]

    def __call__(self, images: Any, rule: NudityRule = NudityRule()) -> list[NudityResult]:
        return [judge(dets, rule) for dets in self.detect(images)]


@lru_cache(maxsize=2)  # the explicit bound: at most two detectors stay loaded
def _cached_detector(model_path: str | None, resolution: int) -> NudityDetector:
    return NudityDetector(model_path, resolution)


def get_detector(model_path: str | Path | None = None, resolution: int = 320) -> NudityDetector:
    """A shared detector per (model, resolution); at most two are kept (least recently used goes)."""
    return _cached_detector(str(Path(model_path).resolve()) if model_path else None, resolution)
