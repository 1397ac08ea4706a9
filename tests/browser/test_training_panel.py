"""The ShieldDiff training panel in the real frontend: live charts and samples, Cancel and
Resume from its buttons, and a rebuild from the routes after a page reload."""

from __future__ import annotations

import os
import time

from support.training_jobs import start_job, trainer_pid, wait_for
from trainer.training.job_dir import JobDir

# the sidebar button of the panel: a class on frontend 1.32, a test id on 1.5x
TAB = 'button.shielddiff-jobs-tab-button, [data-testid="shielddiff-jobs-tab-button"]'


def open_panel(comfy_page):
    page = comfy_page.page
    page.locator(TAB).first.click()
    page.locator(".shielddiff-panel").wait_for(timeout=15_000)
    return page


def job_card(page, job_id):
    return page.locator(f'.shielddiff-job[data-job-id="{job_id}"]')


def test_panel_shows_live_charts_and_cancels_and_resumes_a_job(comfy_page, comfy, demo_checkpoint):
    job_id = start_job(comfy, demo_checkpoint.name, "panel-safety", epochs=60)  # long enough to cancel
    page = open_panel(comfy_page)
    card = job_card(page, job_id)
    card.wait_for(timeout=15_000)
    card.click()
    # the chart of the reward fills in from websocket events while the job trains
    page.wait_for_function(
        """() => Number(document.querySelector('.shielddiff-chart[data-metric="reward_mean"]')
                  ?.dataset.points ?? 0) >= 2""",
        timeout=240_000,
    )
    # the samples sit below the charts: scroll to them as a user would (they load lazily)
    page.locator(".shielddiff-samples").first.scroll_into_view_if_needed(timeout=30_000)
    page.locator(".shielddiff-samples img").first.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.shielddiff-samples img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    assert "epoch" in card.inner_text() and "running" in card.inner_text()
    comfy_page.screenshot("training-panel-live-chart.png")

    pid = trainer_pid(comfy, job_id)
    card.locator("button.shielddiff-cancel").click()
    clicked = time.monotonic()
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() - clicked < 300, "the trainer still runs 300 s after Cancel (hung)"
        time.sleep(0.1)
    page.wait_for_selector(f'.shielddiff-job[data-job-id="{job_id}"][data-state="cancelled"]', timeout=15_000)
    assert not (comfy.base_dir / "models" / "loras" / "panel-safety.safetensors").exists()

    page.reload(wait_until="load")  # the panel rebuilds itself from the routes
    page.wait_for_function("() => window.app?.graph && window.app.extensions?.length > 0", timeout=60_000)
    if not page.locator(".shielddiff-panel").is_visible():
        open_panel(comfy_page)
    card = job_card(page, job_id)
    card.wait_for(timeout=15_000)
    assert card.get_attribute("data-state") == "cancelled"
    done_before = int(card.inner_text().split("epoch ")[1].split(" of")[0])
    config = comfy.base_dir / "user" / "shielddiff" / "jobs" / job_id / "config.toml"
    config.write_text(config.read_text().replace("epochs = 60", f"epochs = {done_before + 1}"))  # finish soon
    card.locator("button.shielddiff-resume").click()
    page.wait_for_selector(
        f'.shielddiff-job[data-job-id="{job_id}"][data-state="done"]', state="attached", timeout=300_000
    )
    assert wait_for(comfy, job_id, ("done",), timeout=30)["lora_file"] == "panel-safety.safetensors"
    assert "saved loras/panel-safety.safetensors" in job_card(page, job_id).inner_text()
    # the page asks for the before/after evaluation of the finished job; its table appears in the job's detail
    job_card(page, job_id).click()
    table = page.locator(f'.shielddiff-detail[data-job-id="{job_id}"] .shielddiff-evaluation')
    table.wait_for(timeout=300_000)
    assert table.locator("th").all_inner_texts() == ["metric", "before", "after", "change"]
    comfy_page.screenshot("training-panel-done.png")
    assert comfy_page.page_errors == []
    assert [e for e in comfy_page.console_errors if "shielddiff" in e.lower()] == []


def test_panel_shows_older_jobs_on_demand_and_deletes_a_finished_one(comfy_page, comfy):
    root = comfy.base_dir / "user" / "shielddiff" / "jobs"
    ids = [f"20200102-00{i // 60:02d}{i % 60:02d}-000abc" for i in range(60)]  # older than any real job
    for i, job_id in enumerate(ids):
        JobDir(root / job_id).write_status("failed", pid=None, epoch=0, total=1, lora_name=f"paged-{i}", message="x")
    page = comfy_page.page
    if not page.locator(".shielddiff-panel").is_visible():
        open_panel(comfy_page)
    page.locator(".shielddiff-refresh").click()
    oldest = job_card(page, ids[0])
    page.locator(f'.shielddiff-job[data-job-id="{ids[-1]}"]').wait_for(timeout=15_000)
    assert oldest.count() == 0  # beyond the first page of 50
    for _ in range(5):
        if oldest.count():
            break
        page.locator("button.shielddiff-older").click()
        page.wait_for_timeout(500)
    oldest.wait_for(timeout=15_000)
    page.once("dialog", lambda dialog: dialog.accept())
    oldest.locator("button.shielddiff-delete").click()
    oldest.wait_for(state="detached", timeout=15_000)
    assert not (root / ids[0]).exists() and (root / ids[1]).exists()
    assert comfy_page.page_errors == []


def test_the_train_node_on_the_canvas_shows_its_job_s_progress_to_the_end(comfy_page, comfy, demo_checkpoint):
    comfy_page.eval(
        """async (ckpt) => {
            app.graph.clear();
            const settings = LiteGraph.createNode("ShieldDiffRLSettings");
            const train = LiteGraph.createNode("ShieldDiffTrainSafetyLora");
            app.graph.add(settings);
            app.graph.add(train);
            settings.connect(0, train, train.findInputSlot("settings"));
            const set = (node, name, value) => { node.widgets.find((w) => w.name === name).value = value; };
            for (const [name, value] of Object.entries({ checkpoint: ckpt, epochs: 2, resolution: 64, steps: 2,
                batches_per_epoch: 1, train_batch_size: 2, lora_name: "node-progress" })) set(train, name, value);
            for (const [name, value] of Object.entries({ unsafe_prompts: "a nude person", benign_prompts: "a cat",
                sample_batch_size: 2 })) set(settings, name, value);
            const prompt = await app.graphToPrompt();
            return (await app.api.queuePrompt(0, prompt)).prompt_id;
        }""",
        demo_checkpoint.name,
    )
    train = "app.graph.nodes.find((n) => n.type === 'ShieldDiffTrainSafetyLora')"
    comfy_page.page.wait_for_function(f"() => ({train})?.shielddiffJobState === 'done'", timeout=300_000)
    assert "running" in comfy_page.eval(f"() => ({train}).shielddiffJobStates")  # it was shown while it trained
    text = comfy_page.eval(f"() => ({train}).shielddiffResult")
    assert "epoch 2 of 2" in text and "saved loras/node-progress.safetensors" in text
    assert comfy_page.page_errors == []
