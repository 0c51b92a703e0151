"""The local Salesforce peer speaks what simple-salesforce 1.12.10 really sends.

simple-salesforce is used unmodified (and raw `requests` where the exact HTTP answer matters):
REST query paging by `nextRecordsUrl` path, Bulk API 2.0 query jobs with locator pages, error
bodies as JSON lists, `Sforce-Limit-Info`, the SOQL subset, and real TLS. Every test ends with
the peer stopped: its port refuses connections and no thread it started is left.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import socket
import ssl
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from connectors.sandbox.salesforce import (
    DATA_PATH,
    PeerRequest,
    PeerResponse,
    SalesforcePeer,
    field_service_store,
)
from tests.casedata import parametrize

API = "/services/data/v59.0"
UTC = dt.UTC
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


@pytest.fixture
def sf(peer: SalesforcePeer, http: requests.Session) -> Salesforce:
    return Salesforce(session_id=peer.session_id, instance_url=peer.instance_url, session=http)


def bearer(peer: SalesforcePeer) -> dict[str, str]:
    return {"Authorization": f"Bearer {peer.session_id}"}


def create_query_job(
    peer: SalesforcePeer, http: requests.Session, query: str, **options: str
) -> tuple[dict[str, Any], str]:
    """POST a Bulk 2.0 query job: the peer's answer and the job's address."""
    created = http.post(
        f"{peer.instance_url}{API}/jobs/query",
        json={"operation": "query", "query": query, **options},
        headers=bearer(peer),
    ).json()
    return created, f"{peer.instance_url}{API}/jobs/query/{created['id']}"


def live_work_orders(peer: SalesforcePeer) -> list[dict[str, Any]]:
    return peer.store.rows("WorkOrder")


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {record["Id"] for record in records}


# --- TLS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_is_real_and_trusted_only_with_the_peer_ca(
    peer: SalesforcePeer, http: requests.Session, host: str
) -> None:
    url = f"https://{host}:{peer.port}/services/data/"
    with requests.Session() as stranger, pytest.raises(requests.exceptions.SSLError):
        stranger.get(url, timeout=5)
    assert http.get(url, timeout=5).status_code == 200


def test_plain_http_is_not_answered(peer: SalesforcePeer) -> None:
    with requests.Session() as plain, pytest.raises(requests.exceptions.ConnectionError):
        plain.get(f"http://127.0.0.1:{peer.port}/services/data/", timeout=5)


# --- REST query -----------------------------------------------------------------------------


def test_query_pages_by_next_records_path(peer: SalesforcePeer, sf: Salesforce) -> None:
    first = sf.query("SELECT Id FROM WorkOrder")
    expected, page = len(live_work_orders(peer)), peer.page_size
    assert (first["totalSize"], first["done"], len(first["records"])) == (expected, False, page)
    # a path, which simple-salesforce appends to https://{instance}
    assert first["nextRecordsUrl"].startswith(f"{API}/query/01g")
    assert first["nextRecordsUrl"].endswith(f"-{page}")

    records = list(sf.query_all_iter("SELECT Id FROM WorkOrder"))

    assert ids(records) == ids(live_work_orders(peer))
    pages = -(-expected // page)
    assert pages >= 3
    assert peer.count("GET", f"{API}/query/01g") == pages - 1  # the second read's pages
    assert peer.calls[f"GET {API}/query/"] == 2


def test_query_all_includes_deleted_records(peer: SalesforcePeer, sf: Salesforce) -> None:
    every = peer.store.rows("WorkOrder", include_deleted=True)
    assert len(every) > len(live_work_orders(peer))

    result = sf.query_all("SELECT Id, IsDeleted FROM WorkOrder", include_deleted=True)

    assert ids(result["records"]) == ids(every)
    assert peer.calls[f"GET {API}/queryAll/"] == 1


def test_record_shape_as_salesforce_writes_it(peer: SalesforcePeer, http: requests.Session) -> None:
    sf = Salesforce(
        session_id=peer.session_id,
        instance_url=peer.instance_url,
        session=http,
        parse_float=Decimal,
    )
    records = sf.query(
        "SELECT Id, WorkOrderNumber, Account.Name, Montant_Engage__c, Urgent__c,"
        " Date_Commande__c, SystemModstamp, EndDate FROM WorkOrder"
        " WHERE WorkOrderNumber IN ('00000001', '00000008')"
        " ORDER BY WorkOrderNumber"
    )["records"]

    first, orphan = records
    assert first["attributes"] == {
        "type": "WorkOrder",
        "url": f"{API}/sobjects/WorkOrder/{first['Id']}",
    }
    assert first["Account"]["attributes"]["type"] == "Account"
    assert first["Account"]["Name"] == "Loire Habitat Social"
    assert first["Montant_Engage__c"] == Decimal("50.00")
    assert first["Urgent__c"] is True
    assert first["Date_Commande__c"] == "2025-11-20"
    assert first["SystemModstamp"] == "2025-12-01T00:00:00.000+0000"
    assert first["EndDate"] is None
    assert orphan["Account"] is None  # a null parent is a null, not a missing key
    assert len(first["Id"]) == 18


# --- SOQL subset ----------------------------------------------------------------------------


def account_city(peer: SalesforcePeer, record: dict[str, Any]) -> str | None:
    account = peer.store.get("Account", record["AccountId"])
    return None if account is None else account["BillingCity"]


FILTERS: list[tuple[str, str, Callable[[SalesforcePeer, dict[str, Any]], bool]]] = [
    (
        "datetime at or after",
        "SystemModstamp >= 2026-01-01T00:00:00Z",
        lambda p, r: r["SystemModstamp"] >= dt.datetime(2026, 1, 1, tzinfo=UTC),
    ),
    (
        "datetime with an offset",
        "SystemModstamp < 2026-01-01T01:00:00+01:00",
        lambda p, r: r["SystemModstamp"] < dt.datetime(2026, 1, 1, tzinfo=UTC),
    ),
    ("text ignores case", "Status = 'completed'", lambda p, r: r["Status"] == "Completed"),
    (
        "in a list",
        "Status IN ('New', 'On Hold')",
        lambda p, r: r["Status"] in ("New", "On Hold"),
    ),
    ("not in a list", "Status NOT IN ('New')", lambda p, r: r["Status"] != "New"),
    ("like", "Subject LIKE '%fuite%'", lambda p, r: "fuite" in r["Subject"].lower()),
    (
        "and, or, parentheses",
        "(Status = 'New' OR Status = 'Closed') AND Urgent__c = true",
        lambda p, r: r["Status"] in ("New", "Closed") and r["Urgent__c"],
    ),
    ("not", "NOT Urgent__c = true", lambda p, r: not r["Urgent__c"]),
    ("is null", "EndDate = null", lambda p, r: r["EndDate"] is None),
    (
        "number, not null",
        "Montant_Engage__c != null AND Montant_Engage__c > 8000.5",
        lambda p, r: r["Montant_Engage__c"] is not None and r["Montant_Engage__c"] > 8000,
    ),
    (
        "date literal",
        "Date_Commande__c <= 2025-11-25",
        lambda p, r: r["Date_Commande__c"] <= dt.date(2025, 11, 25),
    ),
    (
        "through a relationship",
        "Account.BillingCity = 'Lyon'",
        lambda p, r: account_city(p, r) == "Lyon",
    ),
    (
        "escaped quote",
        r"Account.Name = 'Résidences de l\'Estuaire'",
        lambda p, r: account_city(p, r) == "Saint-Nazaire",
    ),
]


@pytest.mark.parametrize(
    ("where", "keep"), [(where, keep) for _, where, keep in FILTERS], ids=[f[0] for f in FILTERS]
)
def test_where_selects_the_right_records(
    peer: SalesforcePeer,
    sf: Salesforce,
    where: str,
    keep: Callable[[SalesforcePeer, dict[str, Any]], bool],
) -> None:
    expected = ids([record for record in live_work_orders(peer) if keep(peer, record)])
    assert expected, "the filter must keep some records to prove anything"
    assert len(expected) < len(live_work_orders(peer))

    records = sf.query_all(f"SELECT Id FROM WorkOrder WHERE {where}")["records"]

    assert ids(records) == expected


def test_order_by_and_limit(peer: SalesforcePeer, sf: Salesforce) -> None:
    records = sf.query(
        "SELECT Id, Montant_Engage__c FROM WorkOrder"
        " ORDER BY Montant_Engage__c DESC NULLS LAST, WorkOrderNumber LIMIT 5"
    )["records"]
    amounts = sorted(
        (r["Montant_Engage__c"] for r in live_work_orders(peer) if r["Montant_Engage__c"]),
        reverse=True,
    )
    assert [Decimal(str(r["Montant_Engage__c"])) for r in records] == amounts[:5]


# --- Errors ---------------------------------------------------------------------------------


@parametrize("soql_errors", "refused", "soql, code")
def test_refused_query_is_a_json_error_list(
    peer: SalesforcePeer, http: requests.Session, sf: Salesforce, soql: str, code: str
) -> None:
    answer = http.get(f"{peer.instance_url}{API}/query/", params={"q": soql}, headers=bearer(peer))
    assert answer.status_code == 400
    body = answer.json()
    assert isinstance(body, list) and body[0]["errorCode"] == code and body[0]["message"]

    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query(soql)
    assert raised.value.content[0]["errorCode"] == code


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer 00Dwrong"}, {"Authorization": "Basic abc"}],
    ids=["no token", "wrong token", "wrong scheme"],
)
def test_bad_token_is_invalid_session(
    peer: SalesforcePeer, http: requests.Session, headers: dict[str, str]
) -> None:
    answer = http.get(f"{peer.instance_url}{API}/limits/", headers=headers)
    assert answer.status_code == 401
    assert answer.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert peer.api_used == 0  # refused calls do not count against the limit


def test_expired_session_reaches_simple_salesforce(peer: SalesforcePeer, sf: Salesforce) -> None:
    peer.faults.expired_session = True
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.query("SELECT Id FROM WorkOrder")
    assert raised.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    with pytest.raises(SalesforceExpiredSession):
        list(sf.bulk2.WorkOrder.query("SELECT Id FROM WorkOrder", wait=0))


def test_exhausted_limit_is_refused_with_usage(
    peer: SalesforcePeer, http: requests.Session, sf: Salesforce
) -> None:
    peer.exhaust_api_limit()
    answer = http.get(
        f"{peer.instance_url}{API}/query/",
        params={"q": "SELECT Id FROM WorkOrder"},
        headers=bearer(peer),
    )
    assert answer.status_code == 403
    assert answer.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert answer.headers["Sforce-Limit-Info"] == "api-usage=15000/15000"
    with pytest.raises(SalesforceRefusedRequest) as raised:
        sf.query("SELECT Id FROM WorkOrder")
    assert raised.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_limit_info_counts_every_call(peer: SalesforcePeer, sf: Salesforce) -> None:
    for _ in range(3):
        sf.query("SELECT Id FROM Account")
    assert sf.api_usage["api-usage"].used == 3
    assert sf.api_usage["api-usage"].total == 15000
    assert sf.limits()["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - 4}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", f"{API}/nowhere", 404, "NOT_FOUND"),
        ("GET", "/services/data/v19.0/limits/", 404, "NOT_FOUND"),
        ("POST", f"{API}/query/", 405, "METHOD_NOT_ALLOWED"),
        ("GET", f"{API}/query/01gunknown-200", 400, "INVALID_QUERY_LOCATOR"),
    ],
    ids=["unknown path", "unsupported version", "wrong method", "unknown cursor"],
)
def test_other_errors(
    peer: SalesforcePeer, http: requests.Session, method: str, path: str, status: int, code: str
) -> None:
    answer = http.request(method, f"{peer.instance_url}{path}", headers=bearer(peer))
    assert (answer.status_code, answer.json()[0]["errorCode"]) == (status, code)
    assert answer.headers["Sforce-Limit-Info"].startswith("api-usage=")


# --- Faults ---------------------------------------------------------------------------------


def test_unavailable_for_the_first_calls_then_answers(
    peer: SalesforcePeer, http: requests.Session
) -> None:
    peer.faults.unavailable_calls = 2
    url = f"{peer.instance_url}{API}/limits/"
    statuses = [http.get(url, headers=bearer(peer)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert peer.calls[f"GET {API}/limits/"] == 3


def test_slow_answer_times_the_client_out_and_stop_does_not_wait_for_it(
    peer: SalesforcePeer, http: requests.Session
) -> None:
    peer.faults.slow_calls = 1
    peer.faults.slow_seconds = 600  # stop() wakes the sleeping handler
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(f"{peer.instance_url}{API}/limits/", headers=bearer(peer), timeout=0.3)
    assert http.get(f"{peer.instance_url}{API}/limits/", headers=bearer(peer)).ok


def test_stop_closes_idle_and_busy_connections() -> None:
    before = set(threading.enumerate())
    peer = SalesforcePeer(field_service_store(20)).start()
    port = peer.port
    context = ssl.create_default_context(cafile=peer.ca_path)
    idle = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
    )
    silent = socket.create_connection(("127.0.0.1", port))  # never even starts TLS
    peer.faults.slow_calls, peer.faults.slow_seconds = 1, 600
    outcome: list[BaseException | int] = []

    def busy() -> None:
        with peer.http_session() as session:
            try:
                outcome.append(
                    session.get(f"{peer.instance_url}{API}/limits/", timeout=600).status_code
                )
            except requests.RequestException as error:
                outcome.append(error)

    caller = threading.Thread(target=busy)
    caller.start()
    while peer.count() == 0:  # the busy call has reached the peer
        threading.Event().wait(0.01)

    peer.stop()
    caller.join()

    assert len(outcome) == 1 and outcome[0] != 200
    assert idle.recv(1) == b""  # closed by the peer
    idle.close()
    silent.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert set(threading.enumerate()) <= before


# --- Bulk API 2.0 ---------------------------------------------------------------------------


def rows_of(pages: list[str]) -> list[dict[str, str]]:
    return [row for page in pages for row in csv.DictReader(io.StringIO(page))]


def test_bulk_query_through_simple_salesforce(peer: SalesforcePeer, sf: Salesforce) -> None:
    pages = list(
        sf.bulk2.WorkOrder.query(
            "SELECT Id, Account.Name, Description, Urgent__c FROM WorkOrder", wait=0
        )
    )

    rows = rows_of(pages)
    assert len(pages) == -(-len(live_work_orders(peer)) // peer.bulk_page_size) >= 3
    assert {row["Id"] for row in rows} == ids(live_work_orders(peer))
    assert list(rows[0]) == ["Id", "Account.Name", "Description", "Urgent__c"]
    first = next(row for row in rows if row["Description"])
    assert first["Description"] == "Fuite sous l'évier\nAccès par le gardien"
    assert {row["Urgent__c"] for row in rows} == {"true", "false"}
    job = next(call for call in peer.calls if call.startswith(f"POST {API}/jobs/query"))
    assert job == f"POST {API}/jobs/query"
    assert peer.count("GET", f"{API}/jobs/query/750") == 2 + len(pages)  # 2 polls + pages


def test_bulk_respects_max_records_and_answers_locator_headers(
    peer: SalesforcePeer, http: requests.Session
) -> None:
    created, job = create_query_job(peer, http, "SELECT Id FROM Account")
    assert created["state"] == "UploadComplete" and created["id"].startswith("750")
    early = http.get(f"{job}/results", headers=bearer(peer))
    assert (early.status_code, early.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    states = [http.get(job, headers=bearer(peer)).json()["state"] for _ in range(2)]
    assert states == ["InProgress", "JobComplete"]

    locator, sizes = "", []
    while locator != "null":
        answer = http.get(
            f"{job}/results",
            params={"maxRecords": 2, **({"locator": locator} if locator else {})},
            headers=bearer(peer),
        )
        sizes.append(int(answer.headers["Sforce-NumberOfRecords"]))
        locator = answer.headers["Sforce-Locator"]
    assert sizes == [2, 2, 1]  # five accounts, two at a time

    assert http.delete(job, headers=bearer(peer)).status_code == 204
    assert http.get(job, headers=bearer(peer)).status_code == 404


def test_bulk_job_can_be_aborted_before_it_completes(
    peer: SalesforcePeer, http: requests.Session
) -> None:
    _, job = create_query_job(peer, http, "SELECT Id FROM WorkOrder")
    aborted = http.patch(job, json={"state": "Aborted"}, headers=bearer(peer)).json()
    assert aborted["state"] == "Aborted"
    assert http.get(job, headers=bearer(peer)).json()["state"] == "Aborted"


def test_bulk_results_honour_delimiter_line_ending_and_gzip(
    peer: SalesforcePeer, http: requests.Session
) -> None:
    _, job = create_query_job(
        peer,
        http,
        "SELECT Name, BillingCity FROM Account ORDER BY Name",
        columnDelimiter="SEMICOLON",
        lineEnding="CRLF",
    )
    while http.get(job, headers=bearer(peer)).json()["state"] != "JobComplete":
        pass
    answer = http.get(f"{job}/results", headers=bearer(peer), stream=True)
    raw = answer.raw.read(decode_content=False)
    assert answer.headers["Content-Encoding"] == "gzip" and raw[:2] == b"\x1f\x8b"
    text = gzip.decompress(raw).decode()
    assert text.startswith('"Name";"BillingCity"\r\n"Cité des Jardins, Lyon";"Lyon"\r\n')


def test_bulk_query_error_is_reported_at_job_creation(peer: SalesforcePeer, sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        list(sf.bulk2.WorkOrder.query("SELECT Nope__c FROM WorkOrder", wait=0))
    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"


# --- Describe and extension -----------------------------------------------------------------


def test_describe_lists_field_service_fields(sf: Salesforce) -> None:
    described = sf.WorkOrder.describe()
    fields = {field["name"]: field for field in described["fields"]}
    assert {"WorkOrderNumber", "Status", "StartDate", "EndDate", "BT_Number__c"} <= set(fields)
    assert fields["BT_Number__c"]["externalId"] is True
    assert fields["AccountId"]["relationshipName"] == "Account"
    names = {sobject["name"] for sobject in sf.describe()["sobjects"]}
    assert {"WorkOrder", "ServiceAppointment", "Account"} <= names


def test_added_route_is_served_authenticated_and_counted(
    peer: SalesforcePeer, http: requests.Session
) -> None:
    def ingest(request: PeerRequest) -> PeerResponse:
        return PeerResponse.json(
            {"id": "7505E0000000099QAA", "state": "Open", "v": request.version}
        )

    peer.add_route("POST", DATA_PATH + r"jobs/ingest/?", ingest)

    answer = http.post(f"{peer.instance_url}{API}/jobs/ingest", json={}, headers=bearer(peer))
    assert answer.json() == {"id": "7505E0000000099QAA", "state": "Open", "v": "59.0"}
    assert http.post(f"{peer.instance_url}{API}/jobs/ingest", json={}).status_code == 401
    assert peer.calls[f"POST {API}/jobs/ingest"] == 2
