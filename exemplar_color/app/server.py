"""The web app's routes (Starlette): one page, its own static files, and a small JSON API.

Security for a server on the user's machine: only the page's own files (a fixed list read from the package)
and, for thumbnails, gallery images looked up by their integer id in the index are ever read from disk — no
part of a request becomes a path; uploads are size-limited while they stream in and decoded with the CLI's
pixel limit; nothing is unpickled; only requests addressed to this machine's loopback names (or the host the
user chose) are answered (a guard against DNS rebinding); a request that changes state must come from the
page itself (same ``Origin`` and the ``X-Exemplar-Color: 1`` header), so another site the user visits cannot
make the app work; uploads are decoded one at a time under the app's own pixel limit; a queued or running job,
and the uploads it needs, are never forgotten; only gallery images the app can serve are recommended.

API: ``GET /api/info``; ``POST /api/upload?role=target|reference`` (body: the image file) -> upload id;
``POST /api/recommend/{upload}`` -> gallery thumbnails; ``GET /api/gallery/{id}/thumb``; ``POST /api/jobs``
(``{"target": id, "references": [{"gallery": 3}, {"upload": "id"}]}``) -> job id; ``GET /api/jobs/{job}``
(state, stage, progress); ``GET /api/jobs/{job}/{image,confidence,labels}.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ExemplarColorError, ImageError
from .jobs import MAX_UPLOAD_PIXELS, Job, UploadStore, Worker, new_id, png_bytes

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}
MAX_REFERENCES = 8
RECOMMENDATIONS = 8
THUMB = 160
LOOPBACK = ["127.0.0.1", "localhost", "[::1]", "::1"]
CSRF_HEADER = "X-Exemplar-Color"  # the page sends it (value 1) with every POST


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class SameOriginOnly:
    """ASGI middleware: a request that changes state (any method but GET/HEAD/OPTIONS) must come from the
    app's own page: an ``Origin`` other than this server's is refused, and so is a request without the
    ``X-Exemplar-Color`` header, which a page of another site cannot send here without a CORS preflight this
    server never grants (a cross-origin ``text/plain`` form or fetch cannot add it)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            origin, own = headers.get("origin"), f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            why = (f"requests from another site ({origin}) are refused" if origin is not None and origin != own
                   else f"the {CSRF_HEADER} header is missing: requests come from the app's own page"
                   if headers.get(CSRF_HEADER.lower()) != "1" else None)
            if why is not None:
                await _error(why, 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(make_colorizer: Callable[[], Any], *, index: str | os.PathLike | None = None,
               max_upload_bytes: int = 50 * 2**20, host: str = "127.0.0.1", job_limit: int = 32,
               max_upload_pixels: int = MAX_UPLOAD_PIXELS, colours_alone: bool = False) -> Starlette:
    """The app. ``make_colorizer`` builds the :class:`~exemplar_color.Colorizer` (with ``index`` when
    recommendations are wanted) on the worker thread, at the first request that needs it. At most
    ``job_limit`` jobs are kept (finished ones are forgotten first; queued or running ones never: past it,
    a new job is refused); uploads are decoded one at a time, up to ``max_upload_pixels``. With
    ``colours_alone`` (a model that colours with no reference), a job may come with no reference."""
    files = {name: (resources.files(__package__).joinpath("static", name).read_bytes(), kind)
             for name, kind in STATIC.items()}
    uploads = UploadStore(max_pixels=max_upload_pixels)
    worker = Worker(make_colorizer)
    jobs: dict[str, Job] = {}

    def page(request: Request) -> Response:
        body, kind = files["index.html"]
        return Response(body, media_type=kind, headers={"Cache-Control": "no-store"})

    def static(request: Request) -> Response:
        found = files.get(request.path_params["name"])
        if found is None:
            return _error("no such file", 404)
        return Response(found[0], media_type=found[1])

    def info(request: Request) -> JSONResponse:
        return JSONResponse({"index": index is not None, "max_upload_bytes": max_upload_bytes,
                             "max_references": MAX_REFERENCES, "colours_alone": colours_alone})

    async def upload(request: Request) -> JSONResponse:
        role = request.query_params.get("role", "target")
        if role not in ("target", "reference"):
            return _error(f"role must be target or reference, not {role!r}")
        name = unquote(request.headers.get("x-filename", ""))[:200] or "upload"
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes:
            return _error(f"{name}: the file is {int(declared):,} bytes, over the limit of {max_upload_bytes:,}", 413)
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_upload_bytes:
                return _error(f"{name}: the file is over the limit of {max_upload_bytes:,} bytes", 413)
        if not data:
            return _error(f"{name}: the file is empty")
        try:
            up = await run_in_threadpool(uploads.add, bytes(data), name)
        except ImageError as e:
            return _error(f"{name}: {e.problem}")
        if role == "reference" and not up.colour:
            return _error(f"{name}: this reference is grayscale, it has no colour to transfer; choose a colour photo")
        return JSONResponse({"id": up.id, "name": up.name, "width": up.width, "height": up.height,
                             "colour": up.colour})

    async def recommend(request: Request) -> JSONResponse:
        if index is None:
            return _error("no gallery index: start the app with --index PATH", 404)
        up = uploads.get(request.path_params["upload"])
        if up is None:
            return _error("unknown or expired upload; upload the photo again", 404)

        def run() -> list[dict[str, Any]]:  # only what the app can serve (a file under the gallery root)
            recs = worker.colorizer().recommend(up.path, k=RECOMMENDATIONS * 3)
            return [{"id": r.id, "name": Path(r.relpath).name, "score": round(r.score, 4)} for r in recs
                    if _gallery_path(r.id) is not None][:RECOMMENDATIONS]

        try:
            return JSONResponse({"recommendations": await asyncio.wrap_future(worker.submit(run))})
        except ExemplarColorError as e:
            return _error(str(e), 500)

    def _gallery_path(gid: int) -> Path | None:
        gallery = worker.colorizer().index
        if not 0 <= gid < len(gallery.store) or gid in set(gallery.removed.tolist()):
            return None
        root = gallery.root.resolve()
        path = (root / gallery.store.paths[gid]).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None

    async def thumb(request: Request) -> Response:
        if index is None:
            return _error("no gallery index", 404)
        gid = request.path_params["gid"]

        def run() -> bytes | None:
            path = _gallery_path(gid)
            if path is None:
                return None
            with Image.open(path) as img:
                img.draft("RGB", (THUMB * 2, THUMB * 2))
                img = img.convert("RGB")
                img.thumbnail((THUMB * 2, THUMB * 2))
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=85)
                return buf.getvalue()

        try:
            data = await asyncio.wrap_future(worker.submit(run))
        except (OSError, ExemplarColorError):
            data = None
        if data is None:
            return _error(f"no gallery image {gid}", 404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def start_job(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error("expected JSON: {\"target\": ID, \"references\": [...]}")
        target = uploads.get(str(body.get("target", ""))) if isinstance(body, dict) else None
        if target is None:
            return _error("unknown or expired target upload; upload the photo again", 404)
        busy = [j for j in jobs.values() if j.state in ("queued", "running")]
        if len(busy) >= job_limit:
            return _error(f"{len(busy)} jobs are waiting or running; try again when one has finished", 503)
        refs_in = body.get("references") or []
        if not isinstance(refs_in, list) or not (refs_in or colours_alone):
            return _error("select at least one reference")
        if len(refs_in) > MAX_REFERENCES:
            return _error(f"select at most {MAX_REFERENCES} references")
        refs: list[tuple[str, Any]] = []
        for r in refs_in:
            if isinstance(r, dict) and isinstance(r.get("upload"), str) and uploads.get(r["upload"]):
                refs.append(("upload", uploads.get(r["upload"])))
            elif isinstance(r, dict) and isinstance(r.get("gallery"), int) and index is not None:
                refs.append(("gallery", r["gallery"]))
            else:
                return _error(f"unknown reference {r!r}; select it again", 404)
        names = [u.name if kind == "upload" else f"gallery #{u}" for kind, u in refs]
        needed = [target.id] + [u.id for kind, u in refs if kind == "upload"]
        if uploads.acquire(needed) is None:  # kept until the job ends
            return _error("an upload expired; upload the photo again", 404)
        job = Job(new_id(), names, width=target.width, height=target.height)
        for old in [k for k, j in jobs.items() if j.state in ("done", "error")][:max(0, len(jobs) + 1 - job_limit)]:
            jobs.pop(old)  # the oldest finished jobs only: never one queued or running
        jobs[job.id] = job
        worker.submit(_run_job, job, target, refs, needed)
        return JSONResponse(job.to_dict(), status_code=202)

    def _run_job(job: Job, target: Any, refs: list[tuple[str, Any]], needed: list[str]) -> None:
        try:
            _colorize_job(job, target, refs)
        finally:
            uploads.release(needed)

    def _colorize_job(job: Job, target: Any, refs: list[tuple[str, Any]]) -> None:
        job.state = "running"
        try:
            c = worker.colorizer(job)
            paths = []
            for kind, r in refs:
                if kind == "upload":
                    paths.append(r.path)
                else:
                    p = _gallery_path(r)
                    if p is None:
                        raise ExemplarColorError(f"gallery image {r} is not available")
                    paths.append(p)
            if paths:
                job.stage, job.progress = f"matching {len(paths)} reference{'s' * (len(paths) > 1)} and colorizing", 0.2
                result = c.colorize(target.path, paths if len(paths) > 1 else paths[0])
            else:
                job.stage, job.progress = "colorizing from the photo alone (no reference)", 0.2
                result = c.colorize_alone(target.path)
            job.stage, job.progress = "writing the full-resolution PNG", 0.85
            job.outputs = {"image": png_bytes(result.image), "confidence": png_bytes(result.confidence_image()),
                           "labels": png_bytes(result.label_image())}
            job.stage, job.progress, job.state = "done", 1.0, "done"
        except ExemplarColorError as e:
            job.state, job.error = "error", str(e).replace(str(target.path), target.name)
        except Exception as e:  # noqa: BLE001 - the app must keep running and say what happened
            job.state, job.error = "error", f"unexpected {type(e).__name__}: {e}"

    def job_status(request: Request) -> JSONResponse:
        job = jobs.get(request.path_params["job"])
        if job is None:
            return _error("unknown or expired job", 404)
        return JSONResponse(job.to_dict())

    def job_file(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        what = request.path_params["what"]
        if job is None or what not in ("image", "confidence", "labels"):
            return _error("unknown or expired job", 404)
        if job.state != "done":
            return _error(f"the job is {job.state}", 409)
        headers = {"Content-Disposition": 'attachment; filename="colorized.png"'} if what == "image" else {}
        return Response(job.outputs[what], media_type="image/png", headers=headers)

    routes = [
        Route("/", page), Route("/static/{name}", static), Route("/api/info", info),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/recommend/{upload}", recommend, methods=["POST"]),
        Route("/api/gallery/{gid:int}/thumb", thumb),
        Route("/api/jobs", start_job, methods=["POST"]),
        Route("/api/jobs/{job}", job_status),
        Route("/api/jobs/{job}/{what}.png", job_file),
    ]
    # bound to every interface on purpose: any Host; otherwise loopback names and the chosen host only
    allowed = ["*"] if host in ("0.0.0.0", "::", "") else sorted(set(LOOPBACK + [host]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        worker.close()
        uploads.close()

    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed),
                                               Middleware(SameOriginOnly)], lifespan=lifespan)
    app.state.uploads, app.state.jobs, app.state.worker = uploads, jobs, worker
    return app
