"""A small HTTPS reverse proxy for the PACS tests: TLS with a self-signed certificate made on the spot, and bearer
token authentication in front of the Orthanc fixture (which knows only HTTP basic); GET requests only."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import requests

TOKEN = "test-bearer-token"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), valid one day."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class BearerProxy:
    """Forwards ``https://127.0.0.1:PORT/...`` to ``upstream`` with ``auth`` when the request carries
    ``Authorization: Bearer TOKEN``; 401 otherwise."""

    upstream: str
    auth: tuple[str, str]
    folder: Path
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"dicomweb+https://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def start(self) -> BearerProxy:
        upstream, auth = self.upstream, self.auth

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._answer(401, b"", "text/plain")
                    return
                keep = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "accept-encoding")}
                r = requests.get(upstream + self.path, headers=keep, auth=auth, timeout=30)
                self._answer(
                    r.status_code, r.content, r.headers.get("Content-Type", ""), r.headers.get("Content-Encoding")
                )

            def _answer(self, status: int, body: bytes, ctype: str, encoding: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        cert, key = self_signed(self.folder)
        self.cert = cert
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
