"""The pack's one job queue inside ComfyUI: jobs in user/shielddiff/jobs, LoRAs into models/loras.

Events go to every browser through ComfyUI's websocket; before a job starts, ComfyUI is asked
(through its prompt queue's flags, as its own /free route does) to unload its models.
"""

from __future__ import annotations

import functools
import logging
import os

import folder_paths

from ..trainer.jobs.queue import JobManager

log = logging.getLogger(__name__)


def _send(event: str, data: dict) -> None:
    from server import PromptServer

    PromptServer.instance.send_sync(event, data)


def _free_comfyui_models() -> None:
    from server import PromptServer

    PromptServer.instance.prompt_queue.set_flag("free_memory", True)


def jobs_root() -> str:
    return os.path.join(folder_paths.get_user_directory(), "shielddiff", "jobs")


def loras_dir() -> str:
    return folder_paths.get_folder_paths("loras")[0]


@functools.cache
def manager() -> JobManager:
    """The queue, started on first use (its worker thread then picks up jobs queued before a restart)."""
    return JobManager(jobs_root(), loras_dir(), on_event=_send, before_start=_free_comfyui_models).start()
