"""What every route reaches through `request.app.state.console`: the store, the accounts, the
fleet fold and its hub, the hosted runner, and the settings. Nothing in it is run state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from apollo.server.fleet import Thresholds

if TYPE_CHECKING:
    from apollo.config import Home
    from apollo.protocols import Store
    from apollo.server.accounts import Accounts
    from apollo.server.fleet import Fleet
    from apollo.server.host import RunHost
    from apollo.server.hub import Hub


@dataclass(frozen=True)
class Settings:
    max_concurrent: int = 8
    """Runs the hosted runner executes at once."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    """When the dashboard raises its attention signals."""
    max_body_bytes: int = 64 * 1024
    """Requests with a larger body are refused (413)."""
    adopt_every_s: float | None = None
    """Look for orphaned runs (their process or node died) this often and execute them here;
    None: never (`apollo serve --resume` sets it)."""
    secure_cookies: bool | None = None
    """Mark the session cookie Secure; None: when the request came over https."""


@dataclass
class Console:
    store: Store
    home: Home
    accounts: Accounts
    fleet: Fleet
    hub: Hub
    host: RunHost
    settings: Settings


def console(conn: HTTPConnection) -> Console:
    """The dependency every route takes its `Console` from."""
    console_: Console = conn.app.state.console
    return console_
