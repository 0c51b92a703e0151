"""The local peers themselves, spoken to with plain HTTP (no zeep): what tests and the demo rely on.

The shared HTTP server (ephemeral port on 127.0.0.1, counters, clean stop that wakes slow
replies and joins every thread), fault plans, the hostile payloads, and each peer's wire
behaviour: WSDL served with its own address, paging arguments checked, faults for exactly N
calls, Sage X3 envelopes (CDATA payload, multiRef messages, call-context checks).
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
from lxml import etree

from connectors.sandbox.http import (
    HOSTILE_MODES,
    SOAP_ENV,
    FaultPlan,
    LocalHttpServer,
    Reply,
    hostile_xml,
    parse_soap_body,
)
from connectors.sandbox.sage_x3 import ENDPOINT_PATH, WSS, SageX3Peer
from connectors.sandbox.soap_erp import ERP_FAULT_MODES, NAMESPACE, LandlordErpPeer
from tests.casedata import cases
from tests.connectors.erp_records import erp_tenant

UTC = dt.UTC
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) != 0


# --- The HTTP server ------------------------------------------------------------------------


def test_server_listens_on_loopback_counts_and_stops() -> None:
    server = LocalHttpServer(lambda request: Reply(body=request.path.encode()), name="probe")
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        port = server.port
        assert port > 0
        assert requests.get(f"{server.url}/hello?x=1", timeout=5).text == "/hello"
        assert requests.post(server.url + "/p", data=b"body", timeout=5).status_code == 200
        assert (server.connections, server.requests) == (2, 2)
    assert _refused(port)


def test_stop_wakes_a_slow_reply_and_joins_its_thread() -> None:
    outcome: list[str] = []
    server = LocalHttpServer(lambda request: Reply(body=b"late", delay=600), name="slow")
    server.start()

    def ask() -> None:
        try:
            requests.get(server.url, timeout=600)
            outcome.append("answered")
        except requests.RequestException:
            outcome.append("cut")

    client = threading.Thread(target=ask)
    client.start()
    while server.requests == 0:  # the request is being served (asleep)
        threading.Event().wait(0.01)
    server.stop()  # returns only once the sleeping handler thread has ended
    client.join()
    assert outcome == ["cut"]


def test_a_peer_bug_is_a_500_not_a_hang() -> None:
    def broken(request):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    with LocalHttpServer(broken) as server:
        response = requests.get(server.url, timeout=5)
    assert response.status_code == 500
    assert "boom" in response.text


def test_fault_plan_for_the_next_calls_then_normal() -> None:
    plan = FaultPlan()
    plan.set("http_500", times=2)
    assert [plan.take() for _ in range(4)] == ["http_500", "http_500", None, None]
    plan.set("fault_busy")
    assert [plan.take() for _ in range(3)] == ["fault_busy"] * 3
    with pytest.raises(ValueError):
        plan.set("slow", times=0)


DOCUMENT = (
    b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="'
    + SOAP_ENV.encode()
    + b'"><soap:Body><r><name>Durand</name></r></soap:Body></soap:Envelope>'
)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("dtd_billion_laughs", [b"<!ENTITY lol9 ", b">&lol9;Durand<"]),
        ("xxe_file", [b'<!ENTITY xxe SYSTEM "file:///tmp/secret.txt">', b">&xxe;Durand<"]),
        ("xxe_http", [b'<!ENTITY xxe SYSTEM "http://127.0.0.1:1/xxe">', b">&xxe;Durand<"]),
        ("xxe_parameter", [b'<!ENTITY % remote SYSTEM "http://127.0.0.1:1/parameter.dtd">']),
        ("external_dtd", [b'<!DOCTYPE soap:Envelope SYSTEM "http://127.0.0.1:1/external.dtd">']),
    ],
)
def test_hostile_payloads(mode: str, expected: list[bytes]) -> None:
    hostile = hostile_xml(DOCUMENT, mode, file_path="/tmp/secret.txt", url="http://127.0.0.1:1")
    assert hostile.startswith(b'<?xml version="1.0" encoding="utf-8"?><!DOCTYPE ')
    for part in expected:
        assert part in hostile
    assert hostile.endswith(b"</soap:Envelope>")
    assert mode in HOSTILE_MODES


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not xml", "not XML"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><x/>', "carries a DTD"),
        (b"<Envelope/>", "not a SOAP 1.1 Envelope"),
        (f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body/></s:Envelope>'.encode(), "no SOAP Body"),
    ],
    ids=["not-xml", "dtd", "not-an-envelope", "empty-body"],
)
def test_peers_parse_requests_safely(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_soap_body(body)


# --- Landlord ERP peer ----------------------------------------------------------------------


def _envelope(operation: str, **arguments: object) -> bytes:
    fields = "".join(f"<e:{name}>{value}</e:{name}>" for name, value in arguments.items())
    return (
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:e="{NAMESPACE}"><s:Body>'
        f"<e:{operation}>{fields}</e:{operation}></s:Body></s:Envelope>"
    ).encode()


def _post(peer: LandlordErpPeer, operation: str, **arguments: object) -> requests.Response:
    return requests.post(peer.soap_url, data=_envelope(operation, **arguments), timeout=5)


@pytest.fixture
def erp() -> Iterator[LandlordErpPeer]:
    with LandlordErpPeer({"tenants": [erp_tenant(number) for number in range(1, 6)]}) as peer:
        yield peer


def test_erp_serves_its_wsdl_with_its_own_address(erp: LandlordErpPeer) -> None:
    text = requests.get(erp.wsdl_url, timeout=5).text
    assert f'<soap:address location="{erp.soap_url}"/>' in text
    assert "127.0.0.1:8123" not in text
    assert requests.get(f"{erp.soap_url}?wsdl", timeout=5).text == text
    assert erp.wsdl_requests == 2
    assert erp.calls == 0


def test_erp_answers_a_page(erp: LandlordErpPeer) -> None:
    response = _post(erp, "ListTenants", pageNumber=2, pageSize=2)
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    names = {"e": NAMESPACE, "s": SOAP_ENV}
    assert root.xpath("//e:tenant/e:tenantRef/text()", namespaces=names) == ["T3", "T4"]
    assert root.xpath("//e:totalCount/text()", namespaces=names) == ["5"]
    assert root.xpath("//e:monthlyRent/text()", namespaces=names) == ["432.10", "432.10"]
    assert erp.calls_by_operation == {"ListTenants": 1}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"pageNumber": 1, "pageSize": 501}, "pageSize must be between 1 and 500"),
        ({"pageNumber": 0, "pageSize": 2}, "pageNumber starts at 1"),
        ({"pageSize": 2}, "pageNumber is required"),
        ({"pageNumber": "x", "pageSize": 2}, "pageNumber must be an integer"),
        (
            {"pageNumber": 1, "pageSize": 2, "modifiedSince": "hier"},
            "modifiedSince is not an ISO date-time",
        ),
    ],
    ids=["page-too-big", "page-zero", "page-missing", "page-not-a-number", "since-not-iso"],
)
def test_erp_refuses_wrong_arguments_with_client_invalid_argument(
    erp: LandlordErpPeer, arguments: dict[str, object], message: str
) -> None:
    response = _post(erp, "ListTenants", **arguments)
    assert response.status_code == 500
    fault = etree.fromstring(response.content).find(f".//{{{SOAP_ENV}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "soap:Client.InvalidArgument"
    assert message in (fault.findtext("faultstring") or "")


def test_erp_continuation_tokens_are_opaque_and_checked() -> None:
    orders = [
        {
            "orderNumber": f"BT{number}",
            "contractor": "X",
            "category": "dépannage",
            "committedAmount": Decimal("10.00"),
            "status": "received",
            "modifiedAt": "2026-03-01T00:00:00+00:00",
        }
        for number in range(3)
    ]
    with LandlordErpPeer({"work_orders": orders}) as peer:
        first = etree.fromstring(_post(peer, "ListWorkOrders", pageSize=2).content)
        token = first.findtext(f".//{{{NAMESPACE}}}nextContinuationToken")
        assert token and not token.isdigit()  # opaque: not a bare offset
        last = etree.fromstring(
            _post(peer, "ListWorkOrders", continuationToken=token, pageSize=2).content
        )
        assert last.find(f".//{{{NAMESPACE}}}nextContinuationToken") is None
        assert [node.text for node in last.iter(f"{{{NAMESPACE}}}orderNumber")] == ["BT2"]
        refused = _post(peer, "ListWorkOrders", continuationToken="forged", pageSize=2)
        assert b"unknown continuationToken" in refused.content


ERP_FAULT_CASES = cases("erp_faults", "next-calls", "mode, status, marker")


@pytest.mark.parametrize(("mode", "status", "marker"), ERP_FAULT_CASES)
def test_erp_fault_for_exactly_the_next_calls(
    erp: LandlordErpPeer, mode: str, status: int, marker: str
) -> None:
    erp.set_fault(mode, times=2)
    for _ in range(2):
        faulty = _post(erp, "ListTenants", pageNumber=1, pageSize=2)
        assert faulty.status_code == status
        assert marker.encode() in faulty.content
    normal = _post(erp, "ListTenants", pageNumber=1, pageSize=2)
    assert normal.status_code == 200
    etree.fromstring(normal.content)  # well-formed again, no DTD
    assert b"<!DOCTYPE" not in normal.content
    assert erp.calls == 3


def test_every_erp_fault_mode_is_tested() -> None:
    """Each mode has a case above, but `slow` (its own test below)."""
    tested = {"slow", *(case.values[0] for case in ERP_FAULT_CASES)}
    assert tested == ERP_FAULT_MODES


def test_erp_slow_mode_delays_the_answer() -> None:
    with LandlordErpPeer({"tenants": [erp_tenant(1)]}, slow_seconds=600) as peer:
        peer.set_fault("slow")
        with pytest.raises(requests.Timeout):
            requests.post(
                peer.soap_url, data=_envelope("ListTenants", pageNumber=1, pageSize=1), timeout=0.3
            )
    # stop() woke the sleeping reply: the autouse fixture checks no thread is left


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ({"tenant": []}, "unknown seed entities"),
        ({"tenants": [{**erp_tenant(1), "rent": 1}]}, "unknown field 'rent'"),
        ({"tenants": [{**erp_tenant(1), "contact": {"mail": "x"}}]}, "unknown fields"),
        ({"tenants": [{k: v for k, v in erp_tenant(1).items() if k != "modifiedAt"}]}, "required"),
    ],
    ids=["unknown-entity", "unknown-field", "unknown-nested-field", "no-modifiedAt"],
)
def test_erp_seed_is_checked(seed: dict[str, list[dict[str, object]]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LandlordErpPeer(seed)
    with pytest.raises(ValueError, match="unknown fault mode"):
        LandlordErpPeer().set_fault("explode")


# --- Sage X3 peer ---------------------------------------------------------------------------


def _sage_envelope(operation: str, pool: str = "SEED", language: str = "FRA") -> bytes:
    """A request as an Axis client writes it: RPC/encoded, every element typed."""
    return f"""<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"
        xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:wss="{WSS}"
        xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"><soapenv:Body>
      <wss:{operation} soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
        <callContext xsi:type="wss:CAdxCallContext">
          <codeLang xsi:type="xsd:string">{language}</codeLang>
          <poolAlias xsi:type="xsd:string">{pool}</poolAlias>
          <poolId xsi:type="xsd:string"></poolId>
          <requestConfig xsi:type="xsd:string">adxwss.beautify=true</requestConfig>
        </callContext>
        <publicName xsi:type="xsd:string">BPC</publicName>
        <objectKeys xsi:type="soapenc:Array" soapenc:arrayType="wss:CAdxParamKeyValue[1]">
          <item xsi:type="wss:CAdxParamKeyValue"><key>BPCNUM</key><value>C404</value></item>
        </objectKeys>
        <listSize xsi:type="xsd:int">10</listSize>
      </wss:{operation}></soapenv:Body></soapenv:Envelope>""".encode()


@pytest.fixture
def sage() -> Iterator[SageX3Peer]:
    seed = {"BPC": [{"BPCNUM": "C001", "BPCNAM": "Office", "UPDDAT": dt.date(2026, 3, 1)}]}
    with SageX3Peer(seed) as peer:
        yield peer


def test_sage_serves_its_wsdl_with_its_own_address(sage: SageX3Peer) -> None:
    text = requests.get(sage.wsdl_url, timeout=5).text
    assert f'location="{sage.url}{ENDPOINT_PATH}"' in text
    assert 'style="rpc"' in text and 'use="encoded"' in text


def test_sage_status_zero_with_multiref_messages(sage: SageX3Peer) -> None:
    response = requests.post(sage.soap_url, data=_sage_envelope("read"), timeout=5)
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    result = root.find(f".//{{{WSS}}}readResponse/readReturn")
    assert result is not None
    assert result.findtext("status") == "0"
    assert result.find("resultXml").get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
    assert [node.get("href") for node in result.find("messages")] == ["#id0"]
    reference = root.find(f".//{{{SOAP_ENV}}}Body/multiRef[@id='id0']")
    assert reference is not None
    assert reference.findtext("type") == "3"
    assert reference.findtext("message") == "C404 : Fiche inexistante"


def test_sage_query_answers_a_cdata_result(sage: SageX3Peer) -> None:
    response = requests.post(
        sage.soap_url, data=_sage_envelope("query").replace(b"C404", b"C001"), timeout=5
    )
    assert b"<resultXml" in response.content and b"<![CDATA[<?xml" in response.content
    payload = etree.fromstring(response.content).findtext(f".//{{{WSS}}}queryResponse//resultXml")
    result = etree.fromstring(payload.encode().split(b"?>", 1)[1])
    line = result.find("TAB/LIN")
    assert [(field.get("NAME"), field.get("TYPE"), field.text) for field in line] == [
        ("BPCNUM", "Char", "C001"),
        ("BPCNAM", "Char", "Office"),
        ("UPDDAT", "Date", "20260301"),
    ]


@pytest.mark.parametrize(
    ("pool", "language", "message"),
    [("PROD", "FRA", b"Pool alias 'PROD' unknown"), ("SEED", "DEU", b"'DEU' not available")],
    ids=["wrong-pool", "wrong-language"],
)
def test_sage_checks_the_call_context(
    sage: SageX3Peer, pool: str, language: str, message: bytes
) -> None:
    response = requests.post(sage.soap_url, data=_sage_envelope("query", pool, language), timeout=5)
    assert response.status_code == 500
    assert b"<faultcode>soap:Server.userException</faultcode>" in response.content
    assert message in response.content


def test_sage_peer_checks_its_seed_and_fault_modes() -> None:
    with pytest.raises(ValueError, match="no object"):
        SageX3Peer({"XYZ": []})
    with pytest.raises(ValueError, match="unknown fault mode"):
        SageX3Peer().set_fault("explode")


# --- Demo data ------------------------------------------------------------------------------


def test_demo_seeds_are_fixed_and_read_in_full() -> None:
    from connectors.sage.client import read_sage_x3
    from connectors.sandbox import sage_x3, soap_erp
    from connectors.soap.client import read_soap
    from connectors.soap.models import SoapPaging

    erp_seed, sage_seed = soap_erp.demo_seed(), sage_x3.demo_seed()
    assert erp_seed == soap_erp.demo_seed() and sage_seed == sage_x3.demo_seed()
    with LandlordErpPeer(erp_seed) as peer:
        entries = read_soap(
            peer.wsdl_url,
            operation="ListLedgerEntries",
            records_path="ledgerEntries.entry",
            paging=SoapPaging("page_number", page_size=10, has_more_path="hasMore"),
            key=["entryId"],
        )
    assert len(entries) == len(erp_seed["ledger_entries"]) == 36
    assert sum(map(Decimal, entries.frame["amount"])) == sum(
        entry["amount"] for entry in erp_seed["ledger_entries"]
    )
    with SageX3Peer(sage_seed) as peer:
        lines = read_sage_x3(
            peer.wsdl_url, pool_alias="SEED", public_name="SIH", keys=["NUM"], lines="SIH4_1"
        )
    assert len(lines) == sum(len(invoice["SIH4_1"]) for invoice in sage_seed["SIH"])
    assert lines.frame["YBTNUM"].str.startswith("BT").all()
