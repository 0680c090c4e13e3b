"""The console's JSON API, in-process (httpx over ASGI): every route, its auth and roles,
its limits and its 4xx errors, and what each request appends to the log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from apollo import events as ev
from apollo.server.api import MAX_GUIDANCE_CHARS
from test_server_support import Harness

pytestmark = pytest.mark.anyio

SLOW = [{"call": "think", "args": {"thought": "slow"}, "delay": 60}]
"""A script whose first step takes a minute (the run stays live while the test acts)."""


def step(run_id: str, n: int, call: str = "run", args: dict[str, Any] | None = None,
         observation: str = "ok", error: bool = False) -> tuple[ev.ModelCalled, ev.ToolFinished]:
    """One recorded step (model call + observation), as an agent would append it."""
    aid = ev.action_id(run_id, n)
    tool_call = ev.ToolCall(id=f"c{n}", name=call, arguments=json.dumps(args or {"command": "ls"}))
    return (ev.ModelCalled(run_id=run_id, action_id=aid, step=n, content=f"thought {n}",
                           tool_call=tool_call, prompt_sha256="0" * 64, elapsed_s=n),
            ev.ToolFinished(run_id=run_id, action_id=aid, step=n, observation=observation,
                            exit_code=1 if error else 0, error=error, duration_s=0.5))


def finished(run_id: str, steps: int = 0) -> ev.RunFinished:
    return ev.RunFinished(run_id=run_id, status="completed", reason="done", steps=steps)


# -- auth -----------------------------------------------------------------------------------


async def test_nothing_but_login_and_static_is_reachable_without_a_login(h: Harness) -> None:
    rid = h.run(SLOW)
    schema = (await h.client.get("/openapi.json", headers=h.auth("viewer"))).json()
    assert len(schema["paths"]) >= 18
    for path, methods in schema["paths"].items():
        concrete = path.replace("{run_id}", rid).replace("{step}", "1").replace("{name}", "vic")
        for method in methods:
            r = await h.client.request(method, concrete, json={})
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    assert (await h.client.get("/openapi.json")).status_code == 401
    for page in ("/", f"/runs/{rid}", "/stats", "/users"):
        r = await h.client.get(page)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), page
    assert (await h.client.get("/login")).status_code == 200
    css = await h.client.get("/static/console.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


async def test_a_wrong_or_replaced_token_is_refused(h: Harness) -> None:
    assert (await h.client.get("/api/me", headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await h.client.get("/api/me", headers=h.auth("viewer"))).json() == {
        "name": "vic", "role": "viewer", "session": False}
    h.accounts.new_token("vic")
    assert (await h.client.get("/api/me", headers=h.auth("viewer"))).status_code == 401


async def test_roles_decide_who_may_do_what(h: Harness) -> None:
    rid = h.run(SLOW)
    guide = {"text": "look at case"}
    # viewer: read only
    assert (await h.client.get(f"/api/runs/{rid}", headers=h.auth("viewer"))).status_code == 200
    for path, body in ((f"/api/runs/{rid}/guidance", guide), (f"/api/runs/{rid}/pause", {}),
                       (f"/api/runs/{rid}/resume", None), (f"/api/runs/{rid}/stop", {}),
                       ("/api/users", {"name": "x", "role": "viewer"})):
        r = await h.client.post(path, json=body, headers=h.auth("viewer"))
        assert r.status_code == 403, path
    r = await h.client.post(f"/api/runs/{rid}/guidance", json=guide, headers=h.auth("viewer"))
    assert r.json()["detail"] == "this needs the annotator role (you are viewer)"
    # annotator: guide, label, pause / resume; not stop, users or starting runs
    r = await h.client.post(f"/api/runs/{rid}/guidance", json=guide, headers=h.auth("annotator"))
    assert r.status_code == 201
    assert (await h.client.post(f"/api/runs/{rid}/stop", json={},
                                headers=h.auth("annotator"))).status_code == 403
    assert (await h.client.get("/api/users", headers=h.auth("annotator"))).status_code == 403
    assert (await h.client.post("/api/runs", json={"task": "word-freq"},
                                headers=h.auth("annotator"))).status_code == 403
    page = await h.client.get("/users", headers=h.auth("annotator"))
    assert page.status_code == 403 and "needs the admin role" in page.text
    # admin: everything
    assert (await h.client.post(f"/api/runs/{rid}/stop", json={"reason": "enough"},
                                headers=h.auth("admin"))).status_code == 201
    stop = h.store.events(rid, types=["run_stopped"])[0]
    assert isinstance(stop, ev.RunStopped) and (stop.author, stop.reason) == ("ada", "enough")


async def test_cookie_login_csrf_and_logout(h: Harness) -> None:
    rid = h.run(SLOW)
    r = await h.client.post("/login", json={"token": h.tokens["annotator"], "next": "/stats"})
    assert r.status_code == 200 and r.json() == {"name": "ann", "role": "annotator",
                                                 "next": "/stats"}
    cookie = r.headers["set-cookie"]
    for attr in ("apollo_session=", "HttpOnly", "SameSite=strict", "Path=/"):
        assert attr.lower() in cookie.lower(), attr
    assert "secure" not in cookie.lower()  # plain http on loopback
    me = await h.client.get("/api/me")
    assert me.json() == {"name": "ann", "role": "annotator", "session": True}
    page = await h.client.get("/")
    assert page.status_code == 200
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    assert len(csrf) > 20
    url = f"/api/runs/{rid}/guidance"
    no_token = await h.client.post(url, json={"text": "hi"})
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["detail"]
    wrong = await h.client.post(url, json={"text": "hi"}, headers={"X-CSRF-Token": "x" * 32})
    assert wrong.status_code == 403
    other_site = await h.client.post(url, json={"text": "hi"}, headers={
        "X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert other_site.status_code == 403
    ok = await h.client.post(url, json={"text": "hi"}, headers={
        "X-CSRF-Token": csrf, "Origin": "http://testserver"})
    assert ok.status_code == 201
    assert (await h.client.post("/logout")).status_code == 403  # CSRF on logout too
    out = await h.client.post("/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 200
    h.client.cookies.clear()
    h.client.cookies.set("apollo_session", cookie.split("=", 1)[1].split(";")[0])
    assert (await h.client.get("/api/me")).status_code == 401  # the session is gone


async def test_form_login_and_one_time_links(h: Harness) -> None:
    bad = await h.client.post("/login", data={"token": "wrong", "next": "/"})
    assert bad.status_code == 401 and "Unknown token." in bad.text
    cross = await h.client.post("/login", data={"token": h.tokens["viewer"]},
                                headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    form = await h.client.post("/login", data={"token": h.tokens["viewer"], "next": "//evil.com"})
    assert form.status_code == 303 and form.headers["location"] == "/"
    h.client.cookies.clear()
    code = h.accounts.new_login_link("ann")
    link = await h.client.get(f"/login?code={code}&next=/stats")
    assert link.status_code == 303 and link.headers["location"] == "/stats"
    assert (await h.client.get("/api/me")).json()["name"] == "ann"
    h.client.cookies.clear()
    again = await h.client.get(f"/login?code={code}")
    assert again.status_code == 401 and "already used" in again.text


async def test_security_headers_on_every_response(h: Harness) -> None:
    for path in ("/login", "/api/me", "/static/console.js"):
        r = await h.client.get(path, headers=h.auth("viewer"))
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"


# -- guidance, labels, controls -------------------------------------------------------------


async def test_guidance_is_appended_with_its_author(h: Harness) -> None:
    rid = h.run(SLOW)
    r = await h.client.post(f"/api/runs/{rid}/guidance", headers=h.auth("annotator"),
                            json={"text": "  Count case-insensitively.  ", "interrupt": True})
    assert r.status_code == 201
    body = r.json()
    queued = h.store.events(rid, types=["guidance_queued"])
    assert len(queued) == 1 and isinstance(queued[0], ev.GuidanceQueued)
    g = queued[0]
    assert (g.author, g.text, g.interrupt, g.guidance_id) == (
        "ann", "Count case-insensitively.", True, body["guidance_id"])
    assert body == {"run_id": rid, "seq": g.seq, "type": "guidance_queued",
                    "guidance_id": g.guidance_id}
    listed = (await h.client.get(f"/api/runs/{rid}/guidance", headers=h.auth("viewer"))).json()
    assert [(x["guidance_id"], x["status"], x["author"]) for x in listed] == [
        (g.guidance_id, "queued", "ann")]
    h.log(rid, ev.GuidanceDelivered(run_id=rid, guidance_ids=[g.guidance_id], step=0))
    listed = (await h.client.get(f"/api/runs/{rid}/guidance", headers=h.auth("viewer"))).json()
    assert (listed[0]["status"], listed[0]["delivered_step"]) == ("delivered", 0)


@pytest.mark.parametrize(("body", "detail"), [
    ({"text": ""}, "body.text: String should have at least 1 character"),
    ({"text": "   "}, "body.text: Value error, guidance text is empty"),
    ({"text": "x" * (MAX_GUIDANCE_CHARS + 1)},
     f"body.text: String should have at most {MAX_GUIDANCE_CHARS} characters"),
    ({"text": "hi", "urgent": True}, "body.urgent: Extra inputs are not permitted"),
    ({}, "body.text: Field required"),
])
async def test_guidance_limits(h: Harness, body: dict[str, Any], detail: str) -> None:
    rid = h.run(SLOW)
    r = await h.client.post(f"/api/runs/{rid}/guidance", json=body, headers=h.auth("annotator"))
    assert r.status_code == 422 and r.json() == {"detail": detail}
    assert h.store.events(rid, types=["guidance_queued"]) == []


async def test_guidance_to_unknown_ended_or_closed_runs(h: Harness) -> None:
    auth = h.auth("annotator")
    r = await h.client.post("/api/runs/nope/guidance", json={"text": "hi"}, headers=auth)
    assert r.status_code == 404 and r.json() == {"detail": "unknown run 'nope'"}
    rid = h.run(SLOW)
    r = await h.client.post(f"/api/runs/{rid[:-2]}/guidance", json={"text": "hi"}, headers=auth)
    assert r.status_code == 404  # a prefix is not a run id in the API
    h.log(rid, finished(rid))
    r = await h.client.post(f"/api/runs/{rid}/guidance", json={"text": "hi"}, headers=auth)
    assert r.status_code == 409 and "it has ended (completed)" in r.json()["detail"]
    closed = h.run(SLOW, guidance=False)
    r = await h.client.post(f"/api/runs/{closed}/guidance", json={"text": "hi"}, headers=auth)
    assert r.status_code == 409 and "takes no guidance" in r.json()["detail"]


async def test_oversized_requests_are_refused(h: Harness) -> None:
    rid = h.run(SLOW)
    r = await h.client.post(f"/api/runs/{rid}/guidance", headers={
        **h.auth("annotator"), "Content-Type": "application/json"},
        content=json.dumps({"text": "x" * 70_000}))
    assert r.status_code == 413 and r.json() == {"detail": "request body over 65536 bytes"}

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"text": "'
        for _ in range(20):
            yield b"x" * 4000
        yield b'"}'

    r = await h.client.post(f"/api/runs/{rid}/guidance", content=chunked(), headers={
        **h.auth("annotator"), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert h.store.events(rid, types=["guidance_queued"]) == []
    small = await h.client.post(f"/api/runs/{rid}/guidance", headers={
        **h.auth("annotator"), "Content-Type": "application/json"},
        content=b'{"text": "' + b"x" * 8000 + b'"}')
    assert small.status_code == 201  # the largest message fits


async def test_labels(h: Harness) -> None:
    rid = h.run(SLOW)
    h.log(rid, *step(rid, 1), *step(rid, 2))
    auth = h.auth("annotator")
    r = await h.client.post(f"/api/runs/{rid}/labels", headers=auth, json={
        "action_id": f"{rid}.2", "verdict": "bad", "reason": "checks irrelevant details"})
    assert r.status_code == 201
    label = h.store.events(rid, types=["action_labeled"])[-1]
    assert isinstance(label, ev.ActionLabeled)
    assert (label.action_id, label.verdict, label.reason, label.source, label.author) == (
        f"{rid}.2", "bad", "checks irrelevant details", "human", "ann")
    for action in (f"{rid}.3", f"{rid}.0", "other.1"):
        r = await h.client.post(f"/api/runs/{rid}/labels", headers=auth,
                                json={"action_id": action, "verdict": "good"})
        assert r.status_code == 404 and "has no action" in r.json()["detail"], action
    for body in ({"action_id": f"{rid}.1", "verdict": "meh"},
                 {"action_id": f"{rid}.1", "verdict": "good", "reason": "x" * 2001}):
        r = await h.client.post(f"/api/runs/{rid}/labels", headers=auth, json=body)
        assert r.status_code == 422
    h.log(rid, finished(rid, steps=2))  # a finished run's actions can still be labelled
    r = await h.client.post(f"/api/runs/{rid}/labels", headers=auth,
                            json={"action_id": f"{rid}.1", "verdict": "good"})
    assert r.status_code == 201


async def test_pause_resume_stop_follow_the_run_state(h: Harness) -> None:
    rid = h.run(SLOW)
    ann, adm = h.auth("annotator"), h.auth("admin")
    post = h.client.post
    assert (await post(f"/api/runs/{rid}/resume", headers=ann)).status_code == 409
    assert (await post(f"/api/runs/{rid}/pause", json={"reason": "look"},
                       headers=ann)).status_code == 201
    again = await post(f"/api/runs/{rid}/pause", json={}, headers=ann)
    assert again.status_code == 409 and again.json()["detail"].endswith("is already paused")
    assert (await post(f"/api/runs/{rid}/resume", headers=ann)).status_code == 201
    assert (await post(f"/api/runs/{rid}/stop", json={}, headers=adm)).status_code == 201
    assert (await post(f"/api/runs/{rid}/stop", json={}, headers=adm)).status_code == 409
    assert (await post(f"/api/runs/{rid}/pause", json={}, headers=ann)).status_code == 409
    assert h.types(rid)[-3:] == ["run_paused", "run_resumed", "run_stopped"]
    paused, resumed = h.store.events(rid, types=["run_paused", "run_resumed"])
    assert isinstance(paused, ev.RunPaused) and (paused.author, paused.reason) == ("ann", "look")
    assert isinstance(resumed, ev.RunResumed) and resumed.author == "ann"
    done = h.run(SLOW)
    h.log(done, finished(done))
    for action in ("pause", "stop"):
        r = await post(f"/api/runs/{done}/{action}", json={}, headers=adm)
        assert r.status_code == 409 and "it has ended" in r.json()["detail"]
    assert (await post("/api/runs/nope/pause", json={}, headers=adm)).status_code == 404


# -- reading --------------------------------------------------------------------------------


async def test_run_list_with_signals_and_filters(h: Harness) -> None:
    calm, busy = h.run(SLOW), h.run(SLOW)
    h.log(busy, ev.RunnerAttached(run_id=busy, owner="elsewhere:1"))
    for n in (1, 2, 3):
        h.log(busy, *step(busy, n, args={"command": "file -i corpus.txt"}, error=True))
    h.log(busy, ev.ActionLabeled(run_id=busy, action_id=f"{busy}.2", verdict="bad",
                                 source="judge", author="judge-model"),
          ev.GuidanceQueued(run_id=busy, guidance_id="g-1", author="ann", text="stop that"))
    fleet = h.app.state.console.fleet
    await h.wait_for(lambda: fleet.gid == 11, "the fold of all 11 events")
    data = (await h.client.get("/api/runs", headers=h.auth("viewer"))).json()
    rows = {r["run_id"]: r for r in data["runs"]}
    assert set(rows) == {calm, busy} and data["gid"] == 11
    row = rows[busy]
    assert (row["status"], row["step"], row["task_id"], row["max_steps"]) == (
        "running", 3, "t", 100)
    assert row["last_action"] == "run: file -i corpus.txt"
    assert row["signals"] | {"guidance_waiting_since": None} == {
        "guidance_waiting": 1, "guidance_waiting_since": None, "stalled": False,
        "error_streak": 3, "repeats": 3, "judge_flagged": 1}
    assert row["attention"] is True and rows[calm]["attention"] is False
    assert row["elapsed_s"] == 3.5  # as RunState folds it: the last step at 3 s, then 0.5 s
    only = (await h.client.get("/api/runs?attention=true", headers=h.auth("viewer"))).json()
    assert [r["run_id"] for r in only["runs"]] == [busy]
    created = (await h.client.get("/api/runs?status=created", headers=h.auth("viewer"))).json()
    assert [r["run_id"] for r in created["runs"]] == [calm]
    h.log(busy, ev.ActionLabeled(run_id=busy, action_id=f"{busy}.2", verdict="good",
                                 source="human", author="ann"))  # a person's label wins
    await h.wait_for(lambda: fleet.views[busy].judge_flagged() == 0, "the human label")


async def test_run_detail_events_files_and_jobs(h: Harness) -> None:
    rid = h.run(SLOW)
    h.log(rid, *step(rid, 1, "write_file", {"path": "a.py", "content": "print(1)\n"}),
          *step(rid, 2, "edit_file", {"path": "a.py", "old": "1", "new": "2"}),
          *step(rid, 3, "write_file", {"path": "bad.py", "content": "x"}, error=True),
          *step(rid, 4, "job_start", {"name": "train", "command": "python train.py"},
                observation="started job train"),
          *step(rid, 5, "job_output", {"name": "train"}, observation="epoch 1 loss 0.3"))
    auth = h.auth("viewer")
    one = (await h.client.get(f"/api/runs/{rid}", headers=auth)).json()
    assert one["task"]["id"] == "t" and one["config"]["max_steps"] == 100
    assert one["model"]["spec"].startswith("scripted:")
    page = (await h.client.get(f"/api/runs/{rid}/events?after=2&limit=3", headers=auth)).json()
    assert [e["seq"] for e in page["events"]] == [3, 4, 5] and page["more"] is True
    assert page["last_seq"] == 11 and page["events"][0]["type"] == "tool_finished"
    files = (await h.client.get(f"/api/runs/{rid}/files", headers=auth)).json()
    assert [f["path"] for f in files] == ["a.py"]  # the failed write is not a change
    assert [(c["step"], c["op"]) for c in files[0]["changes"]] == [
        (1, "write_file"), (2, "edit_file")]
    assert files[0]["changes"][0]["content"] == "print(1)\n"
    assert (files[0]["changes"][1]["old"], files[0]["changes"][1]["new"]) == ("1", "2")
    jobs = (await h.client.get(f"/api/runs/{rid}/jobs", headers=auth)).json()
    assert len(jobs) == 1
    assert (jobs[0]["job"], jobs[0]["output"], jobs[0]["command"]) == (
        "train", "started job train\nepoch 1 loss 0.3", "python train.py")
    assert [c["tool"] for c in jobs[0]["calls"]] == ["job_start", "job_output"]
    for path in ("/api/runs/nope", "/api/runs/nope/events", "/api/runs/nope/files",
                 "/api/runs/nope/jobs", "/api/runs/nope/guidance"):
        assert (await h.client.get(path, headers=auth)).status_code == 404, path
    bad = await h.client.get(f"/api/runs/{rid}/events?limit=0", headers=auth)
    assert bad.status_code == 422 and "limit" in bad.json()["detail"]


async def test_full_observation_and_artifacts(h: Harness) -> None:
    rid = h.run(SLOW)
    run_dir = h.home.run_dir(rid)
    (run_dir / "artifacts").mkdir(parents=True)
    (run_dir / "artifacts" / "2.txt").write_text("the whole output " * 1000)
    called, done = step(rid, 1, observation="<script>alert(1)</script>")
    called2, done2 = step(rid, 2, observation="head ... tail")
    h.log(rid, called, done, called2, done2.model_copy(update={"artifact": "artifacts/2.txt"}))
    auth = h.auth("viewer")
    r = await h.client.get(f"/api/runs/{rid}/steps/1/observation", headers=auth)
    assert r.status_code == 200 and r.text == "<script>alert(1)</script>"
    assert r.headers["content-type"].startswith("text/plain")
    r = await h.client.get(f"/api/runs/{rid}/steps/2/observation", headers=auth)
    assert r.text == "the whole output " * 1000
    assert (await h.client.get(f"/api/runs/{rid}/steps/3/observation",
                               headers=auth)).status_code == 404
    # an artifact path that leaves the run directory is not served
    h.log(rid, ev.ModelCalled(run_id=rid, action_id=f"{rid}.3", step=3, content="",
                              tool_call=None, prompt_sha256="0" * 64, elapsed_s=3),
          ev.ToolFinished(run_id=rid, action_id=f"{rid}.3", step=3, observation="short",
                          artifact="../../../../etc/passwd"))
    r = await h.client.get(f"/api/runs/{rid}/steps/3/observation", headers=auth)
    assert r.text == "short"


async def test_context_at_a_step_is_the_verified_prompt(h: Harness) -> None:
    rid = h.run([{"call": "think", "args": {"thought": "plan"}},
                 {"call": "run", "args": {"command": "echo hi"}}])
    h.app.state.console.host.execute([rid])
    await h.wait_for(lambda: "run_finished" in h.types(rid), "the run to finish")
    r = await h.client.get(f"/api/runs/{rid}/steps/2/context", headers=h.auth("viewer"))
    data = r.json()
    assert r.status_code == 200 and data["verified"] is True
    assert data["sha256"] == data["recorded_sha256"]
    called = h.store.events(rid, types=["model_called"])[1]
    assert isinstance(called, ev.ModelCalled) and data["sha256"] == called.prompt_sha256
    roles = [m["role"] for m in data["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    assert data["messages"][1]["content"].startswith("# Task: A test task")
    assert "[Step 2 of 100" in data["messages"][-1]["content"]
    r = await h.client.get(f"/api/runs/{rid}/steps/9/context", headers=h.auth("viewer"))
    assert r.status_code == 404 and r.json() == {"detail": "the run has no step 9"}


# -- heartbeats, stats, tasks, users, starting runs -----------------------------------------


async def test_heartbeats_and_stats(h: Harness) -> None:
    rid = h.run(SLOW)
    r = await h.client.post(f"/api/runs/{rid}/heartbeat", headers=h.auth("annotator"))
    assert r.status_code == 200 and r.json()["span_s"] == 0
    span = h.accounts.spans(rid)[0]
    from datetime import timedelta

    h.accounts.heartbeat("ann", rid, span.started_at + timedelta(seconds=15))
    h.accounts.heartbeat("ann", rid, span.started_at + timedelta(seconds=30))
    assert (await h.client.post("/api/runs/nope/heartbeat",
                                headers=h.auth("viewer"))).status_code == 404
    await h.client.post(f"/api/runs/{rid}/guidance", json={"text": "a"}, headers=h.auth("annotator"))
    await h.client.post(f"/api/runs/{rid}/pause", json={}, headers=h.auth("admin"))
    s = (await h.client.get("/api/stats", headers=h.auth("viewer"))).json()
    assert s["totals"]["attention_s"] == 30 and s["totals"]["guidance"] == 1
    run = next(r for r in s["runs"] if r["run_id"] == rid)
    assert (run["attention_s"], run["annotators"], run["guidance"], run["controls"]) == (
        30, ["ann"], 1, 1)
    people = {p["name"]: p for p in s["annotators"]}
    assert (people["ann"]["attention_s"], people["ann"]["guidance"], people["ann"]["role"]) == (
        30, 1, "annotator")
    assert people["ada"]["controls"] == 1


async def test_tasks_and_starting_runs(h: Harness) -> None:
    tasks = (await h.client.get("/api/tasks", headers=h.auth("viewer"))).json()
    assert "word-freq" in [t["id"] for t in tasks]
    adm = h.auth("admin")
    r = await h.client.post("/api/runs", headers=adm, json={
        "task": "word-freq", "model": "scripted:demo-drift", "runs": 2, "max_steps": 2})
    assert r.status_code == 201
    ids = r.json()["run_ids"]
    assert len(ids) == 2
    for rid in ids:
        await h.wait_for(lambda rid=rid: "run_finished" in h.types(rid), "a started run to end")
        assert h.store.run(rid).status == "limit"
    r = await h.client.post("/api/runs", headers=adm, json={"task": "nope"})
    assert r.status_code == 404 and "unknown task" in r.json()["detail"]
    r = await h.client.post("/api/runs", headers=adm, json={"task": "word-freq", "model": "x:y"})
    assert r.status_code == 422 and "bad model spec" in r.json()["detail"]
    r = await h.client.post("/api/runs", headers=adm, json={"task": "word-freq", "runs": 51})
    assert r.status_code == 422


async def test_users(h: Harness) -> None:
    adm = h.auth("admin")
    assert [u["name"] for u in (await h.client.get("/api/users", headers=adm)).json()] == [
        "ada", "ann", "vic"]
    r = await h.client.post("/api/users", headers=adm, json={"name": "zoe", "role": "viewer"})
    assert r.status_code == 201 and r.json()["token"].startswith("apo_")
    me = await h.client.get("/api/me", headers={"Authorization": f"Bearer {r.json()['token']}"})
    assert me.json()["name"] == "zoe"
    assert (await h.client.post("/api/users", headers=adm, json={
        "name": "zoe", "role": "viewer"})).status_code == 409
    for bad in ({"name": "no spaces", "role": "viewer"}, {"name": "x", "role": "root"}):
        assert (await h.client.post("/api/users", headers=adm, json=bad)).status_code == 422
    assert (await h.client.delete("/api/users/zoe", headers=adm)).status_code == 204
    assert (await h.client.delete("/api/users/zoe", headers=adm)).status_code == 404
    assert (await h.client.delete("/api/users/ada", headers=adm)).status_code == 409
    assert (await h.client.get("/api/me", headers={
        "Authorization": f"Bearer {r.json()['token']}"})).status_code == 401
