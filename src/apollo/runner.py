"""Creating runs, and executing many of them concurrently in one process (asyncio).

A run is created by preparing its workspace and appending `run_created`; it is executed (first
time or after a crash, identically) by an `Agent` that folds the log and goes on from there.
Only one live process may execute a run: the claim is an atomic check in the store (the
`runner_attached` event names the owner it replaces). `Runner` is the local executor: its runs
execute in this process; `apollo.executors` has the others (Ray), which override `execute`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from apollo import events as ev
from apollo.agent.config import AgentConfig
from apollo.agent.loop import Agent
from apollo.config import Home
from apollo.errors import ConfigError, RunBusy
from apollo.executors.heartbeat import Heartbeat
from apollo.models import ModelConfig, build_model, parse_model_spec
from apollo.protocols import Store
from apollo.sandbox import detect_isolation
from apollo.store.base import TERMINAL_STATUSES, RunSummary
from apollo.tasks import TaskSpec
from apollo.tasks.grader import command_env, task_bin_dir
from apollo.tools import TOOLS

HOST = socket.gethostname()
STALE_OWNER_S = 60.0
"""A run owned by another host that has been silent this long (no heartbeat where the store
keeps them, no event) may be taken over."""


def this_owner() -> str:
    return f"{HOST}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    """A live process (a zombie, killed but not yet reaped, is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def owner_alive(summary: RunSummary) -> bool:
    """Is the process named as the run's owner (other than this one) still executing it?"""
    if not summary.owner or summary.owner == this_owner():
        return False
    host, _, pid = summary.owner.rpartition(":")
    if host == HOST:
        return pid.isdigit() and _pid_alive(int(pid))
    silent = summary.owner_silent_s
    if silent is None:
        silent = (ev.utcnow() - summary.updated_at).total_seconds()
    return silent < STALE_OWNER_S


def fitted_window(agent: AgentConfig, model: ModelConfig) -> dict[str, int]:
    """The context settings for a model that reports its window (an `hf:` model reads it from
    its config): that window, and summaries at 3/4 of it, unless the agent config sets them."""
    window = model.options.get("context_window")
    if not isinstance(window, int) or window < 1000 or "context_window" in agent.model_fields_set:
        return {}
    fit = {"context_window": window}
    if "summarize_at" not in agent.model_fields_set:
        fit["summarize_at"] = int(window * 0.75)
    elif agent.summarize_at >= window:
        raise ConfigError(f"summarize_at ({agent.summarize_at}) must be below the model's "
                          f"context window ({window})")
    return fit


def new_run_id(task_id: str) -> str:
    return f"{task_id[:24]}-{secrets.token_hex(4)}"


class Runner:
    def __init__(self, store: Store, home: Home, *, max_concurrent: int = 8,
                 executor: str = "local"):
        self.store = store
        self.home = home
        self.max_concurrent = max_concurrent
        self.executor = executor
        self.heartbeat = Heartbeat(store, this_owner(), executor)

    def create(self, task: TaskSpec, model: ModelConfig, agent: AgentConfig | None = None,
               labels: dict[str, str] | None = None, *, unsafe_local: bool = False) -> str:
        """Prepare a new run's workspace and record `run_created`; returns the run id.

        Commands run under bubblewrap; where it cannot run this refuses, unless
        `unsafe_local` (recorded as `isolation: none`)."""
        agent = agent or AgentConfig(
            max_steps=task.limits.max_steps, max_time_s=task.limits.max_time_s,
            command_timeout_s=task.limits.command_timeout_s)
        unknown = [t for t in task.tools or [] if t not in TOOLS]
        if unknown:
            raise ConfigError(f"task {task.id}: field 'tools': unknown tools "
                              f"{', '.join(unknown)} (known: {', '.join(TOOLS)})")
        tools = task.tools or [t for t in TOOLS if t != "eval" or task.grader is not None]
        bin_dir = task_bin_dir(task, self.home.root / "envs")
        if not unsafe_local and (reason := detect_isolation()) is not None:
            raise ConfigError(f"bubblewrap is not available ({reason}): install it "
                              "(apt-get install bubblewrap) or pass --unsafe-local to run "
                              "without isolation")
        agent = agent.model_copy(update={
            "isolation": "none" if unsafe_local else "bwrap", "network": task.network,
            "tool_mode": model.options.get("tool_mode", "native"),
            "tools": agent.tools if "tools" in agent.model_fields_set else tools,
            "bin_dir": str(bin_dir), **fitted_window(agent, model)})
        run_id = new_run_id(task.id)
        workspace = self._prepare_workspace(task, run_id, agent.command_timeout_s, bin_dir)
        self.store.append(ev.RunCreated(
            run_id=run_id, task=task.model_dump(), model=model.model_dump(),
            config=agent.model_dump(), workspace=str(workspace), labels=labels or {}))
        return run_id

    def _prepare_workspace(self, task: TaskSpec, run_id: str, timeout: float,
                           bin_dir: Path) -> Path:
        run_dir = self.home.run_dir(run_id)
        staging, workspace = run_dir / "workspace.tmp", run_dir / "workspace"
        run_dir.mkdir(parents=True, exist_ok=True)
        src = task.workspace_dir()
        if src is not None:
            shutil.copytree(src, staging, symlinks=True)
        else:
            staging.mkdir()
        env = command_env(bin_dir, staging)
        for cmd in task.setup:
            try:
                done = subprocess.run(
                    ["/bin/bash", "-c", cmd], cwd=staging, env=env,
                    capture_output=True, text=True, timeout=timeout, start_new_session=True)
            except subprocess.TimeoutExpired as e:
                raise ConfigError(f"task {task.id}: setup command {cmd!r} timed out") from e
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
                raise ConfigError(f"task {task.id}: setup command {cmd!r} failed "
                                  f"(exit {done.returncode}): {' | '.join(tail)}")
        staging.rename(workspace)
        return workspace

    async def execute(self, run_id: str, model: ModelConfig | None = None) -> ev.RunFinished:
        """Run (or resume) one run until it finishes, stops, or fails."""
        summary = await asyncio.to_thread(self.store.run, run_id)
        run_id = summary.run_id
        if summary.status in TERMINAL_STATUSES and summary.status != "error":
            finished = (await self.store.aevents(run_id, types=["run_finished"]))[-1]
            assert isinstance(finished, ev.RunFinished)
            return finished
        if owner_alive(summary):
            raise RunBusy(f"run {run_id} is being executed by {summary.owner}")
        created = (await self.store.aevents(run_id, types=["run_created"]))[0]
        assert isinstance(created, ev.RunCreated)
        model_cfg = model or ModelConfig.model_validate(created.model)
        backend = build_model(model_cfg)
        spec = AgentConfig.model_validate(created.config).summary_model
        summarizer = build_model(parse_model_spec(spec)) if spec else None
        agent = Agent(self.store, run_id, backend, owner=this_owner(), executor=self.executor,
                      previous_owner=summary.owner,
                      model_override=model.model_dump() if model else None,
                      summarizer=summarizer)
        try:
            async with self.heartbeat.held():
                return await agent.run()
        finally:
            await backend.aclose()
            if summarizer is not None:
                await summarizer.aclose()

    async def execute_many(
        self, run_ids: Iterable[str], model: ModelConfig | None = None
    ) -> list[ev.RunFinished | BaseException]:
        """Execute runs concurrently, at most `max_concurrent` at a time."""
        gate = asyncio.Semaphore(self.max_concurrent)

        async def one(rid: str) -> ev.RunFinished:
            async with gate:
                return await self.execute(rid, model)

        results = await asyncio.gather(*(one(r) for r in run_ids), return_exceptions=True)
        for r in results:
            if isinstance(r, (KeyboardInterrupt, asyncio.CancelledError)):
                raise r
        return list(results)

    def resumable(self) -> list[str]:
        """Unfinished runs that no live process executes (e.g. after a crash)."""
        return self.orphaned(unclaimed_after_s=0.0)

    def orphaned(self, unclaimed_after_s: float = STALE_OWNER_S) -> list[str]:
        """Unfinished runs to adopt while others work beside this process: runs whose owner
        is gone (its process crashed, its node died: see `owner_alive`), and runs nobody has
        claimed for `unclaimed_after_s` since their last event (whoever made them is not
        coming). Runs this process owns are not among them."""
        now, me = ev.utcnow(), this_owner()
        return [s.run_id for s in self.store.runs()
                if s.status not in TERMINAL_STATUSES and s.owner != me and not owner_alive(s)
                and (s.owner is not None
                     or (now - s.updated_at).total_seconds() >= unclaimed_after_s)]
