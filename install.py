"""Install the pack's Python requirements when they are missing; safe to run any number of times.

Run by ComfyUI-Manager (`python install.py` in the pack folder, with ComfyUI's Python, after
`pip install -r requirements.txt`) and by A1111 / Forge, whose launcher offers `launch.run_pip`.
Requirements already satisfied are not installed again. Exit code 0 on success; on failure a
message and exit code 1.

NudeNet is installed here, without its dependencies, and not through requirements.txt: nudenet
depends on the CPU `onnxruntime`, which pip would install next to a user's `onnxruntime-gpu` or
`onnxruntime-directml` (all three are the same `onnxruntime` module, so the last one installed
wins). The pack runs NudeNet's model through whichever onnxruntime is installed, and installs the
CPU one only when there is none.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
NUDENET = "nudenet>=3.4.2,<4"  # installed with --no-deps (see above); its other dependencies are in requirements.txt
# Every distribution that provides the `onnxruntime` module: any one of them will do.
ONNXRUNTIMES = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-silicon",
    "onnxruntime-openvino",
    "onnxruntime-rocm",
    "onnxruntime-qnn",
)
CPU_ONNXRUNTIME = "onnxruntime>=1.17"


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


def installed_onnxruntimes() -> list[str]:
    found = []
    for name in ONNXRUNTIMES:
        try:
            metadata.version(name)
            found.append(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def pip_install(requirements: list[str], no_deps: bool = False) -> None:
    options = ["--no-deps"] if no_deps else []
    try:
        import launch  # A1111 / Forge: use the launcher's own pip helper
    except ImportError:
        launch = None
    if launch is not None and hasattr(launch, "run_pip"):
        quoted = " ".join([*options, *(f'"{r}"' for r in requirements)])
        launch.run_pip(f"install {quoted}", f"ShieldDiff requirements: {', '.join(requirements)}")
        return
    subprocess.run([sys.executable, "-m", "pip", "install", *options, *requirements], check=True)


def install_nudenet() -> None:
    """An onnxruntime only when none is installed (the CPU one), then nudenet without its dependencies."""
    if not installed_onnxruntimes():
        sys.stdout.write(f"ShieldDiff: no onnxruntime installed; installing {CPU_ONNXRUNTIME}\n")
        pip_install([CPU_ONNXRUNTIME])
    if not is_satisfied(NUDENET):
        sys.stdout.write(f"ShieldDiff: installing {NUDENET} (without its dependencies: it keeps your onnxruntime)\n")
        pip_install([NUDENET], no_deps=True)


def main() -> int:
    try:
        missing = [r for r in read_requirements() if not is_satisfied(r)]
        if missing:
            sys.stdout.write(f"ShieldDiff: installing {', '.join(missing)}\n")
            pip_install(missing)
        install_nudenet()
        still = [r for r in [*missing, NUDENET] if not is_satisfied(r)]
        if not installed_onnxruntimes():
            still.append(CPU_ONNXRUNTIME)
        if still:
            raise RuntimeError(f"pip finished but these are still not satisfied: {', '.join(still)}")
        if not missing:
            sys.stdout.write("ShieldDiff: all requirements are already installed\n")
        return 0
    except Exception as exc:  # any failure must reach the user as a message and exit code
        sys.stderr.write(
            f"ShieldDiff install failed: {exc}\n"
            f"Install them by hand: {sys.executable} -m pip install -r {HERE / 'requirements.txt'}, "
            f'then {sys.executable} -m pip install --no-deps "{NUDENET}" (and onnxruntime, onnxruntime-gpu or '
            "onnxruntime-directml if none is installed)\n"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
