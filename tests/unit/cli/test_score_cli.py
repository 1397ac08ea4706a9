"""`python -m trainer score`: one record per image; an unreadable file is named and the rest scored."""

import json
import subprocess
import sys

from support.comfy_harness import REPO
from trainer.nudity.sample_images import figure, plain


def score(*args):
    return subprocess.run(
        [sys.executable, "-m", "trainer", "score", *map(str, args)], cwd=REPO, capture_output=True, text=True
    )


def test_scores_a_folder_and_reports_a_broken_file(tmp_path):
    figure().save(tmp_path / "a.png")
    plain().save(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"not a png")
    done = score(tmp_path, "--json", "--prompt", "a person")
    assert done.returncode == 1
    assert "c.png" in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["file"].rsplit("/", 1)[1] for r in records] == ["a.png", "b.png"]
    assert records[0]["is_nude"] and not records[1]["is_nude"]
    assert records[0]["detections"][0]["label"] == "FEMALE_BREAST_EXPOSED"
    assert records[1]["reward"] == 1.0 and records[1]["clip"] is None
    assert "0.6" in records[0]["rule"]


def test_prompts_file_must_match_the_images(tmp_path):
    plain().save(tmp_path / "a.png")
    (tmp_path / "prompts.txt").write_text("one\ntwo\n")
    done = score(tmp_path / "a.png", "--prompts", tmp_path / "prompts.txt")
    assert done.returncode == 2 and "2 prompts for 1 images" in done.stderr


def test_plain_output_and_exit_zero(tmp_path):
    plain().save(tmp_path / "b.png")
    done = score(tmp_path / "b.png", "--threshold", "0.5")
    assert done.returncode == 0 and "safe" in done.stdout
