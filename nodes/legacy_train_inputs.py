"""Train Safety LoRA graphs saved before the method settings nodes existed, read as they were meant.

Then the train node held every method's inputs itself, with a `method` choice. A saved workflow
keeps its widgets in this order (web/js/shielddiff_train.js moves them onto a settings node when
the frontend loads it); an API-format prompt names them, and the train node reads them here, from
the prompt as queued, when no settings node is connected. Either way the job is the one the
single node made.
"""

from __future__ import annotations

from ..trainer.jobs.request import RequestError
from .method_settings import METHODS, MethodSettings
from .rl_settings import rl_fields

# The single node's widgets, in the order a saved workflow lists their values.
LEGACY_WIDGETS = (
    "checkpoint",
    "method",
    "unsafe_prompts",
    "benign_prompts",
    "unsafe_file",
    "benign_file",
    "w_clip",
    "w_nude",
    "clip_weights",
    "clip_architecture",
    "epochs",
    "sample_batch_size",
    "batches_per_epoch",
    "train_batch_size",
    "steps",
    "resolution",
    "lora_rank",
    "learning_rate",
    "seed",
    "erase_concept",
    "erase_alternative",
    "erase_eta",
    "erase_lambda",
    "lora_name",
)
RL_INPUTS = (
    "unsafe_prompts",
    "benign_prompts",
    "unsafe_file",
    "benign_file",
    "w_clip",
    "w_nude",
    "clip_weights",
    "clip_architecture",
    "sample_batch_size",
)
ERASE_INPUTS = ("erase_concept", "erase_alternative", "erase_eta", "erase_lambda")


def legacy_settings(prompt: dict | None, node_id: str | None) -> MethodSettings | None:
    """The method settings an old-style prompt gives the train node `node_id`, or None when it gives none.

    As the single node did, every method input goes into the request (the request uses the chosen
    method's), so the job's config is the one that node wrote.
    """
    inputs = ((prompt or {}).get(str(node_id)) or {}).get("inputs") or {}
    label = inputs.get("method")
    if label is None:
        return None
    if label not in METHODS:
        raise RequestError(f"method {label!r} is not one of {', '.join(METHODS)}")
    instead = "connect a 'ShieldDiff RL settings' or 'All-but-One settings' node to its settings input instead"
    for name in (*RL_INPUTS, *ERASE_INPUTS):
        if name not in inputs:
            raise RequestError(f"this node names a method, but not its {name}: {instead}")
        if isinstance(inputs[name], list):
            raise RequestError(f"{name} is linked to another node, which the train node no longer reads: {instead}")
    fields = rl_fields({name: inputs[name] for name in RL_INPUTS})
    return MethodSettings(label, fields | {name: inputs[name] for name in ERASE_INPUTS})
