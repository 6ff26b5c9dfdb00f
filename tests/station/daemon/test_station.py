"""The whole station on loopback and a real pty: every part in gets exactly one verdict at the PLC."""

import json
import sqlite3
import time

import numpy as np
import pytest

from station.audit.store import AuditDB
from station.backends.scripted import ANSWER_GOOD, CROP_CALL, ScriptedBackend, ScriptedTurn
from station.camera.simulator import CameraSimulator, SimPart
from station.camera.wire import encode_frame
from station.camera.zmq_source import CameraConfig
from station.config import AuditConfig, HttpConfig, ModelConfig, ProductRecipe, StationConfig
from station.daemon import Station
from station.plc.config import PlcConfig
from station.plc.simulator import PlcSimulator


def parts(n, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = "defective" if i % 2 else "good"
        yield SimPart("bottle", rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), label, label, f"test {i}")


@pytest.fixture
def plc():
    simulator = PlcSimulator().start()
    yield simulator
    simulator.close()


def make_station(tmp_path, plc, backend, **overrides):
    config = StationConfig(
        camera=CameraConfig(endpoint="tcp://127.0.0.1:0", mode="pull"),
        plc=PlcConfig(port=plc.device_path, ack_timeout_s=0.2, heartbeat_s=0.5),
        model=ModelConfig(backend="scripted", model="answer:good"),
        products={"bottle": ProductRecipe(deadline_ms=overrides.pop("deadline_ms", 3000))},
        audit=AuditConfig(path=tmp_path / "audit.db", evidence_dir=tmp_path / "evidence"),
        http=HttpConfig(port=0),
        **overrides,
    )
    station = Station(config, backend=backend)
    station.start()
    return station


def wait_for(predicate, timeout_s=10.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def shutdown(station):
    station.stop()
    assert station.join(10)
    station.close()


def test_n_parts_in_n_verdicts_acknowledged_exactly_once(tmp_path, plc):
    n = 12
    backend = ScriptedBackend([CROP_CALL, ANSWER_GOOD])
    station = make_station(tmp_path, plc, backend)
    camera = CameraSimulator(parts(n), endpoint=station.source.endpoint, truth_path=tmp_path / "truth.jsonl")
    assert camera.run(n) == n
    assert wait_for(lambda: station.stats.verdicts == n)
    shutdown(station)

    summary = plc.summary()
    assert summary["parts"] == n and summary["verdicts"] == n and summary["duplicates"] == 0
    assert summary["accepted"] == n
    rows = AuditDB(tmp_path / "audit.db").last(100)
    assert len(rows) == n and {r["stage"] for r in rows} == {"plc"}
    assert {r["plc_outcome"] for r in rows} == {"acked"}
    sent = [json.loads(line)["part_id"] for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert sorted(sent) == sorted(r["part_id"] for r in rows)
    assert station.stats.deliveries == {"acked": n}


def test_corrupt_frames_and_a_hung_model_still_get_one_reject_each(tmp_path, plc):
    import zmq

    backend = ScriptedBackend([ScriptedTurn(ANSWER_GOOD, delay_s=5.0)])
    station = make_station(tmp_path, plc, backend, deadline_ms=400)
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(station.source.endpoint)
    good = encode_frame(np.zeros((32, 32, 3), np.uint8), part_id="hung", seq=0, product="bottle")
    push.send_multipart(good)
    push.send_multipart([b"{not json", b"\x00" * 10])
    header = json.loads(good[0])
    header.update(part_id="short", seq=2, shape=[64, 64, 3])
    push.send_multipart([json.dumps(header).encode(), good[1]])
    assert wait_for(lambda: station.stats.verdicts == 3, 15)
    push.close(0)
    context.term()
    shutdown(station)

    assert station.stats.decisions == {"reject": 3}
    assert station.stats.fail_safes == {"deadline": 1, "corrupt_frame": 2}
    summary = plc.summary()
    assert summary["parts"] == 3 and summary["accepted"] == 0 and summary["duplicates"] == 0


def test_stop_drains_parts_in_flight_and_a_restart_closes_lost_ones(tmp_path, plc):
    n = 6
    backend = ScriptedBackend([ScriptedTurn(ANSWER_GOOD, delay_s=0.05)])
    station = make_station(tmp_path, plc, backend)
    camera = CameraSimulator(parts(n), endpoint=station.source.endpoint)
    camera.start(n)
    assert wait_for(lambda: station.stats.received >= 3)
    camera.stop()
    shutdown(station)
    assert station.stats.verdicts == station.stats.received  # nothing received was left without a verdict

    # A crashed run leaves a received part without a verdict; the next start records it as lost.
    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute(
            "UPDATE parts SET stage = 'received', decision = NULL WHERE id = (SELECT MAX(id) FROM parts)"
        )
    again = make_station(tmp_path, plc, ScriptedBackend([ANSWER_GOOD]))
    assert again.stats.lost_at_start == 1
    shutdown(again)
    assert AuditDB(tmp_path / "audit.db").unfinished() == []
