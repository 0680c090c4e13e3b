"""The PostgreSQL store (psycopg 3): the store protocol for many processes on many machines.

Writing. Each process has one writer thread that commits whatever is queued in one transaction
(group commit). Every append transaction first locks the single row of `feed`, then the rows of
the runs it appends to, so appends from every process and machine are serialised at commit
granularity:
- `seq` is `runs.last_seq + 1`, computed under that lock and written in the same transaction, so
  it is gap-free and unique per run whatever the number of writers (a rolled-back transaction
  takes no number; `UNIQUE (run_id, seq)` backs it up);
- the global id (`events.id`, the order of `feed()`) is given out under the same lock, so ids
  follow commit order: a reader that has seen id N never later finds a smaller id appear (a
  sequence would not promise that, and a fleet stream would skip events).
Event times come from the database's clock, one clock for every machine.

Waking. Each append transaction sends `NOTIFY apollo_events` naming the runs it touched; the
notification is delivered at commit, and only if it commits. The first `wait` starts a listener
thread that LISTENs on a connection of its own and wakes the waiters of those runs: no polling.

Outages. A lost connection is retried every `RETRY_S` for up to `outage_timeout_s`
(`$APOLLO_STORE_OUTAGE_S`, default 300 s), with one warning when the database goes away and
one when it is back; appends and reads wait meanwhile, so runs pause at their next append. An
append is reported done only after its COMMIT returned. When the connection died during COMMIT,
the writer reconnects and looks up the batch's first event by its id to learn whether it was
committed, so a batch is never written twice.

Fencing. A process that attached to a run (appended its `runner_attached`) may append the
runner's events for it only while the run's owner is still that process: once another process
has taken the run over (the first one having been silent too long, e.g. cut off from the
database), its late appends are refused with `RunBusy` instead of forking the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from apollo.errors import ConfigError, NotFound, StoreError
from apollo.events import Event, parse_event
from apollo.store.base import RunSummary
from apollo.store.pg_append import Prepared, landed, prepare
from apollo.store.pg_migrations import migrate
from apollo.store.pg_wake import Listener, Waiters
from apollo.store.writer import AppendQueue, QueuedAppends

log = logging.getLogger("apollo.store")
T = TypeVar("T")

OUTAGE_ENV = "APOLLO_STORE_OUTAGE_S"
RETRY_S = 0.5
"""Seconds between reconnection attempts while the database is unavailable."""
_CONNECT_DEFAULTS = {"connect_timeout": "5", "application_name": "apollo", "keepalives": "1",
                     "keepalives_idle": "10", "keepalives_interval": "5",
                     "keepalives_count": "3"}


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{host}"))


def conninfo(url: str) -> str:
    """The connection string of a store URL, with Apollo's connection defaults (timeouts,
    keepalives) where the URL does not set them."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        raise ConfigError(f"--db {redact(url)}: not a PostgreSQL URL ({_one_line(e)})") from e
    return make_conninfo("", **{**_CONNECT_DEFAULTS, **params})


def connect(url: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    """A connection to the store at `url`, in UTC, outside any transaction."""
    conn = psycopg.connect(conninfo(url), autocommit=autocommit)
    conn.execute("SET TIME ZONE 'UTC'")
    if not autocommit:
        conn.commit()
    return conn


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _outage_default() -> float:
    raw = os.environ.get(OUTAGE_ENV, "300")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{OUTAGE_ENV}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{OUTAGE_ENV}={raw!r} must not be negative")
    return value


class PostgresStore(QueuedAppends):
    def __init__(self, url: str, *, outage_timeout_s: float | None = None):
        self.url = url
        self.name = redact(url)
        self.outage_timeout_s = (_outage_default() if outage_timeout_s is None
                                 else outage_timeout_s)
        conninfo(url)  # a malformed URL is a ConfigError before any connection is tried
        conn: psycopg.Connection[Any] | None = None
        try:
            conn = self._connect(autocommit=False)
            migrate(conn)
        except psycopg.Error as e:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open store {self.name}: {_one_line(e)}") from e
        self._closed = False
        self._wconn: psycopg.Connection[Any] | None = conn
        self._appends = AppendQueue()
        self._attached: dict[str, str] = {}
        """Runs this process executes, and the owner it attached as (writer thread only)."""
        self._local = threading.local()
        self._readers: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._waiters = Waiters()
        self._listener = Listener(lambda: self._connect(autocommit=True), self._waiters, RETRY_S)
        self._writer = threading.Thread(target=self._write_loop, name="apollo-pg-writer",
                                        daemon=True)
        self._writer.start()

    # -- connections and outages -----------------------------------------------------------

    def _connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        return connect(self.url, autocommit=autocommit)

    def _reader(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect(autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def _drop_reader(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _read(self, query: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run a read on this thread's connection, waiting out an outage (see module doc)."""
        deadline: float | None = None
        while True:
            try:
                result = query(self._reader())
            except psycopg.OperationalError as e:
                self._drop_reader()
                deadline = self._outage(e, deadline)
                continue
            if self._down_since is not None:
                self._back()
            return result

    def _outage(self, error: BaseException, deadline: float | None) -> float:
        """Note the outage (one warning), sleep before the next try; StoreError once it has
        lasted `outage_timeout_s` for this operation (or the store is closing)."""
        now = time.monotonic()
        with self._lock:
            if self._down_since is None:
                self._down_since = now
                log.warning("store %s unavailable (%s); runs wait at their next append; "
                            "retrying for up to %g s", self.name, _one_line(error),
                            self.outage_timeout_s)
        deadline = now + self.outage_timeout_s if deadline is None else deadline
        if now >= deadline or self._closed:
            raise StoreError(f"store {self.name} unavailable for {self.outage_timeout_s:g} s: "
                             f"{_one_line(error)}")
        time.sleep(min(RETRY_S, deadline - now))
        return deadline

    def _back(self) -> None:
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("store %s available again after %.1f s", self.name,
                        time.monotonic() - since)

    @property
    def unavailable_s(self) -> float | None:
        """Seconds since the database became unreachable; None while it is reachable."""
        since = self._down_since
        return None if since is None else time.monotonic() - since

    # -- writing ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        for batch in self._appends.batches():
            self._commit(batch)
        if self._wconn is not None:
            self._wconn.close()

    def _commit(self, batch: list[tuple[Event, Future[Event]]]) -> None:
        events = [e for e, _ in batch]
        deadline: float | None = None
        prepared: Prepared | None = None
        unknown = False  # the connection died during COMMIT: did it land?
        while True:
            try:
                if self._wconn is None or self._wconn.closed:
                    self._wconn = self._connect(autocommit=False)
                conn = self._wconn
                if unknown and prepared is not None and landed(conn, prepared):
                    break
                unknown = False
                prepared = prepare(conn, events, self._attached)
                unknown = True
                conn.commit()
                break
            except psycopg.OperationalError as e:
                if self._wconn is not None:
                    self._wconn.close()
                try:
                    deadline = self._outage(e, deadline)
                except StoreError as gone:
                    what = "outcome unknown (the run's log decides)" if unknown else \
                        "not committed"
                    self._fail(batch, StoreError(f"append {what}: {gone}"))
                    return
            except psycopg.Error as e:  # not the connection: read-only, a constraint, a bug
                if self._wconn is not None and not self._wconn.closed:
                    self._wconn.rollback()
                self._fail(batch, StoreError(
                    f"store {self.name}: append not committed: {_one_line(e)}"))
                return
        if self._down_since is not None:
            self._back()
        self._attached = prepared.attached
        for (_, fut), res in zip(batch, prepared.results, strict=True):
            if isinstance(res, Exception):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        self._waiters.wake(prepared.touched)

    @staticmethod
    def _fail(batch: list[tuple[Event, Future[Event]]], error: StoreError) -> None:
        for _, fut in batch:
            fut.set_exception(error)

    # -- reading ---------------------------------------------------------------------------

    def events(
        self, run_id: str, after: int = 0, types: Sequence[str] | None = None
    ) -> list[Event]:
        sql = "SELECT data FROM events WHERE run_id = %s AND seq > %s"
        args: list[Any] = [run_id, after]
        if types:
            sql += " AND type = ANY(%s)"
            args.append(list(types))
        rows = self._read(lambda c: c.execute(sql + " ORDER BY seq", args).fetchall())
        return [parse_event(r[0]) for r in rows]

    async def aevents(
        self, run_id: str, after: int = 0, types: Sequence[str] | None = None
    ) -> list[Event]:
        """`events` off the event loop: a round trip to the server (or an outage, waited out)
        holds up only the caller, not every run of the process."""
        return await asyncio.to_thread(self.events, run_id, after, types)

    def feed(self, after: int = 0, limit: int = 1000) -> list[tuple[int, Event]]:
        """Events of every run past the global id `after`, with their global ids."""
        rows = self._read(lambda c: c.execute(
            "SELECT id, data FROM events WHERE id > %s ORDER BY id LIMIT %s",
            (after, limit)).fetchall())
        return [(int(r[0]), parse_event(r[1])) for r in rows]

    def last_id(self) -> int:
        row = self._read(lambda c: c.execute("SELECT last_id FROM feed").fetchone())
        return int(row[0]) if row else 0

    _RUN_COLS = (
        "r.run_id, r.task_id, r.title, r.model, r.status, r.step, r.last_seq, r.created_at,"
        " r.updated_at, r.owner, r.best_score, r.final_score,"
        " EXTRACT(EPOCH FROM clock_timestamp() - GREATEST(r.updated_at, h.seen_at))"
        " FROM runs r LEFT JOIN heartbeats h ON h.owner = r.owner"
    )

    @staticmethod
    def _summary(row: tuple[Any, ...]) -> RunSummary:
        return RunSummary(
            run_id=row[0], task_id=row[1], title=row[2], model=row[3], status=row[4],
            step=row[5], last_seq=row[6], created_at=row[7].astimezone(UTC),
            updated_at=row[8].astimezone(UTC), owner=row[9], best_score=row[10],
            final_score=row[11],
            owner_silent_s=float(row[12]) if row[9] is not None else None)

    def run(self, run_id: str) -> RunSummary:
        def query(c: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            rows = c.execute(f"SELECT {self._RUN_COLS} WHERE r.run_id = %s",
                             (run_id,)).fetchall()
            if rows or not run_id:
                return rows
            like = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            return c.execute(f"SELECT {self._RUN_COLS} WHERE r.run_id LIKE %s ESCAPE '\\'"
                             " ORDER BY r.run_id LIMIT 2", (like,)).fetchall()

        rows = self._read(query)
        if len(rows) > 1:
            raise NotFound(f"run id prefix {run_id!r} is ambiguous")
        if not rows:
            raise NotFound(f"unknown run {run_id!r} (see `apollo runs`)")
        return self._summary(rows[0])

    def runs(self) -> list[RunSummary]:
        rows = self._read(lambda c: c.execute(
            f"SELECT {self._RUN_COLS} ORDER BY r.created_at, r.run_id").fetchall())
        return [self._summary(r) for r in rows]

    # -- heartbeats ------------------------------------------------------------------------

    def beat(self, owner: str, executor: str) -> None:
        """Record that the process `owner` (host:pid) is alive: one try, StoreError if the
        database cannot be reached (a missed beat is harmless; many are the point)."""
        try:
            self._reader().execute(
                "INSERT INTO heartbeats (owner, executor, seen_at) VALUES (%s, %s,"
                " clock_timestamp()) ON CONFLICT (owner) DO UPDATE SET"
                " seen_at = EXCLUDED.seen_at, executor = EXCLUDED.executor", (owner, executor))
        except psycopg.Error as e:  # unreachable, or read-only: the beat is lost, not the run
            if isinstance(e, psycopg.OperationalError):
                self._drop_reader()
            raise StoreError(f"store {self.name}: heartbeat not recorded: {_one_line(e)}") from e

    def forget(self, owner: str) -> None:
        """Remove a process's heartbeat (it stopped executing runs); one try, like `beat`."""
        try:
            self._reader().execute("DELETE FROM heartbeats WHERE owner = %s", (owner,))
        except psycopg.Error as e:
            if isinstance(e, psycopg.OperationalError):
                self._drop_reader()
            raise StoreError(f"store {self.name}: heartbeat not removed: {_one_line(e)}") from e

    # -- waiting ---------------------------------------------------------------------------

    def _latest(self, run_id: str | None) -> int:
        if run_id is None:
            return self.last_id()
        row = self._read(lambda c: c.execute(
            "SELECT last_seq FROM runs WHERE run_id = %s", (run_id,)).fetchone())
        return int(row[0]) if row else 0

    async def wait(self, run_id: str | None, after: int, timeout: float | None = None) -> bool:
        if self._latest(run_id) > after:
            return True

        async def listening() -> None:
            if not self._listener.listening.is_set():
                self._listener.ensure()
                limit = self.outage_timeout_s if timeout is None else timeout
                await asyncio.to_thread(self._listener.listening.wait, limit)

        return await self._waiters.wait(run_id, lambda: self._latest(run_id) > after, timeout,
                                        armed=listening)

    async def tail(self, run_id: str | None, after: int = 0) -> AsyncIterator[Event]:
        while True:
            if run_id is None:
                for gid, event in self.feed(after):
                    after = gid
                    yield event
            else:
                for event in self.events(run_id, after):
                    after = event.seq
                    yield event
            await self.wait(run_id, after)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._appends.stop()
        self._writer.join(timeout=10)
        self._listener.close()
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
