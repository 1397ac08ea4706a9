"""`make run` and the set-up's messages for bad input, through tools/devenv.py itself."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from support.comfy_harness import REPO

DEVENV = [sys.executable, "tools/devenv.py"]


def devenv(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DEVENV, *args], cwd=REPO, env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=timeout
    )


def test_a_comfyui_dir_that_is_not_comfyui_is_named(tmp_path):
    done = devenv("setup", env={"COMFYUI_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert f"COMFYUI_DIR={tmp_path} is not a ComfyUI folder" in done.stderr
    assert "main.py" in done.stderr


def test_a_failed_install_step_is_named(tmp_path):
    fake = tmp_path / "ComfyUI"
    (fake / "comfy").mkdir(parents=True)
    (fake / "main.py").write_text("")
    (fake / "folder_paths.py").write_text("")
    (fake / "requirements.txt").write_text("shielddiff-no-such-package==0.0.0\n")
    venv = os.path.dirname(os.path.dirname(sys.executable))
    done = devenv("setup", env={"COMFYUI_DIR": str(fake), "VENV": venv, "PIP_NO_INDEX": "1"})
    assert done.returncode == 2
    assert "set-up step 'install Python packages' failed" in done.stderr


def start_make_run(comfyui_dir, port: int, ignored=()):
    """`tools/devenv.py run` in its own session, with the signals in `ignored` ignored on inheritance
    (as a background job or nohup starts it); returns (process, ComfyUI's URL, its log so far)."""
    venv = os.path.dirname(os.path.dirname(sys.executable))
    env = dict(os.environ, COMFYUI_DIR=str(comfyui_dir), PORT=str(port), VENV=venv)

    def ignore():
        for sig in ignored:
            signal.signal(sig, signal.SIG_IGN)

    proc = subprocess.Popen(
        [*DEVENV, "run"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ignore,
    )
    lines, url = [], None
    deadline = time.monotonic() + 300
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "is running at " in line:
            url = line.split("is running at ")[1].split()[0]
    # keep reading ComfyUI's output so a full pipe never blocks it
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, url, "".join(lines)


def comfyui_gone(url: str, within: float = 60) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/system_stats", timeout=2)
        except requests.ConnectionError:
            return True
        time.sleep(0.5)
    return False


def test_make_run_serves_the_pack_and_moves_off_a_busy_port(comfyui_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc, url, log = start_make_run(comfyui_dir, port)
        try:
            assert f"port {port} is busy" in log, log[-3000:]
            assert url and url != f"http://127.0.0.1:{port}", log[-3000:]
            assert "ShieldDiffNudityScore" in requests.get(url + "/object_info", timeout=30).json()
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends
            assert proc.wait(timeout=60) == 0
            assert comfyui_gone(url, within=5), "ComfyUI still answers after Ctrl-C"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGKILL], ids=["SIGINT", "SIGHUP", "SIGKILL"])
def test_comfyui_stops_with_make_run_whatever_the_inherited_signals(comfyui_dir, sig):
    """Started in the background (SIGINT and SIGHUP ignored on inheritance): Ctrl-C, a closed terminal,
    or `make run` killed outright, and ComfyUI stops with it instead of serving on, orphaned."""
    proc, url, log = start_make_run(comfyui_dir, socket_port(), ignored=(signal.SIGINT, signal.SIGHUP))
    try:
        assert url, log[-3000:]
        os.kill(proc.pid, sig)
        proc.wait(timeout=120)
        assert comfyui_gone(url), f"ComfyUI still answers after make run got {sig.name}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def socket_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
