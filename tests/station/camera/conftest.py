"""Helpers for camera tests: every socket is on loopback, every wait is bounded."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from station.camera.base import Frame, FrameSource
from station.camera.zmq_source import CameraConfig, open_source

TIMEOUT_S = 2.0  # the longest any single receive in these tests may wait


def smooth_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A gradient with a little texture: exact under PNG, close under JPEG, distinct per seed."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return np.clip(base + rng.integers(0, 60) + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)


def _receive_all(source: FrameSource, count: int, timeout_s: float = TIMEOUT_S) -> list[Frame]:
    frames = []
    for _ in range(count):
        frame = source.receive(timeout_s)
        assert frame is not None, f"only {len(frames)} of {count} frames arrived"
        frames.append(frame)
    return frames


@pytest.fixture
def make_image() -> Callable[..., np.ndarray]:
    return smooth_image


@pytest.fixture
def receive_all() -> Callable[..., list[Frame]]:
    """``receive_all(source, count)``: exactly ``count`` frames, each within TIMEOUT_S, or the test fails."""
    return _receive_all


@pytest.fixture
def station() -> Iterator:
    """Opens sources (tcp://127.0.0.1 on a free port unless told otherwise) and closes them afterwards."""
    opened: list[FrameSource] = []

    def open_(**fields) -> FrameSource:
        fields.setdefault("endpoint", "tcp://127.0.0.1:0")
        source = open_source(CameraConfig(**fields))
        opened.append(source)
        return source

    yield open_
    for source in opened:
        source.close()
