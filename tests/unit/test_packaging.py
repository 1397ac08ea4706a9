"""What ComfyUI-Manager runs: requirements.txt (as pyproject.toml's dependencies) and install.py.

The registry's fields and the published archive are checked in test_registry_fields.py.
"""

import os
import shutil
import subprocess
import sys

import tomllib

from support.comfy_harness import REPO


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement_lines() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines())
    return [line for line in lines if line]


def test_pyproject_dependencies_are_requirements_txt():
    assert sorted(pyproject()["project"]["dependencies"]) == sorted(requirement_lines())


def test_torch_is_never_pinned_by_the_pack():
    assert not [
        r
        for r in requirement_lines()
        if r.split("=")[0].split(">")[0].split("<")[0].strip() in {"torch", "torchvision", "torchaudio"}
    ]


def _run_install(extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(extra_env or {}))
    return subprocess.run(
        [sys.executable, "install.py"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300
    )


def test_install_py_is_idempotent_under_comfyui_manager():
    for _ in range(2):
        done = _run_install()
        assert done.returncode == 0, done.stderr
        assert "already installed" in done.stdout


def test_install_py_under_a_stand_in_for_a1111_launch_installs_nothing_twice(tmp_path):
    calls = tmp_path / "run_pip_calls.txt"
    (tmp_path / "launch.py").write_text(
        f"def run_pip(command, desc=None):\n    open({str(calls)!r}, 'a').write(command + '\\n')\n"
    )
    done = _run_install({"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert not calls.exists(), "install.py asked A1111's launcher to install what is already installed"


def test_install_py_failure_is_a_message_and_a_non_zero_exit(tmp_path):
    shutil.copy(REPO / "install.py", tmp_path / "install.py")
    (tmp_path / "requirements.txt").write_text("shielddiff-no-such-package==0.0.0\n")
    env = dict(os.environ, PIP_NO_INDEX="1")
    done = subprocess.run(
        [sys.executable, "install.py"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 1
    assert "ShieldDiff install failed" in done.stderr and "requirements.txt" in done.stderr


def test_install_py_uses_a1111_launch_for_what_is_missing(tmp_path):
    """With a stand-in for A1111's `launch`, a missing requirement goes through launch.run_pip."""
    shutil.copy(REPO / "install.py", tmp_path / "install.py")
    (tmp_path / "requirements.txt").write_text("shielddiff-no-such-package==0.0.0\nnumpy\n")
    calls = tmp_path / "calls.txt"
    (tmp_path / "launch.py").write_text(
        f"def run_pip(command, desc=None):\n    open({str(calls)!r}, 'a').write(command)\n"
    )
    done = subprocess.run(
        [sys.executable, "install.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(tmp_path)),
        timeout=300,
    )
    assert calls.read_text() == 'install "shielddiff-no-such-package==0.0.0"'  # numpy is there: not asked for
    assert done.returncode == 1  # the stand-in installed nothing, and install.py notices
