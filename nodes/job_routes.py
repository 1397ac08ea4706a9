"""HTTP routes of the training panel, under /shielddiff/ (JSON never holds NaN or infinity).

    GET  /shielddiff/jobs                           every job, newest first
    GET  /shielddiff/jobs/{job_id}                  one job: status, metrics per epoch, latest samples, log tail
    POST /shielddiff/jobs/{job_id}/cancel           stop a queued or running job (a checkpoint is kept)
    POST /shielddiff/jobs/{job_id}/resume           queue a cancelled or failed job to continue
    POST /shielddiff/jobs/{job_id}/publish          copy a finished LoRA into models/loras again (after that failed)
    GET  /shielddiff/jobs/{job_id}/samples/{name}   one sample image (PNG)

Ids and names are checked against the jobs folder's own listing: no request can reach a file
outside it.
"""

from __future__ import annotations

import functools
import json

from aiohttp import web

from ..trainer.job_queue import JobError, NoSuchJob
from .training_jobs import manager

_dumps = functools.partial(json.dumps, allow_nan=False)


def _answer(call):
    try:
        return web.json_response(call(), dumps=_dumps)
    except NoSuchJob as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except JobError as exc:
        return web.json_response({"error": str(exc)}, status=409)


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

    @routes.post("/shielddiff/jobs/{job_id}/cancel")
    async def cancel_job(request):
        return _answer(lambda: manager().cancel(request.match_info["job_id"]))

    @routes.post("/shielddiff/jobs/{job_id}/resume")
    async def resume_job(request):
        return _answer(lambda: manager().resume(request.match_info["job_id"]))

    @routes.post("/shielddiff/jobs/{job_id}/publish")
    async def publish_job(request):
        return _answer(lambda: manager().publish(request.match_info["job_id"]))

    @routes.get("/shielddiff/jobs/{job_id}/samples/{name}")
    async def sample_image(request):
        try:
            path = manager().sample_path(request.match_info["job_id"], request.match_info["name"])
        except NoSuchJob as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.FileResponse(path, headers={"Content-Type": "image/png", "Cache-Control": "no-cache"})
