"""An HTTP relay between SuperNodes and the SuperLink's Fleet API that can hold one request.

Races between a SuperNode and the SuperLink (a run stopped while a node is receiving
one of its messages) happen in a window of milliseconds; holding the node's request at
a chosen endpoint makes them happen every time. Requests are forwarded unchanged, one
upstream connection per request (127.0.0.1 only).
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FleetProxy:
    def __init__(self, upstream_port: int, hold_timeout: float = 60.0) -> None:
        self.upstream_port = upstream_port
        self.hold_timeout = hold_timeout
        self.paths: list[str] = []
        self._hold_path: str | None = None
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def hold_next(self, path: str) -> None:
        """The next request to `path` waits (after its body is read) until release()."""
        with self._lock:
            self._hold_path = path
            self.held.clear()
            self._release.clear()

    def release(self) -> None:
        self._release.set()

    def _should_hold(self, path: str) -> bool:
        with self._lock:
            self.paths.append(path)
            if path != self._hold_path:
                return False
            self._hold_path = None
            return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                if proxy._should_hold(self.path):
                    proxy.held.set()
                    proxy._release.wait(proxy.hold_timeout)
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        return Handler

    def __enter__(self) -> FleetProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
