"""Install the pack's Python requirements when they are missing; safe to run any number of times.

Run by ComfyUI-Manager (`python install.py` in the pack folder, with ComfyUI's Python) and by
A1111 / Forge, whose launcher offers `launch.run_pip`. Requirements already satisfied are
not installed again. Exit code 0 on success; on failure a message and exit code 1.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_requirements(path: Path = HERE / "requirements.txt") -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def is_satisfied(requirement: str) -> bool:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # very old environments: fall back to "is it installed at all"
        name = requirement.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        try:
            metadata.version(name)
            return True
        except metadata.PackageNotFoundError:
            return False
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate():
        return True
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return False
    return req.specifier.contains(installed, prereleases=True)


def pip_install(requirements: list[str]) -> None:
    try:
        import launch  # A1111 / Forge: use the launcher's own pip helper
    except ImportError:
        launch = None
    if launch is not None and hasattr(launch, "run_pip"):
        quoted = " ".join(f'"{r}"' for r in requirements)
        launch.run_pip(f"install {quoted}", f"ShieldDiff requirements: {', '.join(requirements)}")
        return
    subprocess.run([sys.executable, "-m", "pip", "install", *requirements], check=True)


def main() -> int:
    try:
        missing = [r for r in read_requirements() if not is_satisfied(r)]
        if not missing:
            sys.stdout.write("ShieldDiff: all requirements are already installed\n")
            return 0
        sys.stdout.write(f"ShieldDiff: installing {', '.join(missing)}\n")
        pip_install(missing)
        still = [r for r in missing if not is_satisfied(r)]
        if still:
            raise RuntimeError(f"pip finished but these are still not satisfied: {', '.join(still)}")
        return 0
    except Exception as exc:  # any failure must reach the user as a message and exit code
        sys.stderr.write(
            f"ShieldDiff install failed: {exc}\n"
            f"Install them by hand: {sys.executable} -m pip install -r {HERE / 'requirements.txt'}\n"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
