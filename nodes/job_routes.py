"""HTTP routes of the training panel, under /shielddiff/ (JSON never holds NaN or infinity).

    GET  /shielddiff/jobs?limit=N&before=ID         a page of jobs, newest first: {"jobs", "total", "next"};
                                                    limit 1..1000 (default 50), before: the "next" of the
                                                    page before (ids begin with their creation time)
    GET  /shielddiff/jobs/{job_id}                  one job: status, metrics per epoch, latest samples, log tail
    POST /shielddiff/jobs/{job_id}/cancel           stop a queued or running job (a checkpoint is kept)
    POST /shielddiff/jobs/{job_id}/resume           queue a cancelled or failed job to continue
    POST /shielddiff/jobs/{job_id}/publish          copy a finished LoRA into models/loras again (after that failed)
    POST /shielddiff/jobs/{job_id}/export?epoch=N   publish the LoRA of a kept checkpoint as <name>-epochN
    POST /shielddiff/jobs/{job_id}/extend?epochs=K  train a finished job K more epochs (a new LoRA file)
    POST /shielddiff/jobs/{job_id}/evaluate         queue the before/after evaluation of a finished job's LoRA
                                                    (once; the panel asks for it when a job finishes)
    GET  /shielddiff/jobs/{job_id}/samples/{name}   one sample image (PNG)
    GET  /shielddiff/jobs/{job_id}/before_after.png an evaluation job's before/after grid (PNG)
    DELETE /shielddiff/jobs/{job_id}                remove a done, cancelled or failed job's folder (never the
                                                    LoRA it published; a queued or running job is refused, 409)

Several ComfyUI instances may share one jobs folder: each lists every job; a job runs in the one that
claimed it, and a cancel sent to another instance reaches it through the job's cancel request file.
Every handler does its file work in a worker thread, never on the event loop.

Ids and names are checked against the jobs folder's own listing: no request can reach a file
outside it. Routes that change a job refuse (403) a request whose Origin is `null` or another site
than the server's own (a page elsewhere cannot cancel or resume jobs through the user's browser);
a request without an Origin (curl, scripts) is not a browser's and is served.
"""

from __future__ import annotations

import asyncio
import functools
import json
from urllib.parse import urlsplit

from aiohttp import web

from ..trainer.jobs.queue import JOB_ID, PAGE_SIZE, JobError, NoSuchJob
from .training_jobs import manager

_dumps = functools.partial(json.dumps, allow_nan=False)
MAX_PAGE = 1000


class BadQueryError(ValueError):
    """A query value the route cannot use (answered 400)."""


async def _answer(call):
    """Run `call` in a worker thread (it reads job folders) and answer its result as JSON."""
    try:
        return web.json_response(await asyncio.to_thread(call), dumps=_dumps)
    except BadQueryError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except NoSuchJob as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except JobError as exc:
        return web.json_response({"error": str(exc)}, status=409)


def _page_query(query) -> tuple[int, str | None]:
    """`limit` and `before` of the list route, checked."""
    raw = query.get("limit", str(PAGE_SIZE))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE or not raw.strip().isdigit():
        raise BadQueryError(f"limit must be a whole number from 1 to {MAX_PAGE}, not {raw!r}")
    before = query.get("before")
    if before is not None and not JOB_ID.match(before):
        raise BadQueryError(f"before must be a job id such as 20260101-120000-0a1b2c (a page's 'next'), not {before!r}")
    return limit, before


def _int_query(query, name: str) -> int:
    """A whole number the route needs in its query string, checked."""
    raw = query.get(name)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise BadQueryError(
            f"{name} must be a whole number in the query string (e.g. ?{name}=10), got {raw!r}"
        ) from None


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
        return await _answer(lambda: call(request.match_info["job_id"], request.query))

    return route


_registered: set[int] = set()


def register(routes: web.RouteTableDef) -> None:
    """Add the routes to ComfyUI's table (once, however often the pack is asked for its nodes)."""
    if id(routes) in _registered:
        return
    _registered.add(id(routes))

    @routes.get("/shielddiff/jobs")
    async def list_jobs(request):
        def page():
            limit, before = _page_query(request.query)
            return manager().page(limit, before)

        return await _answer(page)

    @routes.get("/shielddiff/jobs/{job_id}")
    async def one_job(request):
        return await _answer(lambda: manager().detail(request.match_info["job_id"]))

    routes.post("/shielddiff/jobs/{job_id}/cancel")(_changing(lambda job_id, _: manager().cancel(job_id)))
    routes.post("/shielddiff/jobs/{job_id}/resume")(_changing(lambda job_id, _: manager().resume(job_id)))
    routes.post("/shielddiff/jobs/{job_id}/publish")(_changing(lambda job_id, _: manager().publish(job_id)))
    routes.post("/shielddiff/jobs/{job_id}/export")(
        _changing(lambda job_id, query: manager().export(job_id, _int_query(query, "epoch")))
    )
    routes.post("/shielddiff/jobs/{job_id}/extend")(
        _changing(lambda job_id, query: manager().extend(job_id, _int_query(query, "epochs")))
    )
    routes.post("/shielddiff/jobs/{job_id}/evaluate")(_changing(lambda job_id, _: manager().evaluate_trained(job_id)))
    routes.delete("/shielddiff/jobs/{job_id}")(_changing(lambda job_id, _: manager().delete(job_id)))

    async def _png(call):
        try:
            path = await asyncio.to_thread(call)
        except NoSuchJob as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.FileResponse(path, headers={"Content-Type": "image/png", "Cache-Control": "no-cache"})

    @routes.get("/shielddiff/jobs/{job_id}/samples/{name}")
    async def sample_image(request):
        return await _png(lambda: manager().sample_path(request.match_info["job_id"], request.match_info["name"]))

    @routes.get("/shielddiff/jobs/{job_id}/before_after.png")
    async def pair_grid(request):
        return await _png(lambda: manager().store.pair_grid_path(request.match_info["job_id"]))
