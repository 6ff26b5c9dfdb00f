"""Keep evaluation benchmarks' categories out of the training trajectories.

Zero-shot claims only hold if no training category is an evaluation category under another spelling, so
the filter matches the way the `prior` tool resolves product names (case, separators, plurals, trailing
numbers both ways: ``pcb`` vs ``pcb1..pcb4``, ``transistor1`` vs ``transistor``, ``Metal-Nut``), and never
by meaning: a guess would silently drop legitimate categories. The default evaluation set is read from the
shipped priors, so a benchmark added there is excluded here without a second list to keep in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tools.prior import Prior, PriorStore

# The benchmarks IndusAgent evaluates on, as the shipped priors name their datasets ("SDD" is KolektorSDD).
EVALUATION_DATASETS = ("MVTec AD", "VisA", "MPDD", "DTD-Synthetic", "KolektorSDD")
_CERTAIN = ("exact", "alias", "variant")


@dataclass(frozen=True)
class Leak:
    """Why a training category was removed: the evaluation category it matched, and how."""

    category: str
    matched: str
    dataset: str
    matched_by: str

    def reason(self) -> str:
        where = f" ({self.dataset})" if self.dataset else ""
        return f"{self.matched_by} match with evaluation category {self.matched!r}{where}"


class LeakageFilter:
    """Matches training categories against evaluation categories held as priors (names and aliases)."""

    def __init__(self, priors: Iterable[Prior]):
        self._store = PriorStore(priors, embedder="lexical")

    @classmethod
    def benchmarks(cls, datasets: Iterable[str] = EVALUATION_DATASETS) -> LeakageFilter:
        """The shipped priors of the evaluation datasets."""
        wanted = set(datasets)
        return cls(p for p in PriorStore.default(embedder="lexical") if p.dataset in wanted)

    @classmethod
    def names(cls, names: Iterable[str]) -> LeakageFilter:
        """Plain category names, for benchmarks without shipped priors; the prior text is a placeholder."""
        return cls(
            Prior(
                name=name,
                dataset="evaluation",
                kind="object",
                geometry=name,
                texture=name,
                structure=name,
                acceptable_variation=name,
            )
            for name in dict.fromkeys(names)
        )

    @property
    def categories(self) -> list[str]:
        return self._store.names()

    def match(self, category: str) -> Leak | None:
        if category not in self._store:  # resolves without guessing, so no lookup by meaning is built
            return None
        found = self._store.lookup(category)
        if found is None or found.matched_by not in _CERTAIN:
            return None
        return Leak(category, found.prior.name, found.prior.dataset, found.matched_by)
