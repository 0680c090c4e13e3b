"""The embedded default store: SQLite in WAL mode, one writer thread, readers per thread.

Appends from every thread and coroutine go through one writer thread, which commits whatever
is queued in one transaction (group commit) with `synchronous=FULL`, so an append is durable
when it returns, and many concurrent runs share each fsync. Waiters in this process are woken
right after the commit; writes by other processes are noticed through `PRAGMA data_version`,
checked by a watcher thread only while someone waits.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

from apollo.errors import ApolloError, NotFound, RunBusy, StoreError
from apollo.events import Event, RunCreated, RunnerAttached, dump_event, parse_event, utcnow
from apollo.store.base import RunSummary, projection_update
from apollo.store.migrations import MIGRATIONS
from apollo.store.writer import AppendQueue, QueuedAppends

_WATCH_INTERVAL_S = 0.1
_WATCH_LINGER_S = 2.0
"""How long the watcher thread stays after the last waiter left (short waits come often)."""


class SQLiteStore(QueuedAppends):
    def __init__(self, path: Path, *, synchronous: str = "FULL"):
        self.path = Path(path).resolve()
        self.url = f"sqlite:///{self.path}"
        self.name = self.url
        self._synchronous = synchronous
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(shared=True)  # made here, used by the writer thread
            self._migrate(conn)
        except (OSError, sqlite3.Error) as e:
            hint = "" if os.access(self.path.parent, os.W_OK) else \
                f" ({self.path.parent} is not writable: a read-only disk?)"
            raise StoreError(f"cannot open store {self.path}: {e}{hint}") from e
        self._appends = AppendQueue()
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="apollo-store-writer", daemon=True
        )
        self._writer.start()
        self._local = threading.local()
        self._waiters: dict[str | None, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._waiters_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._closed = False

    # -- connections ----------------------------------------------------------------------

    def _connect(self, *, shared: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                               check_same_thread=not shared)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for name, sql in MIGRATIONS:
                if name not in done:
                    for statement in sql.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?)", (name, utcnow().isoformat())
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writing --------------------------------------------------------------------------

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        for batch in self._appends.batches():
            self._commit(conn, batch)
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[Event, Future[Event]]]) -> None:
        results: list[tuple[Future[Event], Event | Exception]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for event, fut in batch:
                conn.execute("SAVEPOINT one")
                try:
                    results.append((fut, self._insert(conn, event)))
                    conn.execute("RELEASE one")
                except ApolloError as e:
                    conn.execute("ROLLBACK TO one")
                    conn.execute("RELEASE one")
                    results.append((fut, e))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            err = StoreError(f"store {self.path}: append not committed: {e}")
            for _, fut in batch:
                fut.set_exception(err)
            return
        touched: set[str] = set()
        for fut, res in results:
            if isinstance(res, Exception):
                fut.set_exception(res)
            else:
                touched.add(res.run_id)
                fut.set_result(res)
        self._notify(touched)

    @staticmethod
    def _insert(conn: sqlite3.Connection, event: Event) -> Event:
        row = conn.execute(
            "SELECT last_seq, status, owner FROM runs WHERE run_id = ?", (event.run_id,)
        ).fetchone()
        now = utcnow()
        if isinstance(event, RunCreated):
            if row is not None:
                raise StoreError(f"run {event.run_id} already exists")
            seq, status, owner = 1, None, None
        else:
            if row is None:
                raise NotFound(f"unknown run {event.run_id!r}")
            seq, status, owner = row[0] + 1, row[1], row[2]
            if isinstance(event, RunnerAttached) and row[2] != event.previous_owner:
                raise RunBusy(f"run {event.run_id} was taken over by {row[2]}")
        stored = event.model_copy(update={"seq": seq, "time": now})
        conn.execute(
            "INSERT INTO events (run_id, seq, type, time, v, data) VALUES (?, ?, ?, ?, ?, ?)",
            (stored.run_id, seq, stored.type, now.isoformat(), stored.v, dump_event(stored)),
        )
        if isinstance(stored, RunCreated):
            conn.execute(
                "INSERT INTO runs (run_id, task_id, title, model, status, last_seq, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 'created', 1, ?, ?)",
                (
                    stored.run_id,
                    str(stored.task.get("id", "")),
                    str(stored.task.get("title", "")),
                    str(stored.model.get("spec", "")),
                    now.isoformat(),
                    now.isoformat(),
                ),
            )
            return stored
        sets = ["last_seq = ?", "updated_at = ?"]
        args: list[Any] = [seq, now.isoformat()]
        for col, value in projection_update(stored, status, owner).items():
            if col == "best_score_max":
                sets.append("best_score = MAX(COALESCE(best_score, ?), ?)")
                args += [value, value]
            else:
                sets.append(f"{col} = ?")
                args.append(value)
        conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", (*args, stored.run_id))
        return stored

    # -- reading --------------------------------------------------------------------------

    def events(
        self, run_id: str, after: int = 0, types: Sequence[str] | None = None
    ) -> list[Event]:
        sql = "SELECT data FROM events WHERE run_id = ? AND seq > ?"
        args: list[Any] = [run_id, after]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args += list(types)
        rows = self._reader().execute(sql + " ORDER BY seq", args).fetchall()
        return [parse_event(r[0]) for r in rows]

    async def aevents(
        self, run_id: str, after: int = 0, types: Sequence[str] | None = None
    ) -> list[Event]:
        """`events`, read on the loop: a local WAL read never waits on the writer, and a hop
        to a thread would cost more than the read (it is on every step's path)."""
        return self.events(run_id, after, types)

    def feed(self, after: int = 0, limit: int = 1000) -> list[tuple[int, Event]]:
        """Events of every run past the global id `after`, with their global ids."""
        rows = self._reader().execute(
            "SELECT id, data FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        ).fetchall()
        return [(r[0], parse_event(r[1])) for r in rows]

    def last_id(self) -> int:
        row = self._reader().execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)

    _RUN_COLS = (
        "run_id, task_id, title, model, status, step, last_seq, created_at, updated_at, owner,"
        " best_score, final_score"
    )

    @staticmethod
    def _summary(row: tuple[Any, ...]) -> RunSummary:
        return RunSummary(
            run_id=row[0], task_id=row[1], title=row[2], model=row[3], status=row[4],
            step=row[5], last_seq=row[6], created_at=datetime.fromisoformat(row[7]),
            updated_at=datetime.fromisoformat(row[8]), owner=row[9], best_score=row[10],
            final_score=row[11],
        )

    def run(self, run_id: str) -> RunSummary:
        conn = self._reader()
        row = conn.execute(
            f"SELECT {self._RUN_COLS} FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None and run_id:
            like = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = conn.execute(
                f"SELECT {self._RUN_COLS} FROM runs WHERE run_id LIKE ? ESCAPE '\\' LIMIT 2",
                (like,),
            ).fetchall()
            if len(rows) > 1:
                raise NotFound(f"run id prefix {run_id!r} is ambiguous")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"unknown run {run_id!r} (see `apollo runs`)")
        return self._summary(row)

    def runs(self) -> list[RunSummary]:
        rows = self._reader().execute(
            f"SELECT {self._RUN_COLS} FROM runs ORDER BY created_at, run_id"
        ).fetchall()
        return [self._summary(r) for r in rows]

    # -- waiting --------------------------------------------------------------------------

    def _latest(self, run_id: str | None) -> int:
        if run_id is None:
            return self.last_id()
        row = self._reader().execute(
            "SELECT last_seq FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return int(row[0]) if row else 0

    async def wait(self, run_id: str | None, after: int, timeout: float | None = None) -> bool:
        if self._latest(run_id) > after:
            return True
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._waiters_lock:
            self._waiters.setdefault(run_id, set()).add(waiter)
            self._ensure_watcher()
        try:
            while self._latest(run_id) <= after:  # re-check: an append may have just landed
                waiter[1].clear()
                try:
                    await asyncio.wait_for(waiter[1].wait(), timeout)
                except TimeoutError:
                    return self._latest(run_id) > after
            return True
        finally:
            with self._waiters_lock:
                self._waiters.get(run_id, set()).discard(waiter)

    async def tail(self, run_id: str | None, after: int = 0) -> AsyncIterator[Event]:
        while True:
            if run_id is None:
                batch = self.feed(after)
                for gid, event in batch:
                    after = gid
                    yield event
            else:
                for event in self.events(run_id, after):
                    after = event.seq
                    yield event
            await self.wait(run_id, after)

    def _notify(self, run_ids: set[str] | None) -> None:
        with self._waiters_lock:
            if run_ids is None:
                targets = [w for ws in self._waiters.values() for w in ws]
            else:
                targets = [w for r in (*run_ids, None) for w in self._waiters.get(r, ())]
        for loop, ev in targets:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # that loop has closed
                pass

    def _ensure_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(
                target=self._watch, name="apollo-store-watcher", daemon=True
            )
            self._watcher.start()

    def _watch(self) -> None:
        """Notice commits by other processes (while anyone waits) and wake the waiters."""
        conn = self._connect()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        stop = threading.Event()
        idle_since: float | None = None
        while not self._closed:
            with self._waiters_lock:
                if any(self._waiters.values()):
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > _WATCH_LINGER_S:  # idle a while: stop
                    self._watcher = None
                    break
            stop.wait(_WATCH_INTERVAL_S)
            now = conn.execute("PRAGMA data_version").fetchone()[0]
            if now != version:
                version = now
                self._notify(None)
        conn.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._appends.stop()
            self._writer.join(timeout=10)
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None
