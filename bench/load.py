"""Load benchmark: many concurrent runs behind the console, watched and steered over loopback.

Run `python -m bench.load` (`--quick` for a smoke run, `--sizes 50,200`, `--out`, `--check`).
For each size N, in a fresh temporary APOLLO_HOME with the default SQLite store (or, with
`--db postgresql://...`, a new schema of that PostgreSQL database):

1. N runs of a task built in code, driven by a scripted model that takes 1 s per step (`think`
   only, so no sandbox is involved), `max_steps` 50, each paused right after it is created.
2. `apollo serve --resume --concurrency N --port 0` in a subprocess: the console hosts and
   executes every run (its run host). Once each run is attached and held at its first step by
   the pause, the server's resident memory is read; **memory per idle run** = (that - the same
   server's over an empty store) / N.
3. Clients in this process, on 127.0.0.1 (httpx + asyncio): 50 SSE viewers, each on one run's
   stream (`GET /api/runs/{id}/stream`, runs 0..49), and an annotator (an annotator token) that,
   at a steady pace while the runs go on, posts one guidance message to every run, one label to
   every run (on its first action), and reads the dashboard (`GET /api/runs`) once a second.
4. The runs are unpaused (appends to the store) and go to their end; the benchmark waits for
   every run to finish and every viewer to see its run's `run_finished`, within a deadline.

Measured, per size: events lost and duplicated (every viewer's sequence numbers against its
run's log in the store; goal 0 and 0), guidance delivered (each posted message id in a
`guidance_delivered` of its run; goal all), the p99 of event-to-viewer latency (the store's
timestamp of an event to its arrival at a viewer, for events appended after the unpause), the
p99 API latency (every request of the annotator), memory per idle run, and the steps per second
against the ideal N / 1 s. Then how each changes from the smallest size to the largest.
Everything (server, files) is stopped and removed at the end; it never takes more than
`deadline` seconds per size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from apollo import events as ev
from apollo.agent import AgentConfig
from apollo.config import Home
from apollo.models import parse_model_spec
from apollo.runner import Runner
from apollo.store.base import open_store
from apollo.tasks import TaskSpec
from bench.report import Result, main, percentile

SUITE = "load"
TASK = TaskSpec(id="load", title="Load", instructions="Think, step after step.")
SCRIPT = """\
name: bench-load
description: Thinks, taking {delay} s per step like a slow model endpoint.
repeat: true
steps:
  - thought: Thinking.
    call: think
    args: {{thought: "One more step."}}
    delay: {delay}
"""
_BIN = Path(sys.executable).with_name("apollo")
APOLLO = [str(_BIN)] if _BIN.is_file() else [sys.executable, "-m", "apollo"]


@dataclass(frozen=True)
class Sizes:
    runs: tuple[int, ...]
    steps: int
    delay_s: float
    viewers: int


FULL = Sizes(runs=(50, 200), steps=50, delay_s=1.0, viewers=50)
QUICK = Sizes(runs=(5, 20), steps=8, delay_s=0.5, viewers=10)


@dataclass
class Viewer:
    run_id: str
    seqs: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    finished: bool = False


@dataclass
class Annotator:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    guidance: dict[str, str] = field(default_factory=dict)
    """guidance id -> run id"""


# -- the server --------------------------------------------------------------------------------


class Server:
    """`apollo serve` in a subprocess, stopped (SIGINT, then SIGKILL) by its handle."""

    def __init__(self, home: Path, db: str, concurrency: int):
        self.log = home / "serve.log"
        env = {**os.environ, "APOLLO_HOME": str(home)}
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [*APOLLO, "serve", "--port", "0", "--concurrency", str(concurrency), "--resume",
                 "--db", db], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                env=env, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not found:
            self.stop()
            raise RuntimeError(f"apollo serve did not start: {line!r} {self.log.read_text()}")
        self.url = f"http://127.0.0.1:{found.group(1)}"

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        return kb * 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def settled_rss(server: Server) -> int:
    """The server's resident memory once it has answered a request and settled."""
    with httpx.Client(timeout=10) as client:
        client.get(server.url + "/api/me")  # 401: the app is up, no page rendered
    time.sleep(1.0)
    return server.rss_bytes()


def wait_until(check: Any, what: str, deadline: float, poll: float = 0.1) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"load benchmark: timed out waiting for {what}")
        time.sleep(poll)


@contextlib.contextmanager
def fresh_store(home: Path, db: str | None) -> Iterator[str]:
    """The URL of a new, empty store: a SQLite file in `home`, or (with `--db
    postgresql://...`) a schema of its own in that database, dropped afterwards."""
    home.mkdir(parents=True, exist_ok=True)
    if db is None:
        url = f"sqlite:///{home / 'apollo.db'}"
        open_store(url).close()
        yield url
        return
    from apollo.store.postgres import connect

    schema = f"bench_{secrets.token_hex(6)}"
    with connect(db, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{db}{'&' if '?' in db else '?'}options=-csearch_path%3D{schema}"
    try:
        open_store(url).close()  # its tables, before the server and the runs
        yield url
    finally:
        with connect(db, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def idle_server_rss(root: Path, db: str | None) -> int:
    """Resident memory of the console over an empty store (the base of memory per run)."""
    with fresh_store(root / "empty", db) as url:
        server = Server(root / "empty", url, 8)
        try:
            return settled_rss(server)
        finally:
            server.stop()


# -- the clients -------------------------------------------------------------------------------


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def watch(client: httpx.AsyncClient, viewer: Viewer, live_from: list[float]) -> None:
    """Follow one run's SSE stream until its `run_finished`."""
    async with client.stream("GET", f"/api/runs/{viewer.run_id}/stream",
                             timeout=httpx.Timeout(10, read=None)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            now = time.time()
            event = json.loads(line[6:])
            viewer.seqs.append(int(event["seq"]))
            at = _time(event["time"])
            if live_from and at >= live_from[0]:
                viewer.latencies.append(now - at)
            if event["type"] == "run_finished":
                viewer.finished = True
                return


async def annotate(client: httpx.AsyncClient, who: Annotator, run_ids: list[str],
                   span_s: float) -> None:
    """A guidance message for every run, then a label for every run, at a steady pace over
    `span_s` seconds; meanwhile the dashboard (`GET /api/runs`) once a second."""
    actions = [("guide", r) for r in run_ids] + [("label", r) for r in run_ids]
    interval = span_s / max(1, len(actions))
    done = asyncio.Event()

    async def request(kind: str, run_id: str) -> None:
        t0 = time.perf_counter()
        if kind == "guide":
            r = await client.post(f"/api/runs/{run_id}/guidance",
                                  json={"text": f"Mind the edge cases of {run_id}."})
        elif kind == "label":
            r = await client.post(f"/api/runs/{run_id}/labels", json={
                "action_id": ev.action_id(run_id, 1), "verdict": "good", "reason": "fine"})
        else:
            r = await client.get("/api/runs")
        who.latencies.append(time.perf_counter() - t0)
        if r.status_code >= 300:
            who.errors.append(f"{kind} {run_id}: {r.status_code} {r.text[:200]}")
        elif kind == "guide":
            who.guidance[r.json()["guidance_id"]] = run_id

    async def dashboard() -> None:
        while not done.is_set():
            await request("dashboard", "")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0)

    poller = asyncio.create_task(dashboard())
    start = time.monotonic()
    sent = []
    for i, (kind, run_id) in enumerate(actions):
        await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        sent.append(asyncio.create_task(request(kind, run_id)))
    await asyncio.gather(*sent)
    done.set()
    await poller


# -- one size ----------------------------------------------------------------------------------


def one_size(root: Path, n: int, sizes: Sizes, base_rss: int,
             db: str | None) -> dict[str, Any]:
    home = Home(root / f"n{n}")
    with fresh_store(home.root, db) as url:
        return _one_size(home, url, n, sizes, base_rss)


def _one_size(home: Home, url: str, n: int, sizes: Sizes, base_rss: int) -> dict[str, Any]:
    store = open_store(url)
    deadline = time.monotonic() + 120 + sizes.steps * sizes.delay_s * 4
    script = home.root / "slow.yaml"
    script.write_text(SCRIPT.format(delay=sizes.delay_s), encoding="utf-8")
    model = parse_model_spec(f"scripted:{script}")
    runner = Runner(store, home)
    agent = AgentConfig(max_steps=sizes.steps, max_time_s=10 * sizes.steps * sizes.delay_s + 600,
                        tools=["think"], summarize_at=10**9, context_window=2 * 10**9)
    ids = [runner.create(TASK, model, agent, unsafe_local=True) for _ in range(n)]
    for rid in ids:
        store.append(ev.RunPaused(run_id=rid, author="bench", reason="held until measured"))
    from apollo.server.accounts import Accounts

    accounts = Accounts.for_store(store.url)
    token = accounts.add_user("annotator", "annotator")
    accounts.close()

    server = Server(home.root, url, n)
    try:
        wait_until(lambda: all(r.owner for r in store.runs()), f"{n} runs to attach", deadline)
        rss = settled_rss(server)
        viewers = [Viewer(r) for r in ids[:sizes.viewers]]
        annotator = Annotator()
        live_from: list[float] = []

        async def clients() -> float:
            headers = {"Authorization": f"Bearer {token}"}
            limits = httpx.Limits(max_connections=sizes.viewers + 50)
            async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits,
                                         timeout=30) as client:
                watching = [asyncio.create_task(watch(client, v, live_from)) for v in viewers]
                await asyncio.sleep(1.0)  # every stream is open
                live_from.append(time.time())
                t0 = time.monotonic()
                await asyncio.to_thread(lambda: [store.append(ev.RunResumed(
                    run_id=r, author="bench")) for r in ids])
                await annotate(client, annotator, ids, 0.6 * sizes.steps * sizes.delay_s)
                while not all(s.terminal for s in await asyncio.to_thread(store.runs)):
                    if time.monotonic() > deadline:
                        raise RuntimeError("load benchmark: the runs did not finish in time")
                    await asyncio.sleep(0.2)
                wall = time.monotonic() - t0
                await asyncio.wait_for(asyncio.gather(*watching),
                                       max(5.0, deadline - time.monotonic()))
                return wall

        wall = asyncio.run(clients())
    finally:
        server.stop()
    logs = {rid: store.events(rid) for rid in ids}
    store.close()
    return {"n": n, "rss": rss, "base_rss": base_rss, "viewers": viewers,
            "annotator": annotator, "logs": logs, "wall": wall, "store": url.split(":")[0]}


def judge(m: dict[str, Any], sizes: Sizes) -> list[Result]:
    n, logs = m["n"], m["logs"]
    viewers: list[Viewer] = m["viewers"]
    annotator: Annotator = m["annotator"]
    lost = dup = 0
    for v in viewers:  # a viewer stops at run_finished, the last event of its run
        expected = [e.seq for e in logs[v.run_id]]
        ends = [e.seq for e in logs[v.run_id] if isinstance(e, ev.RunFinished)]
        expected = expected[:ends[-1]] if ends else expected
        seen = set(v.seqs)
        lost += len(set(expected) - seen)
        dup += len(v.seqs) - len(seen)
    bad_logs = [r for r, log in logs.items() if [e.seq for e in log] != list(
        range(1, len(log) + 1)) or [e.step for e in log if isinstance(e, ev.ModelCalled)]
        != list(range(1, sizes.steps + 1))]
    delivered = {g for log in logs.values() for e in log if isinstance(e, ev.GuidanceDelivered)
                 for g in e.guidance_ids}
    posted = annotator.guidance
    latencies = [x for v in viewers for x in v.latencies]
    steps = sum(1 for log in logs.values() for e in log if isinstance(e, ev.ModelCalled))
    ideal = n / sizes.delay_s
    per_run = (m["rss"] - m["base_rss"]) / n
    events = sum(len(log) for log in logs.values())
    common = {"store": m["store"], "runs": n, "viewers": len(viewers), "events_in_store": events,
              "events_viewed": sum(len(v.seqs) for v in viewers)}
    return [
        Result(f"lost_{n}", f"{n} runs: events lost by the {len(viewers)} SSE viewers", lost,
               "events", 0, "<=", {**common, "logs_not_gap_free_or_short": bad_logs}),
        Result(f"duplicated_{n}", f"{n} runs: events duplicated at the viewers", dup,
               "events", 0, "<=", common),
        Result(f"guidance_{n}", f"{n} runs: guidance delivered / posted",
               len(set(posted) & delivered) / max(1, len(posted)) * 100, "%", 100, ">=",
               {"posted": len(posted), "delivered": len(set(posted) & delivered),
                "api_errors": annotator.errors[:5], "api_error_count": len(annotator.errors)}),
        Result(f"event_p99_ms_{n}", f"{n} runs: event-to-viewer latency, p99",
               percentile(latencies, 99) * 1000, "ms", 1000, "<=",
               {"samples": len(latencies), "p50_ms": round(percentile(latencies, 50) * 1000, 2),
                "max_ms": round(max(latencies) * 1000, 2)}),
        Result(f"api_p99_ms_{n}", f"{n} runs: API latency (annotator), p99",
               percentile(annotator.latencies, 99) * 1000, "ms", 1000, "<=",
               {"requests": len(annotator.latencies),
                "p50_ms": round(percentile(annotator.latencies, 50) * 1000, 2),
                "max_ms": round(max(annotator.latencies) * 1000, 2)}),
        Result(f"memory_per_idle_run_{n}", f"{n} runs: server memory per idle run", per_run,
               "B", details={"server_rss": m["rss"], "empty_server_rss": m["base_rss"]}),
        Result(f"throughput_{n}", f"{n} runs: steps/s ({sizes.steps} steps, "
               f"{sizes.delay_s:g} s model)", steps / m["wall"], "steps/s",
               round(0.8 * ideal, 3), ">=", {"steps": steps, "wall_s": round(m["wall"], 3),
                                             "ideal_steps_per_s": ideal}),
    ]


def changes(results: list[Result], small: int, large: int) -> list[Result]:
    """How each figure moved from the smallest size to the largest (large / small)."""
    by_key = {r.key: r for r in results}
    a, b = by_key[f"memory_per_idle_run_{small}"], by_key[f"memory_per_idle_run_{large}"]
    grown = b.details["server_rss"] - a.details["server_rss"]
    out = [Result("memory_per_idle_run_marginal",
                  f"server memory per idle run, marginal ({small} to {large} runs)",
                  grown / (large - small), "B",
                  details={"server_rss": {str(small): a.details["server_rss"],
                                          str(large): b.details["server_rss"]}})]
    for stem, what in (("event_p99_ms", "event-to-viewer p99"), ("api_p99_ms", "API p99"),
                       ("memory_per_idle_run", "memory per idle run")):
        a, b = by_key[f"{stem}_{small}"], by_key[f"{stem}_{large}"]
        out.append(Result(f"{stem}_ratio", f"{what}: {large} runs vs {small}",
                          b.value / a.value if a.value else float("nan"), "x",
                          details={str(small): a.value, str(large): b.value}))
    return out


def run(args: argparse.Namespace) -> list[Result]:
    sizes = QUICK if args.quick else FULL
    if args.sizes:
        sizes = Sizes(tuple(int(x) for x in args.sizes.split(",")), sizes.steps, sizes.delay_s,
                      sizes.viewers)
    root = Path(tempfile.mkdtemp(prefix="apollo-bench-load-"))
    try:
        base = idle_server_rss(root, args.db)
        results: list[Result] = []
        for n in sizes.runs:
            gc.collect()
            results.extend(judge(one_size(root, n, sizes, base, args.db), sizes))
        if len(sizes.runs) > 1:
            results.extend(changes(results, min(sizes.runs), max(sizes.runs)))
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", metavar="N,M", help="numbers of concurrent runs (default 50,200)")
    p.add_argument("--db", metavar="postgresql://...", help="measure on this PostgreSQL "
                   "database (each size in a new schema, dropped afterwards) instead of SQLite")


def cli(argv: Sequence[str] | None = None) -> int:
    return main(SUITE, "Many runs behind the console: SSE viewers, an annotator, latencies.",
                run, argv, extend=_options)


if __name__ == "__main__":
    raise SystemExit(cli())
