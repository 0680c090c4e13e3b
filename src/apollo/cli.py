"""The `apollo` command: a thin layer over the runner, the store and the renderers.

User mistakes (unknown run, bad spec, malformed task file, unreachable endpoint) end with one
line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from apollo import __version__
from apollo import events as ev
from apollo.config import Home
from apollo.errors import ApolloError, ConfigError
from apollo.protocols import Store

app = typer.Typer(
    name="apollo", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Apollo: long-running agents, asynchronous human guidance, training data.",
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

MAX_GUIDANCE_CHARS = 8000

DbOpt = Annotated[str | None, typer.Option(
    "--db", envvar="APOLLO_DB", help="Event store URL (sqlite:///PATH); default: "
    "$APOLLO_HOME/apollo.db.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AuthorOpt = Annotated[str | None, typer.Option("--author", help="Who says it (default: $USER).")]


@contextmanager
def _store(db: str | None) -> Iterator[Store]:
    from apollo.store.base import open_store

    store = open_store(db or Home.resolve().db_url)
    try:
        yield store
    finally:
        store.close()


def _author(author: str | None) -> str:
    if author:
        return author
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _version(value: bool) -> None:
    if value:
        out.print(f"apollo {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version.")] = False) -> None:
    """Apollo: long-running agents, asynchronous human guidance, training data."""


# -- running ------------------------------------------------------------------------------


def _model_options(base_url: str | None, temperature: float | None, max_tokens: int | None,
                   tool_mode: str | None) -> dict[str, Any]:
    return {"base_url": base_url, "temperature": temperature, "max_tokens": max_tokens,
            "tool_mode": tool_mode}


def _preflight(model_options: dict[str, Any]) -> None:
    """Fail fast, with one line, when an HTTP model endpoint cannot be reached at all."""
    import httpx

    url = str(model_options.get("base_url") or "")
    if not url:
        return
    try:
        httpx.get(url.rstrip("/") + "/models", timeout=5.0)
    except httpx.TransportError as e:
        raise ApolloError(f"model endpoint {url} is unreachable: {e or type(e).__name__}") from e


@app.command()
def run(
    task: Annotated[str | None, typer.Argument(
        help="A built-in task id, or a task file / directory.")] = None,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="openai:MODEL or scripted:NAME_OR_PATH.")] = "scripted:word-freq",
    runs: Annotated[int, typer.Option("--runs", "-n", min=1, help="How many runs.")] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Override the task's max steps.")] = None,
    max_time: Annotated[float | None, typer.Option(
        "--max-time", min=1, help="Override the task's working-time limit (seconds).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs executed at once.")] = 8,
    detach: Annotated[bool, typer.Option(
        help="Start the runs in a background process and print their ids.")] = False,
    resume_all: Annotated[bool, typer.Option(
        "--resume-all", help="Resume every unfinished run no live process executes.")] = False,
    base_url: Annotated[str | None, typer.Option(
        envvar="OPENAI_BASE_URL", help="Endpoint of an openai: model.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max tokens per reply.")] = None,
    tool_mode: Annotated[str | None, typer.Option(
        help="native (tools in the request) or text (parsed from the reply).")] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE tag; repeatable.")] = None,
    unsafe_local: Annotated[bool, typer.Option(
        "--unsafe-local", help="Run commands without isolation where bubblewrap cannot run "
        "(recorded in the run).")] = False,
    executor: Annotated[str, typer.Option(
        help="Where runs execute: local (this process) or ray (each run a Ray actor).")]
    = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --executor ray: the cluster to join (auto: the one "
        "running on this machine); default: start a local one.")] = None,
    db: DbOpt = None,
) -> None:
    """Start runs of a task (or resume unfinished ones) and follow them to the end."""
    from apollo.agent import AgentConfig
    from apollo.executors import make_runner
    from apollo.models import parse_model_spec
    from apollo.tasks import resolve_task

    if detach and executor != "local":
        raise ConfigError(f"--detach starts a local worker; with --executor {executor} keep "
                          "this command running while its actors execute the runs")
    home = Home.resolve()
    with _store(db) as store:
        runner = make_runner(store, home, executor, max_concurrent=concurrency,
                             ray_address=ray_address)
        if resume_all:
            ids = runner.resumable()
            if not ids:
                out.print("No unfinished runs to resume.")
                return
        elif task is None:
            raise ConfigError("name a TASK to run (see `apollo tasks`), or pass --resume-all")
        else:
            spec = resolve_task(task)
            opts = _model_options(base_url if model.startswith("openai:") else None,
                                  temperature, max_tokens, tool_mode)
            mcfg = parse_model_spec(model, **opts)
            if model.startswith("openai:"):
                _preflight(mcfg.options)
            agent = AgentConfig(
                max_steps=max_steps or spec.limits.max_steps,
                max_time_s=max_time or spec.limits.max_time_s,
                command_timeout_s=spec.limits.command_timeout_s,
                tool_mode=mcfg.options.get("tool_mode", "native"))
            bad = [kv for kv in label or [] if "=" not in kv]
            if bad:
                raise ConfigError(f"--label {bad[0]!r}: expected KEY=VALUE")
            tags = dict(kv.split("=", 1) for kv in (label or []))
            ids = [runner.create(spec, mcfg, agent, tags, unsafe_local=unsafe_local)
                   for _ in range(runs)]
        if detach:
            _spawn_worker(home, db, ids, concurrency)
            for rid in ids:
                out.print(rid)
            return
        _follow(runner, ids)


def _spawn_worker(home: Home, db: str | None, ids: list[str], concurrency: int,
                  model: str | None = None, base_url: str | None = None) -> None:
    home.logs.mkdir(parents=True, exist_ok=True)
    log = home.logs / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}.log"
    cmd = [sys.executable, "-m", "apollo", "worker", *ids, "--concurrency", str(concurrency)]
    if model:
        cmd += ["--model", model] + (["--base-url", base_url] if base_url else [])
    if db:
        cmd += ["--db", db]
    with open(log, "ab") as fh:
        subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, env={**os.environ, "APOLLO_HOME": str(home.root)})
    err.print(f"started {len(ids)} run(s) in the background; log: {log}", markup=False,
              soft_wrap=True)


def _follow(runner: Any, ids: list[str], model: Any = None) -> None:
    """Execute runs here, showing a live table, then one line per run."""
    from apollo.render import runs_table

    async def main() -> list[Any]:
        work = asyncio.ensure_future(runner.execute_many(ids, model))
        with Live(console=err, refresh_per_second=4, transient=not err.is_terminal) as live:
            while not work.done():
                live.update(runs_table([runner.store.run(r) for r in ids], "runs"))
                await asyncio.wait({work}, timeout=0.25)
            live.update(runs_table([runner.store.run(r) for r in ids], "runs"))
        return work.result()

    try:
        results = asyncio.run(main())
    except KeyboardInterrupt:
        err.print("interrupted: resume with `apollo resume RUN` or `apollo run --resume-all`")
        raise typer.Exit(130) from None
    failed = False
    for rid, res in zip(ids, results, strict=True):
        if isinstance(res, ApolloError):
            failed = True
            err.print(f"{rid}: error: {res}", markup=False, soft_wrap=True)
        elif isinstance(res, BaseException):
            raise res
        else:
            failed |= res.status == "error"
            answer = f" — {res.answer}" if res.answer else ""
            reason = f" ({res.reason})" if res.reason else ""
            out.print(f"{rid}: {res.status} after {res.steps} steps{reason}{answer}",
                      markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command(hidden=True)
def worker(ids: list[str], concurrency: int = 8, model: str | None = None,
           base_url: str | None = None, db: DbOpt = None) -> None:
    """Execute runs in this process (used by --detach)."""
    from apollo.models import parse_model_spec
    from apollo.runner import Runner

    mcfg = parse_model_spec(model, base_url=base_url) if model else None
    with _store(db) as store:
        runner = Runner(store, Home.resolve(), max_concurrent=concurrency)
        for rid, res in zip(ids, asyncio.run(runner.execute_many(ids, mcfg)), strict=True):
            print(f"{rid}: {getattr(res, 'status', res)}", flush=True)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique prefix).")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Continue with another model spec (recorded).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Endpoint of an openai: model.")] = None,
    detach: Annotated[bool, typer.Option(help="Resume in a background process.")] = False,
    db: DbOpt = None,
) -> None:
    """Continue a run from its log (after a crash, or a model error)."""
    from apollo.models import parse_model_spec
    from apollo.runner import Runner, owner_alive

    if base_url and not model:
        raise ConfigError("--base-url goes with --model (the run keeps its recorded endpoint "
                          "otherwise)")
    with _store(db) as store:
        summary = store.run(run_id)
        if summary.terminal and summary.status != "error":
            raise ApolloError(f"run {summary.run_id} has already ended ({summary.status})")
        if owner_alive(summary):
            raise ApolloError(f"run {summary.run_id} is being executed by {summary.owner}")
        mcfg = parse_model_spec(model, base_url=base_url) if model else None
        runner = Runner(store, Home.resolve())
        if detach:
            _spawn_worker(runner.home, db, [summary.run_id], 1, model, base_url)
            out.print(summary.run_id)
            return
        _follow(runner, [summary.run_id], mcfg)


# -- looking ------------------------------------------------------------------------------


@app.command("runs")
def list_runs(
    as_json: JsonOpt = False,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    db: DbOpt = None,
) -> None:
    """List runs."""
    from dataclasses import asdict

    from apollo.render import runs_table
    from apollo.store.base import RUN_STATUSES

    if status is not None and status not in RUN_STATUSES:
        raise ConfigError(f"--status {status!r}: expected one of {', '.join(RUN_STATUSES)}")
    with _store(db) as store:
        rows = [r for r in store.runs() if status is None or r.status == status]
    if as_json:
        data = [{**asdict(r), "created_at": r.created_at.isoformat(),
                 "updated_at": r.updated_at.isoformat()} for r in rows]
        out.out(json.dumps(data, indent=2), highlight=False)
    elif not rows:
        out.print("No runs yet. Start one with `apollo run TASK`.")
    else:
        out.print(runs_table(rows))


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the events, one JSON object per line.")] = False,
    full: Annotated[bool, typer.Option(help="Do not shorten long texts.")] = False,
    context: Annotated[int | None, typer.Option(
        "--context", metavar="STEP", min=1,
        help="Print the exact messages the model received at this step (checked against "
        "the recorded prompt hash).")] = None,
    db: DbOpt = None,
) -> None:
    """Show a run's trajectory."""
    from apollo.render import print_json_lines, trajectory

    with _store(db) as store:
        events = store.events(store.run(run_id).run_id)
    if context is not None:
        _show_context(events, context, as_json)
        return
    if as_json:
        print_json_lines(out, events)
    else:
        out.print(trajectory(events, full=full))


def _show_context(events: list[ev.Event], step: int, as_json: bool) -> None:
    from apollo.agent.context import replay
    from apollo.render import context_view

    for called, messages, sha in replay(events, [step]):
        if called.step == step:
            if sha != called.prompt_sha256:
                raise ApolloError(f"step {step}: the rebuilt context does not match the "
                                  "recorded prompt hash (the log was altered)")
            if as_json:
                out.file.write(json.dumps(messages, ensure_ascii=False, indent=2) + "\n")
            else:
                out.print(context_view(messages, step, sha))
            return
    raise ApolloError(f"run has no step {step}")


@app.command()
def tasks(as_json: JsonOpt = False) -> None:
    """List the built-in tasks."""
    from rich.table import Table

    from apollo.tasks import builtin_tasks

    specs = builtin_tasks()
    if as_json:
        out.out(json.dumps([t.model_dump() for t in specs], indent=2), highlight=False)
        return
    table = Table()
    for col in ("id", "title", "domain", "max steps", "max time (s)"):
        table.add_column(col)
    for t in specs:
        table.add_row(t.id, t.title, t.domain, str(t.limits.max_steps), f"{t.limits.max_time_s:g}")
    out.print(table)


# -- steering -----------------------------------------------------------------------------


def _live_run(store: Store, run_id: str, action: str) -> str:
    summary = store.run(run_id)
    if summary.terminal:
        raise ApolloError(f"cannot {action} run {summary.run_id}: it has ended ({summary.status})")
    return summary.run_id


@app.command()
def guide(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique prefix).")],
    text: Annotated[str, typer.Argument(help="The message; the agent sees it at its next step.")],
    interrupt: Annotated[bool, typer.Option(
        help="Cut the model call in flight short so the message lands at once.")] = False,
    author: AuthorOpt = None,
    db: DbOpt = None,
) -> None:
    """Queue guidance for a running agent (it never waits for it)."""
    text = text.strip()
    if not text:
        raise ApolloError("guidance text is empty")
    if len(text) > MAX_GUIDANCE_CHARS:
        raise ApolloError(f"guidance is {len(text)} characters; the limit is {MAX_GUIDANCE_CHARS}")
    with _store(db) as store:
        rid = _live_run(store, run_id, "guide")
        created = store.events(rid, types=["run_created"])[0]
        assert isinstance(created, ev.RunCreated)
        if not created.config.get("guidance", True):
            raise ApolloError(f"run {rid} takes no guidance (an evaluation run)")
        e = store.append(ev.GuidanceQueued(run_id=rid, guidance_id=f"g-{secrets.token_hex(6)}",
                                           author=_author(author), text=text, interrupt=interrupt))
    assert isinstance(e, ev.GuidanceQueued)
    out.print(f"queued {e.guidance_id} for {rid} (seq {e.seq}); delivered at its next step")


def _control(run_id: str, db: str | None, author: str | None, kind: str, reason: str = "") -> None:
    with _store(db) as store:
        summary = store.run(run_id)
        rid = _live_run(store, run_id, kind)
        who = _author(author)
        if kind == "pause":
            if summary.status == "paused":
                raise ApolloError(f"run {rid} is already paused")
            e: ev.Event = ev.RunPaused(run_id=rid, author=who, reason=reason)
        elif kind == "unpause":
            if summary.status != "paused":
                raise ApolloError(f"run {rid} is not paused ({summary.status})")
            e = ev.RunResumed(run_id=rid, author=who)
        else:
            e = ev.RunStopped(run_id=rid, author=who, reason=reason)
        store.append(e)
    out.print(f"{kind} requested for {rid}")


ReasonOpt = Annotated[str, typer.Option(help="Why (recorded).")]


@app.command()
def pause(run_id: Annotated[str, typer.Argument(metavar="RUN")], reason: ReasonOpt = "",
          author: AuthorOpt = None, db: DbOpt = None) -> None:
    """Pause a run at its next step boundary."""
    _control(run_id, db, author, "pause", reason)


@app.command()
def unpause(run_id: Annotated[str, typer.Argument(metavar="RUN")], author: AuthorOpt = None,
            db: DbOpt = None) -> None:
    """Let a paused run go on."""
    _control(run_id, db, author, "unpause")


@app.command()
def stop(run_id: Annotated[str, typer.Argument(metavar="RUN")], reason: ReasonOpt = "",
         author: AuthorOpt = None, db: DbOpt = None) -> None:
    """Stop a run now (the step in flight is cut short and its processes killed)."""
    _control(run_id, db, author, "stop", reason)


from apollo.cli_supervision import register as _register_supervision  # noqa: E402, I001
_register_supervision(app)

from apollo.cli_server import register as _register_server  # noqa: E402, I001
_register_server(app)

from apollo.cli_train import register as _register_train  # noqa: E402, I001
_register_train(app)


def main() -> None:
    try:
        app()
    except ApolloError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
