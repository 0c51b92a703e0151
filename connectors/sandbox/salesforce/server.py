"""HTTP plumbing of the peer: requests and responses as route handlers see them, the
faults a test sets, routes, the threaded TLS server and its handler, and the
certificates (`trustme`, made once per process)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import random
import re
import socket
import ssl
import sys
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from connectors.sandbox.http import Request, read_request
from connectors.sandbox.salesforce.wire import PeerFault, json_text


@dataclass(frozen=True)
class PeerRequest(Request):
    """A request as a route handler sees it: the HTTP request, the match of the route's
    pattern and the API version it names (`59.0`, blank outside `/services/data/`)."""

    version: str = ""
    match: re.Match[str] | None = None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise PeerFault(400, "JSON_PARSER_ERROR", "Unexpected character in the body") from None


@dataclass
class PeerResponse:
    """What a route handler answers; `body=None` for 204."""

    status: int = 200
    body: bytes | None = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> PeerResponse:
        return cls(status, json_text(value).encode())


@dataclass
class PeerFaults:
    """Faults the peer plays, set by a test (thread-safe through the peer's lock)."""

    expired_session: bool = False
    unavailable_calls: int = 0  # the next N calls answer 503 SERVER_UNAVAILABLE
    slow_calls: int = 0  # the next N calls answer after `slow_seconds`
    slow_seconds: float = 0.0
    path_prefix: str = "/"  # the 503, slow and transient faults only hit paths starting so
    # each call fails at random with this probability, as one of `transient_kinds`: "503",
    # "500", "429" and "403" (REQUEST_LIMIT_EXCEEDED) answer at once without doing anything;
    # "stall" does the work, then holds the answer `stall_seconds` (past the client's timeout:
    # the write happened, the client never hears of it)
    transient_rate: float = 0.0
    transient_kinds: tuple[str, ...] = ("503", "500", "429", "403", "stall")
    stall_seconds: float = 2.0
    rng: random.Random = field(default_factory=lambda: random.Random(20260101))
    injected: Counter[str] = field(default_factory=Counter)  # transient faults played, by kind


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[PeerRequest], PeerResponse]
    public: bool = False


DATA_PATH = r"/services/data/v(?P<version>\d+\.\d)/"


class ServedPeer(Protocol):
    """What the TLS server needs of the peer it serves (`SalesforcePeer`)."""

    errors: list[str]

    def _register(self, connection: Any) -> bool: ...

    def _unregister(self, connection: Any) -> None: ...

    def _dispatch(self, request: PeerRequest) -> PeerResponse: ...

    def _limit_info(self) -> str: ...


class PeerServer(ThreadingHTTPServer):
    # handler threads are tracked (socketserver only tracks non-daemon ones) and joined by
    # server_close(); stop() first shuts their sockets down so none of them lingers
    daemon_threads = False
    block_on_close = True

    def __init__(self, peer: ServedPeer, context: ssl.SSLContext, port: int = 0) -> None:
        self.peer = peer
        self.context = context
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop.
        # stop() shuts connections down through a duplicate of the socket: shutdown() acts on
        # the connection itself, and the TLS object of another thread is never touched.
        handle = request.dup()
        try:
            if not self.peer._register(handle):
                return
            request.settimeout(10)
            # answers leave at once: small writes would otherwise wait on Nagle's algorithm
            # and the client's delayed ACK (40 ms per call)
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                connection = self.context.wrap_socket(request, server_side=True)
            except OSError:  # a client that does not trust the certificate, or went away
                return
            try:
                self.RequestHandlerClass(connection, client_address, self)
            except OSError:
                pass  # the client went away, or the peer is stopping
            finally:
                with contextlib.suppress(OSError):
                    connection.close()
        finally:
            self.peer._unregister(handle)
            handle.close()
            request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.peer.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body in as few TLS records as possible
    timeout = 30  # an idle keep-alive connection is dropped after this (stop() is faster)
    server: PeerServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        received = read_request(self)
        request = PeerRequest(
            received.method, received.path, received.query, received.headers, received.body
        )
        response = self.server.peer._dispatch(request)
        self.send_response(response.status)
        headers = {
            "Sforce-Limit-Info": self.server.peer._limit_info(),
            **response.headers,
        }
        payload = response.body
        if payload is not None:
            if "gzip" in request.headers.get(
                "accept-encoding", ""
            ) and response.content_type.startswith("text/csv"):
                payload = gzip.compress(payload, mtime=0)
                headers["Content-Encoding"] = "gzip"
            headers["Content-Type"] = response.content_type
            headers["Content-Length"] = str(len(payload))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


@functools.cache
def peer_certificates() -> tuple[Any, Any]:
    """A CA and its certificate for 127.0.0.1/localhost, made once per process (key
    generation is the slow part of starting a peer)."""
    try:
        import trustme
    except ModuleNotFoundError:  # a dev dependency: the peer is for demos and tests
        raise RuntimeError(
            "the local Salesforce peer needs trustme — pip install trustme"
        ) from None
    authority = trustme.CA(organization_name="Datafix Hub local Salesforce peer")
    return authority, authority.issue_cert("127.0.0.1", "localhost")
