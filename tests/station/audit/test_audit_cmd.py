"""`indus audit`: what an operator or a re-validation script reads from the station's audit database."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from station.audit import AuditDB, AuditStore
from station.cli.main import main
from station.observability.stamps import Stamps
from station.plc.base import Delivery


@pytest.fixture
def db(tmp_path, verdicts, make_frame):
    """Four parts: an accepted one, a reject, a fail-safe, and one the station never finished."""
    path = tmp_path / "audit.db"
    with AuditStore(path, tmp_path / "evidence") as store:
        for seq, kind in enumerate(["accept", "reject", "fail_safe"]):
            frame = make_frame(f"P-{seq}", seq)
            store.record_received(frame)
            store.record_verdict(frame.part_id, verdicts[kind], Stamps.of(frame, verdict=time.time()))
            store.record_delivery(frame.part_id, Delivery("acked", 1, time.time(), time.time()))
        store.record_received(make_frame("P-3", 3))
    return path


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "250"})


def test_the_table_lists_the_newest_parts_first(db):
    result = run("audit", "--db", db)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    order = [next(i for i, line in enumerate(lines) if f"P-{n} " in line) for n in (3, 2, 1, 0)]
    assert order == sorted(order)
    assert "parse_error" in result.output and "crack" in result.output and "received" in result.output
    assert "last 20 parts: 4 record(s)" in result.output
    newest = run("audit", "--db", db, "--last", "3").output
    assert "P-1 " in newest and "P-0 " not in newest


def test_json_lines_carry_the_full_verdict(db):
    result = run("audit", "--db", db, "--rejects", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["part_id"] for r in rows] == ["P-2", "P-1"]
    assert rows[1]["verdict"]["trace"][0]["tool_calls"][0]["name"] == "crop"
    assert rows[1]["evidence_path"].endswith("/P-1")
    last = [
        json.loads(line)["part_id"]
        for line in run("audit", "--db", db, "--last", "2", "--json").output.splitlines()
    ]
    assert last == ["P-3", "P-2"]
    future = run("audit", "--db", db, "--rejects", "--since", "2999-01-01", "--json")
    assert future.exit_code == 0 and future.output == ""


def test_one_part_shows_its_tool_trace(db):
    result = run("audit", "--db", db, "--part", "P-1")
    assert result.exit_code == 0, result.output
    assert "round 1: tool_calls crop" in result.output and "round 2: answer" in result.output
    assert "evidence:" in result.output


def test_unfinished_and_counts(db):
    unfinished = [
        json.loads(line) for line in run("audit", "--db", db, "--unfinished", "--json").output.splitlines()
    ]
    assert [(r["part_id"], r["stage"]) for r in unfinished] == [("P-3", "received")]
    counts = [json.loads(line) for line in run("audit", "--db", db, "--counts", "--json").output.splitlines()]
    assert {(c["decision"], c["reason"]): c["parts"] for c in counts} == {
        ("accept", None): 1,
        ("reject", None): 1,
        ("reject", "parse_error"): 1,
        (None, None): 1,
    }
    table = run("audit", "--db", db, "--counts")
    assert table.exit_code == 0 and "(no verdict)" in table.output


def test_labels_from_the_command_line(db):
    result = run("audit", "label", "--db", db, "P-1", "defective", "--defect", "crack")
    assert result.exit_code == 0, result.output
    assert run("audit", "--db", db, "label", "P-0", "good").exit_code == 0  # --db before the sub-command
    rows = {r["part_id"]: r for r in AuditDB(db).last()}
    assert (rows["P-1"]["label"], rows["P-1"]["label_defect"], rows["P-0"]["label"]) == (
        "defective",
        "crack",
        "good",
    )
    missing = run("audit", "label", "--db", db, "P-77", "good")
    assert missing.exit_code == 1 and "no part 'P-77'" in missing.output
    contradiction = run("audit", "label", "--db", db, "P-0", "good", "--defect", "crack")
    assert contradiction.exit_code == 1 and "defective part" in contradiction.output
    assert run("audit", "label", "--db", db, "P-0", "maybe").exit_code == 2


def test_missing_or_corrupt_databases_and_bad_options_are_clear_errors(tmp_path, db):
    missing = run("audit", "--db", tmp_path / "nope.db")
    assert missing.exit_code == 1 and "no audit database at" in missing.output
    assert not (tmp_path / "nope.db").exists()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00garbage" * 512)
    result = run("audit", "--db", corrupt, "--rejects")
    assert result.exit_code == 1 and "not a database" in result.output and "Traceback" not in result.output
    assert run("audit", "label", "--db", corrupt, "P-1", "good").exit_code == 1
    assert "--db is required" in run("audit").output
    both = run("audit", "--db", db, "--rejects", "--unfinished")
    assert both.exit_code == 2 and "choose one of" in both.output
    assert run("audit", "--db", db, "--last", "2", "--since", "0").exit_code == 2
    assert "neither epoch seconds" in run("audit", "--db", db, "--rejects", "--since", "yesterday").output


def test_part_ids_are_printed_verbatim_not_as_markup(tmp_path, make_frame):
    path = tmp_path / "audit.db"
    with AuditStore(path) as store:
        store.record_received(make_frame("[red]P-5[/]"))
    result = run("audit", "--db", path, "--unfinished")
    assert result.exit_code == 0 and "[red]P-5[/]" in result.output
