"""Real verdicts from the agent loop (scripted model) and frames as a camera source would hand them over."""

from __future__ import annotations

import time

import numpy as np
import pytest

from station.agent import Agent
from station.backends.scripted import ANSWER_DEFECT, ANSWER_GOOD, CROP_CALL, ScriptedBackend
from station.camera.base import Frame
from station.verdict import Verdict

SCRIPTS = {
    "accept": ScriptedBackend([ANSWER_GOOD]),
    "reject": ScriptedBackend([CROP_CALL, ANSWER_DEFECT]),  # evidence: the frame and one crop
    "fail_safe": ScriptedBackend.fault("garbage"),  # parse_error; evidence: the frame
}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def verdicts(image: np.ndarray) -> dict[str, Verdict]:
    out = {}
    for kind, backend in SCRIPTS.items():
        agent = Agent(backend)
        try:
            out[kind] = agent.inspect(image, "bottle", part_id=kind)
        finally:
            agent.close()
    return out


def _frame(part_id: str, seq: int = 0) -> Frame:
    now = time.time()
    return Frame(
        part_id=part_id,
        seq=seq,
        capture_ts=now - 0.010,
        product="bottle",
        image=None,  # the audit never looks at the frame's pixels, only at what the model saw
        received_ts=now,
        decoded_ts=now + 0.001,
    )


@pytest.fixture
def make_frame():
    """``make_frame(part_id, seq=0)``: a frame just received and decoded."""
    return _frame
