"""The ReAct loop: one tool call per step, every step persisted before the next begins.

The loop owns no state of its own that the log does not hold: it folds the run's events into
a `RunState` and a `Context` (the same fold on first start and on resume), appends each new
event before acting on it, and ends in one place, where a `RunEnded` becomes `run_finished`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from contextlib import suppress
from contextvars import copy_context
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from apollo import events as ev
from apollo.agent import prompts, summarize
from apollo.agent.config import AgentConfig
from apollo.agent.context import Context
from apollo.agent.environment import run_sandbox, task_bin
from apollo.agent.state import RunState
from apollo.agent.summarize import TokenCounter
from apollo.errors import ConfigError, Failed, Finished, LimitReached, ModelError, RunEnded, Stopped
from apollo.models.base import ModelRequest, ModelResponse
from apollo.models.openai_compat import Retry, on_retry
from apollo.tasks import TaskSpec
from apollo.tasks.grader import Grade, grade
from apollo.tools import Observation, Toolbox, ToolContext

if TYPE_CHECKING:
    from apollo.protocols import Model, Store

T = TypeVar("T")


class Agent:
    def __init__(self, store: Store, run_id: str, model: Model, *, owner: str,
                 executor: str = "local", previous_owner: str | None = None,
                 model_override: dict[str, object] | None = None,
                 summarizer: Model | None = None):
        self.store = store
        self.run_id = run_id
        self.model = model
        self.owner = owner
        self.executor = executor
        self.previous_owner = previous_owner
        self.model_override = model_override
        self.state = RunState()
        self.summarizer = summarizer or model

    # -- the log ----------------------------------------------------------------------------

    def _apply(self, e: ev.Event) -> None:
        self.state.apply(e)
        self.ctx.apply(e)

    async def _absorb(self) -> None:
        """Apply events appended since the last one applied (by anyone, in order)."""
        for e in await self.store.aevents(self.run_id, after=self.state.seq):
            self._apply(e)

    async def _append(self, e: ev.Event) -> ev.Event:
        stored = await self.store.aappend(e)
        if stored.seq == self.state.seq + 1:
            self._apply(stored)
        else:  # someone else appended in between: apply theirs first, in order
            await self._absorb()
        return stored

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> ev.RunFinished:
        history = await self.store.aevents(self.run_id)
        created = history[0]
        assert isinstance(created, ev.RunCreated)
        self.cfg = AgentConfig.model_validate(created.config)
        self.toolbox = Toolbox(self.cfg.tools)
        self.task = TaskSpec.model_validate(created.task)
        self.workspace = Path(created.workspace)
        self.counter = TokenCounter(self.cfg.tokenizer)
        if self.model.tool_mode != self.cfg.tool_mode:
            raise ConfigError(f"run {self.run_id} uses tool mode {self.cfg.tool_mode!r}; the "
                              f"model {self.model.name} uses {self.model.tool_mode!r}")
        self.ctx = Context(created, self.toolbox.schemas, self.cfg.tool_mode)
        for e in history:
            self._apply(e)
        if self.state.finished is not None and self.state.finished.status != "error":
            return self.state.finished
        self.run_dir = Path(created.workspace).parent
        self.sandbox = run_sandbox(self.cfg, self.task, self.workspace, self.run_dir)
        await self._append(ev.RunnerAttached(
            run_id=self.run_id, owner=self.owner, executor=self.executor,
            previous_owner=self.previous_owner, model_override=self.model_override))
        self._started = time.monotonic()
        self._base_elapsed = self.state.elapsed_s
        self._paused_s = 0.0
        try:
            if self.state.pending is not None:  # the runner died while this tool ran
                p = self.state.pending
                await self._append(ev.Interrupted(
                    run_id=self.run_id, step=p.step, action_id=p.action_id, phase="tool",
                    reason="crash"))
            while True:
                await self._boundary()
                await self._step()
        except RunEnded as end:
            if self.task.grader is not None and end.status in ("completed", "limit"):
                result = await self._grade()
                await self._append(ev.SubmissionScored(
                    run_id=self.run_id, action_id=None, score=result.score,
                    details=f"final evaluation: {result.feedback}"))
            scores = self.state.scores
            finished = await self._append(ev.RunFinished(
                run_id=self.run_id, status=end.status, reason=end.reason, answer=end.answer,
                final_score=scores[-1] if scores else None,
                best_score=max(scores) if scores else None, steps=self.state.step))
            assert isinstance(finished, ev.RunFinished)
            if finished.status != "error":  # jobs end with the run (an error may be resumed)
                await self.sandbox.close()
            return finished

    def elapsed(self) -> float:
        return self._base_elapsed + time.monotonic() - self._started - self._paused_s

    async def _boundary(self) -> None:
        """Between steps: honour stop and pause, check limits, deliver queued guidance."""
        await self._absorb()
        st = self.state
        if st.finish_answer is not None:
            raise Finished("the agent called finish", answer=st.finish_answer)
        if st.paused and st.stop is None:
            paused_at = time.monotonic()
            while st.paused and st.stop is None:
                await self.store.wait(self.run_id, st.seq)
                await self._absorb()
            self._paused_s += time.monotonic() - paused_at
        if st.stop is not None:
            raise Stopped(st.stop_reason)
        if st.step >= self.cfg.max_steps:
            raise LimitReached(f"max steps ({self.cfg.max_steps}) reached")
        if self.elapsed() >= self.cfg.max_time_s:
            raise LimitReached(f"max working time ({self.cfg.max_time_s:g} s) reached")
        if st.queued and self.cfg.guidance:
            await self._append(ev.GuidanceDelivered(
                run_id=self.run_id, guidance_ids=list(st.queued), step=st.step))

    async def _fit_context(self) -> None:
        """Summarise the older half of the history when the prompt grows past the threshold
        (a stop cuts the summary short too; an interrupting message is delivered first)."""
        made = await summarize.fit(
            self.ctx, self.counter, self.cfg.summarize_at, self.summarizer,
            self.task.instructions, self.run_id,
            partial(self._guarded, step=self.state.step + 1, action_id=None, purpose="summary"))
        if made is not None:
            await self._append(made)

    async def _step(self) -> None:
        await self._fit_context()
        step = self.state.step + 1
        elapsed = int(self.elapsed())
        status = prompts.status_line(step, self.cfg.max_steps, elapsed, self.cfg.max_time_s)
        messages, sha = self.ctx.prompt(status)
        chars = self.ctx.chars + len(status)
        request = ModelRequest(messages, self.ctx.request_tools, self.run_id, step)
        t0 = time.monotonic()
        try:
            response = await self._guarded(self.model.complete(request), step, None)
        except ModelError as e:
            raise Failed(f"model error: {e}") from e
        if response is None:  # cut short by an interrupting message: deliver it now
            return
        assert isinstance(response, ModelResponse)
        self.counter.observe(response.usage.prompt_tokens, chars)
        aid = ev.action_id(self.run_id, step)
        call = response.tool_calls[0] if response.tool_calls else None
        extra = max(0, len(response.tool_calls) - 1)
        await self._append(ev.ModelCalled(
            run_id=self.run_id, action_id=aid, step=step, content=response.content,
            tool_call=call, extra_tool_calls=extra, usage=response.usage,
            latency_s=round(time.monotonic() - t0, 6), prompt_sha256=sha, elapsed_s=elapsed,
            finish_reason=response.finish_reason))
        duration = 0.0
        if call is None:
            obs = Observation(prompts.NO_TOOL_CALL, None, error=True)
        else:
            tctx = ToolContext(
                self.run_id, step, self.workspace, self.run_dir / "artifacts",
                self.cfg.command_timeout_s,
                grade=self._grade if self.task.grader is not None else None,
                evals_left=self.task.limits.eval_budget - self.state.submissions,
                sandbox=self.sandbox)
            result = await self._guarded(self.toolbox.call(call, tctx), step, aid)
            assert result is not None
            obs, duration = result
            if obs.score is not None:  # a scored submission is a fact of its own
                await self._append(ev.SubmissionScored(
                    run_id=self.run_id, action_id=aid, score=obs.score, details=obs.feedback))
        text = obs.text + ("\n\n" + prompts.EXTRA_CALLS.format(n=extra) if extra else "")
        await self._append(ev.ToolFinished(
            run_id=self.run_id, action_id=aid, step=step, observation=text,
            exit_code=obs.exit_code, error=obs.error, duration_s=round(duration, 6),
            artifact=obs.artifact))

    async def _guarded(self, work: Coroutine[Any, Any, T], step: int, action_id: str | None,
                       purpose: Literal["action", "summary"] = "action") -> T | None:
        """Await `work` while watching the log: a stop cuts it short (and ends the run); an
        interrupting message cuts a model call short (returns None). A model's retries in
        `work` are recorded as `model_retried` events of `step`."""
        context = copy_context()
        context.run(on_retry.set, partial(self._retried, step, purpose))
        task = asyncio.create_task(work, context=context)
        phase: Literal["model", "tool"] = "model" if action_id is None else "tool"
        await asyncio.sleep(0)  # work that is done at once (think, a scripted model) needs no
        if task.done():         # watch on the log
            return task.result()
        try:
            while True:
                waiter = asyncio.ensure_future(self.store.wait(self.run_id, self.state.seq))
                try:
                    done, _ = await asyncio.wait({task, waiter},
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if task in done:
                    return task.result()
                await self._absorb()
                stop = self.state.stop
                if stop is None and not (phase == "model" and self.state.interrupt_pending):
                    continue
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
                await self._append(ev.Interrupted(
                    run_id=self.run_id, step=step, action_id=action_id, phase=phase,
                    reason="stop" if stop else "interrupt"))
                if stop is not None:
                    raise Stopped(self.state.stop_reason)
                return None
        finally:
            if not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task

    async def _retried(self, step: int, purpose: Literal["action", "summary"], r: Retry) -> None:
        await self._append(ev.ModelRetried(
            run_id=self.run_id, step=step, purpose=purpose, attempt=r.attempt, status=r.status,
            reason=r.reason, delay_s=round(r.delay_s, 6)))

    async def _grade(self) -> Grade:
        return await asyncio.to_thread(grade, self.task, self.workspace, task_bin(self.cfg))

