"""Recorded production frames re-validated against the labels people gave them later (`indus audit label`).

Named as ``audit:/path/indus-audit.db`` (frames looked for in ``indus-evidence/`` beside it, where a
station config with the default paths keeps them) or ``audit:/path/station.yaml`` (the database and the
evidence folder that config names). A part becomes a sample when it has a human label and its frame is still
in the evidence folder: the category is the product, the defect the labelled type (or just good/defective),
and there is no mask. Everything else is skipped and counted (``skipped``), since re-validating on the parts
that happen to have evidence is only meaningful when one knows how many did not.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from calibration.datasets.base import GOOD, DatasetError, DatasetLoader, Sample
from station.audit import AuditDB, AuditError
from station.config import AuditConfig, ConfigError, StationConfig

log = logging.getLogger(__name__)

NO_PRODUCT = "no_product"  # the category of parts recorded without a product header
_CONFIG_SUFFIXES = (".yaml", ".yml")


class AuditLoader(DatasetLoader):
    kind = "audit"
    layout = "an audit database (frames in indus-evidence/ beside it) or the station YAML that names both"

    def __init__(self, root: str | Path, categories: Sequence[str] | None = None):
        # The root is a file, so the base class's folder checks do not apply; the rest of its contract does.
        self.root = Path(root)
        self.database, self.evidence_dir = _locate(self.root)
        try:
            AuditDB(self.database)  # the station's own checks: exists, is an audit database of this version
            rows, unlabelled = _labelled_parts(self.database)
        except AuditError as error:
            raise DatasetError(f"{self.kind}: {error}") from error
        self._by_product: dict[str, list[Sample]] = {}
        no_evidence = 0
        for row in rows:
            frame = self._frame(row["evidence_path"])
            if frame is None:
                no_evidence += 1
                continue
            category = row["product"] or NO_PRODUCT
            defective = row["label"] == "defective"
            self._by_product.setdefault(category, []).append(
                Sample(
                    image=frame,
                    category=category,
                    label=int(defective),
                    defect=row["label_defect"] or ("defective" if defective else GOOD),
                    mask=None,
                    dataset=self.kind,
                )
            )
        self.skipped = {"unlabelled": unlabelled, "no_evidence": no_evidence}
        usable = sum(map(len, self._by_product.values()))
        log.info(
            "%s: %d labelled part(s) with a frame; skipped %d without a label and %d labelled without a "
            "stored frame (evidence in %s)",
            self.database,
            usable,
            unlabelled,
            no_evidence,
            self.evidence_dir,
        )
        if not usable:
            raise DatasetError(
                f"{self.kind}: no part in {self.database} can be re-validated: {unlabelled} part(s) have no "
                f"human label (add them with `indus audit label`) and {no_evidence} labelled part(s) have no "
                f"stored frame under {self.evidence_dir} (the station keeps frames of the parts its "
                "audit.keep_evidence selects, rejects only by default, and prunes the oldest)"
            )
        self.selected = list(dict.fromkeys(categories)) if categories else None
        self._samples = {category: self._load(category) for category in self._check_selection()}

    def categories(self) -> list[str]:
        return sorted(self._by_product)

    def _load(self, category: str) -> list[Sample]:
        return self._by_product[category]

    def _frame(self, evidence_path: str | None) -> Path | None:
        """The frame the model saw first (``00_frame.png``), if the part's evidence is still on disk."""
        if evidence_path is None:
            return None
        return next(iter(sorted((self.evidence_dir / evidence_path).glob("*_frame.png"))), None)


def _locate(root: Path) -> tuple[Path, Path]:
    """The database and the evidence folder for a database path or a station config path."""
    if root.suffix.lower() not in _CONFIG_SUFFIXES:
        return root, root.parent / str(AuditConfig().evidence_dir)
    try:
        audit = StationConfig.from_yaml(root).audit
    except ConfigError as error:
        raise DatasetError(f"{AuditLoader.kind}: {error}") from error
    if audit.evidence_dir is None:
        raise DatasetError(f"{AuditLoader.kind}: {root} keeps no evidence (audit.evidence_dir is null)")
    return audit.path, audit.evidence_dir


def _labelled_parts(database: Path) -> tuple[list[dict], int]:
    """The labelled rows (oldest first) and how many rows have no label.

    `AuditDB` has no query for labelled parts, and reading every row through it would parse every part's
    full verdict trace; this reads the few columns a sample needs, in one short read transaction.
    """
    sql = "SELECT product, label, label_defect, evidence_path FROM parts WHERE label IS NOT NULL ORDER BY id"
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=5.0, isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            conn.execute("BEGIN")  # both counts from one snapshot, while the station keeps writing
            rows = [dict(row) for row in conn.execute(sql)]
            unlabelled = conn.execute("SELECT count(*) FROM parts WHERE label IS NULL").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise AuditError(f"cannot read the audit database {database}: {error}") from error
    return rows, unlabelled
