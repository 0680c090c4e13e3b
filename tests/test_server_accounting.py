"""Accounts (users, tokens, sessions, links, attention spans), the dashboard's signals and
the drift-to-guidance accounting, on hand-built logs with chosen times."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from apollo import events as ev
from apollo.errors import ApolloError, NotFound, StoreError
from apollo.protocols import Store
from apollo.server.accounting import drifts
from apollo.server.accounts import Accounts, PostgresAccounts, SQLiteAccounts, digest
from apollo.server.fleet import Fleet, RunView, Thresholds, call_line
from conftest import PostgresServer

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RID = "r-1"


@pytest.fixture
def accounts(any_store: Store) -> Iterator[Accounts]:
    """The accounts of each store kind in turn (the store's migrations made the tables)."""
    acc = Accounts.for_store(any_store.url)
    yield acc
    acc.close()


def at(seconds: float, e: ev.Event) -> ev.Event:
    return e.model_copy(update={"time": T0 + timedelta(seconds=seconds)})


def created() -> ev.RunCreated:
    return ev.RunCreated(run_id=RID, task={"id": "t", "title": "T"}, model={"spec": "scripted:x"},
                         config={"max_steps": 10, "max_time_s": 100}, workspace="/w")


def action(n: int, t: float, error: bool = False, command: str = "ls") -> list[ev.Event]:
    aid = ev.action_id(RID, n)
    call = ev.ToolCall(id=str(n), name="run", arguments=f'{{"command": "{command}"}}')
    return [at(t, ev.ModelCalled(run_id=RID, action_id=aid, step=n, content="", tool_call=call,
                                 prompt_sha256="", elapsed_s=int(t))),
            at(t + 1, ev.ToolFinished(run_id=RID, action_id=aid, step=n, observation="x",
                                      error=error, duration_s=1))]


def guide(t: float, author: str = "ann") -> ev.Event:
    return at(t, ev.GuidanceQueued(run_id=RID, guidance_id=f"g{t}", author=author, text="hi"))


def start() -> list[ev.Event]:
    return [at(0, created()), at(0, ev.RunnerAttached(run_id=RID, owner="h:1"))]


# -- accounts ---------------------------------------------------------------------------------


def test_users_tokens_and_roles(accounts: Accounts) -> None:
    token = accounts.add_user("ann", "annotator")
    assert token.startswith("apo_") and len(token) > 40
    user = accounts.by_token(token)
    assert user is not None and (user.name, user.role) == ("ann", "annotator")
    assert user.can("viewer") and user.can("annotator") and not user.can("admin")
    [(stored,)] = accounts._read("SELECT token_hash FROM users")
    assert stored == digest(token) and token not in stored  # stored hashed
    with pytest.raises(ApolloError, match="already exists"):
        accounts.add_user("ann", "viewer")
    with pytest.raises(ApolloError, match="bad role"):
        accounts.add_user("bob", "root")
    with pytest.raises(ApolloError, match="bad user name"):
        accounts.add_user("bob smith", "viewer")
    new = accounts.new_token("ann")
    assert accounts.by_token(token) is None and accounts.by_token(new) is not None
    accounts.remove_user("ann")
    assert accounts.by_token(new) is None
    with pytest.raises(NotFound):
        accounts.remove_user("ann")


def test_sessions_and_one_time_links(accounts: Accounts) -> None:
    accounts.add_user("ann", "annotator")
    user = accounts.user("ann")
    assert user is not None
    sid, session = accounts.new_session(user)
    found = accounts.session(sid)
    assert found is not None and found.csrf == session.csrf and found.user.name == "ann"
    assert accounts.session("forged") is None
    accounts.end_session(sid)
    assert accounts.session(sid) is None
    code = accounts.new_login_link("ann")
    logged_in = accounts.use_login_link(code)
    assert logged_in is not None and logged_in.name == "ann"
    assert accounts.use_login_link(code) is None  # once only
    old = accounts.new_login_link("ann", ttl=timedelta(seconds=-1))
    assert accounts.use_login_link(old) is None  # expired
    with pytest.raises(NotFound):
        accounts.new_login_link("nobody")


def test_heartbeats_join_into_spans(accounts: Accounts) -> None:
    for s in (0, 15, 30, 45):
        accounts.heartbeat("ann", RID, T0 + timedelta(seconds=s))
    accounts.heartbeat("ann", RID, T0 + timedelta(seconds=200))  # after a gap: a new span
    accounts.heartbeat("ann", RID, T0 + timedelta(seconds=210))
    accounts.heartbeat("bob", RID, T0 + timedelta(seconds=5))
    accounts.heartbeat("ann", "other", T0 + timedelta(seconds=20))
    spans = [(s.name, s.run_id, s.seconds) for s in accounts.spans(RID)]
    assert spans == [("ann", RID, 45.0), ("ann", RID, 10.0), ("bob", RID, 0.0)]
    assert len(accounts.spans()) == 4


def test_each_store_kind_keeps_its_own_accounts(any_store: Store) -> None:
    accounts = Accounts.for_store(any_store.url)
    try:
        kind = PostgresAccounts if any_store.url.startswith("postgresql") else SQLiteAccounts
        assert type(accounts) is kind
    finally:
        accounts.close()


def test_accounts_are_shared_by_every_console_on_the_store(any_store: Store) -> None:
    """Two consoles (two `Accounts` on one store, as two processes or nodes would have): a
    token, a session and a one-time link made on one work on the other, a link only once, and
    concurrent heartbeats from both join into one span, not two."""
    one, two = Accounts.for_store(any_store.url), Accounts.for_store(any_store.url)
    try:
        token = one.add_user("ann", "annotator")
        found = two.by_token(token)
        assert found is not None and found.name == "ann"
        sid, session = two.new_session(found)
        again = one.session(sid)
        assert again is not None and again.csrf == session.csrf
        code = one.new_login_link("ann")
        with ThreadPoolExecutor(8) as pool:
            used = list(pool.map(lambda i: (one, two)[i % 2].use_login_link(code), range(8)))
        assert [u.name for u in used if u is not None] == ["ann"]  # exactly once
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: (one, two)[i % 2].heartbeat(
                "ann", RID, T0 + timedelta(seconds=i)), range(16)))
        [span] = one.spans(RID)  # one span (beats that lost the race count as covered)
        assert span.last_seen_at == T0 + timedelta(seconds=15) and span.started_at < T0 + timedelta(seconds=15)
        two.remove_user("ann")
        assert one.by_token(token) is None and one.session(sid) is None
    finally:
        one.close()
        two.close()


def test_a_lost_database_connection_is_retried_then_reported(
        postgres_server: PostgresServer, pg_url: str) -> None:
    from apollo.store.postgres import PostgresStore

    PostgresStore(pg_url).close()  # makes the tables
    accounts = Accounts.for_store(pg_url)
    try:
        accounts.add_user("ann", "viewer")
        killed = postgres_server.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
            "application_name = 'apollo' AND pid <> pg_backend_pid()")
        assert killed and all(ok for (ok,) in killed)
        user = accounts.user("ann")  # its connection was cut: a new one, silently
        assert user is not None and user.role == "viewer"
        postgres_server.stop()
        try:
            with pytest.raises(StoreError, match="unavailable"):
                accounts.users()
        finally:
            postgres_server.start()
        assert [u.name for u in accounts.users()] == ["ann"]
    finally:
        accounts.close()


# -- signals ----------------------------------------------------------------------------------


def test_call_line() -> None:
    call = ev.ToolCall(id="1", name="run", arguments='{"command": "ls  -la\\n&& pwd"}')
    assert call_line(call) == "run: ls -la && pwd"
    assert call_line(ev.ToolCall(id="1", name="x", arguments="{bad")) == "x: {bad"
    assert call_line(None, "  just\nthinking ") == "just thinking"
    assert call_line(ev.ToolCall(id="1", name="run", arguments='{"command": "' + "a" * 300 + '"}'),
                     width=20) == "run: aaaaaaaaaaaaaa…"


def test_run_view_signals_rise_and_fall() -> None:
    view = RunView(created(), thresholds=Thresholds(stall_after_s=60))
    for e in start()[1:] + action(1, 1, True) + action(2, 3, True):
        view.apply(e)
    assert view.signals(T0 + timedelta(seconds=5))["error_streak"] == 0  # 2 < 3
    for e in action(3, 5, True):
        view.apply(e)
    assert view.signals(T0 + timedelta(seconds=7))["error_streak"] == 3
    assert view.signals(T0 + timedelta(seconds=7))["repeats"] == 3  # the same `ls` thrice
    assert view.stalled(T0 + timedelta(seconds=65)) is False
    assert view.stalled(T0 + timedelta(seconds=67)) is True
    for e in action(4, 70, False, command="pwd"):
        view.apply(e)
    sig = view.signals(T0 + timedelta(seconds=72))
    assert (sig["error_streak"], sig["stalled"], sig["repeats"]) == (0, False, 3)
    view.apply(at(73, ev.RunPaused(run_id=RID, author="a")))
    assert view.stalled(T0 + timedelta(seconds=999)) is False  # a paused run never stalls


def test_fleet_rows_after_a_global_id() -> None:
    fleet = Fleet()
    other = created().model_copy(update={"run_id": "r-2"})
    fleet.apply(1, created())
    fleet.apply(2, other)
    fleet.apply(3, at(1, ev.RunPaused(run_id=RID, author="a")))
    assert [r["run_id"] for r in fleet.rows(T0)] == ["r-2", RID]  # oldest change first
    assert [r["gid"] for r in fleet.rows(T0, after=2)] == [3]
    assert fleet.apply(4, at(1, ev.RunPaused(run_id="unknown", author="a"))) is None


# -- drift to guidance ------------------------------------------------------------------------


def test_drift_signals_and_the_guidance_that_answers_them() -> None:
    th = Thresholds(stall_after_s=60)
    log = [*start(), *action(1, 1, True, "a"), *action(2, 3, True, "b"),
           *action(3, 5, True, "c"),
           guide(46, "ann"),                      # answers the error streak (rose at 6 s)
           *action(4, 50, False, "pwd"),
           guide(300, "bob"),                     # the run stalled at 51 + 60 = 111 s
           at(301, ev.ActionLabeled(run_id=RID, action_id=f"{RID}.4", verdict="bad",
                                    source="judge", author="j")),
           ]
    found = drifts(log, th, now=T0 + timedelta(seconds=302))
    assert [(d.signal, d.latency_s, d.author) for d in found] == [
        ("error_streak", 40.0, "ann"), ("stalled", 189.0, "bob"), ("judge_flagged", None, None)]
    assert found[1].at == T0 + timedelta(seconds=111)


def test_a_still_active_signal_does_not_open_a_new_drift() -> None:
    th = Thresholds()
    log = [*start(), *action(1, 1, True, "a"), *action(2, 2, True, "b"),
           *action(3, 3, True, "c"), guide(10),
           *action(4, 11, True, "d"), guide(20)]   # the streak goes on: not a new rise
    found = drifts(log, th, now=T0 + timedelta(seconds=30))
    assert [(d.signal, d.latency_s) for d in found] == [("error_streak", 6.0)]
