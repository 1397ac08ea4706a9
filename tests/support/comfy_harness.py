"""A real ComfyUI server for tests: started on a free loopback port, stopped by PID.

The server gets its own base directory (custom_nodes with this pack linked in, models with
the demo checkpoint, input, output, user), so tests never touch a user's ComfyUI folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "comfyui-shielddiff"
IMPORT_FAILURE = re.compile(
    r"IMPORT FAILED|Cannot import .*" + re.escape(PACK_NAME) + r"|Error while calling comfy_entrypoint"
)


def comfyui_python() -> str:
    """The Python that runs the ComfyUI under test: its own environment's for the second target
    (`make test` sets SHIELDDIFF_COMFYUI_PYTHON), else this one."""
    return os.environ.get("SHIELDDIFF_COMFYUI_PYTHON") or sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """One ComfyUI process. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        comfyui_dir: Path,
        base_dir: Path,
        python: str | None = None,
        name: str = "comfyui",
        extra_args: list[str] | None = None,
    ):
        """name: of its log and database files in base_dir, so that a second server can share the base;
        extra_args: more ComfyUI command-line options (e.g. --preview-method latent2rgb)."""
        self.comfyui_dir = Path(comfyui_dir)
        self.base_dir = Path(base_dir)
        self.python = python or comfyui_python()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base_dir / f"{name}.log"
        self.database = self.base_dir / "user" / f"{name}.db"
        self.proc: subprocess.Popen | None = None
        self.client_id = uuid.uuid4().hex
        self.extra_args = list(extra_args or [])
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------------------
    def prepare(self, checkpoint: Path | None = None) -> None:
        for sub in ("custom_nodes", "models/checkpoints", "models/loras", "input", "output", "temp", "user/default"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        link = self.base_dir / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        if checkpoint is not None:
            dest = self.base_dir / "models" / "checkpoints" / checkpoint.name
            if not dest.exists():
                dest.symlink_to(checkpoint)
        example = self.comfyui_dir / "input" / "example.png"  # the image LoadImage offers by default
        if example.exists() and not (self.base_dir / "input" / "example.png").exists():
            shutil.copy(example, self.base_dir / "input" / "example.png")
        # Skip the first-run templates dialog that would cover the canvas in browser tests.
        settings = self.base_dir / "user" / "default" / "comfy.settings.json"
        if not settings.exists():
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))

    def start(self, timeout: float = 180.0) -> ComfyServer:
        self._log_file = open(self.log_path, "w")
        cmd = [
            self.python,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--disable-api-nodes",
            "--base-directory",
            str(self.base_dir),
            "--database-url",
            f"sqlite:///{self.database}",
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cmd, cwd=self.comfyui_dir, stdout=self._log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ComfyUI exited with code {self.proc.returncode} before answering:\n{self.log_tail()}"
                )
            try:
                if requests.get(self.url + "/system_stats", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")
        failure = IMPORT_FAILURE.search(self.log())
        if failure:
            self.stop()
            raise RuntimeError(f"ComfyUI did not import the pack ({failure.group(0)}):\n{self.log_tail(80)}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
            except ProcessLookupError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- logs ----------------------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # -- HTTP ----------------------------------------------------------------------------
    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def alive(self) -> bool:
        try:
            return self.get("/system_stats", timeout=5).ok
        except requests.RequestException:
            return False

    def queue(self, prompt: dict) -> str:
        """Post an API-format workflow; returns its prompt id (raises with ComfyUI's reason)."""
        r = self.post("/prompt", json={"prompt": prompt, "client_id": self.client_id})
        if not r.ok:
            raise AssertionError(f"/prompt refused the workflow ({r.status_code}): {r.text}")
        return r.json()["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120.0) -> dict:
        """Wait for /history/<id> to hold the finished run; returns its entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").json().get(prompt_id)
            if entry and entry.get("status"):  # ComfyUI writes history only when a run ends
                return entry
            time.sleep(0.2)
        raise AssertionError(f"workflow {prompt_id} did not finish in {timeout:.0f} s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 120.0) -> dict:
        """Queue a workflow and wait for it; fails with ComfyUI's error when it did not succeed."""
        return self.run_status(self.wait(self.queue(prompt), timeout))

    @staticmethod
    def run_status(entry: dict) -> dict:
        """The history entry itself when its run succeeded; ComfyUI's error messages otherwise."""
        status = entry["status"]
        if status.get("status_str") != "success":
            raise AssertionError(f"workflow failed: {json.dumps(status.get('messages'), indent=1)[:4000]}")
        return entry

    def events(self) -> EventCollector:
        return EventCollector(self)


class EventCollector:
    """Collects websocket messages for this server's client id in a background thread."""

    def __init__(self, server: ComfyServer):
        import websocket

        self.messages: list[dict] = []
        self._ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}", timeout=30
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import websocket

        self._ws.settimeout(0.5)
        while not self._stop.is_set():
            try:
                raw = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError):
                return
            if isinstance(raw, str):
                self.messages.append(json.loads(raw))

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m.get("type") == kind]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._ws.close()

    def __enter__(self) -> EventCollector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
