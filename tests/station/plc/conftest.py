from __future__ import annotations

import faulthandler
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from station.plc.config import PlcConfig

HANG_LIMIT_S = 20.0


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Serial I/O and threads everywhere: a test that hangs dumps every thread's stack and ends the run."""
    faulthandler.dump_traceback_later(HANG_LIMIT_S, exit=True, file=sys.__stderr__)  # not pytest's capture
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def config() -> Callable[..., PlcConfig]:
    """Fast timings; heartbeats effectively off unless a test asks for them."""

    def make(port: str, **overrides: Any) -> PlcConfig:
        settings: dict[str, Any] = {
            "port": port,
            "ack_timeout_s": 0.05,
            "write_timeout_s": 0.05,
            "default_deadline_s": 0.5,
            "heartbeat_s": 60.0,
            "reconnect_backoff_s": (0.01, 0.05),
        }
        return PlcConfig(**(settings | overrides))

    return make
