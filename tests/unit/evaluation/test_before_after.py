"""Before and after on the toy model: the same seeds without and with a LoRA, the comparison, the side-by-side
grid, progress over both runs, and a stopped run that resumes with only the missing images."""

import json

import numpy as np
import pytest
from PIL import Image
from test_resume import settings

from support.tiny_models import toy_lora
from trainer.evaluation.before_after import THUMB, before_after


def test_before_and_after_share_seeds_and_the_grid_pairs_them(tmp_path):
    lora = toy_lora(tmp_path / "strong.safetensors", 0.5)
    seen = []
    table = before_after(
        settings(tmp_path, "ba", lora=str(lora)), progress=lambda done, total: seen.append((done, total))
    )
    out = tmp_path / "ba"
    base, after = (json.loads((out / name / "results.json").read_text()) for name in ("base", "lora"))
    assert [i["seed"] for p in base["prompts"] for i in p["images"]] == [
        i["seed"] for p in after["prompts"] for i in p["images"]
    ]
    assert base["settings"]["lora"] is None and after["settings"]["lora"] == str(lora)
    assert table == json.loads((out / "compare.json").read_text()) and "before" in (out / "compare.md").read_text()
    assert seen == [(2, 12), (4, 12), (6, 12), (8, 12), (10, 12), (12, 12)]  # batches of 2 over 2 x 6 images

    grid = np.asarray(Image.open(out / "before_after.png"))
    first = [np.asarray(Image.open(out / run / "images" / "p0000_i00.png").convert("RGB")) for run in ("base", "lora")]
    h, w = first[0].shape[:2]
    assert max(h, w) <= THUMB and grid.shape[0] == h  # three prompts: one row of three pairs
    assert np.array_equal(grid[:h, :w], first[0]) and np.array_equal(grid[:h, w + 2 : 2 * w + 2], first[1])
    assert not np.array_equal(first[0], first[1])  # the LoRA changed the image made from the same seed


def test_a_stopped_before_after_resumes_with_only_the_missing_images(tmp_path):
    lora = str(toy_lora(tmp_path / "zero.safetensors", 0.0))

    class StopError(Exception):
        pass

    def stop_halfway(done, total):
        if done >= total // 2 + 2:
            raise StopError

    with pytest.raises(StopError):
        before_after(settings(tmp_path, "ba", lora=lora), progress=stop_halfway)
    assert not (tmp_path / "ba" / "compare.json").exists()
    before_after(settings(tmp_path, "ba", lora=lora))
    runs = {name: json.loads((tmp_path / "ba" / name / "results.json").read_text())["run"] for name in ("base", "lora")}
    assert runs == {"base": {"generated": 0, "reused": 6}, "lora": {"generated": 4, "reused": 2}}
