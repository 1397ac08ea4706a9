"""ShieldDiff for ComfyUI: nodes that keep Stable Diffusion from generating nudity.

Registers the pack's nodes through ComfyUI's V3 extension API, its /shielddiff/ routes and
web/. Nothing happens at import: no downloads, no model loads. When ComfyUI loads the pack,
the training queue starts, and continues jobs that were queued before a restart.
"""

from comfy_api.latest import ComfyExtension, io

from .nodes import NODES

WEB_DIRECTORY = "./web"


def _start_services() -> None:
    """The /shielddiff/ routes and the job queue; a second call does nothing (both are once-only)."""
    from server import PromptServer

    from .nodes import job_routes
    from .nodes.training_jobs import manager

    job_routes.register(PromptServer.instance.routes)
    manager()


class ShieldDiffExtension(ComfyExtension):
    async def on_load(self) -> None:
        # Newer ComfyUI (0.30) calls this once, before get_node_list and before it serves routes.
        _start_services()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # ComfyUI 0.3.75 never calls on_load: the routes and the queue start here there.
        _start_services()
        return list(NODES)


async def comfy_entrypoint() -> ShieldDiffExtension:
    return ShieldDiffExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
