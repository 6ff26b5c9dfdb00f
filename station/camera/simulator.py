"""A simulated camera: sends synthetic parts to a station as a line camera would, and records the truth.

Parts come from an ``indus synth`` folder (its ``synth_meta.jsonl`` says which part is good or defective) or
are generated on the fly. Each part gets a fresh id (``part-000000``, ...) and sequence number; the truth file
maps that id to the label and defect, one JSON line per part, written before the part is sent, so a PLC
simulator checking verdicts never sees a verdict for a part it does not know. Nothing that hints at the label
(a file path names the defect) goes over the wire.

Socket roles mirror `CameraConfig`'s defaults: the simulator connects in ``pull`` and ``imagezmq`` (REQ)
mode and binds in the publishing modes, ``sub`` and ``imagezmq_pub``, as a real imagezmq PUB sender does.
A publisher sends whether anyone listens or not: start the station first, and expect the frames sent before
its subscription arrived to be missing (the truth file lists every part sent). A run stopped in the middle
of a send leaves a truth line for a part that never went out.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zmq

from station.camera.curve import curve_client
from station.camera.wire import Encoding, encode_frame, encode_imagezmq
from tools.image import load_image

log = logging.getLogger(__name__)

SimMode = Literal["pull", "sub", "imagezmq", "imagezmq_pub"]
SIM_MODES: tuple[str, ...] = ("pull", "sub", "imagezmq", "imagezmq_pub")
_SOCKET_TYPES = {"pull": zmq.PUSH, "sub": zmq.PUB, "imagezmq": zmq.REQ, "imagezmq_pub": zmq.PUB}
# The file `indus synth` writes (calibration.synth.dataset.META_FILE). Not imported: calibration sits above
# station in the import order, and reading the folder needs nothing from it.
SYNTH_META = "synth_meta.jsonl"
_POLL_S = 0.1  # how often a blocked send or reply wait looks at the stop flag


@dataclass(frozen=True)
class SimPart:
    product: str
    image: np.ndarray  # RGB uint8
    label: str  # "good" | "defective"
    defect: str  # "good" or the defect type
    source: str  # where it came from (file or generator seed); goes to the truth file only


def folder_parts(root: str | Path, split: str = "test") -> Iterator[SimPart]:
    """The parts of an ``indus synth`` folder in file order, over and over; ``split``: train, test or all.

    The listing is checked at once; images are read as they are sent, so a large folder costs no memory.
    """
    root = Path(root)
    meta = root / SYNTH_META
    if not meta.is_file():
        raise FileNotFoundError(f"{root} is not an `indus synth` folder: it has no {SYNTH_META}")
    with meta.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    rows = [row for row in rows if split == "all" or row["split"] == split]
    if not rows:
        raise ValueError(f"no {split!r} parts listed in {meta}")
    return (
        SimPart(row["category"], load_image(root / row["path"]), row["label"], row["defect"], row["path"])
        for row in itertools.cycle(rows)
    )


def generated_parts(seed: int, size: int = 256, categories: Sequence[str] | None = None) -> Iterator[SimPart]:
    """Fresh synthetic parts forever, about half of them defective; part ``i`` depends only on (seed, i)."""
    # Imported here, not at module level: calibration sits above station in the import order (it builds on
    # station and tools), so `import station` must never pull it in; only this optional generator needs it.
    from calibration.synth import CATEGORIES, generate_part

    names = list(categories or CATEGORIES)
    for index in itertools.count():
        rng = np.random.default_rng([seed, index])
        category = names[int(rng.integers(len(names)))]
        defects = CATEGORIES[category]
        defect = "good" if rng.random() < 0.5 else defects[int(rng.integers(len(defects)))]
        part = generate_part(category, defect, size, rng)
        yield SimPart(category, part.image, part.label, defect, f"generated seed={seed} index={index}")


class CameraSimulator:
    """Sends parts at ``rate_hz`` (None or 0: as fast as the station takes them) in ``run``, or in a thread.

    ``linger_s``: how long a run that sent all its parts waits for a slow station to take the few a PUSH
    still queues (libzmq's linger: ``stop`` cannot cut it short). A stopped run discards them at once.
    """

    def __init__(
        self,
        parts: Iterable[SimPart],
        endpoint: str = "tcp://127.0.0.1:5555",
        mode: SimMode = "pull",
        encoding: Encoding = "raw",
        rate_hz: float | None = None,
        deadline_ms: float | None = None,
        truth_path: str | Path | None = None,
        bind: bool | None = None,
        sndhwm: int = 2,
        linger_s: float = 10.0,
        curve_keys: tuple[Path, Path] | None = None,
    ) -> None:
        """``deadline_ms`` goes out in the station format only (imagezmq has no field for it).
        ``curve_keys``: (this camera's .key_secret file, the station's public .key file)."""
        if mode not in SIM_MODES:
            raise ValueError(f"mode must be one of {', '.join(SIM_MODES)}, got {mode!r}")
        self.parts = iter(parts)
        self.endpoint = endpoint
        self.mode = mode
        self.encoding = encoding
        self.interval_s = 1.0 / rate_hz if rate_hz else 0.0
        self.deadline_ms = deadline_ms
        self.truth_path = None if truth_path is None else Path(truth_path)
        self.bind = mode in ("sub", "imagezmq_pub") if bind is None else bind
        self.sndhwm = sndhwm
        self.linger_s = linger_s
        self.curve_keys = curve_keys
        self.sent = 0  # messages handed to ZeroMQ (REQ: acknowledged with OK)
        self._next_seq = 0  # a second run goes on numbering parts, so ids stay unique
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._bound_endpoint: str | None = None

    def run(self, count: int | None = None) -> int:
        """Send ``count`` parts (None: until ``stop``); returns how many were sent."""
        context: zmq.Context[Any] = zmq.Context()
        socket = context.socket(_SOCKET_TYPES[self.mode])
        linger_ms = 0
        truth = None
        try:
            socket.sndhwm = self.sndhwm
            socket.sndtimeo = int(_POLL_S * 1000)
            if self.curve_keys is not None:
                curve_client(socket, *self.curve_keys)
            if self.bind:
                socket.bind(self.endpoint)
                self._bound_endpoint = socket.last_endpoint.decode()
            else:
                socket.connect(self.endpoint)
            self._ready.set()
            if self.truth_path is not None:
                truth = self.truth_path.open("a" if self._next_seq else "w", encoding="utf-8")
            due = time.monotonic()
            for seq, part in enumerate(itertools.islice(self.parts, count), start=self._next_seq):
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                due = max(due + self.interval_s, time.monotonic())  # running late: no burst to catch up
                self._next_seq = seq + 1
                part_id = f"part-{seq:06d}"
                if truth is not None:
                    row = {"part_id": part_id, "seq": seq, "product": part.product, "label": part.label}
                    truth.write(json.dumps({**row, "defect": part.defect, "source": part.source}) + "\n")
                    truth.flush()
                if not self._send(socket, self._message(part, part_id, seq)):
                    break
                self.sent += 1
                log.debug("sent %s (%s, %s)", part_id, part.product, part.label)
            else:
                linger_ms = int(self.linger_s * 1000)
        finally:
            self._ready.set()
            if truth is not None:
                truth.close()
            socket.close(linger=linger_ms)
            context.term()
        return self.sent

    def _message(self, part: SimPart, part_id: str, seq: int) -> list[bytes | memoryview]:
        if self.mode.startswith("imagezmq"):
            return encode_imagezmq(part.image, f"{part.product}:{part_id}", self.encoding)
        return encode_frame(
            part.image,
            part_id=part_id,
            seq=seq,
            product=part.product,
            encoding=self.encoding,
            deadline_ms=self.deadline_ms,
        )

    def _send(self, socket: zmq.Socket[Any], message: list[bytes | memoryview]) -> bool:
        """Send, waiting out back-pressure but not a stop; a REQ also waits for its reply."""
        while True:
            try:
                socket.send_multipart(message)
                break
            except zmq.Again:
                if self._stop.is_set():
                    return False
        if socket.type != zmq.REQ:
            return True
        while not socket.poll(int(_POLL_S * 1000)):
            if self._stop.is_set():
                return False
        socket.recv()
        return True

    @property
    def bound_endpoint(self) -> str | None:
        """Where a binding simulator listens (the real port for tcp port 0), once ``start`` returned."""
        return self._bound_endpoint

    def start(self, count: int | None = None) -> None:
        """``run`` in a background thread; returns once the socket is bound or connected."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")

        def target() -> None:
            try:
                self.run(count)
            except BaseException as error:  # handed to join/stop, which re-raise it in the caller
                self._error = error

        self._thread = threading.Thread(target=target, name="camera-simulator", daemon=True)
        self._thread.start()
        self._ready.wait()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for a started run to finish; True when it has. Re-raises an error the run met."""
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                return False
        if self._error is not None:
            raise self._error
        return True

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop sending, drop what is still queued, and wait for the thread (default: ``linger_s`` + 5 s)."""
        self._stop.set()
        timeout_s = self.linger_s + 5.0 if timeout_s is None else timeout_s
        if not self.join(timeout_s):
            raise RuntimeError(f"simulator did not stop within {timeout_s} s")
