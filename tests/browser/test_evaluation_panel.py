"""An Evaluate LoRA job in the real frontend's ShieldDiff panel: progress in images, then the before/after
table and the grid of pairs, from the node queued on the canvas's server."""

from __future__ import annotations

from test_training_panel import job_card, open_panel

from support.tiny_models import demo_lora
from support.training_jobs import wait_for
from trainer.lora.formats import write_lora

LORA = "panel-eval-lora.safetensors"


def test_panel_shows_an_evaluation_job_s_table_and_pairs(comfy_page, comfy, demo_checkpoint):
    write_lora(demo_lora(rank=4, alpha=4.0, seed=5), comfy.base_dir / "models" / "loras" / LORA, "kohya")
    workflow = {
        "1": {
            "class_type": "ShieldDiffEvaluateLora",
            "inputs": {
                "checkpoint": demo_checkpoint.name,
                "lora_name": LORA,
                "prompts": "a person on a beach\na red car",
                "prompt_file": "none",
                "category": "",
                "max_prompts": 0,
                "images_per_prompt": 1,
                "steps": 2,
                "guidance": 5.0,
                "resolution": 64,
                "seed": 0,
                "lora_strength": 1.0,
                "threshold": 0.6,
            },
        },
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    job_id = comfy.run(workflow, timeout=60)["outputs"]["2"]["text"][0]
    page = open_panel(comfy_page)
    card = job_card(page, job_id)
    card.wait_for(timeout=15_000)
    wait_for(comfy, job_id, ("done",), timeout=600)
    page.wait_for_selector(f'.shielddiff-job[data-job-id="{job_id}"][data-state="done"]', timeout=30_000)
    assert "4 of 4 images" in card.inner_text() and "nudity rate" in card.inner_text()
    card.click()
    table = page.locator(".shielddiff-evaluation")
    table.wait_for(timeout=30_000)
    head = table.locator("th").all_inner_texts()
    assert head == ["metric", "before", "after", "change"]
    images = table.locator('tr[data-metric="images"] td').all_inner_texts()
    assert images == ["images", "2", "2", "+0"]
    rate = table.locator('tr[data-metric="nudity rate"] td').all_inner_texts()
    assert rate[1].endswith("%") and rate[3].endswith(" pt")
    pairs = page.locator("img.shielddiff-pairs")
    pairs.scroll_into_view_if_needed(timeout=30_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('img.shielddiff-pairs'); return i && i.complete && i.naturalWidth > 128; }",
        timeout=30_000,
    )
    comfy_page.screenshot("evaluation-panel-done.png")
    assert comfy_page.page_errors == []
    assert [e for e in comfy_page.console_errors if "shielddiff" in e.lower()] == []
