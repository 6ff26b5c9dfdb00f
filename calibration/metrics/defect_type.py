"""Whether the model names the defect the way the dataset does.

Scored only on defective images the model itself flagged (a reject that is not a fail-safe): naming the
type of a part it accepted, or of a part it never answered for, is not a question. Names match after
lower-casing and dropping spaces, hyphens and underscores ("Broken Thread" = "broken_thread"); synonyms
do not match, so the figure is a floor when the prompt does not list the dataset's type names.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from calibration.validate.results import Result


def normalise_type(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


class DefectType:
    def __init__(self) -> None:
        self.flagged = 0
        self.correct = 0

    def update(self, result: Result) -> None:
        verdict = result.verdict
        if result.label != 1 or not verdict.rejected or verdict.fail_safe:
            return
        self.flagged += 1
        self.correct += verdict.type is not None and normalise_type(verdict.type) == normalise_type(
            result.defect
        )

    def compute(self) -> dict[str, int | float | None]:
        return {
            "flagged": self.flagged,
            "correct": self.correct,
            "accuracy": self.correct / self.flagged if self.flagged else None,
        }
