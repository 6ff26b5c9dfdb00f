"""The HTTP server: metrics for Prometheus, the operator page, its state and thumbnails; 404 otherwise."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from station.observability.live import LiveState
from station.observability.metrics import StationMetrics
from station.observability.server import ObservabilityServer


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture
def station():
    metrics, live = StationMetrics(), LiveState(parts=3)
    with ObservabilityServer(metrics, live, port=0) as server:
        yield server, metrics, live


def test_metrics_page_state_and_images(station, verdicts):
    server, metrics, live = station
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    metrics.part_received()
    live.add("P-1", verdicts["reject"])
    live.flush()

    status, kind, body = get(server.url + "/metrics")
    assert status == 200 and kind.startswith("text/plain") and b"indus_parts_received_total 1.0" in body

    status, kind, body = get(server.url + "/")
    assert status == 200 and kind == "text/html; charset=utf-8" and b"<title>indus-station</title>" in body
    assert b"/api/state" in body and b"://" not in body  # self-contained: no external assets

    status, kind, body = get(server.url + "/api/state?t=1")
    state = json.loads(body)
    assert status == 200 and kind == "application/json"
    [part] = state["parts"]
    assert (part["part_id"], part["decision"], part["type"], part["confidence"]) == (
        "P-1",
        "reject",
        "crack",
        0.9,
    )
    assert [image["name"] for image in part["images"]] == ["frame", "crop"]
    assert [r["part_id"] for r in state["rejects"]] == ["P-1"]

    status, kind, body = get(server.url + part["images"][0]["url"])
    thumbnail = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and kind == "image/png" and thumbnail.shape == (240, 320, 3)  # small: unchanged
    assert (cv2.cvtColor(thumbnail, cv2.COLOR_BGR2RGB) == verdicts["reject"].evidence[0][1]).all()


@pytest.mark.parametrize("path", ["/nope", "/api/image/999", "/api/image/abc", "/api/state/x", "/metrics/"])
def test_anything_else_is_404(station, path):
    server, _, _ = station
    status, _, body = get(server.url + path)
    assert status == 404 and body == b"not found\n"


def test_images_leave_with_their_part_and_the_server_stays_responsive(station, verdicts):
    server, _, live = station
    live.add("P-0", verdicts["reject"])
    live.flush()
    first = json.loads(get(server.url + "/api/state")[2])["parts"][0]["images"][0]["url"]
    assert get(server.url + first)[0] == 200
    for n in range(1, 4):  # the ring holds three parts
        live.add(f"P-{n}", verdicts["accept"])
    live.flush()
    assert get(server.url + first)[0] == 404
    results: list[int] = []

    def hammer() -> None:
        for _ in range(20):
            results.append(get(server.url + "/api/state")[0])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for n in range(4, 40):
        live.add(f"P-{n}", verdicts["accept"])
    for thread in threads:
        thread.join()
    assert results == [200] * 80
