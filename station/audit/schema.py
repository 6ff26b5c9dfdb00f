"""The audit database's layout and its migrations.

The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[i]`` brings a database from version ``i``
to ``i + 1``; a new version appends one function and never edits an old one, so a station opening an older
file upgrades it in place, in one transaction, and a station opening a newer file refuses it instead of
guessing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

# One row per part. Stage stamps are wall-clock seconds (time.time()); capture_ts is the camera's clock.
# ``stage`` is the last stage recorded: received -> verdict -> plc, or lost (closed at a restart).
_V1 = (
    """
    CREATE TABLE parts (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        part_id TEXT NOT NULL,
        seq INTEGER,
        product TEXT,
        stage TEXT NOT NULL CHECK (stage IN ('received', 'verdict', 'plc', 'lost')),
        capture_ts REAL,
        received_ts REAL NOT NULL,
        decoded_ts REAL,
        inspect_start_ts REAL,
        verdict_ts REAL,
        plc_sent_ts REAL,
        plc_ack_ts REAL,
        decision TEXT CHECK (decision IN ('accept', 'reject')),
        anomaly INTEGER,
        type TEXT,
        bbox TEXT,
        confidence REAL,
        confidence_source TEXT,
        threshold REAL,
        fail_safe INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        detail TEXT,
        tool_calls INTEGER,
        verdict_json TEXT,
        plc_outcome TEXT,
        plc_attempts INTEGER,
        plc_detail TEXT,
        model TEXT,
        backend TEXT,
        config_version TEXT,
        evidence_path TEXT,
        evidence_bytes INTEGER,
        label TEXT CHECK (label IN ('good', 'defective')),
        label_defect TEXT,
        labeled_ts REAL
    )
    """,
    "CREATE INDEX parts_part_id ON parts (part_id)",
    "CREATE INDEX parts_received ON parts (received_ts)",
    "CREATE INDEX parts_rejects ON parts (received_ts) WHERE decision = 'reject'",
    "CREATE INDEX parts_unfinished ON parts (id) WHERE stage = 'received'",
    "CREATE INDEX parts_evidence ON parts (id) WHERE evidence_path IS NOT NULL",
)


def _to_v1(conn: sqlite3.Connection) -> None:
    for statement in _V1:
        conn.execute(statement)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_to_v1,)
SCHEMA_VERSION = len(MIGRATIONS)

# Columns holding JSON text, and those holding SQLite's 0/1 for a boolean: decoded when rows are read.
JSON_COLUMNS = ("bbox", "verdict_json")
BOOL_COLUMNS = ("anomaly", "fail_safe")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn``'s database to SCHEMA_VERSION (in autocommit mode); returns the version it had.

    Raises ValueError for a database written by a newer station, or for someone else's database (a wrong
    path must not get our table added to it).
    """
    conn.execute("BEGIN IMMEDIATE")  # one writer migrates; a second station waits, then sees it done
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise ValueError(f"audit schema v{found} is newer than this station's v{SCHEMA_VERSION}")
        if found == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise ValueError("an SQLite database with other tables, not an audit database")
        for step in MIGRATIONS[found:]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
