"""ComfyUI glue: one node per module, each a thin wrapper over a trainer/ function."""

from .nudity_score import NudityScore

NODES = [NudityScore]

__all__ = ["NODES"]
