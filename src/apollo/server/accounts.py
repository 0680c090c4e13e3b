"""People of the console: users and their tokens, login sessions, one-time login links, and
attention spans (from the run page's heartbeats).

These are not run state, so they live beside the event log, in the store's own database
(tables of migration `0002_console`, in SQLite and in PostgreSQL alike), written here in short
serialisable transactions on this module's own connections (one per thread): a few writes a
minute, next to the event store's writer. Every console process on a PostgreSQL store shares
them, so a token or a session works on any of them. Tokens, session ids and login codes are
stored only as sha256 hashes; they are random (32 bytes), so a fast hash is enough.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, get_args

from apollo.errors import ApolloError, ConfigError, NotFound, StoreError
from apollo.events import utcnow

Role = Literal["viewer", "annotator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
"""From least to most allowed: each role may do everything the ones before it may."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SESSION_TTL = timedelta(days=7)
LINK_TTL = timedelta(minutes=30)
SPAN_GAP = timedelta(seconds=45)
"""A heartbeat later than this after the previous one starts a new attention span."""

T = TypeVar("T")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def role_allows(role: str, needed: Role) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created_at: datetime

    def can(self, needed: Role) -> bool:
        return role_allows(self.role, needed)


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    """The token every state-changing request of this session must carry."""
    expires_at: datetime


@dataclass(frozen=True)
class Span:
    """A stretch of time one person had a run's page open and was active on it."""

    name: str
    run_id: str
    started_at: datetime
    last_seen_at: datetime

    @property
    def seconds(self) -> float:
        return (self.last_seen_at - self.started_at).total_seconds()


def sqlite_path(url: str) -> Path:
    """The database file of a `sqlite:///PATH` store URL."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a SQLite store URL: {url.split('@')[-1]}")
    return Path(url.removeprefix("sqlite:///"))


class Tx(Protocol):
    """What a write sees: `execute(sql, args)` with `?` placeholders, returning a cursor."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...


class Accounts:
    """Users, sessions, login links and attention spans, in the store's database.

    `for_store(url)` gives the accounts of a store; the subclasses differ only in how they
    connect and run a transaction.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    @classmethod
    def for_store(cls, url: str) -> Accounts:
        """The accounts of an opened store (whose migrations made the tables)."""
        if url.startswith(("postgresql:", "postgres:")):
            return PostgresAccounts(url)
        return SQLiteAccounts(sqlite_path(url))

    def _connect(self) -> Any:
        raise NotImplementedError

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _drop(self) -> None:
        """Forget this thread's connection (broken: the next use opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._all.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in one serialisable transaction; its exceptions roll it back."""
        raise NotImplementedError

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- users ----------------------------------------------------------------------------

    def add_user(self, name: str, role: str) -> str:
        """Create a user; returns its API token (shown once, stored hashed)."""
        if not NAME_RE.match(name):
            raise ApolloError(f"bad user name {name!r}: use 1-64 letters, digits, '.', '_' or "
                              "'-', starting with a letter or digit")
        if role not in ROLES:
            raise ApolloError(f"bad role {role!r}: expected one of {', '.join(ROLES)}")
        token = "apo_" + secrets.token_urlsafe(32)

        def add(conn: Tx) -> None:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ApolloError(f"user {name!r} already exists (new token: `apollo users "
                                  f"token {name}`)")
            conn.execute("INSERT INTO users VALUES (?, ?, ?, ?)",
                         (name, role, digest(token), utcnow().isoformat()))

        self._write(add)
        return token

    def new_token(self, name: str) -> str:
        """Replace a user's token (the old one and every session of the user stop working)."""
        token = "apo_" + secrets.token_urlsafe(32)

        def rotate(conn: Tx) -> None:
            cur = conn.execute("UPDATE users SET token_hash = ? WHERE name = ?",
                               (digest(token), name))
            if cur.rowcount == 0:
                raise NotFound(f"unknown user {name!r} (see `apollo users list`)")
            conn.execute("DELETE FROM sessions WHERE name = ?", (name,))

        self._write(rotate)
        return token

    def remove_user(self, name: str) -> None:
        def remove(conn: Tx) -> None:
            if conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"unknown user {name!r} (see `apollo users list`)")
            conn.execute("DELETE FROM sessions WHERE name = ?", (name,))
            conn.execute("DELETE FROM login_links WHERE name = ?", (name,))

        self._write(remove)

    @staticmethod
    def _user(row: tuple[str, str, str]) -> User:
        return User(name=row[0], role=row[1], created_at=datetime.fromisoformat(row[2]))  # type: ignore[arg-type]

    def users(self) -> list[User]:
        rows = self._read("SELECT name, role, created_at FROM users ORDER BY name")
        return [self._user(r) for r in rows]

    def user(self, name: str) -> User | None:
        rows = self._read("SELECT name, role, created_at FROM users WHERE name = ?", (name,))
        return self._user(rows[0]) if rows else None

    def by_token(self, token: str) -> User | None:
        rows = self._read("SELECT name, role, created_at FROM users WHERE token_hash = ?",
                          (digest(token),))
        return self._user(rows[0]) if rows else None

    # -- sessions and login links ---------------------------------------------------------

    def new_session(self, user: User) -> tuple[str, Session]:
        """Open a login session; returns the cookie value (stored hashed) and the session."""
        sid = secrets.token_urlsafe(32)
        now = utcnow()
        session = Session(user=user, csrf=secrets.token_urlsafe(24), expires_at=now + SESSION_TTL)

        def add(conn: Tx) -> None:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now.isoformat(),))
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                         (digest(sid), user.name, session.csrf, now.isoformat(),
                          session.expires_at.isoformat()))

        self._write(add)
        return sid, session

    def session(self, sid: str) -> Session | None:
        rows = self._read(
            "SELECT u.name, u.role, u.created_at, s.csrf, s.expires_at FROM sessions s "
            "JOIN users u ON u.name = s.name WHERE s.id_hash = ?", (digest(sid),))
        if not rows:
            return None
        row = rows[0]
        expires = datetime.fromisoformat(row[4])
        if expires <= utcnow():
            return None
        return Session(user=self._user(row[:3]), csrf=row[3], expires_at=expires)

    def end_session(self, sid: str) -> None:
        self._write(lambda c: c.execute("DELETE FROM sessions WHERE id_hash = ?", (digest(sid),)))

    def new_login_link(self, name: str, ttl: timedelta = LINK_TTL) -> str:
        """A one-time login code for a user (for `apollo demo` and `apollo users link`)."""
        code = secrets.token_urlsafe(32)

        def add(conn: Tx) -> None:
            if not conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise NotFound(f"unknown user {name!r} (see `apollo users list`)")
            conn.execute("INSERT INTO login_links VALUES (?, ?, ?)",
                         (digest(code), name, (utcnow() + ttl).isoformat()))

        self._write(add)
        return code

    def use_login_link(self, code: str) -> User | None:
        """The user a code logs in, once: the code is gone afterwards (also when expired)."""

        def use(conn: Tx) -> tuple[str, str] | None:
            row = conn.execute("SELECT name, expires_at FROM login_links WHERE code_hash = ?",
                               (digest(code),)).fetchone()
            conn.execute("DELETE FROM login_links WHERE code_hash = ? OR expires_at < ?",
                         (digest(code), utcnow().isoformat()))
            return row

        row = self._write(use)
        if row is None or datetime.fromisoformat(row[1]) <= utcnow():
            return None
        return self.user(row[0])

    # -- attention ------------------------------------------------------------------------

    def heartbeat(self, name: str, run_id: str, now: datetime | None = None) -> Span:
        """Record that `name` is active on `run_id`'s page now: extends their latest span on
        that run when it was seen within `SPAN_GAP`, else starts a new one."""
        now = now or utcnow()

        def beat(conn: Tx) -> Span:
            row = conn.execute(
                "SELECT id, started_at, last_seen_at FROM attention WHERE run_id = ? AND "
                "name = ? ORDER BY id DESC LIMIT 1", (run_id, name)).fetchone()
            if row is not None:
                last = datetime.fromisoformat(row[2])
                if timedelta(0) <= now - last <= SPAN_GAP:
                    conn.execute("UPDATE attention SET last_seen_at = ? WHERE id = ?",
                                 (now.isoformat(), row[0]))
                    return Span(name, run_id, datetime.fromisoformat(row[1]), now)
                if now < last:  # a late heartbeat: already covered
                    return Span(name, run_id, datetime.fromisoformat(row[1]), last)
            conn.execute("INSERT INTO attention (name, run_id, started_at, last_seen_at) "
                         "VALUES (?, ?, ?, ?)", (name, run_id, now.isoformat(), now.isoformat()))
            return Span(name, run_id, now, now)

        return self._write(beat)

    def spans(self, run_id: str | None = None) -> list[Span]:
        sql = "SELECT name, run_id, started_at, last_seen_at FROM attention"
        args: tuple[str, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args = (run_id,)
        rows = self._read(sql + " ORDER BY id", args)
        return [Span(r[0], r[1], datetime.fromisoformat(r[2]), datetime.fromisoformat(r[3]))
                for r in rows]


class SQLiteAccounts(Accounts):
    """The accounts in a SQLite store's file (30 s busy timeout, like the store's readers)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._conn().execute(sql, args).fetchall()
        return rows

    def _write(self, fn: Callable[[Tx], T]) -> T:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # one writer at a time: serialisable
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result


class _PgTx:
    """A psycopg connection taking `?` placeholders (the SQL above is written for both)."""

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), args)


class PostgresAccounts(Accounts):
    """The accounts in a PostgreSQL store, shared by every console process on it.

    Writes run at SERIALIZABLE and are retried when PostgreSQL aborts one for a conflict with
    another console's; a lost connection is retried once on a new one (the server may have
    restarted), then reported as a `StoreError` (503 in the API).
    """

    RETRIES = 20

    def __init__(self, url: str):
        from apollo.store.postgres import redact

        super().__init__()
        self.url = url
        self.name = redact(url)

    def _connect(self) -> Any:
        from apollo.store.postgres import connect

        return connect(self.url, autocommit=True)

    def _attempt(self, work: Callable[[Any], T]) -> T:
        import psycopg

        for attempt in range(self.RETRIES):
            try:
                return work(self._conn())
            except psycopg.errors.SerializationFailure:
                time.sleep(0.005 * (attempt + 1))
            except psycopg.OperationalError as e:
                self._drop()
                if attempt:
                    raise StoreError(f"store {self.name} unavailable: "
                                     f"{' '.join(str(e).split())}") from e
        raise StoreError(f"store {self.name}: a console write kept conflicting with others")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._attempt(lambda conn: conn.execute(sql.replace("?", "%s"), args).fetchall())

    def _write(self, fn: Callable[[Tx], T]) -> T:
        def transaction(conn: Any) -> T:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                return fn(_PgTx(conn))

        return self._attempt(transaction)
