"""The SOAP reader against the local landlord ERP peer, which zeep reaches over real HTTP.

Covers both paging schemes, incremental `since`, exact values, every fault mode of the peer
(retried then successful, retried until given up, permanent), the refusal of DTDs and
entities in answers and WSDLs (no local file read, no outbound connection), and the one-line
errors of a wrong WSDL location. Client timeouts are 0.5 s and retry waits 0.01 s in the
fault tests so the module stays fast.
"""

from __future__ import annotations

import datetime as dt
import re
import traceback
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
import zeep.exceptions as zeep_errors
from zeep.loader import parse_xml

from connectors.errors import ConfigError, ConnectorError, PermanentError, RetriableError
from connectors.rawtable import RawTable
from connectors.retry import RetryPolicy
from connectors.sandbox.http import HOSTILE_MODES, LocalHttpServer, Reply, Request, hostile_xml
from connectors.sandbox.soap_erp import WSDL_PATH, LandlordErpPeer
from connectors.soap.client import (
    GuardedTransport,
    hardened_settings,
    has_doctype,
    make_client,
    masked_location,
    read_soap,
)
from connectors.soap.models import SoapPaging

FAST = RetryPolicy(attempts=4, first_wait=0.01, max_wait=0.02, jitter=0.01)
UTC = dt.UTC
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


def _tenants(count: int) -> list[dict[str, Any]]:
    return [
        {
            "tenantRef": f"T{number:03d}",
            "lastName": f"Martin-{number}",
            "firstName": "Élise" if number % 2 else None,
            "dwellingRef": f"LOG-{number:04d}",
            "moveInDate": dt.date(2020, 1, 1) + dt.timedelta(days=number),
            "moveOutDate": dt.date(2026, 6, 30) if number == 2 else None,
            "monthlyRent": Decimal("512.30") + number,
            "housingAid": number % 3 == 0,
            "householdSize": number,
            "contact": {"email": f"t{number}@exemple.fr", "channel": "sms"} if number % 2 else None,
            "modifiedAt": dt.datetime(2026, 3, number, 10, 0, tzinfo=UTC),
        }
        for number in range(1, count + 1)
    ]


LEDGER_AMOUNTS = [
    Decimal("0.10"),
    Decimal("0.20"),
    Decimal("-12.50"),
    Decimal("1234567890.12"),
    Decimal("0.30"),
    Decimal("100"),
    Decimal("-0.01"),
]


def _ledger_entries() -> list[dict[str, Any]]:
    return [
        {
            "entryId": f"E{number}",
            "tenantRef": "T001",
            "entryDate": dt.date(2026, 3, 5),
            "kind": "credit" if amount < 0 else "debit",
            "label": "Loyer mars 2026",
            "amount": amount,
            "sepaReasonCode": "AM04" if number == 3 else None,
            "modifiedAt": dt.datetime(2026, 3, number, 8, 30, tzinfo=UTC),
        }
        for number, amount in enumerate(LEDGER_AMOUNTS, start=1)
    ]


def _work_orders(count: int) -> list[dict[str, Any]]:
    return [
        {
            "orderNumber": f"BT34567{number}",
            "contractor": "Plomberie du Centre",
            "dwellingRef": f"LOG-{number:04d}",
            "category": "recherche de fuite",
            "committedAmount": Decimal("1180.00") + number,
            "status": "scheduled",
            "plannedAt": dt.datetime(2026, 4, number, 9, 0, tzinfo=UTC),
            "sla": {"gtiHours": 4, "gtrHours": 48},
            "modifiedAt": dt.datetime(2026, 3, number, 12, 0, tzinfo=UTC),
        }
        for number in range(1, count + 1)
    ]


SEED = {"tenants": _tenants(7), "ledger_entries": _ledger_entries(), "work_orders": _work_orders(8)}

# operation, records_path, paging, key column, seed entity
PAGE_NUMBER = ("ListTenants", "tenants.tenant", "tenantRef", "tenants")
HAS_MORE = ("ListLedgerEntries", "ledgerEntries.entry", "entryId", "ledger_entries")
TOKEN = ("ListWorkOrders", "workOrders.workOrder", "orderNumber", "work_orders")
SOURCES = {
    "page number, total": (
        *PAGE_NUMBER,
        SoapPaging("page_number", page_size=3, total_path="totalCount"),
    ),
    "page number, stop on an empty page": (*PAGE_NUMBER, SoapPaging("page_number", page_size=3)),
    "page number, hasMore flag": (
        *HAS_MORE,
        SoapPaging("page_number", page_size=3, has_more_path="hasMore"),
    ),
    "continuation token": (*TOKEN, SoapPaging("continuation_token", page_size=3)),
}


# --- Fixtures -------------------------------------------------------------------------------


@pytest.fixture
def erp(canary: LocalHttpServer, secret_file: Path) -> Iterator[LandlordErpPeer]:
    with LandlordErpPeer(SEED, secret_file=secret_file, canary_url=canary.url) as peer:
        yield peer


def _read(peer: LandlordErpPeer, name: str = "page number, total", wsdl: str = "", **options: Any):
    """The peer's records read as the source `name` of SOURCES, through its WSDL URL (or the
    WSDL file `wsdl`)."""
    operation, records_path, key, _, paging = SOURCES[name]
    arguments: dict[str, Any] = {
        "operation": operation,
        "records_path": records_path,
        "paging": paging,
        "key": [key],
        "retry": FAST,
    }
    arguments.update(options)
    return read_soap(wsdl or peer.wsdl_url, **arguments)


def _all_text(error: BaseException) -> str:
    """Everything an error could show: its message, repr, traceback and chained errors."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), *traceback.format_exception(current)]
        parts += [repr(vars(current))] if hasattr(current, "__dict__") else []
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


# --- Paging and values ----------------------------------------------------------------------


@pytest.mark.parametrize("source", list(SOURCES))
def test_every_record_once_in_order_across_pages(erp: LandlordErpPeer, source: str) -> None:
    operation, _, key, entity, paging = SOURCES[source]
    table = _read(erp, source)
    expected = [record[key] for record in SEED[entity]]
    assert table.frame[key].tolist() == expected
    assert table.source_rows.tolist() == [f"{operation}:{key}={value}" for value in expected]
    pages = -(-len(expected) // paging.page_size)
    # without a total, a flag or a token, only an empty page ends the pull: one call more
    ended_by_the_answer = paging.total_path or paging.has_more_path or paging.kind != "page_number"
    assert erp.calls_by_operation[operation] == pages + (0 if ended_by_the_answer else 1)
    assert pages >= 3


def test_page_number_paging_asks_one_empty_page_when_the_last_is_full(
    canary: LocalHttpServer, secret_file: Path
) -> None:
    with LandlordErpPeer({"tenants": _tenants(6)}) as peer:
        table = _read(peer, paging=SoapPaging("page_number", page_size=2))
        assert len(table) == 6
        assert peer.calls_by_operation["ListTenants"] == 4  # 2 + 2 + 2 + an empty page


def test_first_page_zero_and_argument_names(erp: LandlordErpPeer) -> None:
    # the peer numbers pages from 1: asking from page 0 must fail, which shows the name and
    # the first number are really sent
    with pytest.raises(PermanentError, match="pageNumber starts at 1"):
        _read(erp, paging=SoapPaging("page_number", page_size=3, first_page=0))


def test_without_key_rows_are_named_by_page_and_row(erp: LandlordErpPeer) -> None:
    table = _read(erp, "continuation token", key=())
    assert table.source_rows.tolist()[:4] == [
        "ListWorkOrders:page 1 row 1",
        "ListWorkOrders:page 1 row 2",
        "ListWorkOrders:page 1 row 3",
        "ListWorkOrders:page 2 row 1",
    ]
    assert table.source_rows.tolist()[-1] == "ListWorkOrders:page 3 row 2"


def test_values_become_exact_text(erp: LandlordErpPeer) -> None:
    table = _read(erp)
    assert list(table.frame.columns) == [
        "tenantRef",
        "lastName",
        "firstName",
        "dwellingRef",
        "moveInDate",
        "moveOutDate",
        "monthlyRent",
        "housingAid",
        "householdSize",
        "contact.email",
        "contact.phone",
        "contact.channel",
        "modifiedAt",
    ]
    first, second = table.frame.to_dict("records")[:2]
    assert first == {
        "tenantRef": "T001",
        "lastName": "Martin-1",
        "firstName": "Élise",
        "dwellingRef": "LOG-0001",
        "moveInDate": "2020-01-02",
        "moveOutDate": "",
        "monthlyRent": "513.30",
        "housingAid": "false",
        "householdSize": "1",
        "contact.email": "t1@exemple.fr",
        "contact.phone": "",
        "contact.channel": "sms",
        "modifiedAt": "2026-03-01 10:00:00+00:00",
    }
    assert second["moveOutDate"] == "2026-06-30"  # a value, where T001's is xsi:nil
    assert second["contact.email"] == ""  # no contact at all: the columns stay, blank
    assert all(isinstance(value, str) for value in table.frame.to_numpy().ravel())


def test_decimal_amounts_are_exact(erp: LandlordErpPeer) -> None:
    table = _read(erp, "page number, hasMore flag")
    assert table.frame["amount"].tolist() == [format(amount, "f") for amount in LEDGER_AMOUNTS]
    assert table.frame["amount"].tolist()[:5] == [
        "0.10",
        "0.20",
        "-12.50",
        "1234567890.12",
        "0.30",
    ]
    assert sum(Decimal(text) for text in table.frame["amount"]) == sum(LEDGER_AMOUNTS)


def test_nested_fields_of_work_orders_are_columns(erp: LandlordErpPeer) -> None:
    table = _read(erp, "continuation token")
    row = table.frame.iloc[0].to_dict()
    assert (row["sla.gtiHours"], row["sla.gtrHours"]) == ("4", "48")
    assert row["committedAmount"] == "1181.00"
    assert row["plannedAt"] == "2026-04-01 09:00:00+00:00"


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(
    "since",
    [
        pytest.param("2026-03-04T10:00:00Z", id="utc"),
        pytest.param("2026-03-04T11:00:00+01:00", id="paris-offset"),
    ],
)
def test_since_keeps_records_modified_at_or_after(
    erp: LandlordErpPeer, source: str, since: str
) -> None:
    _, _, key, entity, _ = SOURCES[source]
    lower = dt.datetime.fromisoformat(since)
    table = _read(erp, source, since=("modifiedSince", since))
    expected = [record[key] for record in SEED[entity] if record["modifiedAt"] >= lower]
    assert table.frame[key].tolist() == expected
    assert 0 < len(expected) < len(SEED[entity])
    modified = [dt.datetime.fromisoformat(text) for text in table.frame["modifiedAt"]]
    assert all(moment >= lower for moment in modified)


def test_since_an_exact_modification_time_is_inclusive(erp: LandlordErpPeer) -> None:
    table = _read(erp, since=("modifiedSince", "2026-03-07T10:00:00+00:00"))
    assert table.frame["tenantRef"].tolist() == ["T007"]


def test_nothing_modified_gives_an_empty_table_with_the_columns(erp: LandlordErpPeer) -> None:
    table = _read(erp, since=("modifiedSince", "2030-01-01T00:00:00Z"))
    assert len(table) == 0
    assert len(table.source_rows) == 0
    assert "contact.email" in table.frame.columns


def test_wsdl_file_with_an_explicit_address(erp: LandlordErpPeer) -> None:
    paging = SoapPaging("page_number", page_size=50)
    table = _read(erp, wsdl=str(WSDL_PATH), address=erp.soap_url, paging=paging)
    assert len(table) == 7
    assert table.origin == f"{WSDL_PATH} ListTenants"
    assert erp.wsdl_requests == 0


def test_fingerprint_follows_the_data(erp: LandlordErpPeer) -> None:
    first, again = _read(erp), _read(erp)
    assert isinstance(first, RawTable)
    assert first.fingerprint == again.fingerprint
    erp.records["tenants"][3]["monthlyRent"] = Decimal("999.99")
    assert _read(erp).fingerprint != first.fingerprint


# --- Faults ---------------------------------------------------------------------------------

TRANSIENT = ["slow", "http_500", "http_503", "http_429", "fault_busy"]


@pytest.mark.parametrize("mode", TRANSIENT)
def test_transient_faults_are_retried_then_succeed(erp: LandlordErpPeer, mode: str) -> None:
    failures = 1 if mode == "slow" else 2
    erp.set_fault(mode, times=failures)
    table = _read(erp, operation_timeout=0.5)
    assert len(table) == 7
    # three pages, the first one asked 1 + failures times
    assert erp.calls_by_operation["ListTenants"] == 3 + failures


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("slow", "no answer within 0.5 s (timeout)"),
        ("http_500", "HTTP 500"),
        ("http_503", "HTTP 503"),
        ("http_429", "HTTP 429"),
        ("fault_busy", "SOAP fault Server.Busy"),
    ],
)
def test_transient_faults_give_up_after_the_attempts(
    erp: LandlordErpPeer, mode: str, message: str
) -> None:
    erp.set_fault(mode)
    policy = RetryPolicy(attempts=2, first_wait=0.01, max_wait=0.01, jitter=0.0)
    with pytest.raises(RetriableError) as raised:
        _read(erp, retry=policy, operation_timeout=0.5)
    text = str(raised.value)
    assert f"{erp.wsdl_url} ListTenants" in text
    assert message in text
    assert "gave up after 2 attempts" in text
    assert erp.calls_by_operation["ListTenants"] == 2


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("http_400", "HTTP 400 — check the endpoint address and the arguments"),
        (
            "fault_invalid_argument",
            "SOAP fault Client.InvalidArgument: ListTenants: invalid argument — fix the call's"
            " arguments in the datafix",
        ),
        ("malformed_xml", "the answer is malformed XML"),
    ],
)
def test_permanent_faults_are_not_retried(erp: LandlordErpPeer, mode: str, message: str) -> None:
    erp.set_fault(mode)
    with pytest.raises(PermanentError) as raised:
        _read(erp)
    assert str(raised.value).startswith(f"{erp.wsdl_url} ListTenants: ")
    assert message in str(raised.value)
    assert erp.calls_by_operation["ListTenants"] == 1


def test_a_fault_on_a_later_page_repeats_that_page_only(erp: LandlordErpPeer) -> None:
    pages: list[int] = []
    answer = erp._server.app

    def second_page_fails_twice(request: Request) -> Reply:
        found = re.search(rb"pageNumber>(\d+)<", request.body)
        if found is None:  # the WSDL
            return answer(request)
        page = int(found.group(1))
        pages.append(page)
        if page == 2 and pages.count(2) <= 2:
            return Reply(503, b"", "text/plain")
        return answer(request)

    erp._server.app = second_page_fails_twice
    table = _read(erp)
    assert pages == [1, 2, 2, 2, 3]
    assert table.frame["tenantRef"].tolist() == [record["tenantRef"] for record in SEED["tenants"]]


# --- XML attacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(HOSTILE_MODES))
def test_answers_with_a_dtd_are_refused_without_reading_or_fetching_anything(
    erp: LandlordErpPeer,
    canary: LocalHttpServer,
    secret_file: Path,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")  # zeep logs whole answers at DEBUG: they must not hold the file
    erp.set_fault(mode)
    with pytest.raises(PermanentError) as raised:
        _read(erp)
    message = str(raised.value)
    assert message.startswith(f"{erp.wsdl_url} ListTenants: refused the answer")
    assert "DTD" in message
    assert "\n" not in message
    secret = secret_file.read_text(encoding="utf-8").strip()
    assert secret not in _all_text(raised.value)
    assert secret not in caplog.text
    assert canary.connections == 0
    assert erp.calls_by_operation["ListTenants"] == 1  # refused once, not retried


@pytest.mark.parametrize("mode", sorted(HOSTILE_MODES))
def test_zeep_settings_alone_refuse_a_dtd(
    canary: LocalHttpServer, secret_file: Path, mode: str
) -> None:
    """The hardened zeep settings, without the transport's own check, refuse every attack
    (the entity bomb already fails in libxml2, whose amplification cap stops it)."""
    envelope = (
        b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
        b'envelope/"><soap:Body><x>text</x></soap:Body></soap:Envelope>'
    )
    document = hostile_xml(envelope, mode, file_path=str(secret_file), url=canary.url)
    transport = zeep.Transport(timeout=1, operation_timeout=1)
    expected = (
        zeep_errors.XMLSyntaxError if mode == "dtd_billion_laughs" else zeep_errors.DTDForbidden
    )
    with pytest.raises(expected):
        parse_xml(document, transport, settings=hardened_settings())
    assert canary.connections == 0


def test_hardened_settings_are_explicit() -> None:
    settings = hardened_settings()
    assert (settings.forbid_dtd, settings.forbid_entities, settings.forbid_external) == (
        True,
        True,
        True,
    )
    assert (settings.strict, settings.xml_huge_tree) == (True, False)
    assert hardened_settings(soap_encoding=True).forbid_external is False  # transport guards


def test_every_client_has_timeouts_and_the_guarded_transport(erp: LandlordErpPeer) -> None:
    client = make_client(erp.wsdl_url, timeout=3, operation_timeout=7)
    assert isinstance(client.transport, GuardedTransport)
    assert (client.transport.load_timeout, client.transport.operation_timeout) == (3, 7)
    assert client.settings.forbid_dtd is True


@pytest.mark.parametrize(
    "doctype",
    [
        pytest.param('<!DOCTYPE d [<!ENTITY xxe SYSTEM "file://{secret}">]>', id="file-entity"),
        pytest.param('<!DOCTYPE d [<!ENTITY xxe SYSTEM "{canary}/xxe">]>', id="http-entity"),
        pytest.param('<!DOCTYPE d SYSTEM "{canary}/external.dtd">', id="external-dtd"),
        pytest.param('<!DOCTYPE d [<!ENTITY a "aaaaaaaa">]>', id="internal-entity"),
    ],
)
def test_a_wsdl_with_a_dtd_is_refused(
    tmp_path: Path, canary: LocalHttpServer, secret_file: Path, doctype: str
) -> None:
    text = WSDL_PATH.read_text(encoding="utf-8")
    declaration_end = text.index("?>") + 2
    hostile = (
        text[:declaration_end]
        + doctype.format(secret=secret_file, canary=canary.url)
        + text[declaration_end:].replace(
            '<xsd:element name="lastName"', '<!-- &xxe; -->\n<xsd:element name="lastName"'
        )
    )
    wsdl = tmp_path / "hostile.wsdl"
    wsdl.write_text(hostile, encoding="utf-8")
    with pytest.raises(PermanentError) as raised:
        make_client(str(wsdl))
    assert str(raised.value).startswith(f"WSDL {wsdl} refused: it carries a DTD")
    assert secret_file.read_text(encoding="utf-8").strip() not in _all_text(raised.value)
    assert canary.connections == 0


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("{canary}/types.xsd", id="http-import"),
        pytest.param("file://{secret}", id="file-url-import"),
        pytest.param("{secret}", id="local-path-import"),
    ],
)
def test_a_wsdl_importing_another_document_is_refused(
    canary: LocalHttpServer, secret_file: Path, location: str
) -> None:
    where = location.format(canary=canary.url, secret=secret_file)
    opening = '<xsd:schema targetNamespace="urn:datafix-hub:landlord-erp:v1"'
    text = WSDL_PATH.read_text(encoding="utf-8")
    end = text.index(">", text.index(opening)) + 1
    text = (
        text[:end]
        + f'<xsd:import namespace="urn:elsewhere" schemaLocation="{where}"/>'
        + text[end:]
    )
    served = LocalHttpServer(lambda request: Reply(body=text.encode()), name="hostile-wsdl")
    with served as host, pytest.raises(PermanentError) as raised:
        make_client(f"{host.url}/wsdl")
    assert "refused: it imports another document" in str(raised.value)
    assert secret_file.read_text(encoding="utf-8").strip() not in _all_text(raised.value)
    assert canary.connections == 0


def test_the_soap_encoding_schema_is_bundled_not_fetched() -> None:
    from connectors.sandbox.sage_x3 import WSDL_PATH as SAGE_WSDL

    with pytest.raises(PermanentError, match=r"http://schemas\.xmlsoap\.org/soap/encoding/"):
        make_client(str(SAGE_WSDL))  # an RPC/encoded WSDL needs soap_encoding=True
    client = make_client(str(SAGE_WSDL), soap_encoding=True)
    assert "query" in client.service._binding._operations


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<a/>", False),
        (b'<?xml version="1.0"?>\n<!-- c --><?pi x?>\n<!DOCTYPE a []><a/>', True),
        (b"\xef\xbb\xbf<!DOCTYPE a><a/>", True),
        ("<!DOCTYPE a><a/>".encode("utf-16"), True),
        (b"<?xml version='1.0'?><a><![CDATA[<?xml version='1.0'?><!DOCTYPE b>]]></a>", False),
        (b"<a>&lt;!DOCTYPE</a>", False),
    ],
    ids=["plain", "after-prolog", "utf8-bom", "utf16", "quoted-in-cdata", "escaped"],
)
def test_has_doctype_looks_at_the_prolog_only(document: bytes, expected: bool) -> None:
    assert has_doctype(document) is expected


# --- Configuration errors -------------------------------------------------------------------


def test_a_missing_wsdl_file_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError) as raised:
        read_soap("/x/erp.wsdl", operation="ListTenants", records_path="tenants.tenant")
    assert str(raised.value) == (
        "WSDL not found: /x/erp.wsdl — check `wsdl` in the datafix (a file path or an http(s) URL)"
    )


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("{tmp}", "WSDL not found: {tmp} — check `wsdl` in the datafix"),
        ("file:///x/erp.wsdl", "WSDL not found: /x/erp.wsdl — check `wsdl` in the datafix"),
        ("{gone}/wsdl", "WSDL unreachable: {gone}/wsdl (no connection) — check `wsdl`"),
        ("{peer}/nothing", "WSDL {peer}/nothing: HTTP 404 — check `wsdl` in the datafix"),
        ("ftp://host/erp.wsdl", "WSDL location ftp://host/erp.wsdl is neither a file nor"),
        ("{peer}/soap?wsdl-typo", "WSDL {peer}/soap?wsdl-typo: HTTP 404"),
        ("", "no WSDL given — check `wsdl` in the datafix"),
    ],
    ids=["directory", "file-url", "unreachable", "not-found-404", "ftp", "typo", "empty"],
)
def test_wrong_wsdl_locations_are_one_line_config_errors(
    erp: LandlordErpPeer, tmp_path: Path, location: str, expected: str
) -> None:
    with LocalHttpServer(lambda request: Reply()) as gone:
        gone_url = gone.url
    values = {"tmp": str(tmp_path), "gone": gone_url, "peer": erp.url}
    with pytest.raises(ConfigError) as raised:
        make_client(location.format(**values))
    assert str(raised.value).startswith(expected.format(**values))
    assert "\n" not in str(raised.value)


def test_a_page_that_is_not_a_wsdl_is_a_config_error(tmp_path: Path) -> None:
    page = tmp_path / "erp.wsdl"
    page.write_text("<html><body>Login</body>", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is not valid XML — check `wsdl`"):
        make_client(str(page))


def test_a_password_in_the_wsdl_url_is_masked() -> None:
    assert masked_location("https://erp:s3cret@host/ws?wsdl") == "https://erp:***@host/ws?wsdl"
    with pytest.raises(ConfigError) as raised:
        make_client("http://erp:s3cret@127.0.0.1:9/ws?wsdl", timeout=0.5)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"operation": "ListTenant"},
            ConfigError,
            "the WSDL has no operation `ListTenant` (there: ListLedgerEntries, ListTenants,"
            " ListWorkOrders) — did you mean `ListTenants`?",
        ),
        (
            {"records_path": "tenants.tenants"},
            ConfigError,
            "`tenants` of records_path `tenants.tenants` is not in tenants (there: tenant)",
        ),
        ({"key": ["tenantref"]}, ConfigError, "key column `tenantref` is not among the columns"),
        (
            {"arguments": {"bogus": 1}},
            ConfigError,
            "the arguments do not fit the WSDL",
        ),
        (
            {"since": ("updatedSince", "2026-03-01T00:00:00Z")},
            ConfigError,
            "unexpected keyword argument 'updatedSince'",
        ),
        (
            {"paging": SoapPaging("page_number", page_size=3, has_more_path="more")},
            ConfigError,
            "`more` of has_more_path `more` is not in the response",
        ),
        (
            {"paging": SoapPaging("page_number", page_size=1000)},
            PermanentError,
            "SOAP fault Client.InvalidArgument: pageSize must be between 1 and 500",
        ),
        (
            {"paging": SoapPaging("page_number", page_size=1), "max_pages": 2},
            PermanentError,
            "still more pages after max_pages=2",
        ),
    ],
    ids=[
        "unknown-operation",
        "wrong-records-path",
        "wrong-key",
        "unknown-argument",
        "wrong-since-argument",
        "wrong-has-more-path",
        "page-size-refused",
        "max-pages",
    ],
)
def test_configuration_mistakes_say_what_to_fix(
    erp: LandlordErpPeer, options: dict[str, Any], error: type[ConnectorError], message: str
) -> None:
    with pytest.raises(error) as raised:
        _read(erp, **options)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_continuation_token_sent_twice_stops_the_read(erp: LandlordErpPeer) -> None:
    original = erp._token
    erp._token = lambda offset: original(3)  # type: ignore[method-assign]
    with pytest.raises(PermanentError, match="continuation token of an earlier page again"):
        _read(erp, "continuation token")


@pytest.mark.parametrize(
    "paging",
    [
        {"kind": "cursor"},
        {"kind": "page_number", "page_size": 0},
        {"kind": "page_number", "first_page": 2},
        {"kind": "continuation_token", "token_path": ""},
    ],
    ids=["unknown-kind", "zero-page-size", "first-page-2", "empty-token-path"],
)
def test_paging_settings_are_checked(paging: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SoapPaging(**paging)


def test_a_session_is_used_for_every_request(erp: LandlordErpPeer) -> None:
    session = requests.Session()
    session.headers["X-Landlord"] = "acme"
    seen: list[str] = []
    app = erp._server.app

    def spy(request):  # type: ignore[no-untyped-def]
        seen.append(request.headers.get("x-landlord", ""))
        return app(request)

    erp._server.app = spy
    _read(erp, session=session)
    assert seen and set(seen) == {"acme"}


# --- Response shapes zeep unwraps ----------------------------------------------------------

SINGLE_CHILD_WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions targetNamespace="urn:one" xmlns:tns="urn:one"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <wsdl:types><xsd:schema targetNamespace="urn:one" elementFormDefault="qualified">
    <xsd:element name="GetTenants"><xsd:complexType><xsd:sequence/></xsd:complexType></xsd:element>
    <xsd:element name="GetTenantsResponse"><xsd:complexType><xsd:sequence>
      <xsd:element name="tenants"><xsd:complexType><xsd:sequence>
        <xsd:element name="tenant" minOccurs="0" maxOccurs="unbounded">
          <xsd:complexType><xsd:sequence>
            <xsd:element name="ref" type="xsd:string"/>
            <xsd:element name="rent" type="xsd:decimal"/>
          </xsd:sequence></xsd:complexType>
        </xsd:element>
      </xsd:sequence></xsd:complexType></xsd:element>
    </xsd:sequence></xsd:complexType></xsd:element>
  </xsd:schema></wsdl:types>
  <wsdl:message name="In">
    <wsdl:part name="parameters" element="tns:GetTenants"/></wsdl:message>
  <wsdl:message name="Out">
    <wsdl:part name="parameters" element="tns:GetTenantsResponse"/></wsdl:message>
  <wsdl:portType name="P"><wsdl:operation name="GetTenants">
    <wsdl:input message="tns:In"/><wsdl:output message="tns:Out"/></wsdl:operation></wsdl:portType>
  <wsdl:binding name="B" type="tns:P"><soap:binding style="document"
      transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="GetTenants"><soap:operation soapAction=""/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output></wsdl:operation></wsdl:binding>
  <wsdl:service name="S"><wsdl:port name="Port" binding="tns:B">
    <soap:address location="http://127.0.0.1:1/soap"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"""


@pytest.mark.parametrize(
    ("tenants", "expected"),
    [
        ("<t:tenant><t:ref>A</t:ref><t:rent>1.50</t:rent></t:tenant>", [("A", "1.50")]),
        (
            "<t:tenant><t:ref>A</t:ref><t:rent>1.50</t:rent></t:tenant>"
            "<t:tenant><t:ref>B</t:ref><t:rent>-2.00</t:rent></t:tenant>",
            [("A", "1.50"), ("B", "-2.00")],
        ),
        ("", []),
    ],
    ids=["one-record", "two-records", "no-record"],
)
def test_records_path_reads_from_the_response_element_even_when_zeep_unwraps_it(
    tmp_path: Path, tenants: str, expected: list[tuple[str, str]]
) -> None:
    # GetTenantsResponse has one child (tenants) which has one child (tenant): zeep returns the
    # tenant list itself; records_path is still written from the response element
    answer = (
        f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:one">'
        f"<s:Body><t:GetTenantsResponse><t:tenants>{tenants}</t:tenants>"
        f"</t:GetTenantsResponse></s:Body></s:Envelope>"
    ).encode()
    wsdl = tmp_path / "one.wsdl"
    wsdl.write_text(SINGLE_CHILD_WSDL, encoding="utf-8")
    with LocalHttpServer(lambda request: Reply(body=answer), name="one") as server:
        table = read_soap(
            str(wsdl),
            address=f"{server.url}/soap",
            operation="GetTenants",
            records_path="tenants.tenant",
            key=["ref"],
            retry=FAST,
        )
    assert list(zip(table.frame["ref"], table.frame["rent"], strict=True)) == expected
    assert list(table.frame.columns) == ["ref", "rent"]


@pytest.mark.parametrize(
    "options",
    [
        {"records_path": "tenants.tenant.address"},
        {"records_path": "tenant"},
        {"paging": SoapPaging("page_number", has_more_path="hasMore")},
        {"paging": SoapPaging("continuation_token")},
    ],
    ids=["too-deep", "wrong-name", "has-more-not-in-response", "token-not-in-response"],
)
def test_paths_the_wsdl_does_not_have_fail_before_any_call(
    erp: LandlordErpPeer, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match="is not in"):
        _read(erp, **options)
    assert erp.calls == 0
