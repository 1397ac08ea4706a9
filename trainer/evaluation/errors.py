"""The one error type of `python -m trainer eval`."""

from __future__ import annotations

__all__ = ["EvalError"]


class EvalError(ValueError):
    """The evaluation cannot run as asked; the message names the value and what to do."""
