"""`indus run` as a real process: config errors are clear, SIGTERM drains and exits cleanly."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import yaml
from click.testing import CliRunner

from station.camera.simulator import CameraSimulator, generated_parts
from station.cli.main import main
from station.config import StationConfig
from station.plc.simulator import PlcSimulator


def write_config(tmp_path, plc_port, endpoint="tcp://127.0.0.1:0", **extra):
    config = {
        "camera": {"endpoint": endpoint, "mode": "pull"},
        "plc": {"port": plc_port, "ack_timeout_s": 0.2},
        "model": {"backend": "scripted", "model": "crop-then:defect"},
        "products": {"hole_plate": {"deadline_ms": 3000, "threshold": 0.7}},
        "audit": {"path": "audit.db", "evidence_dir": "evidence"},
        "http": {"port": 0},
        **extra,
    }
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_check_validates_and_resolves_relative_paths(tmp_path):
    path = write_config(tmp_path, "/dev/null")
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--check"])
    assert result.exit_code == 0 and "valid" in result.output
    config = StationConfig.from_yaml(path)
    assert config.audit.path == tmp_path / "audit.db"
    assert config.recipe("hole_plate")[1].threshold == 0.7
    assert config.recipe("unknown")[0] == "unknown" and config.recipe("unknown")[1].threshold == 0.5


def test_bad_configs_name_the_file_and_every_bad_field(tmp_path):
    path = write_config(tmp_path, "/dev/null", queue_size=0, bogus=1)
    result = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert result.exit_code == 1
    assert "station.yaml" in result.output and "queue_size" in result.output and "bogus" in result.output
    (tmp_path / "broken.yaml").write_text("camera: [unclosed")
    assert (
        "not valid YAML"
        in CliRunner().invoke(main, ["run", "--config", str(tmp_path / "broken.yaml")]).output
    )
    assert "cannot read" in CliRunner().invoke(main, ["run", "--config", str(tmp_path / "none.yaml")]).output


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_drains_parts_in_flight_and_exits_cleanly(tmp_path):
    plc = PlcSimulator().start()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    try:
        path = write_config(tmp_path, plc.device_path, endpoint=endpoint)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli.main", "run", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        camera = CameraSimulator(generated_parts(3, 96), endpoint=endpoint, linger_s=1)
        sent = camera.run(10)
        deadline = time.monotonic() + 20
        while len(plc.verdicts) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        stats = json.loads(out.strip().splitlines()[-1])
        assert stats["received"] == stats["verdicts"] == sent == 10
        assert plc.summary()["parts"] == 10 and plc.summary()["duplicates"] == 0
    finally:
        plc.close()
