"""Sources on real loopback sockets: delivery, back-pressure, newest-wins with drop counting, bad input."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import zmq
from pydantic import ValidationError

from station.camera.simulator import CameraSimulator, SimPart
from station.camera.wire import encode_frame
from station.camera.zmq_source import CameraConfig, CameraError, open_source


@pytest.fixture
def sender() -> Iterator:
    """Sockets of a given type, connected to an endpoint or bound to a free port; closed (linger 0) after."""
    context = zmq.Context()
    sockets = []

    def open_(kind: int, endpoint: str | None = None) -> zmq.Socket:
        socket = context.socket(kind)
        socket.linger = 0
        socket.sndtimeo = 2000
        if endpoint is None:
            socket.bind("tcp://127.0.0.1:*")
        else:
            socket.connect(endpoint)
        sockets.append(socket)
        return socket

    yield open_
    for socket in sockets:
        socket.close()
    context.term()


def _parts(images: list[np.ndarray]) -> list[SimPart]:
    return [SimPart("hole_plate", image, "good", "good", f"image {i}") for i, image in enumerate(images)]


@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
def test_pull_delivers_every_frame_in_order(station, receive_all, make_image, encoding: str) -> None:
    images = [make_image(48, 64, seed) for seed in range(8)]
    source = station(mode="pull")
    simulator = CameraSimulator(_parts(images), source.endpoint, encoding=encoding, deadline_ms=250)
    started = time.time()
    simulator.start(len(images))
    try:
        frames = receive_all(source, len(images))
    finally:
        simulator.stop()
    assert [f.seq for f in frames] == list(range(8))
    assert [f.part_id for f in frames] == [f"part-{i:06d}" for i in range(8)]
    for frame, image in zip(frames, images, strict=True):
        assert frame.error is None and frame.product == "hole_plate" and frame.deadline_ms == 250
        assert started <= frame.capture_ts <= frame.received_ts <= frame.decoded_ts
        error = np.abs(frame.image.astype(int) - image).mean()
        assert error == 0 if encoding != "jpeg" else error < 3
    assert source.receive(0.05) is None and source.dropped == 0


def test_pull_blocks_a_fast_sender_instead_of_losing_frames(station, make_image) -> None:
    count = 40
    images = [np.full((600, 600, 3), i, np.uint8) for i in range(count)]  # ~1 MB each
    source = station(mode="pull", rcvhwm=1)
    simulator = CameraSimulator(_parts(images), source.endpoint, sndhwm=1)
    simulator.start(count)
    try:
        first = source.receive(2.0)
        time.sleep(0.3)  # the station is busy; the sender must stall, not drop
        stalled_at = simulator.sent
        frames = [first] + [source.receive(2.0) for _ in range(count - 1)]
        assert simulator.join(2.0)
    finally:
        simulator.stop()
    assert stalled_at < count - 10, f"sender ran ahead to {stalled_at} of {count}: no back-pressure"
    assert [f.seq for f in frames] == list(range(count))
    assert all(int(f.image[0, 0, 0]) == f.seq and f.image.shape == (600, 600, 3) for f in frames)
    assert source.dropped == 0


def _wait_for_subscription(source, publisher: zmq.Socket, image: np.ndarray) -> None:
    """PUB drops everything until the subscription has crossed the wire: probe until one arrives."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        publisher.send_multipart(encode_frame(image, part_id="probe", seq=0, product="x"))
        if source.receive(0.02) is not None:
            while source.receive(0.05) is not None:  # probes still in flight
                pass
            return
    pytest.fail("subscription never arrived")


def test_sub_keeps_the_newest_frame_and_counts_the_rest_as_dropped(station, sender, make_image) -> None:
    image = make_image(16, 16)
    publisher = sender(zmq.PUB)  # a publishing camera binds
    source = station(mode="sub", rcvhwm=16, endpoint=publisher.last_endpoint.decode())
    _wait_for_subscription(source, publisher, image)
    for seq in range(1, 7):
        publisher.send_multipart(encode_frame(image, part_id=f"P{seq}", seq=seq, product="x"))
    time.sleep(0.3)  # all six are queued at the station
    newest = source.receive(1.0)
    assert (newest.part_id, newest.seq) == ("P6", 6)
    assert source.dropped == 5 and source.receive(0.05) is None
    for seq in (9, 10, 2, 3):  # 7 and 8 lost on the way; then the sender restarts its counter
        publisher.send_multipart(encode_frame(image, part_id=f"P{seq}", seq=seq, product="x"))
        assert source.receive(1.0).seq == seq
    assert source.dropped == 7  # a restart is not loss


def test_sub_with_a_slow_station_counts_every_gap(station, make_image) -> None:
    count = 120
    parts = _parts([make_image(64, 64, seed) for seed in range(4)] * (count // 4))
    simulator = CameraSimulator(parts, "tcp://127.0.0.1:*", mode="sub", rate_hz=1000)
    simulator.start(count)
    source = station(mode="sub", rcvhwm=2, endpoint=simulator.bound_endpoint)
    seqs = []
    try:
        while (frame := source.receive(0.5)) is not None:
            seqs.append(frame.seq)
            time.sleep(0.01)  # inspecting
    finally:
        simulator.stop()
    assert len(seqs) >= 2 and seqs == sorted(set(seqs))
    assert source.dropped == seqs[-1] - seqs[0] + 1 - len(seqs) > 0


def test_malformed_messages_are_served_as_error_frames_between_good_ones(
    station, sender, receive_all, make_image
) -> None:
    source = station(mode="pull", max_message_bytes=1024, max_pixels=64 * 64)
    push = sender(zmq.PUSH, source.endpoint)
    image = make_image(8, 8)
    good = encode_frame(image, part_id="good", seq=9, product="x")
    bad = [
        [b"not json", b"x"],
        [b'{"part_id": "A"}'],
        [encode_frame(image, part_id="B", seq=1, product="x")[0], b"short"],
        [encode_frame(image, part_id="C", seq=2, product="x")[0], b"\xff\xd8 not a jpeg"],
        [encode_frame(image, part_id="D", seq=3, product="x")[0], b"\0" * 1500],  # over 1 KiB
        encode_frame(
            np.zeros((80, 80), np.uint8), part_id="E", seq=4, product="x", encoding="png"
        ),  # > 64x64
    ]
    for message in [*bad, good]:
        push.send_multipart(message)
    frames = receive_all(source, len(bad) + 1)
    assert [f.part_id[:8] for f in frames[1:]] == ["A", "B", "C", "D", "E", "good"]
    assert frames[0].part_id.startswith("unknown-")
    assert all(f.error and f.image is None for f in frames[:-1])
    assert "not JSON" in frames[0].error and "2 message parts" in frames[1].error
    assert "truncated" in frames[2].error and "max_message_bytes" in frames[4].error
    assert "max_pixels" in frames[5].error
    np.testing.assert_array_equal(frames[-1].image, image)


def test_far_oversized_message_drops_the_connection_not_the_station(station, sender, make_image) -> None:
    source = station(mode="pull", max_message_bytes=1024)
    push = sender(zmq.PUSH, source.endpoint)
    image = make_image(8, 8)
    push.send_multipart([b"{}", bytes(4096)])  # above the hard limit: libzmq refuses it
    assert source.receive(0.3) is None
    push.send_multipart(encode_frame(image, part_id="after", seq=0, product="x"))  # after the reconnect
    frame = source.receive(2.0)
    assert frame.part_id == "after" and frame.error is None


def test_config_validation_names_the_problem(tmp_path) -> None:
    cases = {
        "endpoint must look like": {"endpoint": "127.0.0.1:5555"},
        "needs a port": {"endpoint": "tcp://127.0.0.1"},
        "imagezmq_rep must bind": {"mode": "imagezmq_rep", "bind": False},
        "imagezmq_sub must connect": {"mode": "imagezmq_sub", "bind": True},
        "cannot connect to a wildcard": {"endpoint": "tcp://*:5555", "bind": False},
        "Input should be 'pull'": {"mode": "push"},
        "greater than or equal to 1": {"rcvhwm": 0},
        "Extra inputs": {"port": 5},
    }
    for message, fields in cases.items():
        with pytest.raises(ValidationError, match=message):
            CameraConfig(**fields)
    assert CameraConfig().endpoint == "tcp://127.0.0.1:5555" and CameraConfig().binds
    assert not CameraConfig(mode="imagezmq_sub").binds and not CameraConfig(mode="sub").binds


def test_open_failures_and_close(station, tmp_path) -> None:
    source = station(mode="pull")
    with pytest.raises(CameraError, match="cannot bind"):
        open_source(CameraConfig(endpoint=source.endpoint))
    assert source.receive(0.01) is None
    with open_source(CameraConfig(endpoint=f"ipc://{tmp_path}/cam")) as ipc:
        assert ipc.endpoint == f"ipc://{tmp_path}/cam"
    ipc.close()  # twice is fine
