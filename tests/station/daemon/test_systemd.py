"""The station speaks systemd's notify protocol: a unit with Type=notify and WatchdogSec relies on it, and
a station that never says READY=1 or stops pinging the watchdog gets killed and restarted by systemd. The
deployment files that rely on it (deploy/) must stay in step with the station's configuration."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import yaml
from click.testing import CliRunner

from station.backends.scripted import ANSWER_GOOD, ScriptedBackend
from station.camera.zmq_source import CameraConfig
from station.cli.main import main
from station.config import AuditConfig, HttpConfig, ModelConfig, StationConfig
from station.daemon import Station
from station.plc.config import ModbusMap, PlcConfig
from station.plc.simulator import PlcSimulator
from station.systemd import notify


def receive_until(sock: socket.socket, wanted: str, timeout_s: float = 5.0) -> list[str]:
    """Messages received until ``wanted`` arrives (or the time is up)."""
    messages: list[str] = []
    end = time.monotonic() + timeout_s
    while wanted not in messages and time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return messages


def test_station_sends_ready_watchdog_pings_and_stopping(tmp_path, monkeypatch):
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, PlcSimulator() as plc:
        sock.bind(str(address))
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")  # WatchdogSec=0.2: a ping every 0.1 s
        config = StationConfig(
            camera=CameraConfig(endpoint="tcp://127.0.0.1:0"),
            plc=PlcConfig(port=plc.device_path),
            model=ModelConfig(backend="scripted", model="answer:good"),
            audit=AuditConfig(path=tmp_path / "audit.db", evidence_dir=None),
            http=HttpConfig(enabled=False),
        )
        station = Station(config, backend=ScriptedBackend([ANSWER_GOOD]))
        station.start()
        try:
            started = receive_until(sock, "READY=1")
            pings = [m for m in receive_until(sock, "never", timeout_s=0.55) if m == "WATCHDOG=1"]
        finally:
            station.stop()
            assert station.join(5)
            station.close()
        stopping = receive_until(sock, "STOPPING=1")

    assert "READY=1" in started
    assert len(pings) >= 3  # an idle station (no frames) still proves it is alive
    assert "STOPPING=1" in stopping


def test_notify_outside_systemd_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert notify("READY=1") is False  # a vanished socket must not take the station down


DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def test_the_example_config_validates_and_documents_every_setting():
    example = DEPLOY / "station.example.yaml"
    result = CliRunner().invoke(main, ["run", "--config", str(example), "--check"])
    assert result.exit_code == 0 and "valid" in result.output, result.output
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    commented_out = {"bind", "curve", "adapter", "base_url"}  # optional, shown as comments
    sections = {
        "": (StationConfig, data),
        "camera": (CameraConfig, data["camera"]),
        "plc": (PlcConfig, data["plc"]),
        "plc.modbus": (ModbusMap, data["plc"]["modbus"]),
        "model": (ModelConfig, data["model"]),
        "audit": (AuditConfig, data["audit"]),
        "http": (HttpConfig, data["http"]),
    }
    for name, (model, values) in sections.items():
        missing = set(model.model_fields) - set(values) - commented_out
        assert not missing, f"{name or 'top level'} does not show {sorted(missing)}"


def test_the_unit_runs_the_documented_config_as_a_notify_service():
    unit = (DEPLOY / "indus-station.service").read_text(encoding="utf-8")
    settings = {}
    for line in unit.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), value.strip())
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    assert settings["Restart"] == "on-failure" and settings["KillSignal"] == "SIGTERM"
    assert settings["ExecStart"].endswith("/indus run --config /etc/indus-station/station.yaml")
    assert "dialout" in settings["SupplementaryGroups"].split() and settings["User"] != "root"
    assert "PrivateDevices" not in settings  # it would hide the serial adapter and the GPU
