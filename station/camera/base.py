"""Frames in: what the station receives from a camera sender, however it was sent.

Every source yields `Frame`s. A frame that arrived but cannot be used (garbage header, truncated or
undecodable pixels, wrong shape) is still a `Frame`, with ``error`` set and no image: the part it belongs to
must get its fail-safe reject, counted and logged, never silently vanish.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    part_id: str  # the PLC's identity of the part; generated from the sequence number when absent
    seq: int | None  # sender's sequence number: gaps are drops
    capture_ts: float | None  # sender's wall-clock capture time (time.time()), for end-to-end latency
    product: str | None
    image: np.ndarray | None  # RGB or grey uint8; None when ``error`` is set
    deadline_ms: float | None = None  # the part's own budget from capture, overriding the recipe's
    received_ts: float = 0.0  # station wall clock when the message arrived
    decoded_ts: float | None = None
    error: str | None = None  # why the frame is unusable (becomes a corrupt_frame fail-safe)
    meta: dict = field(default_factory=dict)  # anything else the sender put in the header


class FrameSource(ABC):
    """A camera connection. ``receive`` waits at most ``timeout_s`` and returns None when nothing came."""

    @abstractmethod
    def receive(self, timeout_s: float) -> Frame | None: ...

    @property
    def dropped(self) -> int:
        """Frames the sender sent that never reached us (sequence gaps); 0 where loss is impossible."""
        return 0

    def close(self) -> None:  # noqa: B027 - sources without resources need nothing
        """Stop receiving and release the socket."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
