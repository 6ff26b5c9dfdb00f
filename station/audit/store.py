"""The audit database: what the station saw, decided and told the PLC, one row per part.

SQLite in WAL mode: the station's single writer thread never blocks readers (the operator's `indus audit`,
re-validation jobs), and readers never block it. ``synchronous=NORMAL`` makes a commit an append to the
write-ahead log without an fsync: a station crash loses nothing committed, a power cut at most the last
moments, which is the right trade for a row per part at line rate.

The daemon never waits for the disk: `AuditStore.record_received`, `record_verdict`, `record_delivery`
and `mark_lost` only queue the work; one background thread writes it in batches, together with the
evidence PNGs. A part is recorded as soon as it arrives, so a part that crashes the station is still there
after the restart, without a verdict (`unfinished`), for the daemon to close (`mark_lost`).

Part ids come from the PLC and may repeat across runs (a restarted counter), so rows have their own id;
updates go to the newest row of the part id in this run, and human labels to the newest row of the part id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from station.audit.schema import BOOL_COLUMNS, JSON_COLUMNS, SCHEMA_VERSION, migrate
from station.camera.base import Frame
from station.observability.stamps import Stamps
from station.plc.base import Delivery
from station.verdict import Verdict
from tools.image import save_image

log = logging.getLogger(__name__)

KeepEvidence = Literal["rejects", "all", "none"]
Label = Literal["good", "defective"]
_BATCH = 256  # operations per transaction at most: bounds how long one commit holds the write lock
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # no dots either: a part id ".." must not climb out of evidence_dir


class AuditError(Exception):
    """The audit database cannot be used: missing, not a database, damaged, or from a newer station."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    """A row as plain JSON-ready data: booleans as booleans, JSON columns parsed (``verdict_json`` becomes
    ``verdict``, the full Verdict with its tool trace)."""
    out = dict(row)
    for column in BOOL_COLUMNS:
        if out[column] is not None:
            out[column] = bool(out[column])
    for column in JSON_COLUMNS:
        if out[column] is not None:
            out[column] = json.loads(out[column])
    out["verdict"] = out.pop("verdict_json")
    return out


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)[:80] or "_"


class AuditDB:
    """Queries and human labels, from any thread or process: every call uses its own short connection.

    Opening checks that the file exists and is an audit database of this station's schema version, so a
    wrong path fails here with a clear message instead of creating an empty database.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise AuditError(f"no audit database at {self.path}")
        with self._connect() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            what = "not an audit database" if version == 0 else f"audit schema v{version}"
            raise AuditError(f"{self.path}: {what}; this station reads v{SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = _connect(self.path)
            try:
                yield conn
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise AuditError(f"cannot use the audit database {self.path}: {exc}") from exc

    def _select(self, where: str = "", params: Iterable[object] = (), limit: int | None = None) -> list[dict]:
        sql = f"SELECT * FROM parts {where} ORDER BY id DESC LIMIT ?"
        with self._connect() as conn:
            rows = conn.execute(sql, (*params, -1 if limit is None else limit)).fetchall()
        return [_decode(row) for row in rows]

    def last(self, n: int = 20) -> list[dict]:
        """The newest ``n`` parts, newest first."""
        return self._select(limit=n)

    def rejects(self, since: float | None = None, limit: int | None = None) -> list[dict]:
        """Rejected parts (fail-safes and lost parts too) received at or after ``since``, newest first."""
        return self._select("WHERE decision = 'reject' AND received_ts >= ?", (since or 0.0,), limit)

    def part(self, part_id: str) -> list[dict]:
        """Every row of a part id, newest first (more than one when the PLC reused the id)."""
        return self._select("WHERE part_id = ?", (part_id,))

    def unfinished(self) -> list[dict]:
        """Parts received without a verdict: the station stopped (or crashed) while they were inside."""
        return self._select("WHERE stage = 'received'")

    def counts(self, since: float | None = None) -> list[dict]:
        """Parts per (decision, reason) received at or after ``since``, most frequent first; decision None
        counts the parts still without a verdict."""
        sql = (
            "SELECT decision, reason, count(*) AS parts FROM parts WHERE received_ts >= ? "
            "GROUP BY decision, reason ORDER BY parts DESC, decision, reason"
        )
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(sql, (since or 0.0,)).fetchall()]

    def set_label(self, part_id: str, label: Label, defect: str | None = None) -> None:
        """Record a person's ground truth for the newest row of ``part_id``, for re-validation.

        Raises KeyError when no such part was recorded, ValueError for a label it does not know or a
        defect type on a good part.
        """
        if label not in get_args(Label):
            raise ValueError(f"label must be one of {', '.join(get_args(Label))}, not {label!r}")
        if defect is not None and label != "defective":
            raise ValueError("a defect type belongs to a defective part")
        sql = (
            "UPDATE parts SET label = ?, label_defect = ?, labeled_ts = ? "
            "WHERE id = (SELECT max(id) FROM parts WHERE part_id = ?)"
        )
        with self._connect() as conn:
            if conn.execute(sql, (label, defect, time.time(), part_id)).rowcount == 0:
                raise KeyError(part_id)


class AuditStore(AuditDB):
    """The station's audit writer. Call the ``record_*`` methods from the daemon; they return at once.

    Evidence (the images the model saw) goes to ``evidence_dir/<local date>/<part id>/`` as PNG for the
    parts ``keep_evidence`` selects; beyond ``max_evidence_parts`` parts or ``max_evidence_mb`` megabytes the
    oldest evidence is deleted (its row stays, with ``evidence_path`` cleared).
    ``config_version`` (the daemon's hash of its configuration) and ``run_id`` go into every row.
    """

    def __init__(
        self,
        path: str | Path,
        evidence_dir: str | Path | None = None,
        keep_evidence: KeepEvidence = "rejects",
        max_evidence_parts: int = 2000,
        max_evidence_mb: float = 1024.0,
        *,
        run_id: str | None = None,
        config_version: str | None = None,
    ):
        if keep_evidence not in get_args(KeepEvidence):
            raise ValueError(f"keep_evidence must be one of {', '.join(get_args(KeepEvidence))}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with contextlib.closing(_connect(path)) as conn:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                migrate(conn)
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise AuditError(f"cannot use {path} as the audit database: {exc}") from exc
        if mode != "wal":  # e.g. a network filesystem: still correct, but readers now block the writer
            log.warning("audit database %s is in %s mode, not WAL", path, mode)
        super().__init__(path)
        self.run_id = run_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self.config_version = config_version
        self._evidence_dir = Path(evidence_dir) if evidence_dir is not None else None
        self._keep = keep_evidence if evidence_dir is not None else "none"
        self._max_parts = max_evidence_parts
        self._max_bytes = max_evidence_mb * 1e6
        self._queue: queue.Queue[tuple[Callable[..., None], tuple] | None] = queue.Queue()
        self._closed = False
        writer = _connect(path)  # opened here, so a problem shows at construction, not in a thread
        self._writer = threading.Thread(
            target=self._write_loop, args=(writer,), name="audit-writer", daemon=True
        )
        self._writer.start()

    # -- what the daemon calls -------------------------------------------------------------------------

    def record_received(self, frame: Frame) -> None:
        """A part arrived (call before decoding or inspecting it)."""
        self._submit(self._insert, frame.part_id, Stamps.of(frame), frame.seq, frame.product)

    def record_verdict(self, part_id: str, verdict: Verdict, stamps: Stamps) -> None:
        """The part's verdict; its evidence images are written if ``keep_evidence`` selects it."""
        self._submit(self._write_verdict, part_id, verdict, stamps)

    def record_delivery(self, part_id: str, delivery: Delivery) -> None:
        """What happened when the verdict was sent to the PLC."""
        self._submit(self._write_delivery, part_id, delivery)

    def mark_lost(self, part_ids: Iterable[str], reason: str) -> None:
        """Close parts left unfinished by an earlier run: recorded as rejects (the PLC rejects a part whose
        verdict never came) with ``reason``."""
        self._submit(self._write_lost, list(part_ids), reason)

    def flush(self) -> None:
        """Wait until everything recorded so far is committed (and visible to readers)."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._writer.join()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread -----------------------------------------------------------------------------

    def _submit(self, op: Callable[..., None], *args: object) -> None:
        if self._closed:
            raise AuditError("the audit store is closed")
        self._queue.put((op, args))

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        with contextlib.closing(conn):
            running = True
            while running:
                batch = [self._queue.get()]
                with contextlib.suppress(queue.Empty):
                    while len(batch) < _BATCH:
                        batch.append(self._queue.get_nowait())
                running = None not in batch
                self._apply(conn, [item for item in batch if item is not None])
                for _ in batch:
                    self._queue.task_done()

    def _apply(self, conn: sqlite3.Connection, batch: list[tuple[Callable[..., None], tuple]]) -> None:
        """One transaction per batch. A failing operation is logged and skipped, never fatal: losing one
        audit row must not stop the audit of every later part (nor the station)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, args in batch:
                try:
                    op(conn, *args)
                except Exception:
                    log.exception("audit: %s failed for %r", op.__name__, args[0])
            conn.execute("COMMIT")
        except sqlite3.Error:
            log.exception("audit: a batch of %d records could not be committed", len(batch))
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _row_id(self, conn: sqlite3.Connection, part_id: str) -> int | None:
        sql = "SELECT max(id) FROM parts WHERE run_id = ? AND part_id = ?"
        return conn.execute(sql, (self.run_id, part_id)).fetchone()[0]

    def _update(self, conn: sqlite3.Connection, row_id: int, values: dict[str, object]) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        conn.execute(f"UPDATE parts SET {assignments} WHERE id = ?", (*values.values(), row_id))

    def _insert(
        self, conn: sqlite3.Connection, part_id: str, stamps: Stamps, seq: int | None, product: str | None
    ) -> int:
        sql = (
            "INSERT INTO parts (run_id, config_version, part_id, seq, product, stage, capture_ts, "
            "received_ts, decoded_ts) VALUES (?, ?, ?, ?, ?, 'received', ?, ?, ?)"
        )
        values = (self.run_id, self.config_version, part_id, seq, product)
        return conn.execute(sql, (*values, stamps.capture, stamps.received, stamps.decoded)).lastrowid

    def _write_verdict(
        self, conn: sqlite3.Connection, part_id: str, verdict: Verdict, stamps: Stamps
    ) -> None:
        row_id = self._row_id(conn, part_id)
        if row_id is None:  # the daemon skipped record_received: the verdict must not be lost for that
            row_id = self._insert(conn, part_id, stamps, None, verdict.product)
        self._update(
            conn,
            row_id,
            {
                "stage": "verdict",
                "decoded_ts": stamps.decoded,
                "inspect_start_ts": stamps.inspect_start,
                "verdict_ts": stamps.verdict,
                **verdict.headline(),
                "bbox": None if verdict.bbox is None else json.dumps(verdict.bbox),
                "verdict_json": verdict.model_dump_json(),
                "model": verdict.model,
                "backend": verdict.backend,
            },
        )
        keep = self._keep == "all" or (self._keep == "rejects" and verdict.rejected)
        if keep and verdict.evidence:
            self._write_evidence(conn, row_id, part_id, verdict.evidence, stamps.received)

    def _write_delivery(self, conn: sqlite3.Connection, part_id: str, delivery: Delivery) -> None:
        row_id = self._row_id(conn, part_id)
        if row_id is None:
            log.warning("audit: delivery for part %s, which this run never recorded", part_id)
            return
        self._update(
            conn,
            row_id,
            {
                "stage": "plc",
                "plc_sent_ts": delivery.sent_ts,
                "plc_ack_ts": delivery.acked_ts,
                "plc_outcome": delivery.outcome,
                "plc_attempts": delivery.attempts,
                "plc_detail": delivery.detail,
            },
        )

    def _write_lost(self, conn: sqlite3.Connection, part_ids: list[str], reason: str) -> None:
        sql = (
            "UPDATE parts SET stage = 'lost', decision = 'reject', fail_safe = 1, reason = ?, detail = ? "
            "WHERE stage = 'received' AND part_id = ?"
        )
        detail = "no verdict was recorded before the station stopped"
        conn.executemany(sql, [(reason, detail, part_id) for part_id in part_ids])

    def _write_evidence(
        self,
        conn: sqlite3.Connection,
        row_id: int,
        part_id: str,
        images: list[tuple[str, np.ndarray]],
        received: float,
    ) -> None:
        assert self._evidence_dir is not None  # keep_evidence is "none" without a folder
        folder = Path(time.strftime("%Y-%m-%d", time.localtime(received))) / _safe(part_id)
        if (self._evidence_dir / folder).exists():  # a part id seen twice the same day
            folder = folder.with_name(f"{folder.name}~{row_id}")
        size = 0
        try:
            for index, (name, image) in enumerate(images):
                file = self._evidence_dir / folder / f"{index:02d}_{_safe(name)}.png"
                save_image(file, image)
                size += file.stat().st_size
        except Exception:  # no half-written folder that no row points to (retention would never see it)
            shutil.rmtree(self._evidence_dir / folder, ignore_errors=True)
            raise
        self._update(conn, row_id, {"evidence_path": folder.as_posix(), "evidence_bytes": size})
        self._prune_evidence(conn)

    def _prune_evidence(self, conn: sqlite3.Connection) -> None:
        kept, size = conn.execute(
            "SELECT count(*), coalesce(sum(evidence_bytes), 0) FROM parts WHERE evidence_path IS NOT NULL"
        ).fetchone()
        if kept <= self._max_parts and size <= self._max_bytes:
            return
        assert self._evidence_dir is not None
        oldest = conn.execute(
            "SELECT id, evidence_path, evidence_bytes FROM parts WHERE evidence_path IS NOT NULL ORDER BY id"
        ).fetchall()
        for row_id, folder, nbytes in oldest:
            if kept <= self._max_parts and size <= self._max_bytes:
                break
            path = self._evidence_dir / folder
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):  # the date folder, once its last part is gone
                path.parent.rmdir()
            self._update(conn, row_id, {"evidence_path": None, "evidence_bytes": None})
            kept, size = kept - 1, size - (nbytes or 0)
