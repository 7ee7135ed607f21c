"""Stands in for Tempo's OTLP/HTTP receiver: every export to :4318/v1/traces is kept, as sent.

Each request body (gunzipped) becomes one file under /var/tempo/otlp/ (Tempo's volume), so a test
can decode the spans with opentelemetry-proto on its own side. Standard library only.
"""

import gzip
import itertools
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUT = os.environ.get("OTLP_SINK_DIR", "/var/tempo/otlp")
COUNTER = itertools.count()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path.rstrip("/") == "/v1/traces":
            name = os.path.join(OUT, f"{os.getpid()}-{next(COUNTER):08d}.pb")
            with open(name + ".tmp", "wb") as f:
                f.write(body)
            os.replace(name + ".tmp", name)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    print(f"OTLP/HTTP sink on :4318, writing to {OUT} (args ignored: {sys.argv[1:]})", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 4318), Handler).serve_forever()
