"""ShieldDiff for ComfyUI: nodes that keep Stable Diffusion from generating nudity.

Registers the pack's nodes through ComfyUI's V3 extension API, its /shielddiff/ routes and
web/. Nothing happens at import: no downloads, no model loads. When ComfyUI loads the pack,
the training queue starts, and continues jobs that were queued before a restart.
"""

from comfy_api.latest import ComfyExtension, io

from .nodes import NODES

WEB_DIRECTORY = "./web"


class ShieldDiffExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # ComfyUI calls this once, while it loads custom nodes and before it serves routes
        # (0.3.75 does not call on_load), so the routes and the job queue start here.
        from server import PromptServer

        from .nodes import job_routes
        from .nodes.training_jobs import manager

        job_routes.register(PromptServer.instance.routes)
        manager()
        return list(NODES)


async def comfy_entrypoint() -> ShieldDiffExtension:
    return ShieldDiffExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
