"""The exact prompts of chosen steps, rebuilt from a run's log and checked against its hashes.

Export and the judge need only some steps (the last step of each segment, the actions under
review): `prompts_at` is `apollo.agent.context.replay_steps` restricted to those steps, with
every rebuilt hash checked against the recorded one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from apollo import events as ev
from apollo.agent.config import AgentConfig
from apollo.agent.context import Replayed, replay_steps
from apollo.errors import ApolloError

Prompt = Replayed
"""What one step's model call received and answered."""


class LogAltered(ApolloError):
    """A rebuilt prompt does not match the hash recorded when the model was called."""


def run_config(events: Sequence[ev.Event]) -> tuple[ev.RunCreated, AgentConfig]:
    created = events[0] if events else None
    if not isinstance(created, ev.RunCreated):
        raise ApolloError("a run's log starts with run_created")
    return created, AgentConfig.model_validate(created.config)


def request_tools(events: Sequence[ev.Event]) -> list[dict[str, Any]]:
    """The tool schemas sent with every request of the run (none in text mode)."""
    from apollo.tools import Toolbox

    _, cfg = run_config(events)
    return Toolbox(cfg.tools).schemas if cfg.tool_mode == "native" else []


def prompts_at(events: Sequence[ev.Event], steps: Collection[int], *,
               check: bool = True) -> Iterator[Prompt]:
    """The prompt of each of `steps` (in step order), rebuilt by folding the log. With
    `check`, a hash that differs from the recorded `prompt_sha256` raises `LogAltered`."""
    for p in replay_steps(events, steps):
        if check and p.sha256 != p.called.prompt_sha256:
            raise LogAltered(f"run {p.called.run_id} step {p.called.step}: the rebuilt prompt "
                             "does not match the recorded prompt hash (the log was altered)")
        yield p
