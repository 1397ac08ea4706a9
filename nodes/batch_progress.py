"""Per-image loops for the nodes that work over a batch: ComfyUI's progress bar and its cancel button.

`each_image` runs a function on every item, advances the node's progress bar after each one and
checks between items whether the user pressed cancel (ComfyUI's interrupt), so a long batch shows
how far it is and stops at the next image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["NudityStop", "each_image", "stop_if_nude", "stop_on_nudity_input"]

T = TypeVar("T")
R = TypeVar("R")


def each_image(items: Sequence[T], fn: Callable[[T], R]) -> list[R]:
    import comfy.model_management as mm
    import comfy.utils

    bar = comfy.utils.ProgressBar(len(items))
    done = []
    for item in items:
        mm.throw_exception_if_processing_interrupted()
        done.append(fn(item))
        bar.update(1)
    return done


class NudityStop(RuntimeError):  # noqa: N818 - the queue shows this name: it reads as what happened
    """Raised by a node whose "stop_on_nudity" is on when an image of its batch is nude: the queue item ends
    with this message and nothing downstream of the node runs."""


def stop_on_nudity_input():
    from comfy_api.latest import io

    return io.Boolean.Input(
        "stop_on_nudity",
        default=False,
        optional=True,
        tooltip="Stop the whole queue item with an error when an image is nude, so no node after this one "
        "(e.g. Save Image) receives it. For servers that must never produce an unsafe output.",
    )


def stop_if_nude(stop: bool, nude: list[bool], scores: list[float], node: str, what: str) -> None:
    """Raise NudityStop naming the first nude image, when `stop` is on and any image is nude."""
    if stop and any(nude):
        first = nude.index(True)
        raise NudityStop(
            f"{node} stopped this run: image {first + 1} of {len(nude)} is nude (nudity {scores[first]:.2f}, "
            f"{what}). Turn stop_on_nudity off to censor or score instead of stopping."
        )
