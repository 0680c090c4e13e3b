"""The JSON API of one run and of the fleet: reading, guiding, labelling, controlling.

Everything a person does becomes an event appended through the store (`aappend`), with the
person as its author; the agent loop picks it up from the log. Mistakes come back as 4xx with
one-line `detail`: 404 for an unknown run or action, 409 when the run's state does not allow
the request, 422 for a malformed or too-long body, 413 for a body over the size limit.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from apollo import events as ev
from apollo.errors import NotFound
from apollo.events import utcnow
from apollo.server import views
from apollo.server.auth import Principal, admin, annotator, viewer
from apollo.server.state import Console, console
from apollo.store.base import TERMINAL_STATUSES, RunSummary

MAX_GUIDANCE_CHARS = 8000
"""The same limit as `apollo guide`."""
MAX_REASON_CHARS = 2000

router = APIRouter(prefix="/api", tags=["runs"])

RunId = Annotated[str, Path(min_length=1, max_length=200, description="The run's full id.")]
Step = Annotated[int, Path(ge=1, le=10_000_000, description="A 1-based step number.")]
Viewer = Annotated[Principal, Depends(viewer)]
Annotator = Annotated[Principal, Depends(annotator)]
Admin = Annotated[Principal, Depends(admin)]
Ctx = Annotated[Console, Depends(console)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GuidanceIn(_In):
    text: str = Field(min_length=1, max_length=MAX_GUIDANCE_CHARS,
                      description="The message; the agent sees it at its next step.")
    interrupt: bool = Field(False, description="Cut the model call in flight short so the "
                            "message lands at once.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("guidance text is empty")
        return v.strip()


class LabelIn(_In):
    action_id: str = Field(min_length=1, max_length=300, description="e.g. RUN.3")
    verdict: Literal["good", "bad"]
    reason: str = Field("", max_length=MAX_REASON_CHARS)


class ControlIn(_In):
    reason: str = Field("", max_length=MAX_REASON_CHARS, description="Why (recorded).")


class Appended(BaseModel):
    run_id: str
    seq: int
    type: str
    guidance_id: str | None = None


async def get_run(c: Console, run_id: str) -> RunSummary:
    """The run with exactly this id, read off the event loop (a PostgreSQL store's read may
    wait out an outage)."""
    return await asyncio.to_thread(find_run, c, run_id)


def find_run(c: Console, run_id: str) -> RunSummary:
    """The run with exactly this id (an API client names runs by their full id)."""
    try:
        summary = c.store.run(run_id)
    except NotFound:
        summary = None
    if summary is None or summary.run_id != run_id:
        raise HTTPException(404, f"unknown run {run_id!r}")
    return summary


async def run_events(c: Console, run_id: str) -> list[ev.Event]:
    return await asyncio.to_thread(c.store.events, run_id)


async def created_event(c: Console, run_id: str) -> ev.RunCreated:
    created = (await asyncio.to_thread(c.store.events, run_id, 0, ["run_created"]))[0]
    assert isinstance(created, ev.RunCreated)
    return created


async def _append(c: Console, event: ev.Event) -> Appended:
    stored = await c.store.aappend(event)
    return Appended(run_id=stored.run_id, seq=stored.seq, type=stored.type,
                    guidance_id=getattr(stored, "guidance_id", None))


def _live(summary: RunSummary, action: str) -> None:
    if summary.status in TERMINAL_STATUSES:
        raise HTTPException(409, f"cannot {action} run {summary.run_id}: it has ended "
                            f"({summary.status})")


# -- reading ------------------------------------------------------------------------------


@router.get("/runs", summary="Every run with its dashboard signals")
def list_runs(
    _: Viewer, c: Ctx,
    status: Annotated[str | None, Query(max_length=20, description="Only this status.")] = None,
    attention: Annotated[bool, Query(description="Only runs with a warning signal.")] = False,
) -> dict[str, Any]:
    now = utcnow()
    rows = [v.row(now) for v in c.fleet.views.values()]
    rows = [r for r in rows if (status is None or r["status"] == status)
            and (not attention or r["attention"])]
    rows.sort(key=lambda r: r["created_at"], reverse=True)
    return {"now": now.isoformat(), "gid": c.fleet.gid, "runs": rows,
            "thresholds": asdict(c.fleet.thresholds)}


@router.get("/runs/{run_id}", summary="One run: its row, task, model and settings")
async def get_one(run_id: RunId, _: Viewer, c: Ctx) -> dict[str, Any]:
    await get_run(c, run_id)
    created = await created_event(c, run_id)
    view = c.fleet.views.get(run_id)
    now = utcnow()
    return {
        "now": now.isoformat(),
        "run": view.row(now) if view is not None else None,
        "task": {k: created.task.get(k) for k in ("id", "title", "domain", "instructions")},
        "model": created.model,
        "config": created.config,
        "labels": created.labels,
        "workspace": created.workspace,
    }


@router.get("/runs/{run_id}/events", summary="A run's events past a sequence number")
async def get_events(
    run_id: RunId, _: Viewer, c: Ctx,
    after: Annotated[int, Query(ge=0, description="Only events with seq > after.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    summary = await get_run(c, run_id)
    events = await asyncio.to_thread(c.store.events, run_id, after)
    page = events[:limit]
    return {"run_id": run_id, "last_seq": summary.last_seq,
            "events": [e.model_dump(mode="json") for e in page],
            "more": len(events) > limit}


@router.get("/runs/{run_id}/guidance", summary="Each message: queued, then delivered at step N")
async def get_guidance(run_id: RunId, _: Viewer, c: Ctx) -> list[dict[str, Any]]:
    await get_run(c, run_id)
    return views.guidance(await run_events(c, run_id))


@router.get("/runs/{run_id}/files", summary="Files the agent wrote or edited")
async def get_files(run_id: RunId, _: Viewer, c: Ctx) -> list[dict[str, Any]]:
    await get_run(c, run_id)
    return views.changed_files(await run_events(c, run_id))


@router.get("/runs/{run_id}/jobs", summary="Background jobs and their latest output")
async def get_jobs(run_id: RunId, _: Viewer, c: Ctx) -> list[dict[str, Any]]:
    await get_run(c, run_id)
    return views.jobs(await run_events(c, run_id))


@router.get("/runs/{run_id}/steps/{step}/context",
            summary="The exact messages the model received at a step")
async def get_context(run_id: RunId, step: Step, _: Viewer, c: Ctx) -> dict[str, Any]:
    await get_run(c, run_id)
    events = await run_events(c, run_id)
    try:
        return await asyncio.to_thread(views.context, events, step)
    except NotFound as e:
        raise HTTPException(404, str(e)) from e


@router.get("/runs/{run_id}/steps/{step}/observation", response_class=PlainTextResponse,
            summary="The full text of a step's observation (plain text)",
            responses={200: {"content": {"text/plain": {}}}})
async def get_observation(run_id: RunId, step: Step, _: Viewer, c: Ctx) -> PlainTextResponse:
    await get_run(c, run_id)
    events = await run_events(c, run_id)
    try:
        text = await asyncio.to_thread(views.observation, events, step)
    except NotFound as e:
        raise HTTPException(404, str(e)) from e
    return PlainTextResponse(text, headers={"Content-Disposition": "inline"})


# -- acting -------------------------------------------------------------------------------


@router.post("/runs/{run_id}/guidance", status_code=201, response_model=Appended,
             summary="Queue guidance (delivered at the next step; interrupt: at once)")
async def post_guidance(run_id: RunId, body: GuidanceIn, who: Annotator, c: Ctx) -> Appended:
    summary = await get_run(c, run_id)
    _live(summary, "guide")
    created = await created_event(c, run_id)
    if not created.config.get("guidance", True):
        raise HTTPException(409, f"run {run_id} takes no guidance (an evaluation run)")
    return await _append(c, ev.GuidanceQueued(
        run_id=run_id, guidance_id=f"g-{secrets.token_hex(6)}", author=who.user.name,
        text=body.text, interrupt=body.interrupt))


@router.post("/runs/{run_id}/labels", status_code=201, response_model=Appended,
             summary="Label one action good or bad")
async def post_label(run_id: RunId, body: LabelIn, who: Annotator, c: Ctx) -> Appended:
    summary = await get_run(c, run_id)
    known = {ev.action_id(run_id, k) for k in range(1, summary.step + 1)}
    if body.action_id not in known:
        raise HTTPException(404, f"run {run_id} has no action {body.action_id!r}")
    return await _append(c, ev.ActionLabeled(
        run_id=run_id, action_id=body.action_id, verdict=body.verdict, reason=body.reason,
        source="human", author=who.user.name))


@router.post("/runs/{run_id}/pause", status_code=201, response_model=Appended,
             summary="Pause the run at its next step boundary")
async def post_pause(run_id: RunId, body: ControlIn, who: Annotator, c: Ctx) -> Appended:
    summary = await get_run(c, run_id)
    _live(summary, "pause")
    if summary.status in ("paused", "stopping"):
        raise HTTPException(409, f"run {run_id} is already {summary.status}")
    return await _append(c, ev.RunPaused(run_id=run_id, author=who.user.name, reason=body.reason))


@router.post("/runs/{run_id}/resume", status_code=201, response_model=Appended,
             summary="Let a paused run go on")
async def post_resume(run_id: RunId, who: Annotator, c: Ctx) -> Appended:
    summary = await get_run(c, run_id)
    if summary.status != "paused":
        raise HTTPException(409, f"run {run_id} is not paused ({summary.status})")
    return await _append(c, ev.RunResumed(run_id=run_id, author=who.user.name))


@router.post("/runs/{run_id}/heartbeat", summary="The page of this run is open and in use")
async def post_heartbeat(run_id: RunId, who: Viewer, c: Ctx) -> dict[str, Any]:
    await get_run(c, run_id)
    span = await asyncio.to_thread(c.accounts.heartbeat, who.user.name, run_id)
    return {"run_id": run_id, "span_started_at": span.started_at.isoformat(),
            "span_s": round(span.seconds, 3)}


@router.post("/runs/{run_id}/stop", status_code=201, response_model=Appended,
             summary="Stop the run now (admin; the step in flight is cut short)")
async def post_stop(run_id: RunId, body: ControlIn, who: Admin, c: Ctx) -> Appended:
    summary = await get_run(c, run_id)
    _live(summary, "stop")
    if summary.status == "stopping":
        raise HTTPException(409, f"run {run_id} is already stopping")
    return await _append(c, ev.RunStopped(run_id=run_id, author=who.user.name,
                                          reason=body.reason))
