"""The agent's context: a function of the event log, kept up to date incrementally.

The prompt of step k is rebuilt by folding the run's events; nothing per step is stored but
the hash. `prompt_hash` defines the hash: sha256 over the canonical JSON of the tools, then of
each message, one per line. The step status (step count, working time) rides on the newest
message only, so every earlier message is a stable prefix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from apollo import events as ev
from apollo.agent import prompts
from apollo.errors import ApolloError
from apollo.models.base import ChatMessage, ToolMode


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def prompt_hash(tools: list[dict[str, Any]], messages: list[ChatMessage]) -> str:
    h = hashlib.sha256(canonical({"tools": tools}) + b"\n")
    for m in messages:
        h.update(canonical(m) + b"\n")
    return h.hexdigest()


class Context:
    def __init__(self, created: ev.RunCreated, tools: list[dict[str, Any]], tool_mode: ToolMode):
        self.tool_mode = tool_mode
        self.request_tools = tools if tool_mode == "native" else []
        system = prompts.SYSTEM_PROMPT
        if tool_mode == "text":
            from apollo.models.textcall import render_tool_prompt

            system += "\n\n" + render_tool_prompt(tools)
        task = created.task
        self.messages: list[ChatMessage] = [
            {"role": "system", "content": system},
            {"role": "user", "content": prompts.task_message(task["title"], task["instructions"])},
        ]
        self._calls: dict[str, ev.ToolCall | None] = {}
        self._texts: dict[str, str] = {}
        self.steps: list[int] = [0, 0]
        """The step each message belongs to (0: the head; a step's guidance follows it)."""
        self.sizes: list[int] = [_size(m) for m in self.messages]
        """Characters of each message (for token estimates)."""
        self.summary: ev.ContextSummarized | None = None
        self.delivered: list[tuple[str, str, int]] = []
        """Every delivered human message: (guidance id, text, step it followed)."""
        self._chars = sum(self.sizes)
        self._rehash()

    def _rehash(self) -> None:
        self._hasher = hashlib.sha256(canonical({"tools": self.request_tools}) + b"\n")
        self._hashed = 0

    def _add(self, message: ChatMessage, step: int) -> None:
        self.messages.append(message)
        self.steps.append(step)
        self.sizes.append(_size(message))
        self._chars += self.sizes[-1]

    @property
    def chars(self) -> int:
        return self._chars

    def apply(self, e: ev.Event) -> None:
        match e:
            case ev.ModelCalled():
                self._calls[e.action_id] = e.tool_call
                self._add(self._assistant(e), e.step)
            case ev.ToolFinished():
                self._add(self._observation(e.action_id, e.observation), e.step)
            case ev.Interrupted(phase="tool", action_id=str(aid)):
                notice = prompts.CRASH_NOTICE if e.reason == "crash" else prompts.STOP_NOTICE
                self._add(self._observation(aid, notice), e.step)
            case ev.GuidanceQueued():
                self._texts[e.guidance_id] = e.text
            case ev.GuidanceDelivered():
                for gid in e.guidance_ids:
                    self._add({"role": "user", "content": prompts.guidance_turn(self._texts[gid])},
                              e.step)
                    self.delivered.append((gid, self._texts[gid], e.step))
            case ev.ContextSummarized():
                self._summarized(e)

    def _summarized(self, e: ev.ContextSummarized) -> None:
        """Replace the head's snapshot and every message of steps <= last_step by the new one."""
        keep = [i for i in range(len(self.messages)) if self.steps[i] > e.last_step]
        snapshot: ChatMessage = {"role": "user", "content": prompts.snapshot_message(e)}
        self.messages = [*self.messages[:2], snapshot, *(self.messages[i] for i in keep)]
        self.steps = [0, 0, 0, *(self.steps[i] for i in keep)]
        self.sizes = [*self.sizes[:2], _size(snapshot), *(self.sizes[i] for i in keep)]
        self.summary = e
        self._chars = sum(self.sizes)
        self._rehash()

    def history_start(self) -> int:
        """Index of the first message after the head (system, task, snapshot)."""
        return 3 if self.summary is not None else 2

    def _assistant(self, e: ev.ModelCalled) -> ChatMessage:
        call = e.tool_call
        if self.tool_mode == "text" or call is None:
            return {"role": "assistant", "content": e.content}
        return {
            "role": "assistant",
            "content": e.content or None,
            "tool_calls": [{"id": call.id, "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}}],
        }

    def _observation(self, action_id: str, text: str) -> ChatMessage:
        call = self._calls.get(action_id)
        if self.tool_mode == "native" and call is not None:
            return {"role": "tool", "tool_call_id": call.id, "content": text}
        return {"role": "user", "content": f"Observation:\n{text}"}

    def prompt(self, status: str) -> tuple[list[ChatMessage], str]:
        """The messages of the next request (status on the newest one) and their hash."""
        for m in self.messages[self._hashed : len(self.messages) - 1]:
            self._hasher.update(canonical(m) + b"\n")
        self._hashed = len(self.messages) - 1
        last: ChatMessage = {**self.messages[-1]}
        last["content"] = f"{last['content'] or ''}\n\n{status}"
        h = self._hasher.copy()
        h.update(canonical(last) + b"\n")
        return [*self.messages[:-1], last], h.hexdigest()


def _size(m: ChatMessage) -> int:
    calls = m.get("tool_calls") or []
    return len(m["content"] or "") + sum(
        len(c["function"]["name"]) + len(c["function"]["arguments"]) for c in calls)


@dataclass(frozen=True)
class Replayed:
    """One step's model call, rebuilt from the log."""

    called: ev.ModelCalled
    messages: list[ChatMessage]
    """The exact messages of the request (the status line on the newest one)."""
    sha256: str
    """`prompt_hash` of the tools and `messages`, recomputed from scratch."""
    reply: ChatMessage
    """The assistant message the answer became in the context."""
    status: str
    """The status line appended to the newest message."""
    summarized: ev.ContextSummarized | None
    """The latest summary applied before this step (its snapshot heads the history)."""


def replay_steps(events: Sequence[ev.Event],
                 steps: Collection[int] | None = None) -> Iterator[Replayed]:
    """Rebuild, from a run's log, the exact prompt of every recorded action (or only of
    `steps`, in step order) and its hash.

    The hash is recomputed from scratch (`prompt_hash`), so comparing it with the recorded
    `prompt_sha256` proves the rebuilt prompt is the one the model received. Only the chosen
    steps are materialised and hashed: the fold itself is linear in the log.
    """
    from apollo.agent.config import AgentConfig
    from apollo.tools import Toolbox

    created = events[0] if events else None
    if not isinstance(created, ev.RunCreated):
        raise ApolloError("a run's log starts with run_created")
    cfg = AgentConfig.model_validate(created.config)
    ctx = Context(created, Toolbox(cfg.tools).schemas, cfg.tool_mode)
    wanted = None if steps is None else set(steps)
    for e in events:
        if isinstance(e, ev.ModelCalled) and (wanted is None or e.step in wanted):
            status = prompts.status_line(e.step, cfg.max_steps, e.elapsed_s, cfg.max_time_s)
            messages, _ = ctx.prompt(status)
            sha = prompt_hash(ctx.request_tools, messages)
            summary = ctx.summary
            ctx.apply(e)
            yield Replayed(e, messages, sha, ctx.messages[-1], status, summary)
        else:
            ctx.apply(e)


def replay(events: Sequence[ev.Event], steps: Collection[int] | None = None,
           ) -> Iterator[tuple[ev.ModelCalled, list[ChatMessage], str]]:
    """`replay_steps` as (the model call, its rebuilt messages, their hash)."""
    for r in replay_steps(events, steps):
        yield r.called, r.messages, r.sha256
