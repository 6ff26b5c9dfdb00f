"""Real imagezmq senders plug into the station unchanged: REQ/REP (with its OK) and PUB/SUB, raw and JPEG."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import zmq

from station.camera.simulator import CameraSimulator, SimPart

imagezmq = pytest.importorskip("imagezmq")


def _bounded(sender) -> None:
    """A sender that gives up instead of hanging a failing test."""
    sender.zmq_socket.linger = 0
    sender.zmq_socket.rcvtimeo = 2000


def test_req_rep_sender_gets_ok_for_every_image(station, receive_all, make_image) -> None:
    source = station(mode="imagezmq_rep")
    images = [make_image(48, 64, seed) for seed in range(3)]
    replies: list[bytes] = []

    def send() -> None:
        sender = imagezmq.ImageSender(connect_to=source.endpoint)
        _bounded(sender)
        try:
            for i, image in enumerate(images):  # OpenCV images are BGR
                replies.append(sender.send_image(f"hole_plate:P{i}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR)))
            _, jpg = cv2.imencode(".jpg", cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR))
            replies.append(sender.send_jpg("cam-7", jpg.tobytes()))
            replies.append(sender.send_image("bad", np.zeros((4, 4), np.float64)))  # served as an error
        except zmq.Again:
            pass  # no reply: the assertions below say what was missing
        finally:
            sender.close()

    thread = threading.Thread(target=send)
    thread.start()
    frames = receive_all(source, 5)
    thread.join(3.0)
    assert replies == [b"OK"] * 5
    assert [(f.product, f.part_id, f.seq) for f in frames[:4]] == [
        ("hole_plate", "P0", 1),
        ("hole_plate", "P1", 2),
        ("hole_plate", "P2", 3),
        (None, "cam-7", 4),
    ]
    for frame, image in zip(frames[:3], images, strict=True):
        np.testing.assert_array_equal(frame.image, image)
    assert np.abs(frames[3].image.astype(int) - images[0]).mean() < 3
    assert frames[4].part_id == "bad" and "'dtype' must be" in frames[4].error
    assert source.dropped == 0


def test_pub_sender_and_sub_station(station, make_image) -> None:
    image = make_image(48, 64)
    sender = imagezmq.ImageSender(connect_to="tcp://127.0.0.1:*", REQ_REP=False)
    _bounded(sender)
    endpoint = sender.zmq_socket.last_endpoint.decode()
    stop = threading.Event()

    def publish() -> None:  # PUB drops until the station's subscription arrives: keep sending
        while not stop.wait(0.01):
            sender.send_image("lag_screw:S1", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        source = station(mode="imagezmq_sub", endpoint=endpoint)
        frame = source.receive(2.0)
    finally:
        stop.set()
        thread.join(2.0)
        sender.close()
    assert (frame.product, frame.part_id, frame.error) == ("lag_screw", "S1", None)
    np.testing.assert_array_equal(frame.image, image)
    assert frame.capture_ts == frame.received_ts


def test_simulator_speaks_imagezmq_to_a_real_hub(make_image) -> None:
    image = make_image(48, 64)
    hub = imagezmq.ImageHub(open_port="tcp://127.0.0.1:*")
    hub.zmq_socket.linger = 0
    hub.zmq_socket.rcvtimeo = 2000
    endpoint = hub.zmq_socket.last_endpoint.decode()
    simulator = CameraSimulator([SimPart("x", image, "good", "good", "")] * 2, endpoint, mode="imagezmq")
    simulator.start(2)
    try:
        msg, bgr = hub.recv_image()
        hub.send_reply()
        msg2, _ = hub.recv_image()
        hub.send_reply()
        assert simulator.join(2.0) and simulator.sent == 2
    finally:
        simulator.stop()
        hub.close()
    assert (msg, msg2) == ("x:part-000000", "x:part-000001")
    np.testing.assert_array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), image)


def test_simulator_imagezmq_pub_to_station(station, make_image) -> None:
    image = make_image(48, 64)
    simulator = CameraSimulator(
        iter(lambda: SimPart("x", image, "good", "good", ""), None),
        "tcp://127.0.0.1:*",
        mode="imagezmq_pub",
        encoding="jpeg",
        rate_hz=200,
    )
    simulator.start()
    try:
        source = station(mode="imagezmq_sub", endpoint=simulator.bound_endpoint)
        first, second = source.receive(2.0), source.receive(2.0)
    finally:
        simulator.stop()
    assert first.error is None and first.product == "x" and first.part_id.startswith("part-")
    assert second.seq > first.seq and np.abs(second.image.astype(int) - image).mean() < 3
