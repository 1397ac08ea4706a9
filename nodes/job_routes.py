"""HTTP routes of the training panel, under /shielddiff/ (JSON never holds NaN or infinity).

    GET  /shielddiff/jobs                           every job, newest first
    GET  /shielddiff/jobs/{job_id}                  one job: status, metrics per epoch, latest samples, log tail
    POST /shielddiff/jobs/{job_id}/cancel           stop a queued or running job (a checkpoint is kept)
    POST /shielddiff/jobs/{job_id}/resume           queue a cancelled or failed job to continue
    POST /shielddiff/jobs/{job_id}/publish          copy a finished LoRA into models/loras again (after that failed)
    GET  /shielddiff/jobs/{job_id}/samples/{name}   one sample image (PNG)

Ids and names are checked against the jobs folder's own listing: no request can reach a file
outside it. Routes that change a job refuse (403) a request whose Origin is `null` or another site
than the server's own (a page elsewhere cannot cancel or resume jobs through the user's browser);
a request without an Origin (curl, scripts) is not a browser's and is served.
"""

from __future__ import annotations

import functools
import json
from urllib.parse import urlsplit

from aiohttp import web

from ..trainer.jobs.queue import JobError, NoSuchJob
from .training_jobs import manager

_dumps = functools.partial(json.dumps, allow_nan=False)


def _answer(call):
    try:
        return web.json_response(call(), dumps=_dumps)
    except NoSuchJob as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except JobError as exc:
        return web.json_response({"error": str(exc)}, status=409)


def _foreign_origin(request) -> str | None:
    """The request's Origin when it is not this server's own (nor the one ComfyUI's CORS option allows)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    try:
        from comfy.cli_args import args

        allowed = args.enable_cors_header
    except ImportError:
        allowed = None
    if allowed and allowed != "*" and origin.rstrip("/") == allowed.rstrip("/"):
        return None
    parts = urlsplit(origin)
    if parts.scheme in ("http", "https") and parts.netloc and parts.netloc.lower() == (request.host or "").lower():
        return None
    return origin


def _changing(call):
    """A route that changes a job: refused for requests from another origin."""

    async def route(request):
        origin = _foreign_origin(request)
        if origin is not None:
            return web.json_response(
                {
                    "error": f"refused: this request comes from origin {origin!r}, not from this ComfyUI "
                    f"({request.scheme}://{request.host}); open ComfyUI's own page to change jobs"
                },
                status=403,
            )
        return _answer(lambda: call(request.match_info["job_id"]))

    return route


_registered: set[int] = set()


def register(routes: web.RouteTableDef) -> None:
    """Add the routes to ComfyUI's table (once, however often the pack is asked for its nodes)."""
    if id(routes) in _registered:
        return
    _registered.add(id(routes))

    @routes.get("/shielddiff/jobs")
    async def list_jobs(request):
        return _answer(lambda: {"jobs": manager().summaries()})

    @routes.get("/shielddiff/jobs/{job_id}")
    async def one_job(request):
        return _answer(lambda: manager().detail(request.match_info["job_id"]))

    routes.post("/shielddiff/jobs/{job_id}/cancel")(_changing(lambda job_id: manager().cancel(job_id)))
    routes.post("/shielddiff/jobs/{job_id}/resume")(_changing(lambda job_id: manager().resume(job_id)))
    routes.post("/shielddiff/jobs/{job_id}/publish")(_changing(lambda job_id: manager().publish(job_id)))

    @routes.get("/shielddiff/jobs/{job_id}/samples/{name}")
    async def sample_image(request):
        try:
            path = manager().sample_path(request.match_info["job_id"], request.match_info["name"])
        except NoSuchJob as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.FileResponse(path, headers={"Content-Type": "image/png", "Cache-Control": "no-cache"})
