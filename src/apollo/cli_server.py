"""The console's commands: `apollo serve`, `apollo demo`, `apollo users ...`, `apollo stats`.

`register(app)` adds them to the `apollo` command. FastAPI and uvicorn are imported only when
a server actually starts, so `apollo --help` (and `import apollo`) stay light.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from apollo.config import Home
from apollo.errors import ApolloError

if TYPE_CHECKING:
    from apollo.protocols import Store
    from apollo.runner import Runner
    from apollo.server.accounts import Accounts
    from apollo.server.state import Settings

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DbOpt = Annotated[str | None, typer.Option(
    "--db", envvar="APOLLO_DB", help="Event store URL (sqlite:///PATH or postgresql://...); "
    "default: $APOLLO_HOME/apollo.db.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
HostOpt = Annotated[str, typer.Option(help="Address to listen on (loopback by default).")]
StallOpt = Annotated[float, typer.Option(
    "--stall-minutes", min=0.1, help="Flag a live run with no progress for this long.")]

ADOPT_EVERY_S = 5.0
"""How often `apollo serve --resume` looks for orphaned runs."""

users_app = typer.Typer(name="users", no_args_is_help=True, add_completion=False,
                        rich_markup_mode=None, help="Console users and their tokens.")


@contextmanager
def _opened(db: str | None) -> Iterator[tuple[Store, Accounts]]:
    from apollo.server.accounts import Accounts
    from apollo.store.base import open_store

    store = open_store(db or Home.resolve().db_url)
    try:
        accounts = Accounts.for_store(store.url)
    except BaseException:
        store.close()
        raise
    try:
        yield store, accounts
    finally:
        accounts.close()
        store.close()


def _need_server_deps() -> None:
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ApolloError(f"the console needs the server extra ({e.name} is missing): "
                          "pip install 'apollo-rollout[server]'") from e


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket (bound here, so a busy port fails with one line, and port 0 works)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ApolloError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return f"http://{f'[{shown}]' if ':' in shown and not shown.startswith('[') else shown}:{port}"


def _warn_if_exposed(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        err.print(f"warning: listening on {host}: the console has no TLS; put it behind an "
                  "https proxy before exposing it beyond this machine")


def _run_server(store: Store, settings: Settings, sock: socket.socket,
                execute: Sequence[str] = (), runner: Runner | None = None) -> None:
    import uvicorn

    from apollo.server.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("apollo").setLevel(logging.INFO)
    app = create_app(store, Home.resolve(), settings=settings, execute=execute, runner=runner)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once shut down
        pass
    err.print("stopped; unfinished runs stay resumable (`apollo serve --resume`)")


def _settings(concurrency: int, stall_minutes: float,
              adopt_every_s: float | None = None) -> Settings:
    from apollo.server.fleet import Thresholds
    from apollo.server.state import Settings

    return Settings(max_concurrent=concurrency, adopt_every_s=adopt_every_s,
                    thresholds=Thresholds(stall_after_s=stall_minutes * 60))


def serve(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8420,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs executed at once.")] = 8,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Also execute every unfinished run that no live process executes, "
        "at start and whenever one is orphaned later (its process or node died).")]
    = False,
    stall_minutes: StallOpt = 5.0,
    executor: Annotated[str, typer.Option(
        help="Where runs started from the console execute: local (this process) or ray (each "
        "run a Ray actor).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --executor ray: the cluster to join (auto: the one "
        "running on this machine); default: start a local one.")] = None,
    db: DbOpt = None,
) -> None:
    """Run the annotator console and its JSON API over a store (SQLite or PostgreSQL): it
    shows every run in the store, whichever process or node executes it; runs started from
    it execute here (or on Ray)."""
    _need_server_deps()
    from apollo.executors import check_executor, make_runner

    check_executor(executor, ray_address)
    with _opened(db) as (store, accounts):
        sock = _bind(host, port)
        try:
            runner = make_runner(store, Home.resolve(), executor, max_concurrent=concurrency,
                                 ray_address=ray_address)
        except BaseException:
            sock.close()
            raise
        ids = runner.resumable() if resume else []
        _warn_if_exposed(host)
        url = _url(host, sock)
        if not accounts.users():
            err.print("no users yet: add one with `apollo users add NAME --role admin`")
        where = "" if executor == "local" else f"; runs execute on Ray ({executor})"
        out.print(f"Apollo console on {url}/ (store {store.name}{where}); "
                  "Ctrl-C stops it")
        if ids:
            out.print(f"resuming {len(ids)} unfinished run(s)")
        settings = _settings(concurrency, stall_minutes, ADOPT_EVERY_S if resume else None)
        _run_server(store, settings, sock, ids, runner)


def demo(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8420,
    runs: Annotated[int, typer.Option("--runs", "-n", min=1, max=20, help="How many runs.")] = 3,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="The policy: a model spec (default: a scripted policy that "
        "drifts until guided).")] = "scripted:demo-drift",
    pace: Annotated[float, typer.Option(
        min=0, help="Multiplies the scripted policy's delays (slower: more time to guide).")]
    = 2.0,
    unsafe_local: Annotated[bool, typer.Option(
        "--unsafe-local", help="Run the demo's commands without isolation where bubblewrap "
        "cannot run (recorded in the runs).")] = False,
    db: DbOpt = None,
) -> None:
    """Start the console with a few demo runs and print a one-time login link."""
    _need_server_deps()
    from apollo.models import parse_model_spec
    from apollo.runner import Runner
    from apollo.tasks import resolve_task

    task = resolve_task("word-freq")
    options: dict[str, Any] = {"delay_scale": pace} if model.startswith("scripted:") else {}
    mcfg = parse_model_spec(model, **options)
    with _opened(db) as (store, accounts):
        sock = _bind(host, port)
        token = None
        if accounts.user("admin") is None:
            token = accounts.add_user("admin", "admin")
        code = accounts.new_login_link("admin")
        runner = Runner(store, Home.resolve())
        ids = [runner.create(task, mcfg, labels={"demo": "1"}, unsafe_local=unsafe_local)
               for _ in range(runs)]
        url = _url(host, sock)
        kind = "a scripted policy, not a model" if model.startswith("scripted:") else "model"
        out.print(f"Apollo demo: {runs} run(s) of {task.id} driven by {model} ({kind})")
        out.print(f"  console:  {url}/")
        out.print(f"  log in:   {url}/login?code={code}   (one-time link, 30 minutes)")
        if token:
            out.print(f"  admin token (for the API and later logins): {token}")
        if model.startswith("scripted:demo-drift"):
            out.print("  try: open a run and send \"Count case-insensitively and ignore "
                      "punctuation.\" — the policy fixes its script at the next step")
        out.print("Ctrl-C stops the server; unfinished runs stay resumable.")
        _run_server(store, _settings(8, 5.0), sock, ids)


# -- users --------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user's name (shown as the author).")],
    role: Annotated[str, typer.Option(help="admin, annotator or viewer.")] = "annotator",
    db: DbOpt = None,
) -> None:
    """Add a user and print its token (shown once; only its hash is stored)."""
    with _opened(db) as (_, accounts):
        token = accounts.add_user(name, role)
    err.print(f"added {name} ({role}); the token below is shown once")
    out.print(token)


@users_app.command("list")
def users_list(as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """List users and their roles."""
    with _opened(db) as (_, accounts):
        users = accounts.users()
    if as_json:
        out.out(json.dumps([{"name": u.name, "role": u.role,
                             "created_at": u.created_at.isoformat()} for u in users], indent=2))
        return
    table = Table()
    for col in ("name", "role", "created (UTC)"):
        table.add_column(col)
    for u in users:
        table.add_row(u.name, u.role, u.created_at.strftime("%Y-%m-%d %H:%M"))
    out.print(table if users else "No users yet. Add one with `apollo users add NAME --role admin`.")


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="The user to remove.")],
                 db: DbOpt = None) -> None:
    """Remove a user (their token and sessions stop working; their events keep their name)."""
    with _opened(db) as (_, accounts):
        accounts.remove_user(name)
    out.print(f"removed {name}")


@users_app.command("token")
def users_token(name: Annotated[str, typer.Argument(help="The user.")],
                db: DbOpt = None) -> None:
    """Give a user a new token (the old one and their sessions stop working)."""
    with _opened(db) as (_, accounts):
        token = accounts.new_token(name)
    out.print(token)


@users_app.command("link")
def users_link(
    name: Annotated[str, typer.Argument(help="The user.")],
    url: Annotated[str, typer.Option(help="The console's address.")] = "http://127.0.0.1:8420",
    db: DbOpt = None,
) -> None:
    """Print a one-time login link for a user (valid 30 minutes)."""
    with _opened(db) as (_, accounts):
        code = accounts.new_login_link(name)
    out.print(f"{url.rstrip('/')}/login?code={code}")


# -- stats --------------------------------------------------------------------------------


def _label_stats(as_json: bool, db: str | None) -> None:
    from apollo.store.base import open_store
    from apollo.supervision.stats import label_stats, label_stats_table, total

    store = open_store(db or Home.resolve().db_url)
    try:
        rows = label_stats(store)
    finally:
        store.close()
    if as_json:
        out.out(json.dumps({"runs": rows, "total": total(rows)}, indent=2))
    else:
        out.print(label_stats_table(rows))


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


LabelsOpt = Annotated[bool, typer.Option(
    "--labels", help="Per run: actions, bad actions by source (human, judge) and human-judge "
    "agreement where both labelled.")]


def stats(as_json: JsonOpt = False, stall_minutes: StallOpt = 5.0, labels: LabelsOpt = False,
          db: DbOpt = None) -> None:
    """Human attention time, interventions and time from drift to guidance (or, with
    --labels, label statistics)."""
    from apollo.events import utcnow
    from apollo.server import accounting
    from apollo.server.fleet import Thresholds

    if labels:
        _label_stats(as_json, db)
        return

    with _opened(db) as (store, accounts):
        data = accounting.stats(store, accounts, Thresholds(stall_after_s=stall_minutes * 60),
                                utcnow())
    if as_json:
        out.out(json.dumps(data, indent=2))
        return
    t = data["totals"]
    out.print(f"{t['runs']} runs · attention {_dur(t['attention_s'])} · {t['guidance']} guidance "
              f"({t['interrupts']} interrupting) · {t['labels']} labels · {t['controls']} "
              f"controls · drift answered {t['answered']}/{t['drift_signals']}, median "
              f"{_dur(t['median_time_to_guidance_s'])}")
    people = Table(title="per annotator")
    for col in ("name", "role", "attention", "runs", "guidance", "labels", "controls",
                "drift answers", "median to guidance"):
        people.add_column(col, justify="left" if col in ("name", "role") else "right")
    for p in data["annotators"]:
        people.add_row(p["name"], p["role"] or "-", _dur(p["attention_s"]),
                       str(p["runs_attended"]), str(p["guidance"]), str(p["labels"]),
                       str(p["controls"]), str(p["drift_answers"]),
                       _dur(p["median_time_to_guidance_s"]))
    runs = Table(title="per run")
    for col in ("run", "status", "attention", "annotators", "guidance", "labels", "controls",
                "drift", "answered", "median to guidance"):
        runs.add_column(col, justify="left" if col in ("run", "status", "annotators") else "right")
    for r in data["runs"]:
        runs.add_row(r["run_id"], r["status"], _dur(r["attention_s"]),
                     ", ".join(r["annotators"]) or "-", str(r["guidance"]), str(r["labels"]),
                     str(r["controls"]), str(r["drift_signals"]), str(r["answered"]),
                     _dur(r["median_time_to_guidance_s"]))
    out.print(people)
    out.print(runs)


def register(app: typer.Typer) -> None:
    """Add the console's commands to the `apollo` command."""
    app.command()(serve)
    app.command()(demo)
    app.add_typer(users_app)
    app.command()(stats)
