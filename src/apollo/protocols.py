"""The few protocols the rest of Apollo is written against. Implementations don't inherit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from apollo.events import Event
    from apollo.models.base import ModelRequest, ModelResponse, ToolMode
    from apollo.store.base import RunSummary


class Model(Protocol):
    """Anything that answers a chat request with at most one tool call."""

    name: str
    tool_mode: ToolMode

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer one request. Raises `apollo.errors.ModelError` after its own retries."""
        ...

    async def aclose(self) -> None: ...


class Store(Protocol):
    """The append-only event store. Appends are durable when they return."""

    url: str
    name: str
    """The URL without its password (for messages)."""

    def append(self, event: Event) -> Event:
        """Append one event (its `seq` and `time` are assigned); blocks until durable."""
        ...

    async def aappend(self, event: Event) -> Event:
        """`append` without blocking the event loop."""
        ...

    def events(
        self, run_id: str, after: int = 0, types: Sequence[str] | None = None
    ) -> list[Event]:
        """A run's events with seq > after, in order (optionally only some types)."""
        ...

    async def aevents(
        self, run_id: str, after: int = 0, types: Sequence[str] | None = None
    ) -> list[Event]:
        """`events` for the event loop: a read that may wait (a database across the network,
        an outage) runs off the loop, so it holds up only its caller."""
        ...

    def run(self, run_id: str) -> RunSummary:
        """One run's summary; raises `NotFound` (also for an ambiguous prefix)."""
        ...

    def runs(self) -> list[RunSummary]: ...

    def feed(self, after: int = 0, limit: int = 1000) -> list[tuple[int, Event]]:
        """Every run's events past global id `after`, in append order, with their global ids
        (gap-free: a reader that has seen id N has seen every event before it)."""
        ...

    async def wait(self, run_id: str | None, after: int, timeout: float | None = None) -> bool:
        """Wait until the run (None: any run) has an event past `after` (a run's seq, or the
        global id for None). Woken on append; False on timeout."""
        ...

    def tail(self, run_id: str | None, after: int = 0) -> AsyncIterator[Event]:
        """Every event past `after`, then each new one as it is appended, forever."""
        ...

    def close(self) -> None: ...
