"""One reader of the store's global feed, fanning new events out to the live streams.

The hub folds every event into the `Fleet` (the dashboard's rows) and hands it to the streams
subscribed to its run, so fifty viewers cost one read of the log, not fifty. A stream starts
(and, if it ever falls behind, restarts) from the store itself, so nothing depends on the hub
having kept anything: it only wakes streams up early.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from apollo.protocols import Store
from apollo.server.fleet import Fleet

log = logging.getLogger("apollo.server")

PING_S = 15.0
"""A comment line this often keeps idle streams (and the proxies between) open."""
LAG_LIMIT = 5_000
"""A stream with more events than this waiting is restarted from the store instead."""
RETRY_MS = 1_000


@dataclass(frozen=True)
class Message:
    gid: int
    seq: int
    data: str
    """The event as JSON (serialised once for every subscriber)."""


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    refill: bool = True
    """Read from the store before taking from the queue (at the start, and after a lag)."""


@dataclass(eq=False)
class FleetSubscription:
    queue: asyncio.Queue[set[str]] = field(default_factory=asyncio.Queue)


def sse(data: str, id: int | None = None, event: str | None = None) -> str:
    """One server-sent event (`data` must be one line, as compact JSON is)."""
    head = "" if id is None else f"id: {id}\n"
    head += "" if event is None else f"event: {event}\n"
    return f"{head}data: {data}\n\n"


class Hub:
    def __init__(self, store: Store, fleet: Fleet):
        self.store = store
        self.fleet = fleet
        self._runs: dict[str, set[Subscription]] = {}
        self._fleet: set[FleetSubscription] = set()
        self._task: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Fold the whole log into the fleet (at start-up, before serving)."""
        while batch := self.store.feed(self.fleet.gid, 5000):
            for gid, e in batch:
                self.fleet.apply(gid, e)

    async def start(self) -> None:
        await asyncio.to_thread(self.load)
        self._task = asyncio.create_task(self._follow(), name="apollo-hub")
        self._task.add_done_callback(_report)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            await self.store.wait(None, self.fleet.gid)
            touched: set[str] = set()
            for gid, e in await asyncio.to_thread(self.store.feed, self.fleet.gid):
                self.fleet.apply(gid, e)
                touched.add(e.run_id)
                subs = self._runs.get(e.run_id)
                if subs:
                    msg = Message(gid, e.seq, e.model_dump_json())
                    for sub in subs:
                        if sub.queue.qsize() >= LAG_LIMIT:
                            sub.refill = True
                            sub.queue = asyncio.Queue()
                        sub.queue.put_nowait(msg)
            for fsub in self._fleet:
                fsub.queue.put_nowait(touched)

    # -- streams --------------------------------------------------------------------------

    async def run_stream(self, run_id: str, after: int) -> AsyncIterator[str]:
        """A run's events past seq `after` as server-sent events (id = seq), then each new
        one as it is appended, forever."""
        sub = Subscription()
        self._runs.setdefault(run_id, set()).add(sub)
        try:
            yield f"retry: {RETRY_MS}\n\n"
            while True:
                if sub.refill:
                    sub.refill = False
                    sub.queue = asyncio.Queue()
                    backlog = await asyncio.to_thread(self.store.events, run_id, after)
                    for e in backlog:
                        yield sse(e.model_dump_json(), e.seq)
                        after = e.seq
                try:
                    msg = await asyncio.wait_for(sub.queue.get(), PING_S)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                if msg.seq <= after:
                    continue
                if msg.seq != after + 1:  # something was missed: read it from the store
                    sub.refill = True
                    continue
                yield sse(msg.data, msg.seq)
                after = msg.seq
        finally:
            subs = self._runs.get(run_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._runs[run_id]

    async def fleet_stream(self, after: int) -> AsyncIterator[str]:
        """Dashboard rows (event `run`, id = the run's latest global event id) of the runs
        changed past global id `after`, oldest change first, then of each run as it changes.
        A client that resumes from the last id it saw has every run's latest row."""
        from apollo.events import utcnow

        sub = FleetSubscription()
        self._fleet.add(sub)
        try:
            yield f"retry: {RETRY_MS}\n\n"
            for row in self.fleet.rows(utcnow(), after):
                yield sse(json.dumps(row), row["gid"], "run")
                after = row["gid"]
            while True:
                try:
                    touched = await asyncio.wait_for(sub.queue.get(), PING_S)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                while not sub.queue.empty():
                    touched |= sub.queue.get_nowait()
                views = sorted((v for r in touched if (v := self.fleet.views.get(r)) is not None
                                and v.gid > after), key=lambda v: v.gid)
                now = utcnow()
                for view in views:
                    yield sse(json.dumps(view.row(now)), view.gid, "run")
                    after = view.gid
        finally:
            self._fleet.discard(sub)

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._runs.values()) + len(self._fleet)


def _report(task: asyncio.Task[None]) -> None:
    """The hub must not die quietly: live updates would stop (streams still start right)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("the live-update hub stopped", exc_info=exc)
