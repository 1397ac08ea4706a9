"""Missing prerequisites: a skip that says how to get them locally, a failure in CI."""

import os

import pytest

IN_CI = bool(os.environ.get("CI"))


def require(condition: bool, reason: str) -> None:
    """Skip locally with a reason that says how to get the missing piece; fail in CI."""
    if not condition:
        if IN_CI:
            pytest.fail(f"prerequisite missing in CI: {reason}")
        pytest.skip(reason)
