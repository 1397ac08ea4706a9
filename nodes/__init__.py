"""ComfyUI glue: one node per module, each a thin wrapper over trainer/ functions."""

from .clip_score import ClipScore
from .erase_settings import AllButOneSettings
from .evaluate_lora import EvaluateLora
from .lora_loader import LoadShieldDiffLora
from .nudity_censor import NudityCensor
from .nudity_filter import NudityFilter
from .nudity_score import NudityScore
from .purify_image import PurifyImage
from .reward import Reward
from .rl_settings import RLSettings
from .toy_red_reward import ToyRedRewardNode
from .train_lora import TrainSafetyLora

NODES = [
    NudityScore,
    NudityCensor,
    NudityFilter,
    ClipScore,
    Reward,
    ToyRedRewardNode,
    LoadShieldDiffLora,
    TrainSafetyLora,
    RLSettings,
    AllButOneSettings,
    PurifyImage,
    EvaluateLora,
]

__all__ = ["NODES"]
