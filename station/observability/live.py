"""The operator page's memory: the last few parts with thumbnails, the reject log and running figures.

The daemon calls `LiveState.add` once per part and it returns at once: shrinking a 4-megapixel frame to a
thumbnail costs tens of milliseconds, so a worker thread does it (OpenCV releases the GIL) and a part's
pictures show up on the page a moment after its verdict. If the worker falls behind, parts are shown
without pictures rather than queueing full frames in memory. Thumbnails are encoded to PNG lazily, in the
request thread that first asks. Every shared structure sits behind one lock held only for list operations,
so a slow or stalled browser can never hold up the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

import cv2
import numpy as np

from station.verdict import Verdict
from tools.image import fit_pixels

log = logging.getLogger(__name__)

Images = Sequence[tuple[str, np.ndarray]]


@dataclass
class _Thumbnail:
    id: int
    name: str
    pixels: np.ndarray
    png: bytes | None = None  # encoded on first request, then served from here


@dataclass
class _Part:
    summary: dict
    thumbnails: list[_Thumbnail] = field(default_factory=list)


def _png(image: np.ndarray) -> bytes:
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} {image.dtype} image as PNG")
    return data.tobytes()


def _summary(part_id: str, verdict: Verdict, ts: float) -> dict:
    return {
        "part_id": part_id,
        "product": verdict.product,
        "ts": ts,
        **verdict.headline(),
        "latency_s": verdict.timings.total_s,
    }


class LiveState:
    """Recent parts for the operator page.

    ``parts`` recent parts keep their thumbnails (at most ``thumbnail_pixels`` each); ``rejects`` recent
    rejects stay in the reject log (text only); parts/s is measured over the last ``rate_window_s`` seconds
    and latency percentiles over the last ``latency_window`` parts. At most ``pending`` parts wait for
    their thumbnails.
    """

    def __init__(
        self,
        *,
        parts: int = 24,
        rejects: int = 200,
        thumbnail_pixels: int = 384 * 384,
        rate_window_s: float = 10.0,
        latency_window: int = 500,
        pending: int = 8,
    ):
        self._lock = threading.Lock()
        self._parts: deque[_Part] = deque(maxlen=parts)
        self._rejects: deque[dict] = deque(maxlen=rejects)
        self._arrivals: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._counts = {"accept": 0, "reject": 0, "fail_safe": 0}
        self._version = 0
        self._started = time.time()
        self._rate_window_s = rate_window_s
        self._thumbnail_pixels = thumbnail_pixels
        self._thumbnail_ids = count(1)
        self._pending: queue.Queue[tuple[_Part, Images]] = queue.Queue(maxsize=pending)
        threading.Thread(target=self._shrink_loop, name="live-thumbnails", daemon=True).start()

    def add(self, part_id: str, verdict: Verdict, images: Images | None = None) -> None:
        """Show one part; ``images`` (default: what the model saw, ``verdict.evidence``) are read later by
        the thumbnail worker, so they must not be modified afterwards (the verdict's evidence never is)."""
        now = time.time()
        part = _Part(_summary(part_id, verdict, now))
        with self._lock:
            self._version += 1
            self._parts.append(part)
            if verdict.rejected:
                self._rejects.append(part.summary)
            self._counts[verdict.decision] += 1
            self._counts["fail_safe"] += int(verdict.fail_safe)
            self._arrivals.append(now)
            self._latencies.append(verdict.timings.total_s)
        images = verdict.evidence if images is None else images
        if images:
            with contextlib.suppress(queue.Full):  # the worker is behind: this part goes without pictures
                self._pending.put_nowait((part, images))

    def flush(self) -> None:
        """Wait until every part added so far has its thumbnails."""
        self._pending.join()

    def _shrink_loop(self) -> None:
        while True:
            part, images = self._pending.get()
            try:
                thumbnails = [
                    _Thumbnail(next(self._thumbnail_ids), name, fit_pixels(image, self._thumbnail_pixels))
                    for name, image in images
                ]
                with self._lock:
                    part.thumbnails = thumbnails
                    self._version += 1
            except Exception:  # an odd image costs its part's pictures, never the worker
                log.exception("live: no thumbnails for part %s", part.summary["part_id"])
            finally:
                self._pending.task_done()

    def state(self) -> dict:
        """Everything the page shows, newest first, as JSON-ready data."""
        now = time.time()
        with self._lock:
            while self._arrivals and self._arrivals[0] < now - self._rate_window_s:
                self._arrivals.popleft()
            parts = [(p.summary, [(t.id, t.name) for t in p.thumbnails]) for p in reversed(self._parts)]
            rejects = list(reversed(self._rejects))
            arrivals = len(self._arrivals)
            latencies = np.array(self._latencies)
            counts = dict(self._counts)
            version = self._version
        window = min(self._rate_window_s, max(now - self._started, 1e-9))
        p50, p99 = np.percentile(latencies, [50, 99]).tolist() if latencies.size else (None, None)
        return {
            "version": version,
            "now": now,
            "counts": counts,
            "parts_per_s": arrivals / window,
            "latency_s": {"p50": p50, "p99": p99, "n": int(latencies.size)},
            "parts": [
                {**summary, "images": [{"name": n, "url": f"/api/image/{i}"} for i, n in thumbnails]}
                for summary, thumbnails in parts
            ],
            "rejects": rejects,
        }

    def image_png(self, image_id: int) -> bytes | None:
        """A thumbnail as PNG, or None once its part has left the ring."""
        with self._lock:
            thumbnail = next((t for p in self._parts for t in p.thumbnails if t.id == image_id), None)
        if thumbnail is None:
            return None
        if thumbnail.png is None:  # two first requests may both encode; the result is the same
            thumbnail.png = _png(thumbnail.pixels)
        return thumbnail.png
