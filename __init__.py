"""ShieldDiff for ComfyUI: nodes that keep Stable Diffusion from generating nudity.

Registers the pack's nodes through ComfyUI's V3 extension API and serves web/.
Nothing else happens at import: no downloads, no model loads.
"""

from comfy_api.latest import ComfyExtension, io

from .nodes import NODES

WEB_DIRECTORY = "./web"


class ShieldDiffExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> ShieldDiffExtension:
    return ShieldDiffExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
