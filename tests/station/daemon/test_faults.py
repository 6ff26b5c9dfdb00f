"""Line faults at the station level: whatever breaks, every part ends with exactly one verdict, accounted for
in the PLC's tally, the audit and the station's stats, and the station goes on serving afterwards."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from station.audit.store import AuditDB
from station.backends.scripted import ANSWER_GOOD, ScriptedBackend
from station.camera.simulator import CameraSimulator, SimPart
from station.camera.wire import encode_frame
from station.camera.zmq_source import CameraConfig
from station.config import AuditConfig, HttpConfig, ModelConfig, ProductRecipe, StationConfig
from station.daemon import Station
from station.plc.config import PlcConfig
from station.plc.simulator import PlcSimulator

imagezmq = pytest.importorskip("imagezmq")

PRODUCT = "bottle"


def parts(seed: int = 0) -> Iterator[SimPart]:
    rng = np.random.default_rng(seed)
    while True:
        yield SimPart(PRODUCT, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "good", "good", "test")


def make_station(
    tmp_path: Path, plc_port: str, *, deadline_ms: float = 3000, camera: CameraConfig | None = None
) -> Station:
    config = StationConfig(
        camera=camera or CameraConfig(endpoint="tcp://127.0.0.1:0", mode="pull"),
        plc=PlcConfig(port=plc_port, ack_timeout_s=0.1, heartbeat_s=0.2, reconnect_backoff_s=(0.02, 0.2)),
        model=ModelConfig(backend="scripted", model="answer:good"),
        products={PRODUCT: ProductRecipe(deadline_ms=deadline_ms)},
        audit=AuditConfig(path=tmp_path / "audit.db", evidence_dir=tmp_path / "evidence"),
        http=HttpConfig(enabled=False),
    )
    station = Station(config, backend=ScriptedBackend([ANSWER_GOOD]))
    station.start()
    return station


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def shutdown(station: Station) -> None:
    station.stop()
    assert station.join(10)
    station.close()


def accounted(station: Station, plc: PlcSimulator, tmp_path: Path, sent: int) -> list[dict]:
    """Check that each of ``sent`` parts got one verdict, one delivery and one audit row, and that the PLC
    took every acknowledged one exactly as the station decided it; returns the audit rows oldest first."""
    stats = station.stats
    assert stats.received == stats.verdicts == sent
    assert sum(stats.deliveries.values()) == sent and sum(stats.decisions.values()) == sent
    rows = sorted(AuditDB(tmp_path / "audit.db").last(10_000), key=lambda row: row["id"])
    assert len(rows) == sent and {row["stage"] for row in rows} == {"plc"}
    assert Counter(row["plc_outcome"] for row in rows) == stats.deliveries
    taken = {verdict.part_id: verdict.accept for verdict in plc.verdicts}
    for row in rows:
        if row["plc_outcome"] == "acked":
            assert taken[row["part_id"]] == (row["decision"] == "accept")
    summary = plc.summary()
    assert summary["conflicting"] == 0 and summary["parts"] >= stats.deliveries.get("acked", 0)
    return rows


def run_with_fault(tmp_path: Path, plc: PlcSimulator, fault: Callable[[], None], count: int = 50) -> Station:
    """Send ``count`` parts at 20/s, inject ``fault`` once a few are through, and wait for every verdict."""
    station = make_station(tmp_path, plc.device_path, deadline_ms=400)
    camera = CameraSimulator(parts(), endpoint=station.source.endpoint, rate_hz=20)
    camera.start(count)
    try:
        assert wait_for(lambda: station.stats.deliveries.get("acked", 0) >= 3)
        fault()
        assert camera.join(15) and camera.sent == count
        assert wait_for(lambda: station.stats.verdicts == count, 15)
    finally:
        camera.stop()
        shutdown(station)
    return station


def test_a_plc_in_stop_costs_the_parts_in_the_gap_and_later_parts_are_acked(tmp_path):
    with PlcSimulator() as plc:
        station = run_with_fault(tmp_path, plc, lambda: plc.mute(0.8))
        rows = accounted(station, plc, tmp_path, 50)
    outcomes = Counter(row["plc_outcome"] for row in rows)
    assert outcomes["failed"] + outcomes["late"] >= 5, outcomes  # ~16 parts fell in the 0.8 s gap
    assert plc.summary()["ignored_muted"] > 0
    assert {row["plc_outcome"] for row in rows[-10:]} == {"acked"}  # serving again after the PLC returned
    assert station.stats.decisions == {"accept": 50}  # the model's verdicts; the PLC rejected the gap


def test_a_vanished_serial_port_is_reopened_and_the_station_keeps_serving(tmp_path):
    with PlcSimulator(link=tmp_path / "ttyPLC") as plc:

        def unplug_then_replug() -> None:
            plc.unplug()
            time.sleep(0.5)
            plc.replug()

        station = run_with_fault(tmp_path, plc, unplug_then_replug, count=60)
        rows = accounted(station, plc, tmp_path, 60)
    counters = station.link.counters()
    assert counters["port_errors"] >= 1 and counters["reconnects"] >= 1, counters
    outcomes = Counter(row["plc_outcome"] for row in rows)
    assert outcomes["failed"] >= 1, outcomes
    assert {row["plc_outcome"] for row in rows[-10:]} == {"acked"}


def test_oversized_misshapen_and_garbage_frames_get_one_reject_each_among_good_ones(tmp_path):
    good_image = np.zeros((32, 32, 3), np.uint8)
    bad_messages = [
        [b"{not json", b"\x00" * 10],  # garbage header
        [b"\xff\xfe binary", b""],  # not even text
        [b"[1, 2, 3]", b"\x00" * 10],  # JSON, but not an object
    ]
    oversized = encode_frame(np.zeros((160, 160, 3), np.uint8), part_id="big", seq=0, product=PRODUCT)
    bad_messages.append(oversized)  # 77 KB against max_message_bytes of 64 KB
    header = json.loads(encode_frame(good_image, part_id="shape", seq=0, product=PRODUCT)[0])
    bad_messages.append([json.dumps({**header, "shape": [64, 64, 3]}).encode(), good_image.tobytes()])
    bad_messages.append([json.dumps({**header, "part_id": "dims", "shape": [0, 32]}).encode(), b""])
    bad_messages.append([json.dumps({**header, "part_id": "parts"}).encode()])  # pixels missing

    with PlcSimulator() as plc:
        camera = CameraConfig(endpoint="tcp://127.0.0.1:0", mode="pull", max_message_bytes=64 * 1024)
        station = make_station(tmp_path, plc.device_path, camera=camera)
        context: zmq.Context = zmq.Context()
        push = context.socket(zmq.PUSH)
        push.linger = 0
        push.sndtimeo = 2000
        try:
            push.connect(station.source.endpoint)
            for i, bad in enumerate(bad_messages):  # good, bad, good, bad, ..., good
                push.send_multipart(encode_frame(good_image, part_id=f"good-{i}", seq=i, product=PRODUCT))
                push.send_multipart(bad)
            push.send_multipart(encode_frame(good_image, part_id="good-last", seq=99, product=PRODUCT))
            sent = 2 * len(bad_messages) + 1
            assert wait_for(lambda: station.stats.verdicts == sent)
        finally:
            push.close()
            context.term()
            shutdown(station)
        rows = accounted(station, plc, tmp_path, sent)

    bad = len(bad_messages)
    assert station.stats.decisions == {"accept": bad + 1, "reject": bad}
    assert station.stats.fail_safes == {"corrupt_frame": bad}
    assert station.stats.deliveries == {"acked": sent}
    summary = plc.summary()
    assert summary["accepted"] == bad + 1 and summary["rejected"] == bad and summary["duplicates"] == 0
    details = {row["part_id"]: row["detail"] for row in rows if row["decision"] == "reject"}
    assert "max_message_bytes" in details["big"] and "truncated" in details["shape"]
    assert rows[-1]["part_id"] == "good-last" and rows[-1]["decision"] == "accept"


def test_an_imagezmq_sender_gets_every_part_acknowledged_exactly_once(tmp_path):
    n = 20
    images = [np.full((40, 56, 3), i, np.uint8) for i in range(n)]
    replies: list[bytes] = []
    with PlcSimulator() as plc:
        camera = CameraConfig(endpoint="tcp://127.0.0.1:0", mode="imagezmq_rep")
        station = make_station(tmp_path, plc.device_path, camera=camera)

        def send() -> None:
            sender = imagezmq.ImageSender(connect_to=station.source.endpoint)
            sender.zmq_socket.linger = 0
            sender.zmq_socket.rcvtimeo = 5000  # a missing reply fails the test instead of hanging it
            try:
                for i, image in enumerate(images):
                    replies.append(sender.send_image(f"{PRODUCT}:izmq-{i:03d}", image))
            finally:
                sender.close()

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        try:
            thread.join(15)
            assert not thread.is_alive() and replies == [b"OK"] * n
            assert wait_for(lambda: station.stats.verdicts == n)
        finally:
            shutdown(station)
        rows = accounted(station, plc, tmp_path, n)

    summary = plc.summary()
    assert summary["parts"] == summary["verdicts"] == summary["accepted"] == n
    assert summary["duplicates"] == 0
    assert sorted(row["part_id"] for row in rows) == [f"izmq-{i:03d}" for i in range(n)]
    assert {row["product"] for row in rows} == {PRODUCT}
    assert station.stats.deliveries == {"acked": n}
