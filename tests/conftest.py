"""Shared pytest fixtures."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import yaml

from apollo.agent import AgentConfig
from apollo.config import Home
from apollo.models import ModelConfig
from apollo.protocols import Store
from apollo.runner import Runner
from apollo.store.sqlite import SQLiteStore
from apollo.tasks import TaskSpec
from fakeserver import FakeOpenAI

os.environ.setdefault("APOLLO_RETRY_BACKOFF_SCALE", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible endpoint on 127.0.0.1, stopped after the test."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "apollo.db")
    yield s
    s.close()


@pytest.fixture
def runner(store: SQLiteStore, tmp_path: Path) -> Runner:
    return Runner(store, Home(tmp_path / "home"), max_concurrent=16)


TASK = TaskSpec(id="t", title="A test task", instructions="Do the thing.")


@pytest.fixture
def scripted(tmp_path: Path, runner: Runner) -> Callable[..., str]:
    """Create a run of TASK driven by a script given as a dict; returns the run id."""
    count = 0

    def make(script: dict[str, Any], *, task: TaskSpec = TASK, **agent: Any) -> str:
        nonlocal count
        count += 1
        path = tmp_path / f"script{count}.yaml"
        path.write_text(yaml.safe_dump(script))
        model = ModelConfig(spec=f"scripted:{path}", options={"path": str(path)})
        return runner.create(task, model, AgentConfig(**agent))

    return make


class InThread:
    """`asyncio.run(work())` in a thread of its own, so that the test can act meanwhile (stop
    the database, steer runs, kill a process)."""

    def __init__(self, work: Callable[[], Awaitable[Any]]):
        self.result: Any = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], Awaitable[Any]]) -> None:
        async def main() -> Any:
            return await work()

        self.result = asyncio.run(main())

    def join(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"still running after {timeout} s"
        return self.result


# -- real components: PostgreSQL and Ray ------------------------------------------------------


def need(component: str, install: str) -> None:
    """A component a test needs is missing: fail in CI (`CI=true`), skip on a local machine."""
    message = f"{component} is not available here: {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 2024, which this machine uses)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != 2024:
            return port


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server programs (Debian keeps them off PATH)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    return versions[-1].parent if versions else None


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a random port, in its own directory,
    run as the `postgres` user when the tests run as root (initdb refuses root). `fsync` is
    off: the tests kill processes, never the machine, so the OS cache keeps what was written."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="apollo-pg-"))  # short: the socket lives here
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")
        self.start()

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bindir / program), *args],
                              capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{program} failed: {done.stderr.strip()}\n{tail}")

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
                   " -c fsync=off -c max_connections=300")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: a clean shutdown; `immediate`: as if the server crashed."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, url: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement (on a store's URL: in its schema) and return its rows."""
        import psycopg

        with psycopg.connect(url or self.url(), autocommit=True) as conn:
            cur = conn.execute(statement.encode())
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        with suppress(RuntimeError):
            self.stop("fast")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, stopped at its end."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need("psycopg", "pip install 'apollo-rollout[postgres]'")
    bindir = postgres_bin()
    if bindir is None:
        need("PostgreSQL", "apt-get install postgresql")
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A store URL of its own for the test: a new, empty schema (a database would cost half a
    second), first on the connection's search_path; dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    postgres_server.sql(f"CREATE SCHEMA {name}")
    yield f"{postgres_server.url()}?options=-csearch_path%3D{name}"
    with suppress(Exception):  # the server may have been stopped by a failed outage test
        postgres_server.sql(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def anyio_backend() -> str:
    """The async tests (`pytest.mark.anyio`) run on asyncio."""
    return "asyncio"


@pytest.fixture
async def h(tmp_path: Path, any_store_url: str, anyio_backend: str) -> AsyncIterator[Any]:
    """The console in-process (`test_server_support.Harness`) over each store kind in turn."""
    from test_server_support import harness

    async with harness(tmp_path, store_url=any_store_url) as hh:
        yield hh


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty store of each kind in turn."""
    return (f"sqlite:///{tmp_path / 'apollo.db'}" if request.param == "sqlite"
            else str(request.getfixturevalue("pg_url")))


@pytest.fixture
def any_store(any_store_url: str) -> Iterator[Store]:
    """Each store implementation in turn: the store test suite runs against both."""
    from apollo.store.base import open_store

    s = open_store(any_store_url)
    yield s
    s.close()


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local Ray instance for the session (`ray.init(num_cpus=2)`); its GCS address."""
    for key, value in (("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"), ("RAY_AUTH_MODE", "disabled"),
                       ("RAY_USAGE_STATS_ENABLED", "0")):
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        need("Ray", "pip install 'apollo-rollout[ray]'")
    temp = tempfile.mkdtemp(prefix="ray-")
    context = ray.init(address="local", num_cpus=2, include_dashboard=False,  # a new one
                       object_store_memory=200 * 1024**2, _temp_dir=temp, log_to_driver=False)
    try:
        yield str(context.address_info["gcs_address"])
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
