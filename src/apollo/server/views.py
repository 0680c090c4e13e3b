"""What the run page shows besides the raw timeline, derived from one run's log.

- files the agent changed: successful `write_file` / `edit_file` calls, per path, in order;
- background jobs: the observations of `job_*` tool calls, grouped by the job they name;
- guidance: each message, queued, then delivered at step N;
- the full text of an observation (the capped artifact when there is one);
- the exact context the model saw at a step (`agent.context.replay`, checked by its hash).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apollo import events as ev
from apollo.errors import NotFound

MAX_SHOWN = 20_000
"""Characters of a file's content or a job's output sent to the panels (the rest on demand)."""

JOB_KEYS = ("name", "job", "session", "job_id", "id")


def _args(call: ev.ToolCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _clip(text: str) -> tuple[str, bool]:
    return (text, False) if len(text) <= MAX_SHOWN else (text[:MAX_SHOWN], True)


def _calls(events: Sequence[ev.Event]) -> list[tuple[ev.ModelCalled, ev.ToolFinished]]:
    """Each executed action with its finished observation, in order."""
    called: dict[str, ev.ModelCalled] = {}
    out = []
    for e in events:
        if isinstance(e, ev.ModelCalled) and e.tool_call is not None:
            called[e.action_id] = e
        elif isinstance(e, ev.ToolFinished) and e.action_id in called:
            out.append((called.pop(e.action_id), e))
    return out


def changed_files(events: Sequence[ev.Event]) -> list[dict[str, Any]]:
    """Files written or edited by successful calls: one entry per path, changes in order."""
    files: dict[str, dict[str, Any]] = {}
    for call, done in _calls(events):
        assert call.tool_call is not None
        name = call.tool_call.name
        if name not in ("write_file", "edit_file") or done.error:
            continue
        args = _args(call.tool_call)
        path = str(args.get("path", ""))
        if not path:
            continue
        change: dict[str, Any] = {"step": call.step, "action_id": call.action_id, "op": name}
        if name == "write_file":
            change["content"], change["truncated"] = _clip(str(args.get("content", "")))
        else:
            old, cut_old = _clip(str(args.get("old", "")))
            new, cut_new = _clip(str(args.get("new", "")))
            change.update(old=old, new=new, truncated=cut_old or cut_new,
                          all=bool(args.get("all", False)))
        entry = files.setdefault(path, {"path": path, "changes": []})
        entry["changes"].append(change)
        entry["last_step"] = call.step
    return sorted(files.values(), key=lambda f: -f["last_step"])


def jobs(events: Sequence[ev.Event]) -> list[dict[str, Any]]:
    """Background jobs seen through the `job_*` tools (and `sleep` waiting for a job): per job,
    its calls and the output the agent has read (the observations of `job_start` and each
    `job_output`, in order; the last `MAX_SHOWN` characters); `job_list` answers under
    "(all jobs)"."""
    found: dict[str, dict[str, Any]] = {}
    for call, done in _calls(events):
        assert call.tool_call is not None
        tool = call.tool_call.name
        args = _args(call.tool_call)
        if not tool.startswith("job_") and not (tool == "sleep" and args.get("job")):
            continue
        key = next((str(args[k]) for k in JOB_KEYS if k in args), "(all jobs)")
        entry = found.setdefault(key, {"job": key, "calls": [], "output": "", "truncated": False,
                                       "output_step": None})
        entry["calls"].append({"step": call.step, "tool": tool, "error": done.error})
        entry["last_step"] = call.step
        if tool != "sleep":
            seen = entry["output"] + ("\n" if entry["output"] else "") + done.observation
            entry["truncated"] = entry["truncated"] or len(seen) > MAX_SHOWN
            entry["output"] = seen[-MAX_SHOWN:] if tool != "job_list" else done.observation
            entry["output_step"] = call.step
        if tool == "job_start" and "command" in args:
            entry["command"] = str(args["command"])
    return sorted(found.values(), key=lambda j: -j["last_step"])


def guidance(events: Sequence[ev.Event]) -> list[dict[str, Any]]:
    """Every message, in the order queued, with where it was delivered (if it was)."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        if isinstance(e, ev.GuidanceQueued):
            out[e.guidance_id] = {
                "guidance_id": e.guidance_id, "author": e.author, "text": e.text,
                "interrupt": e.interrupt, "queued_at": e.time.isoformat(), "seq": e.seq,
                "status": "queued", "delivered_step": None, "delivered_at": None,
            }
        elif isinstance(e, ev.GuidanceDelivered):
            for gid in e.guidance_ids:
                if gid in out:
                    out[gid].update(status="delivered", delivered_step=e.step,
                                    delivered_at=e.time.isoformat())
    return list(out.values())


def observation(events: Sequence[ev.Event], step: int) -> str:
    """The full observation of a step: its artifact (the uncapped output) when it has one."""
    created = events[0]
    assert isinstance(created, ev.RunCreated)
    done = next((e for e in events if isinstance(e, ev.ToolFinished) and e.step == step), None)
    if done is None:
        raise NotFound(f"step {step} has no observation")
    if done.artifact:
        run_dir = Path(created.workspace).parent.resolve()
        path = (run_dir / done.artifact).resolve()
        if path.is_relative_to(run_dir) and path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return done.observation


def context(events: Sequence[ev.Event], step: int) -> dict[str, Any]:
    """The exact messages the model received at a step, rebuilt from the log, and whether
    their hash matches the one recorded."""
    from apollo.agent.context import replay

    for called, messages, sha in replay(events, [step]):
        if called.step == step:
            return {"step": step, "action_id": called.action_id, "messages": messages,
                    "sha256": sha, "recorded_sha256": called.prompt_sha256,
                    "verified": sha == called.prompt_sha256}
    raise NotFound(f"the run has no step {step}")


def action_ids(events: Sequence[ev.Event]) -> set[str]:
    return {e.action_id for e in events if isinstance(e, ev.ModelCalled)}
