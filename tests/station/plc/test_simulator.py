from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import serial
from click.testing import CliRunner

from station.cli.sim_plc_cmd import plc
from station.plc.ascii_link import AsciiLink
from station.plc.base import PlcVerdict
from station.plc.config import PlcConfig
from station.plc.simulator import PlcSimulator, load_truth

MakeConfig = Callable[..., PlcConfig]


def write_truth(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_truth_from_json_lines_or_a_dict(tmp_path: Path) -> None:
    path = write_truth(
        tmp_path / "truth.jsonl",
        [
            {"part_id": "A", "label": "good", "defect": None},
            {"part_id": "B", "label": "defective", "defect": "crack"},
        ],
    )
    assert load_truth(path) == {"A": "good", "B": "defective"}
    assert load_truth({"C": "good"}) == {"C": "good"}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"part_id": "A", "label": "good"}\n{not json}\n', ":2: not JSON"),
        ('\n{"part_id": "A", "label": "scratched"}\n', ":2: need"),
        ('{"label": "good"}\n', ":1: need"),
        ('["A", "good"]\n', ":1: need"),
    ],
)
def test_bad_truth_names_its_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=where):
        load_truth(path)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="protocol"):
        PlcSimulator("profibus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop_rate"):
        PlcSimulator(drop_rate=1.5)
    with pytest.raises(ValueError, match="trailing number"):
        PlcSimulator("modbus", truth={"no-number": "good"})


def test_the_link_is_a_symlink_that_never_replaces_a_file(tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    stale.symlink_to(tmp_path / "gone")
    with PlcSimulator(link=stale) as sim:
        assert stale.is_symlink() and Path(os.path.realpath(stale)).exists()
        assert sim.device_path == str(stale)
    assert not stale.exists() and not stale.is_symlink()
    regular = tmp_path / "regular"
    regular.write_text("mine")
    with pytest.raises(FileExistsError):
        PlcSimulator(link=regular).start()
    assert regular.read_text() == "mine"


def test_garbage_and_stop_time_are_tallied_not_taken() -> None:
    with PlcSimulator() as sim:
        with serial.serial_for_url(sim.device_path, timeout=0.2) as port:
            port.write(b"hello\r\nK,P1\r\nV,P1,A,0\r\n")
            assert port.read_until(b"\n") == b"K,P1\r\n"
            sim.mute(10)
            port.write(b"V,P2,R,2\r\n")
            assert port.read_until(b"\n") == b""
        summary = sim.summary()
    assert summary["garbage_lines"] == 2 and summary["ignored_muted"] == 1
    assert [v.part_id for v in sim.verdicts] == ["P1"]
    assert "false_accepts" not in summary  # no truth, no scoring


def test_modbus_truth_is_matched_as_the_plc_sees_ids(config: MakeConfig) -> None:
    from station.plc.modbus_link import ModbusLink

    with PlcSimulator("modbus", truth={"P-0001": "good", "P-0002": "defective"}) as sim:
        with ModbusLink(config(sim.device_path, protocol="modbus")) as link:
            link.deliver(PlcVerdict("line3-1", True, 0, time.time() + 0.5))
            link.deliver(PlcVerdict("line3-2", True, 0, time.time() + 0.5))
        summary = sim.summary()
    assert (summary["unknown"], summary["missing"], summary["false_accepts"]) == (0, 0, 1)


def test_cli_refuses_bad_input_before_opening_anything(tmp_path: Path) -> None:
    bad_truth = tmp_path / "truth.jsonl"
    bad_truth.write_text('{"part_id": 1}\n', encoding="utf-8")
    result = CliRunner().invoke(plc, ["--truth", str(bad_truth)])
    assert result.exit_code == 1 and "need a part_id" in result.output
    bad_map = tmp_path / "map.yaml"
    bad_map.write_text("unit_id: 0\n", encoding="utf-8")
    result = CliRunner().invoke(plc, ["--protocol", "modbus", "--modbus-map", str(bad_map)])
    assert result.exit_code == 2 and "unit_id" in result.output


def test_cli_runs_until_sigterm_and_prints_the_summary(config: MakeConfig, tmp_path: Path) -> None:
    truth = write_truth(
        tmp_path / "truth.jsonl",
        [{"part_id": "G1", "label": "good"}, {"part_id": "D1", "label": "defective"}],
    )
    link_path = tmp_path / "plc"
    command = "from station.cli.main import main; main()"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            command,
            "sim",
            "plc",
            "--link",
            str(link_path),
            "--truth",
            str(truth),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(100):
            if link_path.is_symlink():
                break
            time.sleep(0.05)
        with AsciiLink(config(str(link_path))) as station:
            outcomes = [
                station.deliver(PlcVerdict(p, True, 0, time.time() + 1.0)).outcome for p in ("G1", "D1")
            ]
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=5)
    finally:
        process.kill()
    assert outcomes == ["acked", "acked"]
    assert process.returncode == 0, stderr
    assert f"on {link_path}" in stderr
    summary = json.loads(stdout)
    assert (summary["parts"], summary["accepted"], summary["false_accepts"], summary["missing"]) == (
        2,
        2,
        1,
        0,
    )
    assert not link_path.is_symlink()


def test_cli_prints_a_table_by_default(tmp_path: Path) -> None:
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result = CliRunner().invoke(plc, ["--link", str(tmp_path / "plc")])
    finally:
        timer.cancel()
    assert result.exit_code == 0, result.output
    assert "PLC simulator (ascii)" in result.output and "duplicates" in result.output
