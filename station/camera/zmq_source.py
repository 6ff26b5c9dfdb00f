"""Camera frames over ZeroMQ: the station's own wire format (PUSH/PULL or PUB/SUB) and imagezmq senders.

Modes, and what a slow station does to each:

- ``pull``: every part is inspected. A small receive high-water mark makes the camera's PUSH block when the
  station falls behind (back-pressure), so nothing is lost; the line has to wait instead.
- ``sub``: the newest frame wins. The camera's PUB binds and the station connects, as with imagezmq (a PUB
  that connects to a bound SUB loses its first frames, libzmq issue #2267). Each ``receive`` drains what is
  queued and keeps the last message; the ones passed over, and those the publisher dropped at its
  high-water mark, show up as ``seq`` gaps in ``dropped``.
  Gap counting assumes one sender per source with one increasing counter (a counter that restarts is not
  counted as loss). Freshness also depends on the sender's SNDHWM and the kernel's socket buffers: a PUB that
  queues many frames delivers old ones first.
- ``imagezmq_rep``: an imagezmq ``ImageSender`` (REQ) connects to the station, which replies ``b"OK"`` to each
  message as soon as it has it; the sender waits for that reply, so this mode has back-pressure too.
- ``imagezmq_sub``: an imagezmq ``ImageSender(REQ_REP=False)`` binds a PUB; the station connects and keeps
  the newest frame as in ``sub``. imagezmq has no sequence numbers, so only the frames the station passed
  over count as dropped.

Sockets are not thread-safe: call ``receive``, then ``close``, from one thread (the station's ingest thread).
"""

from __future__ import annotations

import logging
import math
import time
from functools import partial
from typing import Any, Literal

import zmq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from station.camera.base import Frame, FrameSource
from station.camera.curve import CurveServerConfig, serve_curve
from station.camera.wire import Limits, decode_imagezmq, decode_message

log = logging.getLogger(__name__)

Mode = Literal["pull", "sub", "imagezmq_rep", "imagezmq_sub"]
_SOCKET_TYPES = {"pull": zmq.PULL, "sub": zmq.SUB, "imagezmq_rep": zmq.REP, "imagezmq_sub": zmq.SUB}
# Whether the station binds when the config does not say: it binds where the camera connects (PUSH, REQ),
# so several cameras can reach one station, and connects to a publishing camera, which binds.
_BINDS = {"pull": True, "sub": False, "imagezmq_rep": True, "imagezmq_sub": False}
# Messages above max_message_bytes still arrive and become error frames, so the part is failed safe and
# counted; far above it, libzmq refuses the message and drops the connection, so one sender cannot exhaust
# the station's memory.
HARD_LIMIT_FACTOR = 2


class CameraError(RuntimeError):
    """The source cannot be opened (address in use, unreachable endpoint, bad keys)."""


class CameraConfig(BaseModel):
    """Where frames come from and what the station accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(
        "tcp://127.0.0.1:5555",
        description="ZeroMQ endpoint (tcp://host:port, ipc://path). Port 0 or * binds a free port.",
    )
    mode: Mode = Field("pull", description="pull | sub | imagezmq_rep | imagezmq_sub; see the module docs.")
    bind: bool | None = Field(
        None, description="Bind (true) or connect (false); unset: the mode's usual side."
    )
    max_message_bytes: int = Field(
        128 * 2**20, ge=1024, description="Larger messages become error frames (fail-safe rejects)."
    )
    max_pixels: int = Field(
        32 * 2**20, ge=4, description="Larger frames (width x height) become error frames."
    )
    rcvhwm: int = Field(
        4,
        ge=1,
        le=10_000,
        description="Messages queued on the station side; small means back-pressure early.",
    )
    imagezmq_bgr: bool = Field(
        True, description="imagezmq raw frames are OpenCV BGR; false for senders that send RGB arrays."
    )
    curve: CurveServerConfig | None = Field(None, description="CURVE encryption and camera authentication.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, endpoint: str) -> str:
        scheme, sep, address = endpoint.partition("://")
        if not sep or scheme not in ("tcp", "ipc", "inproc") or not address:
            raise ValueError(f"endpoint must look like tcp://host:port or ipc://path, got {endpoint!r}")
        _host, colon, port = address.rpartition(":")
        if scheme == "tcp" and not (colon and port):
            raise ValueError(f"tcp endpoint needs a port, got {endpoint!r}")
        return endpoint

    @model_validator(mode="after")
    def _sides(self) -> CameraConfig:
        if self.mode == "imagezmq_rep" and self.bind is False:
            raise ValueError("imagezmq_rep must bind: imagezmq's REQ sender connects")
        if self.mode == "imagezmq_sub" and self.bind:
            raise ValueError("imagezmq_sub must connect: imagezmq's PUB sender binds")
        if self.curve is not None and self.mode.startswith("imagezmq"):
            raise ValueError("imagezmq senders cannot do CURVE; use pull or sub for encrypted links")
        if not self.binds and "*" in self.endpoint:
            raise ValueError(f"cannot connect to a wildcard address: {self.endpoint}")
        return self

    @property
    def binds(self) -> bool:
        return _BINDS[self.mode] if self.bind is None else self.bind

    @property
    def limits(self) -> Limits:
        return Limits(max_message_bytes=self.max_message_bytes, max_pixels=self.max_pixels)


class ZmqSource(FrameSource):
    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self._context: zmq.Context[Any] = zmq.Context()  # its own: CURVE's authenticator serves a context
        self._auth = None
        self._messages = 0  # messages received, including those passed over: imagezmq's sequence numbers
        self._last_seq: int | None = None
        self._dropped = 0
        self._closed = False
        if config.mode.startswith("imagezmq"):
            self._decode = partial(self._decode_imagezmq, limits=config.limits, bgr=config.imagezmq_bgr)
        else:
            self._decode = partial(decode_message, limits=config.limits)
        self._socket: zmq.Socket[Any] = self._context.socket(_SOCKET_TYPES[config.mode])
        try:
            self._open()
        except Exception:
            self.close()
            raise

    def _open(self) -> None:
        config, socket = self.config, self._socket
        socket.linger = 0
        socket.rcvhwm = config.rcvhwm
        socket.maxmsgsize = config.max_message_bytes * HARD_LIMIT_FACTOR
        if socket.type == zmq.SUB:
            socket.subscribe(b"")
        if config.curve is not None:
            self._auth = serve_curve(self._context, socket, config.curve)
        elif config.binds and any(host in config.endpoint for host in ("://*", "://0.0.0.0")):
            log.warning("%s accepts frames from any host without CURVE authentication", config.endpoint)
        try:
            if config.binds:
                socket.bind(config.endpoint)
            else:
                socket.connect(config.endpoint)
        except zmq.ZMQError as error:
            side = "bind" if config.binds else "connect to"
            raise CameraError(f"cannot {side} {config.endpoint}: {error}") from error
        log.info(
            "camera source %s %s %s", config.mode, "bound" if config.binds else "connected", self.endpoint
        )

    @property
    def endpoint(self) -> str:
        """The endpoint in use; for a bound tcp port 0 or *, the port the system chose."""
        if self.config.binds and not self._closed:
            return self._socket.last_endpoint.decode()
        return self.config.endpoint

    @property
    def dropped(self) -> int:
        return self._dropped

    def receive(self, timeout_s: float) -> Frame | None:
        if not self._socket.poll(max(0, math.ceil(timeout_s * 1000))):
            return None
        parts = self._socket.recv_multipart(copy=False)
        received = time.time()
        self._messages += 1
        if self.config.mode == "imagezmq_rep":
            self._socket.send(b"OK")  # at once: the sender blocks until it gets it
        elif self._socket.type == zmq.SUB:
            parts, received = self._newest(parts, received)
        frame = self._decode(parts, received)
        self._count_gap(frame.seq)
        return frame

    def _newest(self, parts: list[zmq.Frame], received: float) -> tuple[list[zmq.Frame], float]:
        """The last message queued. At most one queue's worth is drained, so a publisher faster than this loop
        cannot keep ``receive`` from returning."""
        for _ in range(self.config.rcvhwm):
            try:
                parts = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            received = time.time()
            self._messages += 1
        return parts, received

    def _decode_imagezmq(self, parts: list[zmq.Frame], received: float, **options: Any) -> Frame:
        return decode_imagezmq(parts, received, self._messages, **options)

    def _count_gap(self, seq: int | None) -> None:
        if seq is None:
            return
        if self._last_seq is not None and seq > self._last_seq + 1:
            self._dropped += seq - self._last_seq - 1
        self._last_seq = seq

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._context.term()


def open_source(config: CameraConfig) -> FrameSource:
    """The camera source ``config`` describes, bound or connected; raises CameraError when it cannot be."""
    return ZmqSource(config)
