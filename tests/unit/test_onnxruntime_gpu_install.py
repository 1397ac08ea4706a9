"""Installing the pack where onnxruntime-gpu is installed (as many ComfyUI users have, for other packs):
the pack's requirements, installed as ComfyUI-Manager installs them, leave onnxruntime-gpu the only
onnxruntime, and NudeNet scoring works through it.

In a fresh virtual environment (no system packages; packages from the package index, the
onnxruntime-gpu wheel kept in .cache/wheels and pip's cache in .cache/pip): onnxruntime-gpu (its wheel installs on a machine without a GPU); then the Manager's
`pip install -r requirements.txt`, resolved in full against that environment (pip's dry run: the
full set would download torch); then the detector's share of it installed for real and install.py's
NudeNet step, which the Manager runs after requirements.txt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.comfy_harness import REPO

CACHE = REPO / ".cache"
DETECTOR_REQUIREMENTS = ("numpy", "pillow", "opencv-python-headless", "psutil")
SCORE = """
import json, cv2, numpy as np
from nudenet import NudeDetector
from trainer.nudity.sample_images import figure, plain
from trainer.nudity.detector import NudityDetector, NudityRule

images = [figure(), plain(), figure(size=384)]
ours = NudityDetector(provider="auto")
results = ours(images, NudityRule())
theirs = NudeDetector().detect_batch([cv2.cvtColor(np.asarray(i), cv2.COLOR_RGB2BGR) for i in images], 8)
print(json.dumps({
    "providers": ours.providers,
    "nude": [r.is_nude for r in results],
    "ours": [[[d.label, d.score, list(d.box)] for d in r.detections] for r in results],
    "nudenet": [[[d["class"], d["score"], d["box"]] for d in dets] for dets in theirs],
}))
"""


def requirement_lines() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines())
    return [line for line in lines if line]


@pytest.mark.packaging
def test_the_pack_s_requirements_keep_onnxruntime_gpu_and_nudity_scoring_works(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PIP_CACHE_DIR": str(CACHE / "pip"), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_PROGRESS_BAR": "off"}

    def run(*args, **kw) -> str:
        done = subprocess.run(
            [str(py), *args], capture_output=True, text=True, env=kw.pop("env", env), timeout=1200, **kw
        )
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    wheels = CACHE / "wheels"  # the onnxruntime-gpu wheel (about 250 MB) is downloaded once
    if not list(wheels.glob("onnxruntime_gpu-*.whl")):
        run("-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels), "onnxruntime-gpu")
    run("-m", "pip", "install", "--quiet", "--find-links", str(wheels), "onnxruntime-gpu")
    report = tmp_path / "report.json"
    run("-m", "pip", "install", "--quiet", "--dry-run", "--report", str(report), "-r", str(REPO / "requirements.txt"))
    would_install = [i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]]
    assert "diffusers" in would_install  # (the full file was resolved)
    assert not [n for n in would_install if n.startswith("onnxruntime")], would_install

    lines = [r for r in requirement_lines() if r.split(">")[0].split("=")[0].split("<")[0] in DETECTOR_REQUIREMENTS]
    assert len(lines) == len(DETECTOR_REQUIREMENTS), lines
    run("-m", "pip", "install", "--quiet", *lines)
    run("-c", "import install; install.install_nudenet()", cwd=REPO)
    installed = {d["name"].lower() for d in json.loads(run("-m", "pip", "list", "--format=json"))}
    assert {n for n in installed if n.startswith("onnxruntime")} == {"onnxruntime-gpu"}
    assert "nudenet" in installed

    out = run("-c", SCORE, cwd=REPO, env=env | {"PYTHONPATH": str(REPO)})
    found = json.loads(out.strip().splitlines()[-1])
    assert found["providers"] == ["CPUExecutionProvider"]  # auto asked for CUDA; without a GPU it runs on the CPU
    assert found["nude"] == [True, False, True]
    assert found["ours"] == found["nudenet"]
