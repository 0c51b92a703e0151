"""What the local SOAP peers (`soap_erp.py`, `sage_x3.py`) share: one base class, `SoapPeer`.

A peer serves its static WSDL at `/wsdl` (or `?wsdl`), its `soap:address` rewritten to the
peer's own endpoint, and answers SOAP 1.1 calls POSTed to that endpoint. The base does the
HTTP side the same way for every peer: it counts WSDL requests and operation calls, refuses a
wrong path (404) or an unreadable envelope (a SOAP fault), takes the fault mode planned for
the call (`set_fault`), and turns the answer the peer writes into what goes on the wire:

- a mode in `http_faults` is answered by that reply without looking at the call;
- `malformed_xml`: the answer cut in half;
- a mode of `connectors.sandbox.http.HOSTILE_MODES`: the answer carrying that DTD attack,
  aimed at `secret_file` and `canary_url`;
- `slow`: the answer after `slow_seconds` (woken early by `stop()`).

Apart from the fault modes, `cut_connections(times)` cuts the next `times` operation calls in
the middle of their answer (a chunked answer whose first chunk never arrives whole, then the
connection closes): what a client sees of a connection reset while the answer travels.

A peer names its WSDL, endpoint and fault modes in class attributes and writes `_answer`
(the operation's envelope, or a `Reply` such as a SOAP fault to send as it is); it may refuse a
request before its envelope is read (`_refusal`, e.g. HTTP authentication).
No dagster import: a plain connector helper.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar, Self

from lxml import etree

from connectors.sandbox.http import (
    HOSTILE_MODES,
    FaultPlan,
    LocalHttpServer,
    Reply,
    Request,
    Served,
    hostile_xml,
    parse_soap_body,
    soap_fault_reply,
)

__all__ = ["PushFaultHooks", "SoapAddresses", "SoapPeer", "TransientFaults"]

# a chunk announced 4096 bytes long, then the connection closes (HTTP/1.0) after a few of them
_CUT_REPLY = Reply(
    200,
    b'1000\r\n<?xml version="1.0" encoding="utf-8"?><soap:Envelope',
    "text/xml; charset=utf-8",
    {"Transfer-Encoding": "chunked"},
)


class SoapAddresses(Served):
    """Where a SOAP peer answers, from its base `url` (a subclass gives it and `endpoint_path`):
    the WSDL at `wsdl_url`, its soap:address pointing at `soap_url`. Shared by the Python peers
    and the Node.js one (`connectors.sandbox.erp_node`)."""

    endpoint_path: ClassVar[str]

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}/wsdl"

    @property
    def soap_url(self) -> str:
        return f"{self.url}{self.endpoint_path}"


class SoapPeer(SoapAddresses):
    """A SOAP service on 127.0.0.1:`port` (0: one the system picks) answered by `_answer` (see
    the module docstring).

    Counters: `calls` (operation calls, faulted or not), `calls_by_operation`,
    `wsdl_requests`.
    """

    wsdl_path: ClassVar[Path]
    # the `soap:address` written in the WSDL file, replaced by the peer's own endpoint
    placeholder_address: ClassVar[str]
    endpoint_path: ClassVar[str]
    fault_modes: ClassVar[frozenset[str]]
    # fault modes answered by a fixed HTTP reply, before the call is looked at
    http_faults: ClassVar[Mapping[str, Reply]] = {}
    # the fault code of the answer to an envelope that cannot be read
    envelope_fault_code: ClassVar[str] = "Client"

    def __init__(
        self,
        *,
        name: str,
        slow_seconds: float,
        secret_file: str | Path,
        canary_url: str,
        port: int = 0,
    ) -> None:
        self.slow_seconds = slow_seconds
        self.secret_file = str(secret_file)
        self.canary_url = canary_url.rstrip("/")
        self.faults = FaultPlan()
        self.calls = 0
        self.calls_by_operation: Counter[str] = Counter()
        self.wsdl_requests = 0
        self._cuts = 0
        self._lock = threading.Lock()
        self._server = LocalHttpServer(self._app, name=name, port=port)

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        return self._server.url

    def set_fault(self, mode: str | None, *, times: int | None = None) -> None:
        """Answer operation calls with `mode` (every call, or only the next `times`); None:
        normally."""
        if mode is not None and mode not in self.fault_modes:
            raise ValueError(f"unknown fault mode {mode!r} (one of {sorted(self.fault_modes)})")
        self.faults.set(mode, times=times)

    def clear_fault(self) -> None:
        self.faults.set(None)

    def cut_connections(self, times: int) -> None:
        """Cut the next `times` operation calls in the middle of their answer (0: none)."""
        if times < 0:
            raise ValueError("times must not be negative")
        with self._lock:
            self._cuts = times

    def wsdl_text(self) -> str:
        text = self.wsdl_path.read_text(encoding="utf-8")
        return text.replace(self.placeholder_address, self.soap_url)

    # what a peer writes ------------------------------------------------------------------
    def _refusal(self, request: Request) -> Reply | None:
        """A reply refusing `request` before its envelope is read; None to go on."""
        return None

    def _answer(self, operation: str, body: etree._Element, mode: str | None) -> bytes | Reply:
        """The answer to `operation` (`body`: the element inside `soap:Body`) under fault
        `mode`: the response envelope, or a `Reply` sent as it is."""
        raise NotImplementedError

    def _hostile(self, document: bytes, mode: str) -> bytes:
        """`document` carrying the DTD attack `mode`, aimed at this peer's bait."""
        return hostile_xml(document, mode, file_path=self.secret_file, url=self.canary_url)

    # HTTP --------------------------------------------------------------------------------
    def _app(self, request: Request) -> Reply:
        if request.method == "GET" and (request.path == "/wsdl" or "wsdl" in request.query):
            with self._lock:
                self.wsdl_requests += 1
            return Reply(body=self.wsdl_text().encode())
        if request.method != "POST" or request.path != self.endpoint_path:
            return Reply(status=404, body=b"not found", content_type="text/plain")
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = parse_soap_body(request.body)
        except ValueError as error:
            return soap_fault_reply(self.envelope_fault_code, str(error))
        operation = etree.QName(body).localname
        with self._lock:
            self.calls += 1
            self.calls_by_operation[operation] += 1
            cut, self._cuts = self._cuts > 0, max(0, self._cuts - 1)
        if cut:
            return _CUT_REPLY
        mode = self.faults.take()
        if mode is not None and mode in self.http_faults:
            return self.http_faults[mode]
        answer = self._answer(operation, body, mode)
        if isinstance(answer, Reply):
            return answer
        if mode == "malformed_xml":
            return Reply(body=answer[: len(answer) // 2])
        if mode in HOSTILE_MODES:
            return Reply(body=self._hostile(answer, mode))
        return Reply(body=answer, delay=self.slow_seconds if mode == "slow" else 0.0)


class TransientFaults:
    """A seeded share (`rate`, 0 to 1) of calls that fail transiently, each with one of `modes`
    drawn at random; `counts` says how many of each were drawn."""

    def __init__(self, modes: Iterable[str], *, seed: int = 0) -> None:
        self.modes = tuple(modes)
        self.rate = 0.0
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        """The transient mode of this call, or None (answer normally)."""
        with self._lock:
            if self.rate <= 0 or self._random.random() >= self.rate:
                return None
            mode = self._random.choice(self.modes)
            self.counts[mode] += 1
            return mode


class PushFaultHooks:
    """Test hooks of the peers' write operations, shared by the ERP and Sage X3 peers: a seeded
    share of transient faults (`transient_rate`, drawn by `self.transient`) and references the
    peer refuses for good (`poison` / `cure`, held in `self.poisoned` under `self._store_lock`).
    """

    transient: TransientFaults
    poisoned: dict[str, str]
    _store_lock: threading.Lock
    slow_seconds: float

    def _stalled(self, operation: str, body: etree._Element) -> Reply:
        """The transient `slow` fault: the call is processed, then its answer stalls
        `slow_seconds`, past the client's timeout (the write happened; the client never hears
        of it). `_answer` is the peer's own (`SoapPeer._answer`)."""
        answer = self._answer(operation, body, "processed")  # type: ignore[attr-defined]
        if isinstance(answer, Reply):
            return answer
        return Reply(body=answer, delay=self.slow_seconds)

    @property
    def transient_rate(self) -> float:
        return self.transient.rate

    @transient_rate.setter
    def transient_rate(self, rate: float) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"transient_rate must be between 0 and 1 (got {rate})")
        self.transient.rate = rate

    @property
    def transient_faults(self) -> Counter[str]:
        """How many transient faults of each mode were played."""
        return self.transient.counts

    def poison(self, reference: str, message: str) -> None:
        """Refuse every write of `reference` with `message`, until `cure`."""
        with self._store_lock:
            self.poisoned[reference] = message

    def cure(self, reference: str) -> None:
        """Accept `reference` again."""
        with self._store_lock:
            self.poisoned.pop(reference, None)
