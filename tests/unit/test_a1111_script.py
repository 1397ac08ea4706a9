"""The A1111 / Forge script, driven through stand-ins for A1111's modules (A1111 itself cannot run here).

`run_generation` (tests/a1111_standin.py) calls the script's hooks in the order A1111 1.10's and
Forge's process_images_inner do; NudeNet is the real detector on the images of sample_images.py.
"""

import json
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import nudenet
import numpy as np
import pytest
from PIL import Image

from support.a1111_standin import Processing, install, load_script, run_generation
from support.comfy_harness import REPO
from trainer.nudity.sample_images import figure, plain

SCRIPT = REPO / "scripts" / "shielddiff_safety.py"
BUNDLED_320N = Path(nudenet.__file__).parent / "320n.onnx"


def load(tmp_path, monkeypatch, after_composite=True):
    lora = tmp_path / "Lora"
    (lora / "safety").mkdir(parents=True, exist_ok=True)
    (lora / "safety" / "shielddiff-safety.safetensors").write_bytes(b"")
    (lora / "Other.safetensors").write_bytes(b"")
    (lora / "notes.txt").write_bytes(b"")
    saved: list = []
    modules = install(lora, saved, models_dir=tmp_path / "models", after_composite=after_composite)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    module = load_script(SCRIPT)
    return types.SimpleNamespace(
        module=module, script=module.Script(), saved=saved, tmp=tmp_path, state=modules["modules.shared"].state
    )


@pytest.fixture
def standin(tmp_path, monkeypatch):
    return load(tmp_path, monkeypatch)


def args(**overrides):
    values = {
        "enabled": True,
        "lora": "safety/shielddiff-safety.safetensors",
        "weight": 0.8,
        "gate": True,
        "threshold": 0.6,
        "class_thresholds": "",
        "mode": "pixelate",
        "detector": "320n (bundled)",
        "resolution": 320,
        "keep": False,
    }
    values.update(overrides)
    return list(values.values())


def generate(standin, images, previews=(), **overrides):
    p = Processing(["a beach"] * len(images), outpath=str(standin.tmp / "out"))
    out = run_generation(standin.script, p, args(**overrides), images, previews)
    return p, out


def same(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_stand_in_ui_lists_loras_in_subfolders_and_detectors_in_models_nudenet(standin):
    (standin.tmp / "models" / "nudenet").mkdir(parents=True)
    (standin.tmp / "models" / "nudenet" / "640m.onnx").write_bytes(b"")
    controls = standin.script.ui(is_img2img=False)
    assert len(controls) == 10
    assert controls[1].kwargs["choices"] == ["None", "Other.safetensors", "safety/shielddiff-safety.safetensors"]
    assert controls[7].kwargs["choices"] == ["320n (bundled)", "640m.onnx"]


def test_stand_in_gate_censors_exactly_the_images_above_the_threshold(standin):
    p, (censored, passed) = generate(standin, [figure(), plain()])
    assert not same(censored, figure())
    assert same(passed, plain())
    # The infotext of the last image; each image's fields are read when it is saved.
    assert p.extra_generation_params["ShieldDiff gate"] == "passed at 0.6"
    assert p.extra_generation_params["ShieldDiff nudity"] == "0.000"
    p, _ = generate(standin, [figure()])
    assert float(p.extra_generation_params["ShieldDiff nudity"]) >= 0.6
    assert p.extra_generation_params["ShieldDiff gate"] == "censored (pixelate) at 0.6"
    assert standin.saved == []  # no uncensored copy unless asked


def test_stand_in_gate_threshold_above_the_score_lets_the_image_pass(standin):
    _, (out,) = generate(standin, [figure()], threshold=0.95)
    assert same(out, figure())


def test_stand_in_per_class_thresholds_override_the_threshold(standin):
    p, (out,) = generate(standin, [figure()], threshold=0.95, class_thresholds="FEMALE_BREAST_EXPOSED=0.5")
    assert not same(out, figure())
    assert p.extra_generation_params["ShieldDiff gate"] == "censored (pixelate) at 0.95; FEMALE_BREAST_EXPOSED=0.5"
    _, (out,) = generate(standin, [figure()], threshold=0.5, class_thresholds="female_breast_exposed=0.99")
    assert same(out, figure())


def test_stand_in_replace_and_keep_an_uncensored_copy(standin):
    _, (out,) = generate(standin, [figure()], mode="replace", keep=True)
    assert not np.asarray(out).any()  # the whole image replaced
    ((copy, folder, _),) = standin.saved
    assert same(copy, figure()) and folder.endswith("shielddiff-uncensored")


@pytest.mark.parametrize("written", ["", " <lora:shielddiff-safety:0.5>", " <lora:shielddiff-safety>"])
def test_stand_in_lora_tag_is_in_both_passes_prompts_exactly_once(standin, written):
    p = Processing([f"a beach{written}", "a dune"], hr_prompts=[f"a beach, sharp{written}", ""], enable_hr=True)
    run_generation(standin.script, p, args(), [plain(64), plain(64)])
    for first, hires in p.batches:
        for prompt in (*first, *hires):
            assert prompt.count("<lora:shielddiff-safety") == 1, prompt
    assert p.all_prompts[1] == "a dune <lora:shielddiff-safety:0.8>"
    assert p.all_hr_prompts[1] == "<lora:shielddiff-safety:0.8>"
    assert p.extra_generation_params["ShieldDiff LoRA"] == "safety/shielddiff-safety.safetensors:0.8"
    untouched = Processing(["x"], enable_hr=True)
    run_generation(standin.script, untouched, args(enabled=False), [plain(64)])
    assert untouched.batches == [(["x"], ["x"])]


def inpaint(image_size=256, box=(0, 0, 48, 48)):
    """An img2img inpaint: the original is the nude figure, only a small corner is redone."""
    mask = Image.new("L", (image_size, image_size), 0)
    mask.paste(255, box)
    return Processing(["a beach"], init_image=figure(image_size), mask=mask)


def test_stand_in_gate_judges_the_inpaint_composite_not_the_sampled_crop(standin):
    p = inpaint()
    (out,) = run_generation(standin.script, p, args(), [plain()])
    composite = Image.composite(plain(), figure(), p.image_mask)
    assert float(p.extra_generation_params["ShieldDiff nudity"]) >= 0.6  # the sampled image alone scores 0
    assert p.extra_generation_params["ShieldDiff gate"].startswith("censored")
    assert not same(out, composite)
    assert standin.module.GATE_HOOK == "postprocess_image_after_composite"
    assert "postprocess_image" not in vars(type(standin.script))  # one gate per image, not two


def test_stand_in_older_webui_without_the_composite_hook_gates_in_postprocess_image(tmp_path, monkeypatch):
    old = load(tmp_path, monkeypatch, after_composite=False)
    assert old.module.GATE_HOOK == "postprocess_image"
    p = Processing(["a beach"])
    (out,) = run_generation(old.script, p, args(), [figure()])
    assert not same(out, figure())
    assert p.extra_generation_params["ShieldDiff gate"] == "censored (pixelate) at 0.6"


def test_stand_in_live_previews_are_censored_when_nude_and_unchanged_otherwise(standin):
    nude, safe = figure(), plain()
    generate(standin, [plain(64)], previews=[nude, safe])
    shown_nude, shown_safe = standin.state.shown
    assert not same(shown_nude, nude) and shown_nude.size == nude.size
    assert shown_safe is safe
    assert standin.state.id_live_preview == 2 and standin.state.current_image is safe  # A1111's own setter ran


def test_stand_in_disabled_script_or_gate_leaves_assign_current_image_as_it_was(standin):
    state = standin.state
    generate(standin, [plain(64)], previews=[figure()], enabled=False)
    generate(standin, [plain(64)], previews=[figure()], gate=False)
    assert "assign_current_image" not in vars(state)
    assert all(same(shown, figure()) for shown in state.shown)
    generate(standin, [plain(64)], previews=[figure()])
    assert "assign_current_image" not in vars(state)  # restored after the run
    assert not same(state.shown[-1], figure())

    def other_extension(image):  # another extension's own wrapper, installed before ours
        state.current_image = image

    state.assign_current_image = other_extension
    generate(standin, [plain(64)], previews=[figure()])
    assert vars(state)["assign_current_image"] is other_extension


def test_stand_in_a_run_that_died_mid_way_is_unwrapped_by_the_next_run(standin):
    state = standin.state
    standin.script.process(Processing(["a beach"]), *args())  # no postprocess, no close: an interrupted run
    assert "assign_current_image" in vars(state)
    generate(standin, [plain(64)], previews=[figure()], enabled=False)
    assert "assign_current_image" not in vars(state)
    assert same(state.shown[-1], figure())


def test_stand_in_detector_from_models_nudenet_and_a_broken_one_withholds_the_image(standin):
    folder = standin.tmp / "models" / "nudenet" / "copies"
    folder.mkdir(parents=True)
    shutil.copy(BUNDLED_320N, folder / "320n-copy.onnx")
    (folder / "broken.onnx").write_bytes(b"not an onnx model")
    assert standin.module.detector_choices() == ["320n (bundled)", "copies/320n-copy.onnx", "copies/broken.onnx"]
    _, (out,) = generate(standin, [figure()], detector="copies/320n-copy.onnx")
    assert not same(out, figure())
    p, (out,) = generate(standin, [figure()], previews=[figure()], detector="copies/broken.onnx")
    assert not np.asarray(out).any() and not np.asarray(standin.state.shown[-1]).any()
    assert p.extra_generation_params["ShieldDiff gate"] == "withheld: the nudity gate failed (NudityModelError)"
    assert "ShieldDiff nudity" not in p.extra_generation_params


def test_stand_in_bad_class_thresholds_withhold_the_image(standin):
    p, (out,) = generate(standin, [plain()], class_thresholds="FEMALE_BREAST=0.5")
    assert not np.asarray(out).any()
    assert p.extra_generation_params["ShieldDiff gate"] == "withheld: the nudity gate failed (ValueError)"


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
