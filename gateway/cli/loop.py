"""The event loop ``serve`` runs on: uvloop when installed (``[server] event_loop``).

uvloop (libuv, in C) accepts connections, reads and writes sockets and runs timers for a
fraction of asyncio's own loop's CPU; the gateway behaves the same on both (the test suite
runs on asyncio's, tests/test_event_loop.py on uvloop's). It is an optional, compiled
dependency: the ``fast`` extra.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from gateway.settings import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: Literal["auto", "asyncio", "uvloop"]) -> LoopFactory | None:
    """uvloop's loop factory, or None for asyncio's own loop."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "server.event_loop = uvloop, but uvloop is not installed"
                " (pip install 'suppression-gateway[fast]')"
            ) from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, None], factory: LoopFactory | None) -> None:
    """``asyncio.run(main)`` on the loop ``factory`` makes (asyncio's own for None)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)
