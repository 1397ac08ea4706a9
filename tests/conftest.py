"""Shared fixtures: the real ComfyUI server, the demo checkpoint, and the CI rule that
nothing is skipped (a skip in CI is reported as a failure, with its reason)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from support.comfy_harness import REPO, ComfyServer
from support.prerequisites import IN_CI, require


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


def pytest_terminal_summary(terminalreporter):
    """One line per test layer, so a run shows that unit, end-to-end and browser tests ran."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if report.when != "call" and outcome == "passed":
                continue
            parts = Path(str(getattr(report, "fspath", ""))).parts
            layer = next((p for p in ("unit", "e2e", "browser") if p in parts), "other")
            counts.setdefault(layer, {}).setdefault(outcome, 0)
            counts[layer][outcome] += 1
    if counts:
        terminalreporter.section("ShieldDiff test layers")
        for layer in ("unit", "e2e", "browser", "other"):
            if layer in counts:
                terminalreporter.write_line(
                    f"{layer:8s} " + ", ".join(f"{n} {k}" for k, n in counts[layer].items() if n)
                )


@pytest.fixture(scope="session")
def comfyui_dir() -> Path:
    path = Path(os.environ.get("SHIELDDIFF_COMFYUI_DIR") or REPO / ".comfyui" / "ComfyUI")
    require(
        (path / "main.py").is_file(),
        f"no ComfyUI at {path}: run `make test` (it installs one) or set SHIELDDIFF_COMFYUI_DIR to a ComfyUI folder",
    )
    return path


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    """The tiny SD1.5-layout checkpoint, built once per version of its builder and cached."""
    from trainer.diffusion import demo_checkpoint as builder

    digest = hashlib.sha256(Path(builder.__file__).read_bytes()).hexdigest()[:12]
    path = REPO / ".cache" / "test-models" / digest / "shielddiff-demo-tiny-sd15.safetensors"
    if not path.exists():
        builder.write_demo_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def comfy(comfyui_dir, demo_checkpoint, tmp_path_factory) -> ComfyServer:
    """One real ComfyUI server for the session, with the pack and the demo checkpoint."""
    server = ComfyServer(comfyui_dir, tmp_path_factory.mktemp("comfyui-base"))
    server.prepare(checkpoint=demo_checkpoint)
    server.start()
    try:
        yield server
    finally:
        server.stop()
