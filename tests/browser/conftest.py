"""The real ComfyUI frontend in headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from support.comfy_harness import REPO
from support.prerequisites import require

ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    given = os.environ.get("SHIELDDIFF_CHROMIUM")
    return given if given and Path(given).exists() else shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    exe = chromium_path()
    require(
        exe is not None, "Chromium is not installed: `apt-get install chromium` (Debian) or run `make test` as root"
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed: `pip install -r requirements-dev.txt`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class ComfyPage:
    """A page with ComfyUI loaded; collects uncaught errors and console errors."""

    def __init__(self, page, comfy):
        self.page = page
        self.comfy = comfy
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))

    def open(self) -> ComfyPage:
        self.page.goto(self.comfy.url, wait_until="load")
        self.page.wait_for_function(
            "() => window.app?.graph && window.LiteGraph && window.app.extensions?.length > 0", timeout=60_000
        )
        # the server's "status" message names this page's client id once its websocket is registered: a
        # prompt queued before that runs, but its "executed" messages (results on nodes) reach no page
        self.page.wait_for_function("() => app.api.socket?.readyState === 1 && !!app.api.clientId", timeout=60_000)
        return self

    def eval(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def setting(self, setting_id: str):
        """A frontend setting's value, through the settings API (extensionManager.setting on 1.3x and later)."""
        return self.eval(
            """(id) => { const store = app.extensionManager?.setting;
                         return store?.get ? store.get(id) : app.ui.settings.getSettingValue(id); }""",
            setting_id,
        )

    def set_setting(self, setting_id: str, value) -> None:
        """Change a frontend setting as the settings dialog does (it is saved on the server)."""
        self.eval(
            """async ([id, value]) => { const store = app.extensionManager?.setting;
                                        if (store?.set) await store.set(id, value);
                                        else await app.ui.settings.setSettingValueAsync(id, value); }""",
            [setting_id, value],
        )

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path

    def our_console_errors(self) -> list[str]:
        """Console errors other than the ones the closed network causes (blocked external calls)."""
        noise = ("net::ERR_FAILED", "Failed to load resource", "ERR_BLOCKED", "releases", "ERR_INTERNET_DISCONNECTED")
        return [e for e in self.console_errors if not any(n in e for n in noise)]


@pytest.fixture
def comfy_page(browser, comfy):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    host = urlparse(comfy.url).hostname

    def only_loopback(route):
        if urlparse(route.request.url).hostname == host:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    try:
        yield ComfyPage(page, comfy).open()
    finally:
        context.close()
