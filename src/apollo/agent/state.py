"""A run's control state, folded from its events (the same fold on first start and on resume)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from apollo import events as ev


@dataclass
class RunState:
    seq: int = 0
    """Last applied sequence number; events are applied in order, without gaps."""
    created: ev.RunCreated | None = None
    step: int = 0
    """Number of the last recorded action."""
    pending: ev.ModelCalled | None = None
    """An action whose tool has not finished (cut short by a crash, if the run is not live)."""
    queued: dict[str, ev.GuidanceQueued] = field(default_factory=dict)
    """Guidance waiting for delivery, in arrival order."""
    guidance: dict[str, ev.GuidanceQueued] = field(default_factory=dict)
    paused: bool = False
    stop: ev.RunStopped | None = None
    finished: ev.RunFinished | None = None
    finish_answer: str | None = None
    """Set once `finish` succeeded (the run ends at the next boundary, also after a crash)."""
    elapsed_s: float = 0.0
    """Working time accounted for by the recorded steps."""
    scores: list[float] = field(default_factory=list)
    submissions: int = 0
    """Scored `eval` calls (the budget counts these; the final evaluation is not one)."""

    @property
    def interrupt_pending(self) -> bool:
        return any(g.interrupt for g in self.queued.values())

    @property
    def stop_reason(self) -> str:
        """Who stopped the run, and why (the reason of its `run_finished`)."""
        assert self.stop is not None
        return f"stopped by {self.stop.author}" + (f": {self.stop.reason}" if self.stop.reason
                                                   else "")

    def apply(self, e: ev.Event) -> None:
        if e.seq != self.seq + 1:
            raise ValueError(f"run {e.run_id}: event {e.seq} applied after {self.seq}")
        self.seq = e.seq
        match e:
            case ev.RunCreated():
                self.created = e
            case ev.ModelCalled():
                self.step = e.step
                self.pending = e
                self.elapsed_s = max(self.elapsed_s, e.elapsed_s + e.latency_s)
            case ev.ToolFinished():
                call = self.pending.tool_call if self.pending else None
                if call is not None and call.name == "finish" and not e.error:
                    self.finish_answer = _answer(call.arguments)
                self.pending = None
                self.elapsed_s += e.duration_s
            case ev.Interrupted(phase="tool"):
                self.pending = None
            case ev.GuidanceQueued():
                self.queued[e.guidance_id] = e
                self.guidance[e.guidance_id] = e
            case ev.GuidanceDelivered():
                for gid in e.guidance_ids:
                    self.queued.pop(gid, None)
            case ev.RunPaused():
                self.paused = True
            case ev.RunResumed():
                self.paused = False
            case ev.RunStopped():
                self.stop = e
            case ev.SubmissionScored():
                self.scores.append(e.score)
                self.submissions += e.action_id is not None
            case ev.RunFinished():
                self.finished = e
            case ev.RunnerAttached():
                # A new attach after a terminal error resumes the run.
                if self.finished is not None and self.finished.status == "error":
                    self.finished = None


def _answer(arguments: str) -> str:
    try:
        return str(json.loads(arguments).get("answer", ""))
    except (json.JSONDecodeError, AttributeError):
        return ""
