"""Real verdicts from the agent loop (scripted model), one per kind of part the page and metrics show."""

from __future__ import annotations

import numpy as np
import pytest

from station.agent import Agent
from station.backends.scripted import ANSWER_DEFECT, ANSWER_GOOD, CROP_CALL, ScriptedBackend
from station.verdict import Verdict

SCRIPTS = {
    "accept": lambda: ScriptedBackend([ANSWER_GOOD]),
    "reject": lambda: ScriptedBackend([CROP_CALL, ANSWER_DEFECT]),  # one crop, then a crack
    "unknown_tool": lambda: ScriptedBackend.fault("unknown_tool"),  # two calls of "xray": tool_error
}


@pytest.fixture(scope="session")
def verdicts() -> dict[str, Verdict]:
    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = {}
    for kind, backend in SCRIPTS.items():
        agent = Agent(backend())
        try:
            out[kind] = agent.inspect(image, "bottle", part_id=kind)
        finally:
            agent.close()
    return out
