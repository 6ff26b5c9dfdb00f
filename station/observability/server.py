"""The station's small HTTP server: Prometheus ``/metrics``, the operator page and its JSON and images.

Standard library only (``ThreadingHTTPServer``): one thread per request, so a slow scraper or a stalled
browser costs its own thread and nothing else; handlers only read `StationMetrics` and `LiveState`, which
are safe to read while the daemon writes. Bound to 127.0.0.1 unless told otherwise: the page has no
authentication, so exposing it on the plant network is a deliberate choice.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from station.observability.live import LiveState
from station.observability.metrics import StationMetrics
from station.observability.page import PAGE_HTML

log = logging.getLogger(__name__)

DEFAULT_PORT = 9400
_IMAGE_PATH = re.compile(r"/api/image/(\d{1,18})")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not keep the station from exiting

    def __init__(self, address: tuple[str, int], metrics: StationMetrics, live: LiveState):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.metrics = metrics
        self.live = live

    def handle_error(self, request: object, client_address: tuple) -> None:
        """A browser tab closed mid-response is routine: log it quietly instead of a traceback on stderr."""
        log.debug("request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a client may stall mid-request before its thread is freed
    server_version = "indus-station"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(self.server.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/":
            self._send(PAGE_HTML.encode(), "text/html; charset=utf-8")
        elif path == "/api/state":
            self._send(json.dumps(self.server.live.state()).encode(), "application/json")
        elif (match := _IMAGE_PATH.fullmatch(path)) and (png := self.server.live.image_png(int(match[1]))):
            self._send(png, "image/png", cache="max-age=3600, immutable")  # ids are never reused
        else:
            self._send(b"not found\n", "text/plain; charset=utf-8", status=HTTPStatus.NOT_FOUND)

    def _send(
        self, body: bytes, content_type: str, *, status: HTTPStatus = HTTPStatus.OK, cache: str = "no-store"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ObservabilityServer:
    """Serves one station's metrics and live state on a background thread until `close`.

    ``port=0`` picks a free port (tests); the bound one is in ``port`` and ``url``.
    """

    def __init__(
        self,
        metrics: StationMetrics,
        live: LiveState,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
    ):
        self._httpd = _Server((host, port), metrics, live)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="observability-http"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("operator page and metrics at %s", self.url)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> ObservabilityServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
