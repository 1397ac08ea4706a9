"""The code style the project keeps (ruff, configured in pyproject.toml)."""

import subprocess
import sys

from support.comfy_harness import REPO


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
