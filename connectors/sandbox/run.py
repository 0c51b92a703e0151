"""Every local peer at once, seeded with the demo data: the sandbox of `datafix sandbox`.

An integration engineer rehearses a web-service datafix offline against these peers; `datafix
demo` runs its two web-service landlords against them; `make ui` keeps them up for the UI.

- landlord ERP, SOAP (`soap_erp.py`), port 8711, `soap_erp.demo_seed()`; datafixes read
  `DATAFIX_SANDBOX_ERP_WSDL` (`http://127.0.0.1:8711/wsdl`);
- Sage X3, SOAP (`sage_x3.py`), port 8712, `sage_x3.demo_seed()`, pool `SEED`;
  `DATAFIX_SANDBOX_SAGE_WSDL` (`http://127.0.0.1:8712/wsdl`), `DATAFIX_SANDBOX_SAGE_POOL`;
- Salesforce, HTTPS (`salesforce.py`), port 8713, `salesforce.demo_store()`;
  `DATAFIX_SANDBOX_SF_INSTANCE_URL` (`https://127.0.0.1:8713`) and
  `DATAFIX_SANDBOX_SF_SESSION_ID` (the session id the peer accepts);
- works-order ERP, SOAP on Node.js (`erp_node.py`, node-soap: another SOAP stack), port 8714,
  its own seed; `DATAFIX_SANDBOX_TRAVAUX_WSDL` (`http://127.0.0.1:8714/wsdl`). It needs node and
  its npm packages (`make install`; installed on first start when missing).

Every peer listens on 127.0.0.1 only. `DATAFIX_SANDBOX_PORT` moves the four ports together
(base, base + 1, base + 2, base + 3). `sandbox_variables()` gives the `DATAFIX_SANDBOX_*` values
for the configured ports. The hub offers no defaults (no production module imports the sandbox):
`datafix demo` and `datafix sandbox` export them for what they run, `datafix sandbox --env`
prints them for a shell (`eval "$(datafix sandbox --env)"`), so a datafix writes
`wsdl: "${DATAFIX_SANDBOX_ERP_WSDL}"`; a test points it at peers on ports the system picked by
exporting `Sandbox.variables()`.

The Salesforce peer speaks real TLS with a CA made when its process starts; the sandbox writes
that CA to `$DATAFIX_HOME/sandbox/salesforce-ca.pem` (the demo datafix's `ca_bundle`).

The peers' seeds are dated relative to the demo day like the demo files
(`connectors.sandbox.demo_calendar`: `DATAFIX_DEMO_DAY`, else today in Paris). A reused peer
keeps the demo day it was started with.

`running_sandbox(home)` starts the peers for the block and stops them after, joining every
thread. A peer already answering on its port (another `datafix sandbox` process) is reused,
not started again and not stopped: the Salesforce peer hands its CA out at `/sandbox/ca.pem`
(fetched over loopback without verification, then verified: a sandbox has no secret to keep),
and the other peers are recognised by their WSDL. A port held by some other program is an
error that says which variable moves it. No dagster import: a plain connector helper.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import importlib.util
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from connectors.errors import ConfigError
from connectors.sandbox import erp_node, sage_x3, soap_erp
from connectors.sandbox.demo_calendar import DemoCalendar
from connectors.sandbox.salesforce import (
    DEFAULT_SESSION_ID,
    PeerRequest,
    PeerResponse,
    SalesforcePeer,
    demo_store,
)

__all__ = [
    "CA_BUNDLE",
    "DEFAULT_PORT",
    "HOST",
    "PORT_VARIABLE",
    "SAGE_POOL",
    "Sandbox",
    "SandboxError",
    "SandboxPeer",
    "SandboxPorts",
    "configured_ports",
    "running_sandbox",
    "sandbox_variables",
    "start_sandbox",
]

HOST = "127.0.0.1"
PORT_VARIABLE = "DATAFIX_SANDBOX_PORT"
DEFAULT_PORT = 8711
SAGE_POOL = "SEED"
# where the Salesforce peer's CA goes, under the hub's home
CA_BUNDLE = Path("sandbox") / "salesforce-ca.pem"
CA_ROUTE = "/sandbox/ca.pem"

ERP_WSDL = "DATAFIX_SANDBOX_ERP_WSDL"
SAGE_WSDL = "DATAFIX_SANDBOX_SAGE_WSDL"
SAGE_POOL_VARIABLE = "DATAFIX_SANDBOX_SAGE_POOL"
SF_INSTANCE_URL = "DATAFIX_SANDBOX_SF_INSTANCE_URL"
SF_SESSION_ID = "DATAFIX_SANDBOX_SF_SESSION_ID"
TRAVAUX_WSDL = "DATAFIX_SANDBOX_TRAVAUX_WSDL"

_PROBE_TIMEOUT = 5.0  # seconds: a peer on loopback answers in milliseconds


class SandboxError(ConfigError):
    """The sandbox cannot start: a port is taken by another program, or a variable is wrong."""


@dataclass(frozen=True)
class SandboxPorts:
    """The four peers' ports; 0 lets the system pick a free one (what tests use)."""

    erp: int
    sage_x3: int
    salesforce: int
    travaux: int

    @classmethod
    def from_base(cls, base: int) -> SandboxPorts:
        return cls(base, base + 1, base + 2, base + 3)

    @classmethod
    def ephemeral(cls) -> SandboxPorts:
        return cls(0, 0, 0, 0)


def base_port(environ: Mapping[str, str] | None = None) -> int:
    """`DATAFIX_SANDBOX_PORT` (the ERP's port; Sage X3, Salesforce, works-order ERP follow),
    default 8711;
    0: ports the system picks (`datafix sandbox` prints them), for parallel runs and tests."""
    environ = os.environ if environ is None else environ
    text = (environ.get(PORT_VARIABLE) or "").strip()
    if not text:
        return DEFAULT_PORT
    if not text.isdigit() or not (int(text) == 0 or 1024 <= int(text) <= 65532):
        raise SandboxError(
            f"{PORT_VARIABLE}={text!r} is not a port — give a number from 1024 to 65532 (the"
            " sandbox uses it and the next three), or 0 for ports the system picks"
        )
    return int(text)


def sandbox_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Default values of the `DATAFIX_SANDBOX_*` variables: the peers on the configured ports."""
    base = base_port(environ)
    ports = SandboxPorts.from_base(base) if base else SandboxPorts.ephemeral()
    return _variables(
        f"http://{HOST}:{ports.erp}",
        f"http://{HOST}:{ports.sage_x3}",
        _https(ports.salesforce),
        f"http://{HOST}:{ports.travaux}",
    )


def _variables(
    erp_url: str, sage_url: str, salesforce_url: str, travaux_url: str
) -> dict[str, str]:
    return {
        ERP_WSDL: f"{erp_url}/wsdl",
        SAGE_WSDL: f"{sage_url}/wsdl",
        SAGE_POOL_VARIABLE: SAGE_POOL,
        SF_INSTANCE_URL: salesforce_url,
        SF_SESSION_ID: DEFAULT_SESSION_ID,
        TRAVAUX_WSDL: f"{travaux_url}/wsdl",
    }


def configured_ports(environ: Mapping[str, str] | None = None) -> SandboxPorts:
    """The ports the datafixes point at: those of the `DATAFIX_SANDBOX_*` URLs (set, or their
    defaults). A URL that is not on this machine cannot be served by the sandbox: an error."""
    environ = os.environ if environ is None else environ
    values = {**sandbox_variables(environ), **environ}

    def port_of(name: str) -> int:
        parts = urlsplit(values[name])
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname not in (HOST, "localhost") or port is None:
            raise SandboxError(
                f"{name}={values[name]!r} is not a 127.0.0.1 address with a port: the sandbox"
                f" only serves this machine — unset {name} (or set {PORT_VARIABLE})"
            )
        return port

    return SandboxPorts(
        port_of(ERP_WSDL), port_of(SAGE_WSDL), port_of(SF_INSTANCE_URL), port_of(TRAVAUX_WSDL)
    )


@dataclass(frozen=True)
class SandboxPeer:
    """One peer of a running sandbox; `started` is False when another process serves it."""

    name: str
    url: str
    started: bool

    @property
    def wsdl_url(self) -> str:
        """Where a SOAP peer (the ERP, Sage X3, the works-order ERP) serves its WSDL."""
        return f"{self.url}/wsdl"


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class Sandbox:
    """The running peers (see the module docstring); `stop()` stops those this process started."""

    erp: SandboxPeer
    sage_x3: SandboxPeer
    salesforce: SandboxPeer
    travaux: SandboxPeer
    ca_bundle: Path
    _owned: list[_Stoppable] = field(repr=False)
    session_id: str = DEFAULT_SESSION_ID
    sage_pool: str = SAGE_POOL

    @property
    def peers(self) -> tuple[SandboxPeer, SandboxPeer, SandboxPeer, SandboxPeer]:
        return (self.erp, self.sage_x3, self.salesforce, self.travaux)

    @property
    def started_any(self) -> bool:
        return any(peer.started for peer in self.peers)

    def variables(self) -> dict[str, str]:
        """`DATAFIX_SANDBOX_*` values pointing datafixes at these peers (export them)."""
        return _variables(self.erp.url, self.sage_x3.url, self.salesforce.url, self.travaux.url)

    def stop(self) -> None:
        """Stop the peers this process started (in reverse order); idempotent."""
        while self._owned:
            self._owned.pop().stop()


def start_sandbox(
    home: Path, *, ports: SandboxPorts | None = None, calendar: DemoCalendar | None = None
) -> Sandbox:
    """Start (or reuse) the four peers and write the Salesforce CA under `home`.

    `ports` defaults to `configured_ports()`, `calendar` (the demo day the seeds are dated
    for) to `DemoCalendar.from_environment()`. Raises SandboxError when a port is held by a
    program that is not a sandbox peer; nothing is left running then.
    """
    ports = configured_ports() if ports is None else ports
    calendar = DemoCalendar.from_environment() if calendar is None else calendar
    owned: list[_Stoppable] = []
    try:
        erp, _ = _attach(
            "landlord ERP (SOAP)",
            ports.erp,
            lambda port: _ErpPeer(soap_erp.demo_seed(calendar), port=port),
            lambda port: _wsdl(port, soap_erp.NAMESPACE),
            owned,
        )
        sage, _ = _attach(
            "Sage X3 (SOAP)",
            ports.sage_x3,
            # writable: the demo pushes its sales invoices there (`save` / `modify` of SIH)
            lambda port: _SagePeer(
                sage_x3.demo_seed(calendar), pool_alias=SAGE_POOL, port=port, writable=True
            ),
            lambda port: _wsdl(port, sage_x3.ENDPOINT_PATH),
            owned,
        )
        salesforce, ca_pem = _attach(
            "Salesforce (HTTPS)",
            ports.salesforce,
            lambda port: _SalesforcePeer(port, calendar),
            _salesforce_ca,
            owned,
        )
        travaux, _ = _attach(
            "works-order ERP (Node)",
            ports.travaux,
            lambda port: _TravauxPeer(port=port, months=calendar.months),
            lambda port: _wsdl(port, erp_node.NAMESPACE),
            owned,
        )
        ca_bundle = Path(home) / CA_BUNDLE
        _write_if_changed(ca_bundle, ca_pem)
    except BaseException:
        for peer in reversed(owned):
            peer.stop()
        raise
    return Sandbox(erp, sage, salesforce, travaux, ca_bundle, owned)


@contextlib.contextmanager
def running_sandbox(
    home: Path, *, ports: SandboxPorts | None = None, calendar: DemoCalendar | None = None
) -> Iterator[Sandbox]:
    """The sandbox for the block (see `start_sandbox`); the peers started here stop after."""
    sandbox = start_sandbox(home, ports=ports, calendar=calendar)
    try:
        yield sandbox
    finally:
        sandbox.stop()


# --- Starting or recognising each peer ------------------------------------------------------


class _Peer(Protocol):
    """What `_attach` needs of a peer: start and stop, and what it tells about itself."""

    url: str

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def identity(self) -> str: ...


def _attach(
    name: str,
    port: int,
    make: Callable[[int], _Peer],
    recognise: Callable[[int], str | None],
    owned: list[_Stoppable],
) -> tuple[SandboxPeer, str]:
    """Reuse the peer already on `port`, or start one there (`port` 0: always start).

    Returns the peer and what identifies it (its WSDL, or the Salesforce peer's CA).
    """
    if port and (identity := recognise(port)) is not None:
        return SandboxPeer(name, _base_url(name, port), started=False), identity
    peer = make(port)
    try:
        peer.start()
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        # another sandbox may have bound the port between the probe and now
        if (identity := recognise(port)) is not None:
            return SandboxPeer(name, _base_url(name, port), started=False), identity
        raise SandboxError(
            f"cannot start the sandbox's {name} on {HOST}:{port}: the port is taken by another"
            f" program — stop it, or move the sandbox with {PORT_VARIABLE}=<another base port>"
        ) from None
    owned.append(peer)
    return SandboxPeer(name, peer.url, started=True), peer.identity()


def _base_url(name: str, port: int) -> str:
    return _https(port) if name.startswith("Salesforce") else f"http://{HOST}:{port}"


def _https(port: int) -> str:
    return f"https://{HOST}:{port}"


class _ErpPeer(soap_erp.LandlordErpPeer):
    def identity(self) -> str:
        return self.wsdl_text()


class _SagePeer(sage_x3.SageX3Peer):
    def identity(self) -> str:
        return self.wsdl_text()


class _TravauxPeer(erp_node.TravauxErpPeer):
    """The node-soap peer; node or its packages missing is a sandbox error that says so."""

    def start(self) -> _TravauxPeer:
        try:
            super().start()
        except erp_node.NodePeerError as error:
            raise SandboxError(str(error)) from None
        return self

    def identity(self) -> str:
        return self.wsdl_text()


class _SalesforcePeer(SalesforcePeer):
    """The demo org; it hands out its CA at `GET /sandbox/ca.pem` (no session needed)."""

    def __init__(self, port: int, calendar: DemoCalendar | None = None) -> None:
        if importlib.util.find_spec("trustme") is None:  # makes its certificates
            raise SandboxError(
                "the sandbox's Salesforce peer needs trustme, a development dependency — install"
                " the hub with `make install` (pip install -e '.[dev]')"
            )
        super().__init__(demo_store(calendar), port=port)
        self.add_route("GET", CA_ROUTE, self._ca_response, public=True)

    @property
    def url(self) -> str:
        return self.instance_url

    def identity(self) -> str:
        return Path(self.ca_path).read_text(encoding="ascii")

    def _ca_response(self, request: PeerRequest) -> PeerResponse:
        del request
        return PeerResponse(200, self.identity().encode("ascii"), "application/x-pem-file")


def _wsdl(port: int, marker: str) -> str | None:
    """The WSDL a peer on `port` serves at `/wsdl` when it names `marker`, else None."""
    text = _get(port, "/wsdl", "utf-8")
    return text if text is not None and marker in text else None


def _salesforce_ca(port: int) -> str | None:
    """The CA of a sandbox Salesforce peer on `port`, once it verified the peer; else None."""
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # loopback only, and verified right below
    pem = _get(port, CA_ROUTE, "ascii", unverified)
    if pem is None or "BEGIN CERTIFICATE" not in pem:
        return None
    try:
        verified = ssl.create_default_context(cadata=pem)
    except ssl.SSLError:
        return None
    if _get(port, "/services/data/", "ascii", verified) is None:
        return None
    return pem


def _get(port: int, path: str, encoding: str, context: ssl.SSLContext | None = None) -> str | None:
    """The body of `GET path` from a peer on `port` (HTTPS with `context`) when it answers
    200, else None (nothing there, not HTTP, or another status)."""
    connection = (
        http.client.HTTPConnection(HOST, port, timeout=_PROBE_TIMEOUT)
        if context is None
        else http.client.HTTPSConnection(HOST, port, timeout=_PROBE_TIMEOUT, context=context)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    if response.status != 200:
        return None
    return body.decode(encoding, errors="replace")


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="ascii", errors="replace") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="ascii")
    temporary.replace(path)
