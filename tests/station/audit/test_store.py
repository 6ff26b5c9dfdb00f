"""The audit trail keeps every part, survives a crash, and never gets in the station's way."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from station.audit import AuditDB, AuditError, AuditStore
from station.audit.schema import SCHEMA_VERSION
from station.observability.stamps import Stamps
from station.plc.base import Delivery
from station.verdict import Verdict
from tools.image import load_image


@pytest.fixture
def finish(make_frame):
    """``finish(store, part_id, verdict, seq=0, delivery=None)``: one part through every stage, as the daemon
    records it; returns its stamps."""

    def run(
        store: AuditStore, part_id: str, verdict: Verdict, seq: int = 0, delivery: Delivery | None = None
    ) -> Stamps:
        frame = make_frame(part_id, seq)
        store.record_received(frame)
        stamps = Stamps.of(frame, inspect_start=frame.received_ts + 0.002, verdict=frame.received_ts + 0.05)
        store.record_verdict(part_id, verdict, stamps)
        if delivery is not None:
            store.record_delivery(part_id, delivery)
        return stamps

    return run


def test_a_verdict_round_trips_with_its_stamps_trace_and_delivery(tmp_path, verdicts, finish):
    with AuditStore(tmp_path / "audit.db", config_version="cfg-abc", run_id="run-1") as store:
        delivery = Delivery("acked", attempts=2, sent_ts=time.time(), acked_ts=time.time() + 0.004)
        stamps = finish(store, "P-1", verdicts["reject"], seq=7, delivery=delivery)
        store.flush()
        [row] = store.part("P-1")
    verdict = verdicts["reject"]
    assert Verdict.model_validate(row["verdict"]).model_dump() == verdict.model_dump()
    assert [r["tool_calls"][0]["name"] for r in row["verdict"]["trace"][:1]] == ["crop"]
    assert row["decision"] == "reject" and row["type"] == "crack" and row["bbox"] == [400, 400, 600, 600]
    assert row["confidence"] == 0.9 and row["confidence_source"] == "stated" and row["threshold"] == 0.5
    assert row["anomaly"] is True and row["fail_safe"] is False and row["reason"] is None
    assert row["tool_calls"] == 1 and row["seq"] == 7 and row["product"] == "bottle"
    assert row["model"] == "scripted:script" and row["backend"] == "scripted"
    assert row["config_version"] == "cfg-abc" and row["run_id"] == "run-1"
    assert row["stage"] == "plc" and row["plc_outcome"] == "acked" and row["plc_attempts"] == 2
    assert row["plc_sent_ts"] == delivery.sent_ts and row["plc_ack_ts"] == delivery.acked_ts
    stamp_columns = {f"{name}_ts": getattr(stamps, name) for name in ("capture", "received", "decoded")}
    stamp_columns |= {"inspect_start_ts": stamps.inspect_start, "verdict_ts": stamps.verdict}
    assert {column: row[column] for column in stamp_columns} == stamp_columns
    assert row["label"] is None


def test_fail_safes_keep_their_reason_and_the_file_is_wal_at_the_current_version(tmp_path, verdicts, finish):
    with AuditStore(tmp_path / "audit.db") as store:
        finish(store, "F-1", verdicts["fail_safe"])
        store.flush()
        [row] = store.last()
    assert row["fail_safe"] is True and row["reason"] == "parse_error" and row["confidence"] is None
    assert "no_action" in row["detail"] and row["anomaly"] is None
    conn = sqlite3.connect(tmp_path / "audit.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_crash_leaves_the_part_unfinished_until_the_restart_closes_it(tmp_path, verdicts, finish):
    db = tmp_path / "audit.db"
    crash = f"""
        import os
        from station.audit import AuditStore
        from station.camera.base import Frame
        store = AuditStore({str(db)!r}, run_id="crashed")
        store.record_received(Frame("P-9", 9, capture_ts=None, product="bottle", image=None, received_ts=1.0))
        store.flush()
        os._exit(139)  # no close, no atexit: what a segfault in the model leaves behind
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(crash)], capture_output=True, timeout=60)
    assert result.returncode == 139, result.stderr.decode()

    with AuditStore(db, run_id="restarted") as store:
        [lost] = store.unfinished()
        assert (lost["part_id"], lost["run_id"], lost["stage"], lost["decision"]) == (
            "P-9",
            "crashed",
            "received",
            None,
        )
        finish(store, "P-10", verdicts["accept"])
        store.mark_lost([row["part_id"] for row in store.unfinished()], "station_restart")
        store.flush()
        assert store.unfinished() == []
        [row] = store.part("P-9")
    assert row["stage"] == "lost" and row["decision"] == "reject" and row["fail_safe"] is True
    assert row["reason"] == "station_restart" and row["verdict"] is None
    counts = {(c["decision"], c["reason"]): c["parts"] for c in AuditDB(db).counts()}
    assert counts == {("reject", "station_restart"): 1, ("accept", None): 1}


def test_evidence_is_kept_for_rejects_only_and_the_oldest_goes_first(tmp_path, verdicts, finish, image):
    evidence = tmp_path / "evidence"
    with AuditStore(tmp_path / "audit.db", evidence, max_evidence_parts=2) as store:
        for seq, kind in enumerate(["accept", "reject", "fail_safe", "reject"]):
            finish(store, f"P-{seq}", verdicts[kind], seq)
        store.flush()
        rows = {row["part_id"]: row for row in store.last()}
    assert rows["P-0"]["evidence_path"] is None  # accepted: nothing kept
    assert rows["P-1"]["evidence_path"] is None and rows["P-1"]["decision"] == "reject"  # pruned, row kept
    kept = [evidence / rows[p]["evidence_path"] for p in ("P-2", "P-3")]
    assert sorted(p.name for p in kept[1].iterdir()) == ["00_frame.png", "01_crop.png"]
    assert (load_image(kept[1] / "00_frame.png") == image).all()  # lossless: the pixels the model saw
    assert load_image(kept[1] / "01_crop.png").shape == verdicts["reject"].evidence[1][1].shape
    assert rows["P-3"]["evidence_bytes"] == sum(f.stat().st_size for f in kept[1].iterdir())
    on_disk = {p.relative_to(evidence) for p in evidence.glob("*/*")}
    assert on_disk == {Path(rows[p]["evidence_path"]) for p in ("P-2", "P-3")}


def test_evidence_size_limit_and_modes(tmp_path, verdicts, finish):
    evidence = tmp_path / "evidence"
    with AuditStore(tmp_path / "a.db", evidence, keep_evidence="all", max_evidence_mb=0.001) as store:
        finish(store, "big", verdicts["reject"])  # ~50 KB of PNG: over the limit on its own
        finish(store, "ok", verdicts["accept"])
        store.flush()
        assert [row["evidence_path"] is None for row in store.last()] == [True, True]
    assert list(evidence.iterdir()) == []  # the date folder went with its last part
    with AuditStore(tmp_path / "b.db", evidence, keep_evidence="none") as store:
        finish(store, "r", verdicts["reject"])
        store.flush()
        assert store.last()[0]["evidence_path"] is None
    with pytest.raises(ValueError, match="keep_evidence"):
        AuditStore(tmp_path / "c.db", evidence, keep_evidence="rejected")  # type: ignore[arg-type]


def test_hostile_part_ids_stay_inside_the_evidence_folder(tmp_path, verdicts, finish):
    evidence = tmp_path / "evidence"
    with AuditStore(tmp_path / "audit.db", evidence) as store:
        finish(store, "../../escape", verdicts["reject"], 1)
        finish(store, "../../escape", verdicts["reject"], 2)  # same id again the same day
        store.flush()
        paths = [evidence / row["evidence_path"] for row in store.part("../../escape")]
    assert len(set(paths)) == 2
    assert all(p.resolve().is_relative_to(evidence.resolve()) and p.is_dir() for p in paths)
    assert not (tmp_path.parent / "escape").exists()


def test_labels_go_to_the_newest_record_of_a_part(tmp_path, verdicts, finish):
    with AuditStore(tmp_path / "audit.db") as store:
        finish(store, "P-1", verdicts["reject"], 1)
        finish(store, "P-1", verdicts["accept"], 2)  # the PLC reused the id
        store.flush()
        store.set_label("P-1", "defective", defect="crack")
        newest, oldest = store.part("P-1")
        assert (newest["label"], newest["label_defect"], oldest["label"]) == ("defective", "crack", None)
        assert newest["labeled_ts"] > 0
        store.set_label("P-1", "good")
        assert store.part("P-1")[0]["label_defect"] is None
        with pytest.raises(KeyError):
            store.set_label("nope", "good")
        with pytest.raises(ValueError, match="defective part"):
            store.set_label("P-1", "good", defect="crack")
        with pytest.raises(ValueError, match="label must be"):
            store.set_label("P-1", "bad")  # type: ignore[arg-type]


def test_queries_rejects_since_and_late_records(tmp_path, verdicts, finish, caplog):
    with AuditStore(tmp_path / "audit.db") as store:
        finish(store, "old", verdicts["reject"], 1)
        store.flush()
        cut = time.time()
        finish(store, "new", verdicts["fail_safe"], 2)
        finish(store, "fine", verdicts["accept"], 3)
        # A verdict whose receipt was never recorded is still kept; a delivery without a part only logged.
        store.record_verdict("orphan", verdicts["accept"], Stamps(received=time.time()))
        store.record_delivery("ghost", Delivery("failed", attempts=0))
        store.flush()
        assert [r["part_id"] for r in store.rejects()] == ["new", "old"]
        assert [r["part_id"] for r in store.rejects(since=cut)] == ["new"]
        assert [r["part_id"] for r in store.last(2)] == ["orphan", "fine"]
        assert store.part("orphan")[0]["stage"] == "verdict"
    assert "ghost" in caplog.text


def test_a_reader_reads_while_the_writer_writes(tmp_path, verdicts, finish, make_frame):
    store = AuditStore(tmp_path / "audit.db")
    reader, seen, errors = AuditDB(tmp_path / "audit.db"), [], []
    reading, done = threading.Event(), threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seen.append(len(reader.last(50)))
                reader.counts()
                reading.set()
        except Exception as exc:
            errors.append(exc)
            reading.set()

    thread = threading.Thread(target=read)
    thread.start()
    reading.wait(5)
    for chunk in range(10):
        for seq in range(chunk * 30, chunk * 30 + 30):
            finish(store, f"P-{seq}", verdicts["accept" if seq % 3 else "reject"], seq)
        store.flush()  # ten commits, each one under the reader's feet
    store.close()
    done.set()
    thread.join()
    assert errors == [] and seen and max(seen) <= 50
    assert len(reader.last(1000)) == 300
    with pytest.raises(AuditError, match="closed"):
        store.record_received(make_frame("late"))


def test_missing_corrupt_foreign_and_newer_files_are_refused_clearly(tmp_path):
    with pytest.raises(AuditError, match="no audit database"):
        AuditDB(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not an sqlite file" * 100)
    with pytest.raises(AuditError, match="not a database"):
        AuditDB(corrupt)
    with pytest.raises(AuditError, match="not a database"):
        AuditStore(corrupt)
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)")
    with pytest.raises(AuditError, match="other tables"):
        AuditStore(foreign)
    with pytest.raises(AuditError, match="not an audit database"):
        AuditDB(foreign)
    newer = tmp_path / "newer.db"
    AuditStore(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(AuditError, match="newer than this station"):
        AuditStore(newer)
    with pytest.raises(AuditError, match=f"v{SCHEMA_VERSION + 1}"):
        AuditDB(newer)
