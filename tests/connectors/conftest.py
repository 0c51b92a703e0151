"""Fixtures the connector tests share.

- `no_thread_left_behind`: a module that starts peers or listeners opts in with
  `pytestmark = pytest.mark.usefixtures("no_thread_left_behind")`; the test then fails when any
  thread it started is still running at teardown.
- `canary` and `secret_file`: the bait of the XML-attack tests (a listener no client may ever
  reach, a local file no client may ever read), handed to the SOAP and Sage X3 peers.
- `peer` and `http`: the Salesforce HTTPS peer, with small pages so that every read pages,
  and a session that trusts its certificate.
- `travaux_peer` and `travaux_erp`: the Node.js travaux ERP peer (`connectors/sandbox/erp_node`),
  started once per test module, and that peer reset for each test.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connectors.sandbox.erp_node import TravauxErpPeer
from connectors.sandbox.http import LocalHttpServer, Reply
from connectors.sandbox.salesforce import SalesforcePeer, field_service_store

SALESFORCE_PAGE = 100  # REST records per page: 446 live work orders make 5 pages
SALESFORCE_BULK_PAGE = 120  # Bulk API 2.0 result rows per locator page: 4 pages


@pytest.fixture
def no_thread_left_behind() -> Iterator[None]:
    """Every peer and listener a test starts is stopped, with all its threads, at teardown."""
    before = set(threading.enumerate())
    yield
    left = [thread for thread in threading.enumerate() if thread not in before]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def canary() -> Iterator[LocalHttpServer]:
    """A second listener: any connection to it means the client followed a URL it was fed."""
    with LocalHttpServer(lambda request: Reply(body=b"CANARY"), name="canary") as server:
        yield server


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A file whose random content must never show up in anything a client sends or says."""
    path = tmp_path / "secret.txt"
    path.write_text(f"SECRET-{secrets.token_hex(8)}\n", encoding="utf-8")
    return path


@pytest.fixture
def peer() -> Iterator[SalesforcePeer]:
    """The Salesforce peer on the field-service store; afterwards it has logged no error and
    its port refuses connections."""
    with SalesforcePeer(
        field_service_store(), page_size=SALESFORCE_PAGE, bulk_page_size=SALESFORCE_BULK_PAGE
    ) as running:
        port = running.port
        yield running
    assert running.errors == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.fixture
def http(peer: SalesforcePeer) -> Iterator[requests.Session]:
    """A requests session that trusts the Salesforce peer's certificate."""
    session = peer.http_session()
    yield session
    session.close()


@pytest.fixture(scope="module")
def travaux_peer() -> Iterator[TravauxErpPeer]:
    """The travaux ERP peer, started once for the module that uses it."""
    with TravauxErpPeer() as running:
        yield running


@pytest.fixture
def travaux_erp(travaux_peer: TravauxErpPeer) -> TravauxErpPeer:
    """The module's peer, its engagements, counters and mode reset for the test."""
    travaux_peer.reset()
    return travaux_peer
