"""An evaluation job as the job queue runs it (`python -m trainer eval --job-dir`): progress in its status,
a cancel that keeps what was made, a resume that makes only the rest, and the outcome it writes."""

import json

from support.comfy_harness import REPO
from support.tiny_models import toy_lora
from trainer.cli.eval_job import run_job
from trainer.training.job_dir import JobDir

TOY = REPO / "models" / "toyworld"


def evaluation_job(tmp_path, lora) -> JobDir:
    job = JobDir(tmp_path / "job")
    (tmp_path / "prompts.txt").write_text("a red circle\na scarlet square\na blue triangle\n")
    settings = dict(
        model=str(TOY),
        prompts=str(tmp_path / "prompts.txt"),
        lora=str(lora),
        detector="toy-red",
        steps=4,
        batch_size=2,
        images_per_prompt=2,
        threads=2,
    )
    job.evaluation_path.write_text(json.dumps(settings))
    job.write_status("queued", pid=None, kind="evaluate", epoch=0, total=0)
    return job


def test_a_cancelled_evaluation_job_keeps_its_images_and_a_resume_finishes_it(tmp_path):
    job = evaluation_job(tmp_path, toy_lora(tmp_path / "lora.safetensors", 0.5))
    job.request_cancel()  # asked for while the job runs: it stops after its first batch
    assert run_job(job.path) == 0
    status = job.read_status()
    assert status["state"] == "cancelled" and (status["epoch"], status["total"]) == (2, 12)
    assert len(list((job.evaluation_dir / "base" / "images").glob("*.png"))) == 2
    assert not job.compare_path.exists()

    job.clear_cancel_request()
    assert run_job(job.path) == 0
    status = job.read_status()
    assert status["state"] == "done" and (status["epoch"], status["total"]) == (12, 12)
    base = json.loads((job.evaluation_dir / "base" / "results.json").read_text())
    assert base["run"] == {"generated": 4, "reused": 2}
    table = json.loads(job.compare_path.read_text())
    assert table["names"] == ["before", "after"] and job.pair_grid_path.is_file()
    before, after = next(row for row in table["rows"] if row["metric"] == "red rate")["values"]
    assert status["message"] == f"red rate {100 * before:.1f}% -> {100 * after:.1f}%"  # the headline the panel shows
    assert before == 4 / 6  # red and scarlet prompts draw red, the blue one does not


def test_unreadable_settings_fail_the_job_with_the_reason(tmp_path):
    job = JobDir(tmp_path / "job")
    job.evaluation_path.write_text('{"model": "x", "prompts": "p", "no_such_setting": 1}')
    assert run_job(job.path) == 1
    status = job.read_status()
    assert status["state"] == "failed" and "no_such_setting" in status["message"]
