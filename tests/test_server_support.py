"""The console's test harness (no tests here): the app in-process with its lifespan, three
users (one per role), an httpx client over the ASGI transport, a reader for server-sent
events, and a real uvicorn server on 127.0.0.1 for the browser tests.

Imported by tests/test_server_*.py and tests/test_console_*.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI

from apollo import events as ev
from apollo.agent import AgentConfig
from apollo.config import Home
from apollo.models import ModelConfig
from apollo.protocols import Store
from apollo.runner import Runner
from apollo.server.accounts import Accounts
from apollo.server.app import create_app
from apollo.server.state import Settings
from apollo.store.base import open_store
from apollo.store.sqlite import SQLiteStore
from apollo.tasks import TaskSpec

TASK = TaskSpec(id="t", title="A test task", instructions="Do the thing.")
USERS = {"admin": "ada", "annotator": "ann", "viewer": "vic"}
"""The user of each role in every harness."""


@dataclass
class Harness:
    app: FastAPI
    store: Store
    accounts: Accounts
    home: Home
    tmp: Path
    tokens: dict[str, str]
    """Role -> that user's bearer token."""
    client: httpx.AsyncClient
    scripts: list[Path] = field(default_factory=list)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def run(self, steps: list[dict[str, Any]], *, task: TaskSpec = TASK, **agent: Any) -> str:
        """Create (not execute) a run whose model is a script of `steps`."""
        path = self.tmp / f"script{len(self.scripts)}.yaml"
        path.write_text(yaml.safe_dump({"name": path.stem, "steps": steps}))
        self.scripts.append(path)
        model = ModelConfig(spec=f"scripted:{path}", options={"path": str(path)})
        return Runner(self.store, self.home).create(task, model, AgentConfig(**agent))

    def log(self, run_id: str, *events: ev.Event) -> list[ev.Event]:
        """Append events to a run straight through the store (a run nobody executes)."""
        return [self.store.append(e) for e in events]

    async def wait_for(self, fn: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            await asyncio.sleep(0.02)

    def types(self, run_id: str) -> list[str]:
        return [e.type for e in self.store.events(run_id)]


def make_users(accounts: Accounts) -> dict[str, str]:
    return {role: accounts.add_user(name, role) for role, name in USERS.items()}


@asynccontextmanager
async def harness(tmp: Path, settings: Settings | None = None, execute: tuple[str, ...] = (),
                  store_url: str | None = None,
                  runner: Callable[[Store, Home], Runner] | None = None,
                  ) -> AsyncIterator[Harness]:
    """The app over a store (default: SQLite in `tmp`); `runner`: makes the hosted runner."""
    store = open_store(store_url or f"sqlite:///{tmp / 'apollo.db'}")
    accounts = Accounts.for_store(store.url)
    tokens = make_users(accounts)
    home = Home(tmp / "home")
    app = create_app(store, home, accounts=accounts, settings=settings, execute=execute,
                     runner=runner(store, home) if runner else None)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield Harness(app, store, accounts, home, tmp, tokens, c)
    finally:
        accounts.close()
        store.close()


# -- server-sent events in-process --------------------------------------------------------


@dataclass
class Streamed:
    status: int
    headers: dict[str, str]
    events: list[dict[str, Any]]
    """Each event as {"id", "event", "data"} (data parsed as JSON)."""
    raw: str


def parse_sse(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            out.append(fields)
    return out


async def read_sse(app: FastAPI, path: str, headers: dict[str, str],
                   until: Callable[[list[dict[str, Any]]], bool],
                   timeout: float = 10.0) -> Streamed:
    """Open a stream on the ASGI app, read events until `until(events)` holds, then
    disconnect as a browser would (the app must end the response)."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 1234),
        "headers": [(b"host", b"testserver"),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items())],
    }
    gone = asyncio.Event()
    sent_request = False
    status = 0
    head: dict[str, str] = {}
    body: list[str] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            head.update({k.decode(): v.decode() for k, v in message.get("headers", [])})
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b"").decode())
            if status != 200 or until(parse_sse("".join(body))):
                gone.set()

    task = asyncio.ensure_future(app(scope, receive, send))
    try:
        await asyncio.wait_for(asyncio.shield(gone.wait()), timeout)
    except TimeoutError:
        raise AssertionError(f"stream {path}: condition not met in {timeout:g} s; got "
                             f"{parse_sse(''.join(body))}") from None
    finally:
        gone.set()
        await asyncio.wait_for(task, 5)
    raw = "".join(body)
    return Streamed(status, head, parse_sse(raw) if status == 200 else [], raw)


# -- a real server on loopback (browser tests, fuzzing) ------------------------------------


@dataclass
class LiveServer:
    url: str
    store: SQLiteStore
    accounts: Accounts
    home: Home
    tokens: dict[str, str]
    tmp: Path
    app: FastAPI
    loop: asyncio.AbstractEventLoop

    def execute(self, *run_ids: str) -> None:
        """Have the server's hosted runner execute runs (scheduled on the server's loop)."""
        self.loop.call_soon_threadsafe(self.app.state.console.host.execute, list(run_ids))

    def run(self, steps: list[dict[str, Any]], *, model: ModelConfig | None = None,
            task: TaskSpec = TASK, **agent: Any) -> str:
        if model is None:
            path = self.tmp / f"live-script-{time.monotonic_ns()}.yaml"
            path.write_text(yaml.safe_dump({"name": path.stem, "steps": steps}))
            model = ModelConfig(spec=f"scripted:{path}", options={"path": str(path)})
        return Runner(self.store, self.home).create(task, model, AgentConfig(**agent))


@contextmanager
def live_server(tmp: Path, settings: Settings | None = None) -> Iterator[LiveServer]:
    """uvicorn serving the console on 127.0.0.1 (a random free port) in a thread; stopped
    (and the thread joined) on exit."""
    import uvicorn

    store = SQLiteStore(tmp / "apollo.db")
    accounts = Accounts.for_store(store.url)
    tokens = make_users(accounts)
    home = Home(tmp / "home")
    app = create_app(store, home, accounts=accounts, settings=settings)
    loops: list[asyncio.AbstractEventLoop] = []

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            loops.append(asyncio.get_running_loop())
        await app(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="console-server")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console server did not start")
            time.sleep(0.01)
        yield LiveServer(f"http://127.0.0.1:{port}", store, accounts, home, tokens, tmp, app,
                         loops[0])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        accounts.close()
        store.close()
