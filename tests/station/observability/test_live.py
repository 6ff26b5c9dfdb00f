"""What the operator page is built from: the ring of recent parts, the reject log and running figures."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from station.observability.live import LiveState


def test_recent_parts_newest_first_with_counts_rate_and_percentiles(verdicts):
    live = LiveState(parts=2, rejects=3)
    kinds = ["accept", "reject", "unknown_tool", "accept", "reject"]
    for n, kind in enumerate(kinds):
        live.add(f"P-{n}", verdicts[kind])
    state = live.state()
    assert [p["part_id"] for p in state["parts"]] == ["P-4", "P-3"]
    assert [p["part_id"] for p in state["rejects"]] == ["P-4", "P-2", "P-1"]
    assert state["rejects"][1]["reason"] == "tool_error" and state["rejects"][1]["fail_safe"] is True
    assert state["counts"] == {"accept": 2, "reject": 3, "fail_safe": 1}
    assert state["version"] == 5 and state["parts_per_s"] > 0
    totals = [verdicts[k].timings.total_s for k in kinds]
    assert state["latency_s"]["p50"] == pytest.approx(np.percentile(totals, 50))
    assert state["latency_s"]["n"] == 5


def test_thumbnails_are_made_off_the_daemon_thread_and_encoded_on_demand(verdicts):
    live = LiveState(thumbnail_pixels=64 * 64)
    frame = np.full((1000, 2000, 3), 200, np.uint8)
    live.add("big", verdicts["accept"], [("frame", frame), ("edges", np.zeros((50, 50), np.uint8))])
    live.flush()
    [part] = live.state()["parts"]
    first, second = (int(image["url"].rsplit("/", 1)[1]) for image in part["images"])
    png = live.image_png(first)
    assert png is not None and png.startswith(b"\x89PNG") and live.image_png(first) is png  # cached
    thumb = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert thumb.shape[0] * thumb.shape[1] <= 64 * 64 and (thumb == 200).all()
    assert live.image_png(second) is not None and live.image_png(12345) is None


def test_a_slow_worker_never_holds_up_add_and_parts_then_go_without_pictures(verdicts, monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def stuck(image: np.ndarray, pixels: int) -> np.ndarray:
        entered.set()
        release.wait(5)
        return image

    monkeypatch.setattr("station.observability.live.fit_pixels", stuck)
    live = LiveState(pending=1)
    live.add("P-0", verdicts["reject"])
    assert entered.wait(5)  # the worker is now stuck on P-0
    live.add("P-1", verdicts["reject"])  # waits in the queue
    live.add("P-2", verdicts["reject"])  # the queue is full: shown without pictures
    assert [len(p["images"]) for p in live.state()["parts"]] == [0, 0, 0]
    release.set()
    live.flush()
    images = {p["part_id"]: [i["name"] for i in p["images"]] for p in live.state()["parts"]}
    assert images == {"P-0": ["frame", "crop"], "P-1": ["frame", "crop"], "P-2": []}


def test_an_image_that_cannot_be_shrunk_costs_only_its_pictures(verdicts, caplog):
    live = LiveState()
    live.add("odd", verdicts["accept"], [("frame", np.zeros(5, np.uint8))])
    live.add("fine", verdicts["accept"])
    live.flush()
    assert [len(p["images"]) for p in live.state()["parts"]] == [1, 0]
    assert "no thumbnails for part odd" in caplog.text


def test_an_empty_station_has_no_percentiles():
    state = LiveState().state()
    assert state["parts"] == [] and state["latency_s"] == {"p50": None, "p99": None, "n": 0}
