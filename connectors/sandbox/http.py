"""A small threaded HTTP server for the local peers, and the SOAP pieces the peers share.

`LocalHttpServer` listens on 127.0.0.1 on a port the system picks (or a fixed `port`), answers
each request from a plain function (`Request` → `Reply`) in its own thread, counts connections
and requests, and stops cleanly: `stop()` wakes any reply that is still sleeping (the "slow"
fault), closes the listening socket and joins every thread it started, so a test leaves no
thread or port behind.

```python
with LocalHttpServer(lambda request: Reply(body=b"ok")) as server:
    requests.get(server.url)
```

The rest serves the SOAP peers (`soap_erp.py`, `sage_x3.py`): a hardened parser for incoming
envelopes, SOAP 1.1 fault replies, a per-peer `FaultPlan` ("the next N calls fail this way"),
and `hostile_xml`, which turns a well-formed answer into one carrying a DTD: a billion-laughs
entity bomb, an external entity naming a local file or a URL, an external parameter entity or
an external DTD. Clients must refuse those without reading the file or contacting the URL.
No dagster import: this is a plain connector helper.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from lxml import etree

__all__ = [
    "HOSTILE_MODES",
    "SOAP_ENV",
    "FaultPlan",
    "LocalHttpServer",
    "Reply",
    "Request",
    "Served",
    "ServedInThread",
    "hostile_xml",
    "parse_soap_body",
    "read_request",
    "serve_until_interrupted",
    "soap_fault_reply",
]

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


@dataclass(frozen=True)
class Request:
    """One HTTP request as the app sees it (header names lower-cased)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    """What the app answers; `delay` seconds are slept first (woken early by `stop()`)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/xml; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


App = Callable[[Request], Reply]


def read_request(handler: BaseHTTPRequestHandler) -> Request:
    """What `handler` received: its body (by Content-Length), path and parsed query, and its
    headers with lower-cased names."""
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length else b""
    parts = urlsplit(handler.path)
    return Request(
        method=handler.command,
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers={name.lower(): value for name, value in handler.headers.items()},
        body=body,
    )


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no handler thread waits on an idle keep-alive
    protocol_version = "HTTP/1.0"
    timeout = 10  # a client that connects and sends nothing cannot hold stop() for long
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests and the demo stay quiet

    def _serve(self) -> None:
        owner = self.server.owner
        request = read_request(self)
        owner._count_request()
        try:
            reply = owner.app(request)
        except Exception as error:  # a bug in a peer must show, not hang the client
            reply = Reply(
                status=500,
                body=f"sandbox peer error: {error!r}".encode(),
                content_type="text/plain; charset=utf-8",
            )
        if reply.delay and owner.sleep(reply.delay):
            return  # stopping: drop the connection without answering
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout), as a slow peer expects

    do_GET = do_POST = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # joined by server_close(): nothing outlives stop()
    block_on_close = True
    allow_reuse_address = False

    def __init__(self, owner: LocalHttpServer, port: int) -> None:
        self.owner = owner
        # a fixed port (the sandbox's) must bind again at once after a stop, despite the
        # TIME_WAIT of its last connections; a port the system picks needs no such option
        self.allow_reuse_address = port != 0
        super().__init__(("127.0.0.1", port), _Handler)

    def verify_request(self, request: object, client_address: object) -> bool:
        self.owner._count_connection()
        return True


class Served:
    """A peer or server used as `with peer:`: started for the block, stopped after (a subclass
    writes `start` and `stop`)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ServedInThread(Served):
    """A socket server served by a thread of its own, `<name>-<port>`. `start` binds it (a
    subclass's `_bind`, on `requested_port`) and serves it; `stop` sets `_stopping` (waking
    the replies that sleep on it), ends the serve loop, runs `_before_close` (e.g. shut open
    connections down), closes the socket (joining the request threads when the server's
    `block_on_close`) and joins the loop's thread. Starting a started one, or stopping a
    stopped one, does nothing. A subclass's `__init__` sets the attributes below."""

    name: str
    requested_port: int
    poll_interval: float = 0.02
    _stopping: threading.Event
    _server: BaseServer | None
    _thread: threading.Thread | None

    def _bind(self) -> BaseServer:
        raise NotImplementedError

    def _before_close(self) -> None:
        """Run once the serve loop has ended, before the socket closes."""

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._server.server_address[1])

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = self._bind()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=f"{self.name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        self._before_close()
        server.server_close()  # joins the request threads (block_on_close)
        if thread is not None:
            thread.join()
        self._server = self._thread = None


def serve_until_interrupted(banner: str) -> None:
    """A peer's `python -m` entry point, once the peer is started: print `banner` (how to
    reach it) and block until Ctrl-C while the peer serves in its own threads."""
    sys.stdout.write(banner)
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


class LocalHttpServer(ServedInThread):
    """An HTTP server on 127.0.0.1:<port> answering from `app`, in threads; `port=0` (the
    default) lets the system pick a free one.

    Attributes:
        url: `http://127.0.0.1:<port>` once started.
        connections: TCP connections accepted so far (a contacted-or-not probe).
        requests: HTTP requests read so far.
    """

    def __init__(self, app: App, *, name: str = "sandbox-http", port: int = 0) -> None:
        self.app = app
        self.name = name
        self.requested_port = port
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when woken because the server is stopping."""
        return self._stopping.wait(seconds)

    def _bind(self) -> _Server:
        return _Server(self, self.requested_port)


# --------------------------------------------------------------------------------------------
# Fault plans


class FaultPlan:
    """The fault the next calls meet: a mode for every call, or for the next `times` calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.mode: str | None = None
        self.remaining: int | None = None

    def set(self, mode: str | None, *, times: int | None = None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every call)")
        with self._lock:
            self.mode, self.remaining = mode, times

    def take(self) -> str | None:
        """The mode for this call (None: answer normally), counting down `times`."""
        with self._lock:
            mode = self.mode
            if mode is not None and self.remaining is not None:
                self.remaining -= 1
                if self.remaining <= 0:
                    self.mode, self.remaining = None, None
            return mode


# --------------------------------------------------------------------------------------------
# SOAP pieces

# what a peer's own parser accepts: no DTD loading, no entity expansion, no network
_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


def parse_soap_body(body: bytes) -> etree._Element:
    """The first element inside `soap:Body` of an incoming SOAP 1.1 envelope.

    Raises ValueError for anything else (not XML, a DTD, no envelope, an empty body).
    """
    try:
        root = etree.fromstring(body, parser=_SAFE_PARSER)
    except etree.XMLSyntaxError as error:
        raise ValueError(f"the request is not XML ({error.msg})") from None
    if root.getroottree().docinfo.doctype:
        raise ValueError("the request carries a DTD")
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise ValueError(f"the request root is {root.tag}, not a SOAP 1.1 Envelope")
    found = root.find(f"{{{SOAP_ENV}}}Body")
    if found is None or len(found) == 0:
        raise ValueError("the request has no SOAP Body content")
    return found[0]


def soap_fault_reply(code: str, message: str, *, status: int = 500) -> Reply:
    """A SOAP 1.1 fault (`soap:<code>`), sent with HTTP 500 as SOAP 1.1 prescribes."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
        f"<faultcode>soap:{escape(code)}</faultcode>"
        f"<faultstring>{escape(message)}</faultstring>"
        "</soap:Fault></soap:Body></soap:Envelope>"
    )
    return Reply(status=status, body=body.encode())


HOSTILE_MODES = frozenset(
    {"dtd_billion_laughs", "xxe_file", "xxe_http", "xxe_parameter", "external_dtd"}
)

_FIRST_TEXT = re.compile(rb">([^<\s][^<]*)<")


def hostile_xml(document: bytes, mode: str, *, file_path: str = "", url: str = "") -> bytes:
    """`document` with a DTD inserted after its XML declaration, the attack `mode` names:

    - `dtd_billion_laughs`: nested internal entities (10^9 "lol"s), referenced in the first text;
    - `xxe_file`: an external entity `SYSTEM "file://<file_path>"`, referenced in the first text;
    - `xxe_http`: an external entity `SYSTEM "<url>/xxe"`, referenced in the first text;
    - `xxe_parameter`: an external parameter entity `SYSTEM "<url>/parameter.dtd"`, expanded in
      the DTD itself;
    - `external_dtd`: `<!DOCTYPE … SYSTEM "<url>/external.dtd">`.
    """
    root_name = b"soap:Envelope"
    reference = b""
    if mode == "dtd_billion_laughs":
        entities = [b'<!ENTITY lol0 "lol">'] + [
            b'<!ENTITY lol%d "%s">' % (level, b"".join([b"&lol%d;" % (level - 1)] * 10))
            for level in range(1, 10)
        ]
        doctype = b"<!DOCTYPE %s [%s]>" % (root_name, b"".join(entities))
        reference = b"&lol9;"
    elif mode == "xxe_file":
        doctype = b'<!DOCTYPE %s [<!ENTITY xxe SYSTEM "file://%s">]>' % (
            root_name,
            file_path.encode(),
        )
        reference = b"&xxe;"
    elif mode == "xxe_http":
        doctype = b'<!DOCTYPE %s [<!ENTITY xxe SYSTEM "%s/xxe">]>' % (root_name, url.encode())
        reference = b"&xxe;"
    elif mode == "xxe_parameter":
        doctype = b'<!DOCTYPE %s [<!ENTITY %% remote SYSTEM "%s/parameter.dtd"> %%remote;]>' % (
            root_name,
            url.encode(),
        )
    elif mode == "external_dtd":
        doctype = b'<!DOCTYPE %s SYSTEM "%s/external.dtd">' % (root_name, url.encode())
    else:
        raise ValueError(f"unknown hostile mode {mode!r} (one of {sorted(HOSTILE_MODES)})")
    start = document.index(b"?>") + 2 if document.startswith(b"<?xml") else 0
    body = document[start:]
    if reference:
        body = _FIRST_TEXT.sub(lambda match: b">" + reference + match.group(1) + b"<", body, 1)
    return document[:start] + doctype + body
