"""Live updates as server-sent events: one stream per run, one for the fleet.

Both resume where a client left off: the browser's `EventSource` sends the id of the last
event it received as `Last-Event-ID` when it reconnects (a first connection may pass
`?after=`). A run stream's ids are the run's event sequence numbers; the fleet stream's are
the store's global event ids (see `Hub.fleet_stream`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import StreamingResponse

from apollo.server.api import Ctx, RunId, Viewer, find_run

router = APIRouter(prefix="/api", tags=["streams"])

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
_SSE_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}},
                  "description": "A stream of server-sent events (never ends by itself)."}}

LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=32,
                                           description="Resume after this event id.")]
After = Annotated[int, Query(ge=0, description="Start after this event id (a first "
                             "connection; Last-Event-ID wins).")]


def resume_point(last_event_id: str | None, after: int) -> int:
    """Where a stream resumes: the Last-Event-ID header (sent on reconnection) wins."""
    if last_event_id is None or not last_event_id.strip():
        return after
    value = last_event_id.strip()
    if not value.isdigit():
        raise HTTPException(422, "Last-Event-ID must be a non-negative event number")
    return int(value)


def _stream(body: object) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream",  # type: ignore[arg-type]
                             headers=SSE_HEADERS)


@router.get("/runs/{run_id}/stream", response_class=StreamingResponse, responses=_SSE_DOC,
            summary="A run's events, live (id: sequence number; data: the event as JSON)")
def run_stream(run_id: RunId, _: Viewer, c: Ctx, after: After = 0,
               last_event_id: LastEventId = None) -> StreamingResponse:
    find_run(c, run_id)
    return _stream(c.hub.run_stream(run_id, resume_point(last_event_id, after)))


@router.get("/fleet/stream", response_class=StreamingResponse, responses=_SSE_DOC,
            summary="Dashboard rows of changed runs, live (event: run; id: global event id)")
def fleet_stream(_: Viewer, c: Ctx, after: After = 0,
                 last_event_id: LastEventId = None) -> StreamingResponse:
    return _stream(c.hub.fleet_stream(resume_point(last_event_id, after)))


__all__ = ["router"]
