"""The delivery loop both serial links share: retries to the deadline, reconnects, heartbeats, counters.

A protocol (ASCII lines, Modbus RTU) only says how to open the port, how one attempt writes a verdict and
recognises its confirmation, and what a heartbeat is. Everything that decides a part's fate lives here once:

- **Deadline.** A verdict is retried until its ``deadline_ts`` (or ``default_deadline_s`` from the call when
  it has none). One handed over after its deadline still gets one attempt of ``ack_timeout_s``, so the PLC
  can log it, and ends "late" at best. Waits are cut at the deadline; what can run past it is a port open in
  flight (Modbus reads the sequence register then: up to ``ack_timeout_s``) or a hung client call being
  given up (its timeout plus ``write_timeout_s``).
- **Port failures** (unplugged adapter, vanished pty, write timeout, read error) close the port; it is
  reopened with exponential backoff (``reconnect_backoff_s``) by whichever thread needs it next: a
  delivery, or the heartbeat thread while the line is idle, so the port is usually back before the next part.
- **One lock around the port.** Deliveries and heartbeats interleave between attempts, never inside one.
  Deliveries are also serialised among themselves: one verdict is on the wire at a time.
- ``deliver`` never raises: whatever happens, the part gets a `Delivery`, and every one that is not "acked" is
  counted and logged (the PLC has rejected that part).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from typing import Generic, TypeVar

from station.plc.base import Delivery, PlcLink, PlcVerdict
from station.plc.config import PlcConfig

log = logging.getLogger(__name__)

Message = TypeVar("Message")

COUNTERS = (
    "attempts",  # tries to write a verdict on an open port
    "retries",  # tries beyond the first for the same verdict
    "acked",
    "late",
    "failed",
    "invalid",  # verdicts never sent: a part id or reason code the protocol cannot carry (also in "failed")
    "port_errors",  # port lost: closed, to be reopened
    "reconnects",  # port reopened after a loss
    "heartbeats",  # heartbeats written
    "heartbeat_errors",  # heartbeats the PLC refused or did not answer (Modbus)
)


class PortError(Exception):
    """The port is unusable: close it and reconnect with backoff."""


class AttemptError(Exception):
    """This attempt failed but the port is fine (the PLC refused or did not answer): retry as it is."""


class _Backoff:
    def __init__(self, initial_s: float, max_s: float) -> None:
        self._initial_s, self._max_s = initial_s, max_s
        self._delay_s = initial_s
        self.ready_at = 0.0  # time.monotonic() from which the next open may be tried

    def failed(self) -> None:
        self.ready_at = time.monotonic() + self._delay_s
        self._delay_s = min(self._delay_s * 2, self._max_s)

    def reset(self) -> None:
        self._delay_s = self._initial_s
        self.ready_at = 0.0


class SerialLink(PlcLink, Generic[Message]):
    """Subclasses implement the protocol hooks below; all of them run with the port lock held. They set
    their own state before calling ``super().__init__``, which starts the heartbeat thread."""

    extra_counters: tuple[str, ...] = ()

    def __init__(self, config: PlcConfig) -> None:
        self.config = config
        self._port_lock = threading.Condition()  # notified when the port opens, so waiting deliveries go on
        self._deliver_lock = threading.Lock()
        self._counters = dict.fromkeys((*COUNTERS, *self.extra_counters), 0)
        self._backoff = _Backoff(*config.reconnect_backoff_s)
        self._connected_before = False
        self._outage_since: float | None = None
        self._last_port_error = "port not opened yet"
        self._pending: Message | None = None  # the verdict being delivered
        self._confirmed_ts: float | None = None  # when the PLC confirmed the pending verdict
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="plc-heartbeat", daemon=True)
        self._heartbeat.start()

    # -- protocol hooks ------------------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Open the port (raise PortError when it cannot be opened)."""

    @abstractmethod
    def _close(self) -> None:
        """Release the port; must not raise."""

    @abstractmethod
    def _is_open(self) -> bool: ...

    @abstractmethod
    def _encode(self, verdict: PlcVerdict) -> Message:
        """What each attempt sends for this verdict; ValueError when the protocol cannot carry it."""

    @abstractmethod
    def _send(self, message: Message, until: float) -> None:
        """Write the verdict, giving up at ``until`` (time.time()). Raises PortError or AttemptError."""

    @abstractmethod
    def _await_confirmation(self, until: float) -> None:
        """Wait until ``until`` (time.time()) at most for the PLC to confirm the pending verdict, setting
        ``self._confirmed_ts`` when it does. Raises PortError."""

    @abstractmethod
    def _beat(self) -> bool:
        """Send one heartbeat; False when the protocol has none configured. Raises PortError."""

    # -- the shared loop -----------------------------------------------------------------------------

    def deliver(self, verdict: PlcVerdict) -> Delivery:
        with self._deliver_lock:
            try:
                delivery = self._deliver(verdict)
            except Exception as exc:  # a bug here must cost this part (rejected by the PLC), not the station
                log.exception("part %s: delivery crashed", verdict.part_id)
                delivery = Delivery("failed", 0, detail=f"internal error: {exc!r}")
            finally:
                with self._port_lock:
                    self._pending = None
                    self._confirmed_ts = None
        self._count(delivery.outcome)
        if delivery.outcome != "acked":
            log.warning(
                "part %s: %s verdict %s after %d attempt(s) (%s); the PLC rejects the part",
                verdict.part_id,
                "ACCEPT" if verdict.accept else "REJECT",
                "acknowledged late" if delivery.outcome == "late" else "not delivered",
                delivery.attempts,
                delivery.detail,
            )
        return delivery

    def _deliver(self, verdict: PlcVerdict) -> Delivery:
        start = time.time()
        deadline = verdict.deadline_ts
        if deadline is None:
            deadline = start + self.config.default_deadline_s
        give_up = max(deadline, start + self.config.ack_timeout_s)
        try:
            message = self._encode(verdict)
        except ValueError as exc:
            self._count("invalid")
            return Delivery("failed", 0, detail=f"not sent: {exc}")
        with self._port_lock:
            self._pending = message
        attempts = 0
        sent_ts: float | None = None
        detail = "no acknowledgement"
        while True:
            with self._port_lock:
                if self._confirmed_ts is not None:  # checked first: a heartbeat may have read it meanwhile
                    outcome = "acked" if self._confirmed_ts <= deadline else "late"
                    return Delivery(outcome, attempts, sent_ts, self._confirmed_ts)
                now = time.time()
                if now >= give_up:
                    return Delivery("failed", attempts, sent_ts, detail=detail)
                if self._stop.is_set():
                    return Delivery("failed", attempts, sent_ts, detail="link closed")
                if not self._ensure_open():
                    detail = f"port down: {self._last_port_error}"
                    wait_s = min(self._backoff.ready_at - time.monotonic(), give_up - now)
                    self._port_lock.wait(max(0.0, wait_s))
                    continue
                until = min(now + self.config.ack_timeout_s, give_up)
                attempts += 1
                self._count("attempts")
                if attempts > 1:
                    self._count("retries")
                try:
                    self._send(message, until)
                    sent_ts = sent_ts or now
                    self._await_confirmation(until)
                except PortError as exc:
                    self._drop(exc)
                    detail = f"port error: {exc}"
                except AttemptError as exc:
                    detail = str(exc)
                    self._port_lock.wait(max(0.0, until - time.time()))  # pace retries at ack_timeout_s

    def _ensure_open(self) -> bool:
        if self._is_open():
            return True
        if time.monotonic() < self._backoff.ready_at:
            return False
        try:
            self._open()
        except PortError as exc:
            self._close()
            self._backoff.failed()
            if str(exc) != self._last_port_error:
                log.warning("PLC port %s: cannot open: %s (retrying with backoff)", self.config.port, exc)
            self._last_port_error = str(exc)
            return False
        if self._connected_before:
            self._count("reconnects")
            down_s = time.monotonic() - self._outage_since if self._outage_since is not None else 0.0
            log.warning("PLC port %s: reconnected after %.2f s", self.config.port, down_s)
        self._connected_before = True
        self._outage_since = None
        self._backoff.reset()
        self._port_lock.notify_all()
        return True

    def _drop(self, exc: Exception) -> None:
        log.warning("PLC port %s: %s; closing and reconnecting", self.config.port, exc)
        self._count("port_errors")
        self._last_port_error = str(exc)
        self._outage_since = self._outage_since or time.monotonic()
        self._close()
        self._backoff.failed()

    def _heartbeat_loop(self) -> None:
        next_beat = time.monotonic()
        while not self._stop.wait(max(0.0, next_beat - time.monotonic())):
            next_beat = max(next_beat + self.config.heartbeat_s, time.monotonic())
            with self._port_lock:
                if self._stop.is_set() or not self._ensure_open():
                    continue
                try:
                    if self._beat():
                        self._count("heartbeats")
                except PortError as exc:
                    self._drop(exc)
                except AttemptError as exc:
                    self._count("heartbeat_errors")
                    log.debug("PLC heartbeat: %s", exc)
                except Exception:  # the heartbeat thread must outlive any bug in one beat
                    log.exception("PLC heartbeat failed")

    def _count(self, name: str) -> None:
        self._counters[name] += 1

    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def close(self) -> None:
        self._stop.set()
        self._heartbeat.join(timeout=self.config.ack_timeout_s + self.config.write_timeout_s + 1.0)
        with self._port_lock:
            self._close()
