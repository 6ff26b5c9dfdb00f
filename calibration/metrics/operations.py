"""What inspecting costs and how often it gives up: tool calls, latency, fail-safes.

Latency is the verdict's ``timings.total_s`` (image handed to the agent to verdict), over every image
including fail-safes, since the line waits for those too. Percentiles interpolate linearly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from calibration.validate.results import Result


class ToolUsage:
    """Tool calls per image, in all and per tool name.

    ``names`` lists tools to report even where unused (zero), so every category has the same keys and the
    mean over categories averages over all of them.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.images = 0
        self.by_name: Counter[str] = Counter(dict.fromkeys(names, 0))

    def update(self, result: Result) -> None:
        self.images += 1
        self.by_name.update(call.name for rnd in result.verdict.trace for call in rnd.tool_calls)

    def compute(self) -> dict:
        def per_image(count: int) -> float | None:
            return count / self.images if self.images else None

        calls = sum(self.by_name.values())
        return {
            "calls": calls,
            "per_image": per_image(calls),
            "by_name": {name: per_image(count) for name, count in sorted(self.by_name.items())},
        }


class Latency:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def update(self, result: Result) -> None:
        self.seconds.append(result.verdict.timings.total_s)

    def compute(self) -> dict[str, float | None]:
        if not self.seconds:
            return {"mean_s": None, "p50_s": None, "p99_s": None}
        p50, p99 = np.percentile(self.seconds, [50, 99])
        return {"mean_s": float(np.mean(self.seconds)), "p50_s": float(p50), "p99_s": float(p99)}


class FailSafes:
    """Fail-safe verdicts by reason; they are also in every accuracy figure, as rejects."""

    def __init__(self) -> None:
        self.images = 0
        self.by_reason: Counter[str] = Counter()

    def update(self, result: Result) -> None:
        self.images += 1
        if result.verdict.fail_safe:
            self.by_reason[result.verdict.reason or "unknown"] += 1

    def compute(self) -> dict:
        count = sum(self.by_reason.values())
        return {
            "count": count,
            "rate": count / self.images if self.images else None,
            "by_reason": dict(sorted(self.by_reason.items())),
        }
