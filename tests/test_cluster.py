"""The console and the evaluation harness across processes and nodes: consoles on a shared
PostgreSQL store see and steer runs that other processes execute, share their users, and
execute their own runs on a real local Ray instance (`apollo serve --executor ray`, `apollo
eval --executor ray`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from apollo import events as ev
from apollo.cli import app
from apollo.config import Home
from apollo.models import ModelConfig
from apollo.protocols import Store
from apollo.runner import HOST, Runner, this_owner
from apollo.server.accounts import Accounts
from apollo.server.app import create_app
from apollo.server.state import Settings
from apollo.store.base import open_store
from conftest import TASK
from helpers import (
    check_log,
    kill9,
    of_type,
    run_cli,
    started,
    wait_for,
    write_script,
    write_task,
)
from test_server_cli import _url
from test_server_support import harness, read_sse

pytestmark = pytest.mark.anyio
DATA = Path(__file__).parent / "data"


def guided_script(path: Path) -> Path:
    """Thinks (slowly) until guidance says "wrap up", then finishes with answer "guided"."""
    return write_script(
        path, [{"call": "think", "args": {"thought": "still going"}, "delay": 0.2}],
        repeat=True, branches={"done": [{"call": "finish", "args": {"answer": "guided"}}]},
        on_guidance=[{"contains": "wrap up", "branch": "done"}])


def attached(store: Store, rid: str) -> list[ev.RunnerAttached]:
    return of_type(store.events(rid), ev.RunnerAttached)


def finished(store: Store, rid: str) -> ev.RunFinished | None:
    done = store.events(rid, types=["run_finished"])
    return done[-1] if done else None  # type: ignore[return-value]


async def poll(check: Callable[[], Awaitable[Any]], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.1)
    return value


async def test_consoles_on_postgres_see_and_steer_runs_other_processes_execute(
        pg_url: str, tmp_path: Path) -> None:
    """Two consoles on one PostgreSQL store, and runs executed by a third process (another
    node, as far as the store can tell): both consoles list the runs live and stream their
    events, a token made on one works on the other, and guidance and a stop posted to either
    console reach the runs in the other process."""
    task = write_task(tmp_path / "task")
    script = guided_script(tmp_path / "guided.yaml")
    other_store = open_store(pg_url)
    async with harness(tmp_path, store_url=pg_url) as h:
        other_accounts = Accounts.for_store(pg_url)
        other = create_app(other_store, Home(tmp_path / "console-b"), accounts=other_accounts)
        try:
            async with other.router.lifespan_context(other), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=other),
                    base_url="http://testserver") as client_b:

                async def rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
                    got = await client.get("/api/runs", headers=h.auth("viewer"))
                    assert got.status_code == 200, got.text
                    return list(got.json()["runs"])

                async def stepping() -> bool:
                    listed = [await rows(c) for c in (h.client, client_b)]
                    return all(len(x) == 2 and all(r["step"] >= 2 for r in x) for x in listed)

                with started(tmp_path / "node-b", "run", str(task), "--model",
                             f"scripted:{script}", "-n", "2", "--db", pg_url) as proc:
                    await poll(stepping, "both consoles to show both runs stepping", 60)
                    ids = sorted(r["run_id"] for r in await rows(h.client))
                    assert sorted(r["run_id"] for r in await rows(client_b)) == ids
                    owners = {h.store.run(rid).owner for rid in ids}
                    assert owners == {f"{HOST}:{proc.pid}"}
                    stream = asyncio.ensure_future(read_sse(
                        other, f"/api/runs/{ids[0]}/stream", h.auth("viewer"),
                        lambda got: any(e["data"]["type"] == "run_finished" for e in got),
                        timeout=60))
                    sent = await h.client.post(
                        f"/api/runs/{ids[0]}/guidance", headers=h.auth("annotator"),
                        json={"text": "Please wrap up now."})
                    assert sent.status_code == 201, sent.text
                    stop = await client_b.post(f"/api/runs/{ids[1]}/stop",
                                               headers=h.auth("admin"), json={"reason": "enough"})
                    assert stop.status_code == 201, stop.text
                    streamed = await stream
                    out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
        finally:
            other_accounts.close()
            other_store.close()
        log = h.store.events(ids[0])
        assert [int(e["id"]) for e in streamed.events] == [e.seq for e in log]
        assert [e["data"]["type"] for e in streamed.events] == [e.type for e in log]
        done = {rid: finished(h.store, rid) for rid in ids}
        assert (done[ids[0]].status, done[ids[0]].answer) == ("completed", "guided")
        assert (done[ids[1]].status, done[ids[1]].reason) == ("stopped", "stopped by ada: enough")
        [queued] = of_type(log, ev.GuidanceQueued)
        [delivered] = of_type(log, ev.GuidanceDelivered)
        assert (queued.author, delivered.guidance_ids) == ("ann", [queued.guidance_id])
        for rid in ids:
            check_log(h.store.events(rid))
            assert f"{rid}: {done[rid].status}" in out



async def test_a_console_with_resume_adopts_the_runs_of_a_process_that_died(
        any_store_url: str, tmp_path: Path) -> None:
    """The console (as `apollo serve --resume` runs it) looks for orphaned runs while it is
    up: a runner process killed with SIGKILL mid-run (its node died) has its run taken over
    here, from the log, and the run goes on and takes guidance."""
    task = write_task(tmp_path / "task")
    script = guided_script(tmp_path / "guided.yaml")
    async with harness(tmp_path, Settings(adopt_every_s=0.2), store_url=any_store_url) as h:
        with started(h.home.root, "run", str(task), "--model", f"scripted:{script}",
                     "--db", any_store_url) as proc:
            rid = await poll(lambda: asyncio.to_thread(
                lambda: [s.run_id for s in h.store.runs() if s.step >= 2]), "a run", 60)
            rid = rid[0]
            assert h.store.run(rid).owner == f"{HOST}:{proc.pid}"
            kill9(proc)
        dead = f"{HOST}:{proc.pid}"
        adopted = await poll(lambda: asyncio.to_thread(
            lambda: attached(h.store, rid)[1:]), "the console to adopt the run", 30)
        assert (adopted[0].previous_owner, adopted[0].owner) == (dead, this_owner())
        steps = h.store.run(rid).step
        await poll(lambda: asyncio.to_thread(lambda: h.store.run(rid).step >= steps + 2),
                   "the adopted run to go on", 30)
        sent = await h.client.post(f"/api/runs/{rid}/guidance", headers=h.auth("annotator"),
                                   json={"text": "wrap up"})
        assert sent.status_code == 201, sent.text
        await poll(lambda: asyncio.to_thread(finished, h.store, rid), "the run to finish", 30)
        assert (finished(h.store, rid).status, finished(h.store, rid).answer) == (
            "completed", "guided")
        assert len(attached(h.store, rid)) == 2  # adopted once, by this console only
        check_log(h.store.events(rid))
        # a run nobody claims is adopted only once its maker has been silent long enough
        waiting = h.run([{"call": "finish", "args": {"answer": "x"}}])
        runner = h.app.state.console.host.runner
        assert waiting not in runner.orphaned() and waiting in runner.orphaned(0.0)


def test_serve_with_the_ray_executor_resumes_and_starts_runs_as_actors(
        ray_address: str, pg_url: str, tmp_path: Path) -> None:
    """`apollo serve --executor ray --resume`: an unfinished run and a run started from the
    console both execute as Ray actors (not in the server's process), steered through the
    console."""
    home = tmp_path / "home"
    token = run_cli(home, "users", "add", "ada", "--role", "admin", "--db", pg_url).stdout.strip()
    store = open_store(pg_url)
    try:
        script = guided_script(tmp_path / "guided.yaml")
        model = ModelConfig(spec=f"scripted:{script}", options={"path": str(script)})
        waiting = Runner(store, Home(home)).create(TASK, model)  # made, never executed
        auth = {"Authorization": f"Bearer {token}"}
        with started(home, "serve", "--port", "0", "--db", pg_url, "--resume",
                     "--executor", "ray", "--ray-address", ray_address) as proc:
            url = _url(proc, r"Apollo console on (http://127\.0\.0\.1:\d+)/", timeout=60)
            with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
                made = client.post("/api/runs", json={"task": "word-freq"})
                assert made.status_code == 201, made.text
                [new] = made.json()["run_ids"]
                wait_for(lambda: store.run(waiting).step >= 2, "the resumed run to step", 90,
                         proc=proc)
                sent = client.post(f"/api/runs/{waiting}/guidance",
                                   json={"text": "Time to wrap up."})
                assert sent.status_code == 201, sent.text
                wait_for(lambda: finished(store, waiting) and finished(store, new),
                         "both runs to finish", 90, proc=proc)
                rows = {r["run_id"]: r for r in client.get("/api/runs").json()["runs"]}
                assert {rows[waiting]["status"], rows[new]["status"]} == {"completed"}
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        assert (finished(store, waiting).answer, finished(store, new).status) == (
            "guided", "completed")
        for rid in (waiting, new):
            [attach] = attached(store, rid)
            host, _, pid = attach.owner.rpartition(":")
            assert (attach.executor, host) == ("ray", HOST)
            assert int(pid) not in (proc.pid, os.getpid())  # an actor's process
            check_log(store.events(rid))
    finally:
        store.close()


def test_eval_with_the_ray_executor(ray_address: str, tmp_path: Path) -> None:
    """`apollo eval --executor ray`: every run of the suite executes as an actor; the results
    are those of a local evaluation (the oracle solves both tasks)."""
    out = tmp_path / "oracle"
    suite, solve = DATA / "tiny-suite", DATA / "tiny-suite" / "solve.yaml"
    done = run_cli(tmp_path / "home", "eval", "--suite", str(suite), "--model",
                   f"scripted:{solve}", "--seeds", "2", "--out", str(out), "--executor", "ray",
                   "--ray-address", ray_address, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "as ray actors, no human guidance" in done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["executor"] == "ray"
    assert len(results["runs"]) == 4
    assert all(r["status"] == "completed" and 80 <= r["final_score"] < 90
               for r in results["runs"])
    store = open_store(f"sqlite:///{out / 'apollo.db'}")
    try:
        for run in results["runs"]:
            [attach] = attached(store, run["run_id"])
            assert attach.executor == "ray"
            assert not attach.owner.endswith(f":{os.getpid()}")
    finally:
        store.close()


@pytest.mark.parametrize(("args", "message"), [
    (["serve", "--executor", "dask"], "--executor 'dask': expected one of local, ray"),
    (["serve", "--ray-address", "auto"], "--ray-address goes with --executor ray"),
    (["eval", "--model", "scripted:x", "--executor", "dask"],
     "--executor 'dask': expected one of local, ray"),
    (["eval", "--model", "scripted:x", "--ray-address", "auto"],
     "--ray-address goes with --executor ray"),
])
def test_executor_options_of_serve_and_eval_are_checked_first(
        tmp_path: Path, args: list[str], message: str) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(app, [*args, "--port", "0"] if args[0] == "serve" else
                                [*args, "--out", str(tmp_path / "out")],
                                env={"APOLLO_HOME": str(home)})
    assert str(result.exception) == message
    assert not (tmp_path / "out").exists()  # nothing made before the check
