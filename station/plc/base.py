"""Verdicts out: telling the PLC accept or reject for each part, in time, or failing safe.

Line practice: the PLC assumes REJECT until a delivered result confirms ACCEPT, so a verdict that cannot be
delivered in time costs the part (it is rejected by the PLC) but never passes a bad part. Links never raise
into the station: every delivery attempt ends in a `Delivery` that says what happened, and "acked" only ever
means the PLC itself confirmed this part's verdict (an ACK line naming the part, a Modbus write response).

Part ids are the PLC's key into its shift register, so they travel exactly as given or not at all: after
surrounding whitespace is stripped, 1-64 printable ASCII characters without a comma (the ASCII protocol's
field separator). Anything else could only be sent mangled, and a mangled id could match another part's, so
such a verdict is not sent and ends "failed" (the PLC rejects the part).
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


PART_ID_MAX_LEN = 64


def clean_part_id(part_id: str) -> str:
    """The part id as it goes on the wire; ValueError when it cannot travel unchanged (see module doc)."""
    cleaned = part_id.strip()
    if not 1 <= len(cleaned) <= PART_ID_MAX_LEN:
        raise ValueError(f"part id {part_id!r} must have 1-{PART_ID_MAX_LEN} characters")
    bad = sorted({c for c in cleaned if not " " <= c <= "~" or c == ","})
    if bad:
        raise ValueError(f"part id {part_id!r} contains {bad!r} (printable ASCII without ',' only)")
    return cleaned


@dataclass(frozen=True)
class PlcVerdict:
    part_id: str
    accept: bool
    reason_code: ReasonCode
    deadline_ts: float | None = None  # wall clock after which delivery is pointless (the part has passed)


@dataclass
class Delivery:
    # acked: the PLC confirmed it by the deadline; late: confirmed only after the deadline (the PLC has
    # already rejected the part; the verdict reaches its log only); failed: never confirmed.
    outcome: Literal["acked", "late", "failed"]
    attempts: int  # tries to write the verdict (0 when the port was never open for it)
    sent_ts: float | None = None  # first complete write
    acked_ts: float | None = None
    detail: str | None = None


class PlcLink(ABC):
    @abstractmethod
    def deliver(self, verdict: PlcVerdict) -> Delivery:
        """Send one verdict and wait for its acknowledgement (retrying) until acked or its deadline passes."""

    def counters(self) -> dict[str, int]:
        """Running totals for the station's metrics: attempts, retries, acked, late, failed, reconnects..."""
        return {}

    def close(self) -> None:  # noqa: B027
        """Stop heartbeats and release the port."""

    def __enter__(self) -> PlcLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
