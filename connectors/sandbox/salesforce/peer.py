"""`SalesforcePeer`: the org on 127.0.0.1 over HTTPS, its life cycle, test helpers,
dispatch (faults, authentication, call counting) and route table; the APIs themselves
are its mixins (`rest.py`, `writes.py`, `bulk.py`)."""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import socket
import ssl
import tempfile
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from connectors.sandbox.http import ServedInThread, serve_until_interrupted
from connectors.sandbox.salesforce.bulk import BulkApi, IngestJob, QueryJob
from connectors.sandbox.salesforce.rest import Cursor, RestApi
from connectors.sandbox.salesforce.schema import salesforce_id
from connectors.sandbox.salesforce.seed import field_service_store
from connectors.sandbox.salesforce.server import (
    DATA_PATH,
    PeerFaults,
    PeerRequest,
    PeerResponse,
    PeerServer,
    Route,
    peer_certificates,
)
from connectors.sandbox.salesforce.store import SalesforceStore
from connectors.sandbox.salesforce.wire import PeerFault, Poison
from connectors.sandbox.salesforce.writes import SObjectWrites

DEFAULT_SESSION_ID = "00D5E0000000001!AQ4AQLocalPeerSessionForTestsOnly"


class SalesforcePeer(RestApi, SObjectWrites, BulkApi, ServedInThread):
    """A Salesforce org on 127.0.0.1 over HTTPS; use as a context manager (or start/stop).

    `page_size` is the REST page size (Salesforce: 2,000), `bulk_page_size` the most rows per
    Bulk results page whatever `maxRecords` asks, `api_limit` the daily allocation, `port`
    the port to listen on (0: one the system picks).
    """

    def __init__(
        self,
        store: SalesforceStore | None = None,
        *,
        page_size: int = 2000,
        bulk_page_size: int = 50_000,
        session_id: str = DEFAULT_SESSION_ID,
        api_limit: int = 15_000,
        bulk_polls_in_progress: int = 1,
        port: int = 0,
    ) -> None:
        if page_size < 1 or bulk_page_size < 1:
            raise ValueError("page sizes must be at least 1")
        self.store = store if store is not None else field_service_store()
        self.page_size = page_size
        self.bulk_page_size = bulk_page_size
        self.session_id = session_id
        self.api_limit = api_limit
        self.api_used = 0
        self.bulk_polls_in_progress = bulk_polls_in_progress
        self.requested_port = port
        self.faults = PeerFaults()
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, str, int]] = []  # method, path with query, status
        self.errors: list[str] = []  # unexpected exceptions inside the peer (tests assert [])
        self.lock = threading.RLock()
        self._routes: list[Route] = []
        self._cursors: dict[str, Cursor] = {}
        self._jobs: dict[str, QueryJob] = {}
        self._ingest_jobs: dict[str, IngestJob] = {}
        self.poisons: list[Poison] = []
        self._numbers = itertools.count(1)
        self._connections: set[Any] = set()
        self._stopping = threading.Event()
        self._server: PeerServer | None = None
        self._thread: threading.Thread | None = None
        self._folder: Path | None = None
        self._add_default_routes()

    # -- life cycle (`ServedInThread`: start, stop)
    name = "salesforce-peer"
    poll_interval = 0.05

    def _bind(self) -> PeerServer:
        """The HTTPS server, its certificate signed by a CA written to a folder of its own."""
        authority, certificate = peer_certificates()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        self._folder = Path(tempfile.mkdtemp(prefix="salesforce-peer-"))
        authority.cert_pem.write_to_path(str(self._folder / "ca.pem"))
        try:
            return PeerServer(self, context, self.requested_port)
        except OSError:  # the port is taken: leave nothing behind
            self._remove_folder()
            raise

    def stop(self) -> None:
        """Stop serving, drop open connections, join every thread, remove the CA file."""
        super().stop()
        self._remove_folder()

    def _remove_folder(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _before_close(self) -> None:
        """Shut the open connections down: a client waiting on one is not left hanging."""
        with self.lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _register(self, connection: Any) -> bool:
        with self.lock:
            if self._stopping.is_set():
                return False
            self._connections.add(connection)
            return True

    def _unregister(self, connection: Any) -> None:
        with self.lock:
            self._connections.discard(connection)

    # -- addresses
    @property
    def instance_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> str:
        """The CA bundle (PEM) that signs the peer's certificate."""
        if self._folder is None:
            raise RuntimeError("the peer is not started")
        return str(self._folder / "ca.pem")

    def http_session(self) -> Any:
        """A `requests.Session` that trusts the peer (the caller closes it)."""
        import requests

        session = requests.Session()
        session.verify = self.ca_path
        # otherwise REQUESTS_CA_BUNDLE (or a proxy variable) from the environment would win
        session.trust_env = False
        return session

    def session_auth(self) -> Any:
        """`SalesforceAuth` for this peer (session id + instance URL)."""
        from connectors.salesforce.models import SalesforceAuth

        return SalesforceAuth(session_id=self.session_id, instance_url=self.instance_url)

    # -- test helpers
    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        """Calls received (any status) whose method and path match."""
        with self.lock:
            return sum(
                number
                for call, number in self.calls.items()
                if (method is None or call.split(" ", 1)[0] == method)
                and call.split(" ", 1)[1].startswith(path_prefix)
            )

    def exhaust_api_limit(self) -> None:
        with self.lock:
            self.api_used = self.api_limit

    def poison(
        self,
        object_name: str,
        field_name: str,
        match: Any,
        status_code: str = "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        message: str = "This record breaks a validation rule",
        *,
        times: int | None = None,
    ) -> None:
        """Refuse every write of a record of `object_name` whose `field_name` (as written)
        equals `match` (case-insensitive text) or satisfies `match(value)` when it is callable:
        that record gets a per-item error `status_code`/`message` (REST collections, single
        calls, Bulk `sf__Error`) while the others succeed. `times`: only that many refusals
        (e.g. a transient UNABLE_TO_LOCK_ROW); None: every time."""
        spec = self.store.spec(object_name)
        if spec is None or spec.field(field_name) is None:
            raise KeyError(f"no field {field_name} on {object_name}")
        with self.lock:
            self.poisons.append(
                Poison(spec.name, spec.field(field_name).name, match, status_code, message, times)  # type: ignore[union-attr]
            )

    def lock_rows(self, object_name: str, field_name: str, match: Any, *, times: int = 1) -> None:
        """The matching records are locked by another transaction for the next `times` writes:
        per-item `UNABLE_TO_LOCK_ROW`, as Salesforce answers under contention."""
        self.poison(
            object_name,
            field_name,
            match,
            "UNABLE_TO_LOCK_ROW",
            "unable to obtain exclusive access to this record or 1 records",
            times=times,
        )

    def ingest_jobs(self) -> list[dict[str, Any]]:
        """The Bulk API 2.0 ingest jobs created so far (their job info)."""
        with self.lock:
            return [job.info() for job in self._ingest_jobs.values()]

    def add_route(
        self,
        method: str,
        pattern: str,
        handler: Callable[[PeerRequest], PeerResponse],
        *,
        public: bool = False,
    ) -> None:
        """Serve `method` on paths matching `pattern`, a regex over the whole path (start it
        with `DATA_PATH` for `/services/data/vNN.N/`; the match is `request.match`, the version
        `request.version`). Calls are authenticated and counted unless `public`. Routes added
        later win over the defaults: this is where Bulk 2.0 ingest jobs or sObject writes go."""
        self._routes.insert(0, Route(method, re.compile(pattern), handler, public))

    def _limit_info(self) -> str:
        with self.lock:
            return f"api-usage={self.api_used}/{self.api_limit}"

    # -- dispatch
    def _dispatch(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            self.calls[f"{request.method} {request.path}"] += 1
            targeted = request.path.startswith(self.faults.path_prefix)
            slow = targeted and self.faults.slow_calls > 0
            if slow:
                self.faults.slow_calls -= 1
            unavailable = targeted and self.faults.unavailable_calls > 0
            if unavailable:
                self.faults.unavailable_calls -= 1
            transient = ""
            if (
                targeted
                and self.faults.transient_rate > 0
                and self.faults.rng.random() < self.faults.transient_rate
            ):
                transient = self.faults.rng.choice(self.faults.transient_kinds)
                self.faults.injected[transient] += 1
        if slow:
            self._stopping.wait(self.faults.slow_seconds)
        try:
            if unavailable or transient == "503":
                raise PeerFault(
                    503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry"
                )
            if transient == "500":
                raise PeerFault(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.")
            if transient == "429":
                raise PeerFault(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests, retry later")
            if transient == "403":
                raise PeerFault(
                    403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
                )
            response = self._route(request)
            if transient == "stall":
                self._stopping.wait(self.faults.stall_seconds)
        except PeerFault as fault:
            error: dict[str, Any] = {"message": fault.message, "errorCode": fault.code}
            if fault.fields is not None:
                error["fields"] = fault.fields
            response = PeerResponse.json([error])
            response.status = fault.status
        except Exception:
            self.errors.append(traceback.format_exc())
            response = PeerResponse.json(
                [{"message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"}]
            )
            response.status = 500
        query = "&".join(f"{k}={v}" for k, values in request.query.items() for v in values)
        with self.lock:
            self.log.append(
                (request.method, request.path + (f"?{query}" if query else ""), response.status)
            )
        return response

    def _route(self, request: PeerRequest) -> PeerResponse:
        allowed = []
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            request = replace(request, match=match, version=match.groupdict().get("version") or "")
            if request.version and not 20.0 <= float(request.version) <= 66.0:
                break
            if not route.public:
                self._authorise(request)
            return route.handler(request)
        if allowed:
            raise PeerFault(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are {','.join(allowed)}",
            )
        raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")

    def _authorise(self, request: PeerRequest) -> None:
        token = request.headers.get("authorization", "")
        scheme, _, value = token.partition(" ")
        with self.lock:
            if (
                self.faults.expired_session
                or scheme.lower() not in ("bearer", "oauth")
                or value != self.session_id
            ):
                raise PeerFault(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if self.api_used >= self.api_limit:
                raise PeerFault(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_used += 1

    def _next_id(self, prefix: str) -> str:
        return salesforce_id(prefix, next(self._numbers))

    # -- routes (the handlers are the mixins': rest.py, writes.py, bulk.py)
    def _add_default_routes(self) -> None:
        routes = (
            ("GET", r"/services/data/?", self._versions, True),
            ("GET", DATA_PATH + r"(?P<kind>query|queryAll)/?", self._query, False),
            ("GET", DATA_PATH + r"(?:query|queryAll)/(?P<cursor>[^/]+)/?", self._query_more, False),
            ("GET", DATA_PATH + r"sobjects/?", self._describe_global, False),
            ("GET", DATA_PATH + r"sobjects/(?P<object>\w+)/describe/?", self._describe, False),
            ("GET", DATA_PATH + r"limits/?", self._limits, False),
            *_job_routes(
                "query",
                self._create_query_job,
                self._query_job_info,
                self._query_job_state,
                self._query_job_delete,
            ),
            ("GET", DATA_PATH + r"jobs/query/(?P<job>\w+)/results/?", self._query_results, False),
            ("POST", DATA_PATH + r"sobjects/(?P<object>\w+)/?", self._create_one, False),
            (
                "PATCH",
                DATA_PATH + r"sobjects/(?P<object>\w+)/(?P<id>\w+)/?",
                self._update_one,
                False,
            ),
            (
                "PATCH",
                DATA_PATH + r"sobjects/(?P<object>\w+)/(?P<field>\w+)/(?P<value>[^/]+)/?",
                self._upsert_one,
                False,
            ),
            (
                "PATCH",
                DATA_PATH + r"composite/sobjects/(?P<object>\w+)/(?P<field>\w+)/?",
                self._upsert_collection,
                False,
            ),
            *_job_routes(
                "ingest",
                self._create_ingest_job,
                self._ingest_job_info,
                self._ingest_job_state,
                self._ingest_job_delete,
            ),
            ("PUT", DATA_PATH + r"jobs/ingest/(?P<job>\w+)/batches/?", self._ingest_upload, False),
            (
                "GET",
                DATA_PATH + r"jobs/ingest/(?P<job>\w+)/(?P<kind>successfulResults|failedResults"
                r"|unprocessedRecords)/?",
                self._ingest_results,
                False,
            ),
        )
        for method, pattern, handler, public in routes:
            self._routes.append(Route(method, re.compile(pattern), handler, public))


_Handler = Callable[[PeerRequest], PeerResponse]


def _job_routes(
    kind: str, create: _Handler, info: _Handler, state: _Handler, delete: _Handler
) -> tuple[tuple[str, str, _Handler, bool], ...]:
    """The life cycle Bulk 2.0 gives every job, under `jobs/<kind>/` (`query`, `ingest`):
    created (POST), read (GET), moved on (PATCH its state: UploadComplete, Aborted), deleted."""
    job = DATA_PATH + rf"jobs/{kind}/(?P<job>\w+)/?"
    return (
        ("POST", DATA_PATH + rf"jobs/{kind}/?", create, False),
        ("GET", job, info, False),
        ("PATCH", job, state, False),
        ("DELETE", job, delete, False),
    )


def main(argv: Iterable[str] | None = None) -> int:
    """Run the peer in the foreground for a demo: prints how to reach it, stops on Ctrl-C."""
    del argv
    with SalesforcePeer() as peer:
        serve_until_interrupted(
            f"Salesforce peer at {peer.instance_url}\nCA bundle: {peer.ca_path}\n"
            f"session id: {peer.session_id}\n"
        )
    return 0
