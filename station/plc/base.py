"""Verdicts out: telling the PLC accept or reject for each part, in time, or failing safe.

Line practice: the PLC assumes REJECT until a delivered result confirms ACCEPT, so a verdict that cannot be
delivered in time costs the part (it is rejected by the PLC) but never passes a bad part. Links never raise
into the station: every delivery attempt ends in a `Delivery` that says what happened.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

ReasonCode = int  # small integer the PLC can switch on; see REASON_CODES

# The reason code sent with each verdict: 0 for the model's own verdict, one code per fail-safe reason.
REASON_CODES: dict[str | None, int] = {
    None: 0,
    "corrupt_frame": 1,
    "deadline": 2,
    "backend_error": 3,
    "parse_error": 4,
    "token_limit": 5,
    "tool_limit": 6,
    "tool_error": 7,
    "internal_error": 8,
}


@dataclass(frozen=True)
class PlcVerdict:
    part_id: str
    accept: bool
    reason_code: ReasonCode
    deadline_ts: float | None = None  # wall clock after which delivery is pointless (the part has passed)


@dataclass
class Delivery:
    outcome: Literal["acked", "late", "failed"]  # acked in time / acked or sent after the deadline / never
    attempts: int
    sent_ts: float | None = None  # first write
    acked_ts: float | None = None
    detail: str | None = None


class PlcLink(ABC):
    @abstractmethod
    def deliver(self, verdict: PlcVerdict) -> Delivery:
        """Send one verdict and wait for its acknowledgement (retrying) until acked or its deadline passes."""

    def close(self) -> None:  # noqa: B027
        """Stop heartbeats and release the port."""
