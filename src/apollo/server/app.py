"""The FastAPI app: a thin layer over the store (either kind) and the runner (any executor).

`create_app(store, home)` wires the API routers, the live streams, the pages and the static
assets, and a lifespan that folds the log into the fleet view, follows the store's feed
(`Hub`) and hosts the runner (`RunHost`). Every response carries a strict
Content-Security-Policy (no inline script, nothing from another origin), and every route but
/login and /static needs a login (see `auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apollo import __version__
from apollo.config import Home
from apollo.errors import ApolloError, ConfigError, NotFound, RunBusy, StoreError
from apollo.protocols import Store
from apollo.runner import Runner
from apollo.server import api, manage, pages, sse
from apollo.server.accounts import Accounts
from apollo.server.api import Viewer
from apollo.server.fleet import Fleet
from apollo.server.host import RunHost
from apollo.server.hub import Hub
from apollo.server.state import Console, Settings

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
_ERROR_STATUS: list[tuple[type[ApolloError], int]] = [
    (NotFound, 404), (RunBusy, 409), (ConfigError, 422), (StoreError, 503)]


class SecurityHeaders:
    """Adds the security headers to every HTTP response (a plain ASGI middleware, so
    streaming responses pass through untouched)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413 (read here, then handed on)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        chunks: list[bytes] = []
        size = int(declared) if declared.isdigit() else 0
        more = size <= self.limit
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size = max(size, sum(map(len, chunks)))
            more = message.get("more_body", False) and size <= self.limit
        if size > self.limit:
            response = JSONResponse({"detail": f"request body over {self.limit} bytes"},
                                    status_code=413)
            await response(scope, receive, send)
            return
        body, handed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal handed
            if handed:
                return await receive()
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one line per problem, e.g. `body.text: String should have at most 8000
    characters`."""
    assert isinstance(exc, RequestValidationError)
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        lines.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return JSONResponse({"detail": "; ".join(lines) or "invalid request"}, status_code=422)


def _apollo_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((s for cls, s in _ERROR_STATUS if isinstance(exc, cls)), 400)
    return JSONResponse({"detail": str(exc)}, status_code=status)


def create_app(store: Store, home: Home, *, accounts: Accounts | None = None,
               settings: Settings | None = None, execute: Sequence[str] = (),
               runner: Runner | None = None) -> FastAPI:
    """The console app over an opened store (SQLite or PostgreSQL); `execute`: run ids to
    execute at start-up; `runner`: where runs started from the console execute (default:
    in this process, `settings.max_concurrent` at a time; see `apollo.executors`)."""
    settings = settings or Settings()
    own_accounts = accounts is None
    accounts = accounts or Accounts.for_store(store.url)
    fleet = Fleet(settings.thresholds)
    hub = Hub(store, fleet)
    host = RunHost(runner or Runner(store, home, max_concurrent=settings.max_concurrent))
    state = Console(store, home, accounts, fleet, hub, host, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        host.execute(execute)
        adopting = (asyncio.create_task(host.adopt(settings.adopt_every_s), name="apollo-adopt")
                    if settings.adopt_every_s else None)
        try:
            yield
        finally:
            if adopting is not None:
                adopting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await adopting
            await host.close()
            await hub.close()
            if own_accounts:
                accounts.close()

    app = FastAPI(
        title="Apollo console API", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,
        description="Watch runs live, guide them, label their actions. Authenticate with "
        "`Authorization: Bearer TOKEN` (from `apollo users add`).")
    app.state.console = state
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApolloError, _apollo_error)
    for router in (api.router, sse.router, manage.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Viewer) -> JSONResponse:
        return JSONResponse(app.openapi())

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app
