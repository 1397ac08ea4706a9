"""The training panel across frontend versions: it closes, reopens and unregisters without
leaving anything behind, and a refused action shows a warning toast (toast.warning on the
1.5x frontend, toast.add on older ones)."""

from __future__ import annotations

# the sidebar button of the panel: a class on frontend 1.32, a test id on 1.5x
TAB = 'button.shielddiff-jobs-tab-button, [data-testid="shielddiff-jobs-tab-button"]'
GONE = "20260101-000000-abcdef"  # a job id the server does not know


def stale_card(comfy_page) -> None:
    """A running job the server no longer has, as the panel would show it after a missed event."""
    comfy_page.eval(
        """(id) => app.api.dispatchEvent(new CustomEvent("shielddiff.state", {detail: {
            id, state: "running", epoch: 1, total: 5, lora_name: "stale", method: "ShieldDiff RL",
            checkpoint: "x.safetensors", message: "", created_at: 0, updated_at: 0}}))""",
        GONE,
    )


def test_the_panel_closes_reopens_and_unregisters_cleanly(comfy_page):
    page = comfy_page.page

    def toggle():  # what the tab's button runs (the command exists on both frontends)
        comfy_page.eval("() => app.extensionManager.command.execute('Workspace.ToggleSidebarTab.shielddiff-jobs')")

    page.locator(TAB).first.click()
    page.locator(".shielddiff-panel").wait_for(timeout=15_000)
    toggle()  # close the tab: the frontend calls its destroy()
    page.locator(".shielddiff-panel").wait_for(state="detached", timeout=15_000)
    stale_card(comfy_page)  # events while closed update the list, with nothing to draw into
    toggle()  # reopened: drawn again, from the routes (which know no such job)
    page.locator(".shielddiff-panel").wait_for(timeout=15_000)
    page.wait_for_function(f"() => !document.querySelector('.shielddiff-job[data-job-id=\"{GONE}\"]')", timeout=15_000)
    comfy_page.eval("() => app.extensionManager.unregisterSidebarTab('shielddiff-jobs')")
    page.locator(".shielddiff-panel").wait_for(state="detached", timeout=15_000)
    assert page.locator(TAB).count() == 0
    stale_card(comfy_page)
    page.wait_for_timeout(500)  # let the event's handlers run
    assert comfy_page.page_errors == []
    assert [e for e in comfy_page.console_errors if "shielddiff" in e.lower()] == []


def test_a_refused_action_shows_a_warning_toast_with_the_servers_reason(comfy_page):
    page = comfy_page.page
    page.locator(TAB).first.click()
    page.locator(".shielddiff-panel").wait_for(timeout=15_000)
    stale_card(comfy_page)
    card = page.locator(f'.shielddiff-job[data-job-id="{GONE}"]')
    card.locator("button.shielddiff-cancel").click()
    page.get_by_text(f"no job '{GONE}'").first.wait_for(timeout=15_000)
    comfy_page.screenshot("training-panel-refused-toast.png")
    assert comfy_page.page_errors == []
