"""The typed socket that joins a method's settings node to Train Safety LoRA.

A settings node ("ShieldDiff RL settings", "All-but-One settings") outputs a MethodSettings on a
SHIELDDIFF_METHOD socket; the train node's `settings` input takes it. Each method's own inputs thus
sit on its own node, and the train node keeps only what every method uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from comfy_api.latest import io

METHOD_SOCKET = io.Custom("SHIELDDIFF_METHOD")
# The label the panel shows for a job -> the config's train.method.
METHODS = {"ShieldDiff RL": "shielddiff-rl", "All-but-One erasure": "all-but-one"}


@dataclass(frozen=True)
class MethodSettings:
    """A method and its fields of the training request (prompt files and CLIP weights as full paths)."""

    label: str
    fields: dict = field(default_factory=dict)

    @property
    def method(self) -> str:
        return METHODS[self.label]
