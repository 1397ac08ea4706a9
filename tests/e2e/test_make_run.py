"""`make run` and the set-up's messages for bad input, through tools/devenv.py itself."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

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


def test_make_run_serves_the_pack_and_moves_off_a_busy_port(comfyui_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        venv = os.path.dirname(os.path.dirname(sys.executable))
        env = dict(os.environ, COMFYUI_DIR=str(comfyui_dir), PORT=str(port), VENV=venv)
        proc = subprocess.Popen(
            [*DEVENV, "run"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            lines, url = [], None
            deadline = time.monotonic() + 300
            while url is None and time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line:
                    break
                lines.append(line)
                if "is running at " in line:
                    url = line.split("is running at ")[1].split()[0]
            log = "".join(lines)
            # keep reading ComfyUI's output so a full pipe never blocks it
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            assert f"port {port} is busy" in log, log[-3000:]
            assert url and url != f"http://127.0.0.1:{port}", log[-3000:]
            assert "ShieldDiffNudityScore" in requests.get(url + "/object_info", timeout=30).json()
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends
            assert proc.wait(timeout=60) == 0
            try:
                requests.get(url + "/system_stats", timeout=2)
                raise AssertionError("ComfyUI still answers after Ctrl-C")
            except requests.ConnectionError:
                pass
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
