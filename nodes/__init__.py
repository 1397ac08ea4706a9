"""ComfyUI glue: one node per module, each a thin wrapper over trainer/ functions."""

from .clip_score import ClipScore
from .lora_loader import LoadShieldDiffLora
from .nudity_censor import NudityCensor
from .nudity_score import NudityScore
from .reward import Reward

NODES = [NudityScore, NudityCensor, ClipScore, Reward, LoadShieldDiffLora]

__all__ = ["NODES"]
