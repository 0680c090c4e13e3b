"""Executors: where runs execute.

- `local` (`apollo.runner.Runner`): in this process, as asyncio tasks.
- `ray` (`apollo.executors.ray_executor.RayExecutor`): each run as a Ray actor on some node of
  a Ray cluster, writing to the shared store.

Every executor is a `Runner`, with the same `create`, `execute(run_id, model)`,
`execute_many(run_ids, model)` and `resumable()`, so whatever executes runs (`apollo run`, the
console's run host, an evaluation harness) takes any of them from `make_runner`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apollo.errors import ConfigError

if TYPE_CHECKING:
    from apollo.config import Home
    from apollo.protocols import Store
    from apollo.runner import Runner

EXECUTORS = ("local", "ray")


def make_runner(store: Store, home: Home, executor: str = "local", *, max_concurrent: int = 8,
                ray_address: str | None = None) -> Runner:
    """The runner of an executor: `local`, or `ray` (joining the cluster at `ray_address`:
    `auto` for the one running on this machine; None starts a local one)."""
    check_executor(executor, ray_address)
    if executor == "local":
        from apollo.runner import Runner

        return Runner(store, home, max_concurrent=max_concurrent)
    try:
        from apollo.executors.ray_executor import RayExecutor
    except ImportError as e:
        raise ConfigError(f"--executor ray needs Ray ({e.name} is missing): "
                          "pip install 'apollo-rollout[ray]'") from e
    return RayExecutor(store, home, max_concurrent=max_concurrent, address=ray_address)


def check_executor(executor: str, ray_address: str | None) -> None:
    """Refuse an unknown executor, or a Ray address without the Ray executor (before any
    run is made)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if ray_address is not None and executor != "ray":
        raise ConfigError("--ray-address goes with --executor ray")
