"""Keeping a long run's context inside the window without losing what people said.

When the next prompt would pass `summarize_at` tokens, the older half of the history (by
size, cut at a step boundary, so an action never loses its observation) is summarised by a
model call into a structured state snapshot; the new context is system + task + snapshot +
the recent half. A later summary covers the earlier snapshot plus newer steps. Every human
message delivered so far must be reflected in the snapshot (by its tag, e.g. `[g-1a2b]`):
one retry names the missing ones, then their texts are appended verbatim. If the summariser
keeps failing, a deterministic truncation keeps the task, all guidance and the last steps.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from apollo import events as ev
from apollo.agent.context import Context
from apollo.errors import ConfigError, ModelError
from apollo.models.base import ChatMessage, ModelRequest
from apollo.models.openai_compat import backoff_scale
from apollo.protocols import Model

SECTIONS = (
    "State of the art", "Hypotheses (testing / proven / todo)", "Key knowledge",
    "Reflections", "Open background jobs and files", "Recent actions",
    "Experiment history (with scores)",
)
SUMMARY_SYSTEM = (
    "You maintain the working memory of a research agent on a long task. Condense its older "
    "steps into a state snapshot it can continue from: facts, results and scores, what was "
    "tried and what failed, files and jobs that exist, and every piece of advice a human "
    "expert gave. Write Markdown with exactly these sections:\n"
    + "\n".join(f"## {s}" for s in SECTIONS)
    + "\nUnder Reflections, write one entry for EVERY human message listed, starting with its "
    "tag in square brackets (e.g. [g-12ab]), saying what it asked and how the agent must act "
    "on it from now on. Never drop a human message."
)
OBSERVATION_CHARS = 4000
TAG = re.compile(r"\[(g-[A-Za-z0-9_-]+)\]")


class TokenCounter:
    """Prompt tokens: a local tokenizer when given, else characters × a ratio that is
    calibrated by the token counts the endpoint reports."""

    def __init__(self, tokenizer: str | None = None):
        self.ratio = 0.25
        self._tok = _load_tokenizer(tokenizer) if tokenizer else None
        self._cache: dict[str, int] = {}

    def observe(self, prompt_tokens: int, chars: int) -> None:
        if prompt_tokens > 0 and chars > 0:
            self.ratio = prompt_tokens / chars

    def count(self, ctx: Context) -> int:
        if self._tok is None:
            return int(ctx.chars * self.ratio)
        total = 0
        for m in ctx.messages:
            text = m["content"] or ""
            if text not in self._cache:
                self._cache[text] = len(self._tok.encode(text).ids)
            total += self._cache[text] + 4
        return total


def _load_tokenizer(name: str) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ConfigError("a tokenizer needs the `tokenizers` package: pip install tokenizers") \
            from e
    path = Path(name)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"tokenizer {name}: no tokenizer.json there (it is loaded locally)")
    return Tokenizer.from_file(str(path))


def choose_cut(ctx: Context) -> int | None:
    """The last step to summarise: about half the history by size, at a step boundary,
    leaving at least the newest step. None when there is nothing to summarise."""
    start = ctx.history_start()
    if len(ctx.messages) <= start:
        return None
    newest = ctx.steps[-1]
    half, acc = sum(ctx.sizes[start:]) / 2, 0
    for i in range(start, len(ctx.messages)):
        acc += ctx.sizes[i]
        if acc >= half:
            cut = min(ctx.steps[i], newest - 1)
            first = ctx.steps[start]
            return cut if cut >= first else None
    return None


@dataclass(frozen=True)
class Guidance:
    gid: str
    text: str
    step: int


def request_text(ctx: Context, cut: int, task: str, guidance: list[Guidance]) -> str:
    parts = [f"# Task\n{task}"]
    if ctx.summary is not None:
        parts.append(f"# Previous snapshot (steps {ctx.summary.first_step}-"
                     f"{ctx.summary.last_step})\n{ctx.summary.summary}")
    lines: list[str] = []
    step = -1
    for i in range(ctx.history_start(), len(ctx.messages)):
        if ctx.steps[i] > cut:
            break
        if ctx.steps[i] != step:
            step = ctx.steps[i]
            lines.append(f"## Step {step}")
        lines.append(_render(ctx.messages[i]))
    parts.append("# Steps to summarise\n" + "\n".join(lines))
    listed = "\n".join(f"- [{g.gid}] (after step {g.step}) {g.text}" for g in guidance)
    parts.append(f"# Human messages to reflect\n{listed or '(none)'}")
    return "\n\n".join(parts)


def _render(m: ChatMessage) -> str:
    text = m["content"] or ""
    if m["role"] == "assistant":
        calls = "".join(f"\nAction: {c['function']['name']} {c['function']['arguments']}"
                        for c in m.get("tool_calls") or [])
        return f"Thought: {text}{calls}"
    if len(text) > OBSERVATION_CHARS:
        text = text[: OBSERVATION_CHARS // 2] + "\n[...]\n" + text[-OBSERVATION_CHARS // 2:]
    return f"Observation: {text}" if m["role"] == "tool" else text


def missing(summary: str, guidance: list[Guidance]) -> list[Guidance]:
    present = set(TAG.findall(summary))
    return [g for g in guidance if g.gid not in present]


def verbatim(guidance: list[Guidance]) -> str:
    return "\n\n## Human guidance (verbatim)\n" + "\n".join(
        f"- [{g.gid}] (after step {g.step}) {g.text}" for g in guidance)


Summarized = tuple[str, Literal["model", "truncation"], list[str]]
"""(summary, method, guidance ids appended verbatim)."""


async def summarize(
    model: Model, ctx: Context, cut: int, task: str, guidance: list[Guidance], run_id: str,
    attempts: int = 3,
) -> Summarized:
    """(summary, method, guidance ids appended verbatim)."""
    text = request_text(ctx, cut, task, guidance)
    scale = backoff_scale()
    summary = ""
    for attempt in range(attempts):
        try:
            summary = await _ask(model, text, run_id, cut)
            break
        except ModelError:
            if attempt + 1 < attempts:
                await asyncio.sleep(scale * 2**attempt)
    if not summary.strip():
        return truncation(ctx, cut, guidance), "truncation", [g.gid for g in guidance]
    lost = missing(summary, guidance)
    if lost:
        reminder = ("\n\n# Your previous snapshot missed these human messages; reflect each, "
                    "with its tag:\n" + "\n".join(f"- [{g.gid}] {g.text}" for g in lost))
        try:
            again = await _ask(model, text + reminder, run_id, cut)
        except ModelError:
            again = ""
        if again.strip() and len(missing(again, guidance)) < len(lost):
            summary, lost = again, missing(again, guidance)
    if lost:
        summary += verbatim(lost)
    return summary, "model", [g.gid for g in lost]


async def _ask(model: Model, text: str, run_id: str, cut: int) -> str:
    messages: list[ChatMessage] = [{"role": "system", "content": SUMMARY_SYSTEM},
                                   {"role": "user", "content": text}]
    response = await model.complete(ModelRequest(messages, [], run_id, cut, purpose="summary"))
    return response.content


def truncation(ctx: Context, cut: int, guidance: list[Guidance], keep_actions: int = 10) -> str:
    """A snapshot made without a model: the guidance verbatim and the last actions cut."""
    actions = []
    for i in range(ctx.history_start(), len(ctx.messages)):
        m = ctx.messages[i]
        if ctx.steps[i] <= cut and m["role"] == "assistant":
            calls = m.get("tool_calls") or []
            what = (f"{calls[0]['function']['name']} {calls[0]['function']['arguments'][:200]}"
                    if calls else (m["content"] or "")[:200])
            actions.append(f"- step {ctx.steps[i]}: {what}")
    head = ("## Note\nThe summariser was unavailable, so steps up to "
            f"{cut} were dropped from the context without a summary. The task above, every "
            "human message and the most recent steps are kept.")
    previous = ""
    if ctx.summary is not None:
        previous = f"\n\n## Earlier snapshot\n{ctx.summary.summary[:4000]}"
    recent = "\n\n## Last actions before the cut\n" + "\n".join(actions[-keep_actions:])
    return head + previous + (verbatim(guidance) if guidance else "") + recent


def event(run_id: str, ctx: Context, cut: int, summary: str,
          method: Literal["model", "truncation"],
          guidance: list[Guidance], appended: list[str], tokens: int) -> ev.ContextSummarized:
    return ev.ContextSummarized(
        run_id=run_id, summary=summary, first_step=1, last_step=cut,
        method=method,
        guidance_ids=[g.gid for g in guidance], verbatim_ids=appended, tokens_before=tokens)


async def fit(ctx: Context, counter: TokenCounter, summarize_at: int, model: Model, task: str,
              run_id: str,
              guard: Callable[[Coroutine[Any, Any, Summarized]], Awaitable[Summarized | None]],
              ) -> ev.ContextSummarized | None:
    """The summary event that makes the context fit again, when the prompt has grown past
    `summarize_at` tokens; None when it fits, or when `guard` (the loop's watch for stops
    and interrupting messages) cut the summary request short."""
    tokens = counter.count(ctx)
    cut = choose_cut(ctx) if tokens > summarize_at else None
    if cut is None:
        return None
    guidance = [Guidance(g, t, s) for g, t, s in ctx.delivered if s <= cut]
    made = await guard(summarize(model, ctx, cut, task, guidance, run_id))
    if made is None:
        return None
    text, method, appended = made
    return event(run_id, ctx, cut, text, method, guidance, appended, tokens)
