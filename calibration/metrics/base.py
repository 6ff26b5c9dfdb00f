"""What every metric here shares: the record it reads, and how undefined values leave it.

A figure that cannot be computed (recall without defective images, AUROC with one class) is ``None`` in
the output, never NaN and never an exception: JSON has no NaN, and one category with only good parts must
not stop the report of the others.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol, SupportsFloat

if TYPE_CHECKING:
    from calibration.validate.results import Result


class Metric(Protocol):
    """Accumulates over results one at a time (a run streams them), then reports plain JSON values."""

    def update(self, result: Result) -> None: ...

    def compute(self) -> dict: ...


def finite_or_none(value: SupportsFloat) -> float | None:
    """A plain float for JSON, or None where the figure is undefined (NaN, inf, a 0/0 rate)."""
    number = float(value)
    return number if math.isfinite(number) else None
