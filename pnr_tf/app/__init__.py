"""A local web page for pose transfer: photos in, a chosen or dragged pose, the generated person out.

    python -m pnr_tf.app --model runs/quickstart [--poses data/synthetic/annotations.csv] [--port 8000]

The server is a minimal ASGI app (Starlette, served by Uvicorn): three routes, JSON in and out, the
page one static HTML file with a little plain JavaScript. ``create_app`` builds it around a
``PageService`` (pnr_tf/app/service.py), which does the work and the checks.

Who may use it: requests must name a known host (loopback names, the bound address, --allowed-host;
others get 400), and a generation must be an application/json POST whose Origin, when the browser
sends one, is the page's own (415 / 403 otherwise), so another web site open in the same browser
cannot drive it, directly or through DNS rebinding. Bodies are read no further than the size limit.

How much it holds: at most ``max_requests`` generation requests at once (their bodies read, waiting or
running; more get 503 before their bodies are read), of which ``generations_at_once`` decode photos and
run the model. Memory is then bounded by that many bodies and that many generations' working sets.
"""

import asyncio
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.responses import JSONResponse
from starlette.routing import Route

from pnr_tf.app.service import MAX_IMAGE_BYTES
from pnr_tf.app.service import MAX_SOURCES
from pnr_tf.app.service import PageService  # noqa: F401  (part of this package's API)
from pnr_tf.app.service import RequestError
from pnr_tf.data.annotations import parse_json

PAGE = Path(__file__).with_name("page.html")
# Base64 adds a third; a little room for the JSON around the images.
MAX_REQUEST_BYTES = MAX_SOURCES * MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024
# Generation requests admitted at once, and generations run at once (one per core of a small machine:
# more only share the cores and multiply the decoded photos held).
MAX_REQUESTS = 8
GENERATIONS_AT_ONCE = 2


# Host names the page answers to unless told others: this machine's loopback names.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def allowed_hosts(bound_host, extra=()):
    """Loopback names, the address the server is bound to (unless it is every interface) and ``extra``."""
    hosts = list(LOOPBACK_HOSTS)
    if bound_host not in ("0.0.0.0", "::", "[::]", ""):
        hosts.append(f"[{bound_host}]" if ":" in bound_host and not bound_host.startswith("[") else bound_host)
    return [*dict.fromkeys([*hosts, *extra])]


def request_problem(request):
    """Why a generation request is refused before its body is read (status, message), or None.

    Only the page itself may post: a JSON body (a cross-site form or text/plain POST cannot send one
    without the browser asking first, which this server never grants), and an Origin, when the browser
    sends one, that is the page's own. The Host header was checked already (TrustedHostMiddleware):
    a DNS-rebinding page reaches us under its own name and is refused there.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        return 415, f"the request must be application/json, got {media_type or 'no content type'}"
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        return 403, f"requests from {origin} are not accepted; only the page at {own} may generate"
    return None


async def limited_body(request, limit=MAX_REQUEST_BYTES):
    """The request body, read no further than ``limit`` bytes (declared or not: chunked bodies have no length)."""
    megabytes = limit // (1024 * 1024)
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        raise RequestError(400, "the Content-Length header is not a number")
    if declared is not None and int(declared) > limit:
        raise RequestError(413, f"the request is {int(declared) // (1024 * 1024)} MB; at most {megabytes} MB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"the request is larger than {megabytes} MB")
    return bytes(body)


def request_json(body):
    try:
        return parse_json(body)
    except ValueError:  # UnicodeDecodeError is one too
        raise RequestError(400, "the request is not JSON") from None


def create_app(service, hosts=LOOPBACK_HOSTS, max_requests=MAX_REQUESTS, generations_at_once=GENERATIONS_AT_ONCE):
    """The Starlette app serving ``service`` (a PageService) under the host names ``hosts`` (others get 400)."""
    page = PAGE.read_text()
    admitted = 0  # generation requests between admission and answer; one event loop, so no lock
    running = asyncio.Semaphore(generations_at_once)

    async def index(request):
        return HTMLResponse(page)

    async def poses(request):
        return JSONResponse(service.gallery())

    async def generate(request: Request):
        nonlocal admitted
        problem = request_problem(request)
        if problem is not None:
            return JSONResponse({"error": problem[1]}, status_code=problem[0])
        if admitted >= max_requests:
            busy = f"busy: {max_requests} generations are in progress or waiting; try again in a moment"
            return JSONResponse({"error": busy}, status_code=503, headers={"Retry-After": "1"})
        admitted += 1
        try:
            payload = request_json(await limited_body(request))
            async with running:
                return JSONResponse(await run_in_threadpool(service.generate, payload))
        except RequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        finally:
            admitted -= 1

    routes = [Route("/", index), Route("/api/poses", poses), Route("/api/generate", generate, methods=["POST"])]
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts), www_redirect=False)])
