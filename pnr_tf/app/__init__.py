"""A local web page for pose transfer: photos in, a chosen or dragged pose, the generated person out.

    python -m pnr_tf.app --model runs/quickstart [--poses data/synthetic/annotations.csv] [--port 8000]

The server is a minimal ASGI app (Starlette, served by Uvicorn): three routes, JSON in and out, the
page one static HTML file with a little plain JavaScript. ``create_app`` builds it around a
``PageService`` (pnr_tf/app/service.py), which does the work and the checks.
"""

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.responses import JSONResponse
from starlette.routing import Route

from pnr_tf.app.service import MAX_IMAGE_BYTES
from pnr_tf.app.service import MAX_SOURCES
from pnr_tf.app.service import PageService  # noqa: F401  (part of this package's API)
from pnr_tf.app.service import RequestError

PAGE = Path(__file__).with_name("page.html")
# Base64 adds a third; a little room for the JSON around the images.
MAX_REQUEST_BYTES = MAX_SOURCES * MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024


def create_app(service):
    """The Starlette app serving ``service`` (a PageService)."""
    page = PAGE.read_text()

    async def index(request):
        return HTMLResponse(page)

    async def poses(request):
        return JSONResponse(service.gallery())

    async def generate(request: Request):
        try:
            declared = int(request.headers.get("content-length", "0"))
            if declared > MAX_REQUEST_BYTES:
                raise RequestError(413, f"the request is {declared // (1024 * 1024)} MB; at most {MAX_REQUEST_BYTES // (1024 * 1024)} MB")
            body = await request.body()
            if len(body) > MAX_REQUEST_BYTES:
                raise RequestError(413, f"the request is larger than {MAX_REQUEST_BYTES // (1024 * 1024)} MB")
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RequestError(400, "the request is not JSON") from None
            return JSONResponse(await run_in_threadpool(service.generate, payload))
        except RequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)

    return Starlette(routes=[Route("/", index), Route("/api/poses", poses), Route("/api/generate", generate, methods=["POST"])])
