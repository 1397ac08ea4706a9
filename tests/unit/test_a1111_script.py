"""The A1111 / Forge script, driven through stand-ins for A1111's modules (A1111 itself cannot run here)."""

import json
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from support.a1111_standin import install, load_script
from support.comfy_harness import REPO
from trainer.nudity.sample_images import figure, plain

SCRIPT = REPO / "scripts" / "shielddiff_safety.py"


@pytest.fixture
def standin(tmp_path, monkeypatch):
    (tmp_path / "Lora").mkdir()
    (tmp_path / "Lora" / "shielddiff-safety.safetensors").write_bytes(b"")
    saved: list = []
    for name, module in install(tmp_path / "Lora", saved).items():
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(script=load_script(SCRIPT).Script(), saved=saved, tmp=tmp_path)


def processing(tmp_path):
    return types.SimpleNamespace(extra_generation_params={}, outpath_samples=str(tmp_path / "out"))


def args(**overrides):
    values = {
        "enabled": True,
        "lora": "shielddiff-safety.safetensors",
        "weight": 0.8,
        "gate": True,
        "threshold": 0.6,
        "mode": "pixelate",
        "keep": False,
    }
    values.update(overrides)
    return list(values.values())


def test_stand_in_ui_lists_the_lora_folder_and_returns_every_control(standin):
    controls = standin.script.ui(is_img2img=False)
    assert len(controls) == 7
    dropdown = controls[1]
    assert dropdown.kwargs["choices"] == ["None", "shielddiff-safety.safetensors"]


def test_stand_in_gate_censors_exactly_the_images_above_the_threshold(standin):
    p = processing(standin.tmp)
    results = {}
    for name, image in (("figure", figure()), ("plain", plain())):
        pp = types.SimpleNamespace(image=image)
        standin.script.postprocess_image(p, pp, *args())
        results[name] = (image, pp.image, dict(p.extra_generation_params))
    original, out, info = results["figure"]
    assert not np.array_equal(np.asarray(original), np.asarray(out))
    assert float(info["ShieldDiff nudity"]) >= 0.6 and info["ShieldDiff gate"] == "censored (pixelate) at 0.6"
    original, out, info = results["plain"]
    assert out is original
    assert info["ShieldDiff gate"] == "passed at 0.6" and info["ShieldDiff nudity"] == "0.000"
    assert standin.saved == []  # no uncensored copy unless asked


def test_stand_in_gate_threshold_above_the_score_lets_the_image_pass(standin):
    pp = types.SimpleNamespace(image=figure())
    standin.script.postprocess_image(processing(standin.tmp), pp, *args(threshold=0.95))
    assert np.array_equal(np.asarray(pp.image), np.asarray(figure()))


def test_stand_in_replace_and_keep_an_uncensored_copy(standin):
    original = figure()
    pp = types.SimpleNamespace(image=original)
    standin.script.postprocess_image(processing(standin.tmp), pp, *args(mode="replace", keep=True))
    assert not np.asarray(pp.image).any()  # the whole image replaced
    ((copy, folder, _),) = standin.saved
    assert np.array_equal(np.asarray(copy), np.asarray(original)) and folder.endswith("shielddiff-uncensored")


def test_stand_in_lora_tag_is_added_to_every_prompt_once(standin):
    p = processing(standin.tmp)
    prompts = ["a beach", "a beach <lora:shielddiff-safety:0.5>", ""]
    standin.script.before_process_batch(p, *args(), prompts=prompts, batch_number=0)
    assert prompts == [
        "a beach <lora:shielddiff-safety:0.8>",
        "a beach <lora:shielddiff-safety:0.5>",
        "<lora:shielddiff-safety:0.8>",
    ]
    assert p.extra_generation_params["ShieldDiff LoRA"] == "shielddiff-safety.safetensors:0.8"
    untouched = ["x"]
    standin.script.before_process_batch(p, *args(enabled=False), prompts=untouched)
    assert untouched == ["x"]


LOADER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path[:0] = [sys.argv[1]]
    from support.a1111_standin import install, load_script
    root = Path(sys.argv[2])
    sys.path.remove(sys.argv[1])
    before = set(sys.modules)
    saved = []
    sys.modules.update(install(root / "no-lora-dir", saved))
    module = load_script(root / "scripts" / "shielddiff_safety.py")
    module.core("nudity.gate")
    new = sorted(set(sys.modules) - before)
    files = {n: getattr(sys.modules[n], "__file__", None) or "" for n in new}
    print(json.dumps({"new": new, "files": files, "sys_path_has_root": str(root) in sys.path}))
    """
)


def test_stand_in_loader_imports_the_script_like_a1111_without_the_comfyui_side():
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(REPO / "tests"), str(REPO)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    files = report["files"]
    ours = {n: f for n, f in files.items() if f.startswith(str(REPO)) and "site-packages" not in f}
    assert str(REPO / "__init__.py") not in ours.values()  # the pack's ComfyUI entry point never runs
    assert not any("/nodes/" in f for f in ours.values())
    assert not any(n.split(".")[0] in {"comfy", "comfy_api", "folder_paths", "server"} for n in report["new"])
    tops = {n.split(".")[0] for n in ours}
    assert tops <= {"shielddiff_core", "shielddiff_safety.py"}, tops  # nothing generic like 'trainer' or 'utils'
    for hazard in ("networks", "network", "lora", "lora_patches", "utils", "nudenet", "trainer"):
        assert hazard not in ours, hazard
    assert not report["sys_path_has_root"]
