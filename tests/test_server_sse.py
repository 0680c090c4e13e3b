"""Live streams (server-sent events) in-process: what a browser gets, how it resumes with
Last-Event-ID, and runs the hosted runner executes reacting to guidance, interrupts, pause
and resume sent through the API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from apollo import events as ev
from apollo.server import hub as hub_module
from test_server_api import SLOW, step
from test_server_support import Harness, read_sse

pytestmark = pytest.mark.anyio


def count(n: int) -> Any:
    return lambda events: len(events) >= n


async def test_run_stream_sends_the_log_with_seq_ids_and_resumes(h: Harness) -> None:
    rid = h.run(SLOW)
    h.log(rid, *step(rid, 1), *step(rid, 2))  # seq 2..5
    auth = h.auth("viewer")
    got = await read_sse(h.app, f"/api/runs/{rid}/stream", auth, count(5))
    assert got.status == 200 and got.headers["content-type"].startswith("text/event-stream")
    assert got.raw.startswith("retry: 1000\n\n")
    assert [e["id"] for e in got.events] == ["1", "2", "3", "4", "5"]
    assert [e["data"]["type"] for e in got.events] == [
        "run_created", "model_called", "tool_finished", "model_called", "tool_finished"]
    assert got.events[1]["data"]["action_id"] == f"{rid}.1"
    resumed = await read_sse(h.app, f"/api/runs/{rid}/stream?after=1",
                             {**auth, "Last-Event-ID": "3"}, count(2))
    assert [e["id"] for e in resumed.events] == ["4", "5"]  # Last-Event-ID wins over ?after
    after = await read_sse(h.app, f"/api/runs/{rid}/stream?after=4", auth, count(1))
    assert [e["id"] for e in after.events] == ["5"]


async def test_run_stream_delivers_new_events_live(h: Harness) -> None:
    rid = h.run(SLOW)

    async def later() -> float:
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await h.store.aappend(ev.GuidanceQueued(run_id=rid, guidance_id="g-x", author="ann",
                                                text="<b>hi</b>"))
        return t0

    appended = asyncio.ensure_future(later())
    got = await read_sse(h.app, f"/api/runs/{rid}/stream?after=1", h.auth("viewer"), count(1))
    assert time.monotonic() - await appended < 1.0
    assert got.events[0]["id"] == "2" and got.events[0]["data"]["text"] == "<b>hi</b>"


async def test_a_lagging_stream_refills_from_the_store(h: Harness,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "LAG_LIMIT", 2)
    rid = h.run(SLOW)

    async def burst() -> None:
        await asyncio.sleep(0.1)
        for n in range(1, 21):
            for e in step(rid, n):
                h.store.submit(e)

    task = asyncio.ensure_future(burst())
    got = await read_sse(h.app, f"/api/runs/{rid}/stream", h.auth("viewer"), count(41))
    await task
    assert [int(e["id"]) for e in got.events] == list(range(1, 42))


async def test_fleet_stream_sends_rows_by_global_id_and_resumes(h: Harness) -> None:
    a, b = h.run(SLOW), h.run(SLOW)
    fleet = h.app.state.console.fleet
    await h.wait_for(lambda: fleet.gid == 2, "the fold")
    auth = h.auth("viewer")
    got = await read_sse(h.app, "/api/fleet/stream", auth, count(2))
    assert [(e["event"], e["id"], e["data"]["run_id"]) for e in got.events] == [
        ("run", "1", a), ("run", "2", b)]
    assert got.events[0]["data"]["status"] == "created"

    async def change_a() -> None:
        await asyncio.sleep(0.2)
        await h.store.aappend(ev.RunPaused(run_id=a, author="ann"))

    task = asyncio.ensure_future(change_a())
    live = await read_sse(h.app, "/api/fleet/stream", {**auth, "Last-Event-ID": "1"},
                          lambda es: any(e["data"]["status"] == "paused" for e in es))
    await task
    # resumed after id 1: b's row (id 2), then a's new row (id 3) once it changed
    assert [(e["id"], e["data"]["run_id"]) for e in live.events] == [("2", b), ("3", a)]
    assert live.events[-1]["data"]["status"] == "paused"
    resumed = await read_sse(h.app, "/api/fleet/stream?after=2", auth, count(1))
    assert [(e["id"], e["data"]["run_id"]) for e in resumed.events] == [("3", a)]


async def test_stream_errors(h: Harness) -> None:
    rid = h.run(SLOW)
    none = await read_sse(h.app, f"/api/runs/{rid}/stream", {}, count(1))
    assert none.status == 401
    unknown = await read_sse(h.app, "/api/runs/nope/stream", h.auth("viewer"), count(1))
    assert unknown.status == 404
    bad = await read_sse(h.app, "/api/fleet/stream", {**h.auth("viewer"),
                                                       "Last-Event-ID": "x1"}, count(1))
    assert bad.status == 422 and "Last-Event-ID" in bad.raw


# -- a hosted run reacting to people ----------------------------------------------------------


async def test_interrupt_cuts_the_model_call_and_delivers_at_once(h: Harness) -> None:
    rid = h.run([{"call": "think", "args": {"thought": "slow"}, "delay": 30}] * 3)
    h.app.state.console.host.execute([rid])
    await h.wait_for(lambda: "runner_attached" in h.types(rid), "the run to start")
    await asyncio.sleep(0.2)  # the first model call is in flight
    t0 = time.monotonic()
    r = await h.client.post(f"/api/runs/{rid}/guidance", headers=h.auth("annotator"),
                            json={"text": "stop thinking, act", "interrupt": True})
    assert r.status_code == 201
    await h.wait_for(lambda: "guidance_delivered" in h.types(rid), "delivery", timeout=5)
    assert time.monotonic() - t0 < 2.0
    types = h.types(rid)
    i = types.index("guidance_queued")
    assert types[i:i + 3] == ["guidance_queued", "interrupted", "guidance_delivered"]
    cut = h.store.events(rid, types=["interrupted"])[0]
    assert isinstance(cut, ev.Interrupted)
    assert (cut.phase, cut.reason, cut.step, cut.action_id) == ("model", "interrupt", 1, None)
    await h.client.post(f"/api/runs/{rid}/stop", json={}, headers=h.auth("admin"))
    await h.wait_for(lambda: "run_finished" in h.types(rid), "the stop")


async def test_pause_and_resume_a_hosted_run(h: Harness) -> None:
    rid = h.run([{"call": "think", "args": {"thought": f"t{n}"}, "delay": 0.15}
                 for n in range(6)])
    h.app.state.console.host.execute([rid])
    await h.wait_for(lambda: h.store.run(rid).step >= 1, "a first step")
    r = await h.client.post(f"/api/runs/{rid}/pause", json={"reason": "check"},
                            headers=h.auth("annotator"))
    assert r.status_code == 201
    await asyncio.sleep(0.6)  # the step in flight ends; then the run waits
    held = h.store.run(rid)
    assert held.status == "paused"
    await asyncio.sleep(0.5)
    assert h.store.run(rid).step == held.step  # no step while paused
    assert (await h.client.post(f"/api/runs/{rid}/resume",
                                headers=h.auth("annotator"))).status_code == 201
    await h.wait_for(lambda: "run_finished" in h.types(rid), "the run to finish")
    summary = h.store.run(rid)
    assert summary.status == "completed" and summary.step == 7  # 6 thoughts, then finish
