"""The runner, hosted in the server's event loop: runs started from the console (or any API
client) execute here, at most `max_concurrent` at a time.

The host holds only asyncio tasks; a run's state is its log. With `adopt`, it also takes over
runs whose process or node died (`apollo serve --resume`). When the server stops, the tasks
are cancelled and the runs stay resumable (`apollo serve --resume`, `apollo resume RUN`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from apollo.agent.config import AgentConfig
from apollo.errors import ApolloError
from apollo.models import ModelConfig
from apollo.runner import Runner
from apollo.tasks import TaskSpec

log = logging.getLogger("apollo.server")


class RunHost:
    def __init__(self, runner: Runner):
        self.runner = runner
        self._gate = asyncio.Semaphore(runner.max_concurrent)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def executing(self) -> list[str]:
        return [r for r, t in self._tasks.items() if not t.done()]

    def execute(self, run_ids: Iterable[str]) -> None:
        """Start executing runs (ones already executing here are left alone)."""
        for rid in run_ids:
            if rid in self._tasks and not self._tasks[rid].done():
                continue
            task = asyncio.create_task(self._one(rid), name=f"run-{rid}")
            task.add_done_callback(_report)
            self._tasks[rid] = task

    async def _one(self, run_id: str) -> None:
        async with self._gate:
            try:
                finished = await self.runner.execute(run_id)
            except ApolloError as e:  # e.g. another process executes it: nothing to recover
                log.warning("run %s not executed: %s", run_id, e)
                return
            log.info("run %s: %s after %d steps", run_id, finished.status, finished.steps)

    async def start(self, task: TaskSpec, model: ModelConfig, agent: AgentConfig,
                    count: int, labels: dict[str, str] | None = None) -> list[str]:
        """Create `count` runs (workspaces prepared off the event loop) and execute them."""
        ids = []
        for _ in range(count):
            ids.append(await asyncio.to_thread(self.runner.create, task, model, agent, labels))
        self.execute(ids)
        return ids

    async def adopt(self, every_s: float) -> None:
        """Forever: every `every_s`, execute the runs orphaned since the last look (their
        process or node died; see `Runner.orphaned`), so that a console started with
        `--resume` keeps every run going while it is up."""
        while True:
            await asyncio.sleep(every_s)
            try:
                ids = await asyncio.to_thread(self.runner.orphaned)
            except ApolloError as e:  # e.g. the store is unavailable: look again later
                log.warning("looking for orphaned runs failed: %s", e)
                continue
            ids = [r for r in ids if r not in self.executing]
            if ids:
                log.warning("adopting %d orphaned run(s): %s", len(ids), ", ".join(ids))
                self.execute(ids)

    async def close(self) -> None:
        tasks = [t for t in self._tasks.values() if not t.done()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def _report(task: asyncio.Task[None]) -> None:
    """Log a run task that died of an unexpected exception (a bug), with its traceback."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s failed", task.get_name(), exc_info=exc)
