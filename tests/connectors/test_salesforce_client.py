"""The Salesforce reader against the local HTTPS peer, simple-salesforce used unmodified.

REST (several pages) and Bulk API 2.0 (several locator pages) give the same RawTable; an
incremental `since` reads from its bound on; names, bounds and `where` conditions that could
change the query are refused before any call; an expired session, an exhausted API limit, a
refused query and an unavailable server each end in their own error class; transient faults are
retried (counted at the peer); the TLS certificate is really checked.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from connectors.errors import ConfigError, PermanentError, RetriableError
from connectors.rawtable import RawTable
from connectors.retry import RetryPolicy
from connectors.salesforce.client import (
    DEFAULT_API_VERSION,
    SalesforceLimitError,
    SalesforceQueryError,
    SalesforceSessionError,
    SalesforceUnavailableError,
    connect,
    read_salesforce,
)
from connectors.salesforce.models import SalesforceAuth
from connectors.salesforce.soql import check_where
from connectors.sandbox.salesforce import SalesforcePeer

API = "/services/data/v59.0"
FAST = RetryPolicy(attempts=4, first_wait=0.001, max_wait=0.01, jitter=0.001)
UTC = dt.UTC
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")

WORK_ORDER_FIELDS = [
    "Id",
    "WorkOrderNumber",
    "Status",
    "Subject",
    "Description",
    "StartDate",
    "EndDate",
    "Account.Name",
    "Montant_Engage__c",
    "Urgent__c",
    "Date_Commande__c",
    "BT_Number__c",
    "SystemModstamp",
]
APPOINTMENT_FIELDS = [
    "Id",
    "AppointmentNumber",
    "Status",
    "ParentRecordId",
    "Work_Order__r.BT_Number__c",
    "SchedStartTime",
    "SchedEndTime",
    "ActualStartTime",
    "ActualEndTime",
    "ActualDuration",
    "Technicien__c",
    "Absence_Locataire__c",
    "Note_Locataire__c",
    "SystemModstamp",
]


@pytest.fixture
def read(peer: SalesforcePeer, http: requests.Session) -> Callable[..., RawTable]:
    """`read_salesforce` on the peer, with tiny retry waits and no pause before Bulk polls."""

    def reader(**options: Any) -> RawTable:
        options.setdefault("object_name", "WorkOrder")
        options.setdefault("fields", WORK_ORDER_FIELDS)
        options.setdefault("retry", FAST)
        options.setdefault("bulk_wait", 0)
        options.setdefault("session", http)
        return read_salesforce(peer.session_auth(), **options)

    return reader


def live(peer: SalesforcePeer, object_name: str = "WorkOrder") -> list[dict[str, Any]]:
    return peer.store.rows(object_name)


def row(table: RawTable, column: str, value: str) -> dict[str, str]:
    matches = table.frame[table.frame[column] == value]
    assert len(matches) == 1
    return matches.iloc[0].to_dict()


def all_text(table: RawTable) -> bool:
    return all(
        isinstance(value, str) for column in table.frame for value in table.frame[column]
    ) and all(isinstance(value, str) for value in table.source_rows)


MODES = pytest.mark.parametrize("bulk", [False, True], ids=["rest", "bulk"])


# --- Reading --------------------------------------------------------------------------------


def test_rest_pull_reads_every_page_as_text(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    table = read()

    expected = len(live(peer))
    assert len(table) == expected
    assert list(table.frame.columns) == WORK_ORDER_FIELDS
    assert peer.calls[f"GET {API}/query/"] == 1
    pages = -(-expected // peer.page_size)
    assert peer.count("GET", f"{API}/query/01g") == pages - 1 >= 2  # 3+ pages
    assert all_text(table)
    assert row(table, "WorkOrderNumber", "00000001") == {
        "Id": row(table, "WorkOrderNumber", "00000001")["Id"],
        "WorkOrderNumber": "00000001",
        "Status": "New",
        "Subject": "Recherche de fuite, salle de bains — logement 1",
        "Description": "Fuite sous l'évier\nAccès par le gardien",
        "StartDate": "2025-12-03T00:00:00.000Z",
        "EndDate": "",  # null
        "Account.Name": "Loire Habitat Social",
        "Montant_Engage__c": "50.00",  # as Salesforce wrote it, trailing zero kept
        "Urgent__c": "true",
        "Date_Commande__c": "2025-11-20",
        "BT_Number__c": "BT345678",
        "SystemModstamp": "2025-12-01T00:00:00.000Z",
    }
    assert row(table, "WorkOrderNumber", "00000008")["Account.Name"] == ""  # no parent
    assert row(table, "WorkOrderNumber", "00000006")["Montant_Engage__c"] == ""  # null amount
    assert table.source_rows.tolist() == ("WorkOrder:" + table.frame["Id"]).tolist()
    assert table.frame["Id"].is_monotonic_increasing
    assert table.origin == f"Salesforce 127.0.0.1:{peer.port} WorkOrder"


@pytest.mark.parametrize(
    ("object_name", "fields"),
    [("WorkOrder", WORK_ORDER_FIELDS), ("ServiceAppointment", APPOINTMENT_FIELDS)],
    ids=["work orders", "service appointments"],
)
def test_bulk_pull_gives_the_same_table_as_rest(
    peer: SalesforcePeer, read: Callable[..., RawTable], object_name: str, fields: list[str]
) -> None:
    rest = read(object_name=object_name, fields=fields)
    bulk = read(object_name=object_name, fields=fields, bulk=True)

    pages = peer.count("GET", f"{API}/jobs/query/750") - 2  # minus the two state polls
    assert pages == -(-len(live(peer, object_name)) // peer.bulk_page_size) >= 2
    assert len(rest) == len(live(peer, object_name)) > peer.bulk_page_size
    pd.testing.assert_frame_equal(bulk.frame, rest.frame)
    assert bulk.source_rows.tolist() == rest.source_rows.tolist()
    assert bulk.fingerprint == rest.fingerprint
    assert bulk.origin == rest.origin


def test_field_service_appointment_fields_come_through(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    table = read(object_name="ServiceAppointment", fields=APPOINTMENT_FIELDS)

    completed = row(table, "AppointmentNumber", "SA-0006")  # work order 11: Completed
    assert completed["Status"] == "Completed"
    assert completed["Work_Order__r.BT_Number__c"] == "BT345688"
    assert completed["ParentRecordId"].startswith("0WO")
    assert completed["SchedStartTime"] == "2025-12-04T07:00:00.000Z"
    assert completed["ActualStartTime"] == "2025-12-04T07:10:00.000Z"
    assert completed["ActualDuration"] == "85"
    assert completed["Note_Locataire__c"] == "1"
    assert completed["Absence_Locataire__c"] == "false"
    assert completed["Technicien__c"] == "Sophie O'Neill"
    pending = row(table, "AppointmentNumber", "SA-0001")
    assert (pending["ActualStartTime"], pending["Note_Locataire__c"]) == ("", "")


@MODES
def test_numbers_arrive_digit_for_digit(
    peer: SalesforcePeer, read: Callable[..., RawTable], bulk: bool
) -> None:
    amounts = {"BT900001": "0.10", "BT900002": "12345678901234.56", "BT900003": "-7.5"}
    with peer.lock:
        for number, amount in amounts.items():
            peer.store.insert(
                "WorkOrder", {"BT_Number__c": number, "Montant_Engage__c": Decimal(amount)}
            )

    table = read(
        fields=["BT_Number__c", "Montant_Engage__c"], where="BT_Number__c LIKE 'BT9%'", bulk=bulk
    )

    assert dict(
        zip(table.frame["BT_Number__c"], table.frame["Montant_Engage__c"], strict=True)
    ) == (amounts)


@MODES
def test_empty_result_has_the_columns(read: Callable[..., RawTable], bulk: bool) -> None:
    table = read(fields=["Id", "Status"], where="Status = 'Nothing like this'", bulk=bulk)
    assert len(table) == 0 and len(table.source_rows) == 0
    assert list(table.frame.columns) == ["Id", "Status"]


def test_fingerprint_follows_the_values(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    first, again = read(), read()
    with peer.lock:
        record = live(peer)[10]
        peer.store.update("WorkOrder", record["Id"], {"Subject": record["Subject"] + "!"})
    changed = read()

    assert first.fingerprint == again.fingerprint
    assert changed.fingerprint != first.fingerprint


@pytest.mark.parametrize(
    ("fields", "key", "columns", "first_lineage"),
    [
        (["WorkOrderNumber"], ("Id",), ["WorkOrderNumber", "Id"], "WorkOrder:0WO5E0000000006WAA"),
        (["Status"], ("BT_Number__c",), ["Status", "BT_Number__c"], "WorkOrder:BT345678"),
        (
            ["WorkOrderNumber", "Status"],
            ("Status", "WorkOrderNumber"),
            ["WorkOrderNumber", "Status"],
            "WorkOrder:Status=Canceled,WorkOrderNumber=00000007",
        ),
        (["WorkOrderNumber"], (), ["WorkOrderNumber"], "WorkOrder:row 1"),
    ],
    ids=["key read though not listed", "external id key", "two-field key", "no key"],
)
def test_key_names_each_row(
    read: Callable[..., RawTable],
    fields: list[str],
    key: tuple[str, ...],
    columns: list[str],
    first_lineage: str,
) -> None:
    table = read(fields=fields, key=key)
    assert list(table.frame.columns) == columns
    assert table.source_rows.iloc[0] == first_lineage


@MODES
def test_names_are_case_insensitive(read: Callable[..., RawTable], bulk: bool) -> None:
    table = read(fields=["workordernumber", "ACCOUNT.name"], key=("id",), bulk=bulk)
    assert list(table.frame.columns) == ["workordernumber", "ACCOUNT.name", "id"]
    assert table.frame.iloc[0].tolist() == [
        "00000001",
        "Loire Habitat Social",
        "0WO5E0000000006WAA",
    ]


# --- Incremental ----------------------------------------------------------------------------


@MODES
def test_since_reads_from_the_bound_on(
    peer: SalesforcePeer, read: Callable[..., RawTable], bulk: bool
) -> None:
    bound = dt.datetime(2026, 1, 1, tzinfo=UTC)
    table = read(since=("SystemModstamp", "2026-01-01T00:00:00Z"), bulk=bulk)

    expected = {r["BT_Number__c"] for r in live(peer) if r["SystemModstamp"] >= bound}
    assert set(table.frame["BT_Number__c"]) == expected
    assert 0 < len(expected) < len(live(peer))
    # the row stamped exactly at the bound is read (>=): rows sharing it are never lost
    assert table.frame["SystemModstamp"].min() == "2026-01-01T00:00:00.000Z"


def test_since_is_an_unquoted_literal_in_the_query(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    read(
        fields=["Id"],
        where="Status = 'Completed'",
        since=("SystemModstamp", "2026-01-01T00:00:00+00:00"),
    )
    method, path, status = peer.log[0]
    assert (method, status) == ("GET", 200)
    assert path.endswith(
        "q=SELECT Id FROM WorkOrder WHERE (Status = 'Completed') AND"
        " SystemModstamp >= 2026-01-01T00:00:00Z"
    )


def test_since_on_a_date_field(peer: SalesforcePeer, read: Callable[..., RawTable]) -> None:
    table = read(fields=["Date_Commande__c"], since=("Date_Commande__c", "2026-01-15"))
    expected = [r for r in live(peer) if r["Date_Commande__c"] >= dt.date(2026, 1, 15)]
    assert len(table) == len(expected) > 0


@pytest.mark.parametrize(
    "bound",
    [
        "'2026-01-01T00:00:00Z'",
        "2026-01-01T00:00:00Z OR Id != null",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00+01:00",
        "2026-02-30T00:00:00Z",
        "2026-01-01T25:00:00Z",
        "01/01/2026",
        "",
        20260101,
    ],
    ids=[
        "quoted",
        "injection",
        "no time zone",
        "not UTC",
        "impossible date",
        "impossible hour",
        "french date",
        "empty",
        "not text",
    ],
)
def test_since_bound_must_be_iso_utc(
    peer: SalesforcePeer, read: Callable[..., RawTable], bound: Any
) -> None:
    with pytest.raises(ConfigError, match=r"UTC date-time|real date"):
        read(since=("SystemModstamp", bound))
    assert peer.count() == 0


# --- Names and conditions from config --------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"object_name": "WorkOrder WHERE Id != null"},
        {"object_name": "WorkOrder;"},
        {"object_name": "Work Order"},
        {"object_name": ""},
        {"fields": ["Id, (SELECT Id FROM ServiceAppointments)"]},
        {"fields": ["Id FROM Account --"]},
        {"fields": ["Subject'"]},
        {"fields": ["Account..Name"]},
        {"fields": ["_Id"]},
        {"fields": []},
        {"fields": "Id"},
        {"fields": ["Id", "id"]},
        {"key": ("Id) OR (Id",)},
        {"since": ("SystemModstamp >= 2020-01-01T00:00:00Z OR SystemModstamp", "2026-01-01")},
    ],
    ids=[
        "object with a clause",
        "object with a semicolon",
        "object with a space",
        "empty object",
        "sub-query as a field",
        "comment in a field",
        "quote in a field",
        "empty relationship",
        "leading underscore",
        "no field",
        "fields as one string",
        "same field twice",
        "key with a clause",
        "since field with a clause",
    ],
)
def test_names_that_could_change_the_query_are_refused(
    peer: SalesforcePeer, read: Callable[..., RawTable], options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match=r"Salesforce|no fields|`fields`"):
        read(**options)
    assert peer.count() == 0


@pytest.mark.parametrize(
    "where",
    [
        "Status = 'New' LIMIT 1",
        "Status = 'New'; DELETE",
        "Status = 'New",
        "Id IN (SELECT WorkOrderId FROM WorkOrderLineItem)",
        "(Status = 'New'",
        "Status = 'New') OR (Id != null",
        "Status = 'New' ORDER BY Id",
        'Status = "New"',
        "Status = 'New' FOR UPDATE",
        "   ",
    ],
    ids=[
        "limit",
        "second statement",
        "open quote",
        "sub-query",
        "open parenthesis",
        "parenthesis escape",
        "order by",
        "double quotes",
        "for update",
        "blank",
    ],
)
def test_where_that_could_do_more_than_filter_is_refused(
    peer: SalesforcePeer, read: Callable[..., RawTable], where: str
) -> None:
    with pytest.raises(ConfigError, match="where"):
        read(where=where)
    assert peer.count() == 0


def test_plain_where_filters(peer: SalesforcePeer, read: Callable[..., RawTable]) -> None:
    table = read(
        where="Status IN ('New', 'Completed') AND (Subject LIKE '%fuite%' OR City = 'Lyon')"
    )
    expected = {
        r["BT_Number__c"]
        for r in live(peer)
        if r["Status"] in ("New", "Completed") and ("fuite" in r["Subject"] or r["City"] == "Lyon")
    }
    assert expected and set(table.frame["BT_Number__c"]) == expected


@pytest.mark.parametrize(
    "where",
    [
        "CreatedDate = LAST_N_DAYS:30",
        r"Subject = 'l\'eau; LIMIT 5 -- (SELECT'",
        "Montant_Engage__c >= -12.5 AND SystemModstamp < 2026-01-01T00:00:00Z",
        "NOT (Status != 'New')",
    ],
    ids=["date literal", "keywords inside a string", "numbers and date-times", "not"],
)
def test_where_accepts_plain_conditions(where: str) -> None:
    assert check_where(where) == where


# --- Errors ---------------------------------------------------------------------------------


@MODES
def test_expired_session_and_exhausted_limit_are_distinct(
    peer: SalesforcePeer, read: Callable[..., RawTable], bulk: bool
) -> None:
    peer.faults.expired_session = True
    with pytest.raises(SalesforceSessionError) as expired:
        read(bulk=bulk)
    peer.faults.expired_session = False
    calls_for_session = peer.count()
    peer.exhaust_api_limit()
    with pytest.raises(SalesforceLimitError) as exhausted:
        read(bulk=bulk)

    session_error, limit_error = expired.value, exhausted.value
    # what to do next differs: fix the credentials / wait for the limit to reset
    assert isinstance(session_error, ConfigError) and not isinstance(session_error, RetriableError)
    assert isinstance(limit_error, RetriableError) and not isinstance(limit_error, ConfigError)
    assert "session expired or invalid" in str(session_error)
    assert str(session_error).endswith("— renew the session id / check the credentials")
    assert "INVALID_SESSION_ID" in str(session_error)
    assert peer.session_id not in str(session_error)
    assert "API limit exhausted: 15000/15000 calls in 24h" in str(limit_error)
    assert str(limit_error).endswith("— the pull will resume when the limit resets")
    assert (limit_error.used, limit_error.total) == (15000, 15000)
    # neither is retried within the run
    assert calls_for_session == 1
    assert peer.count() == 2


def test_limit_refused_while_usage_is_below_the_total(
    peer: SalesforcePeer, read: Callable[..., RawTable], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Salesforce also answers REQUEST_LIMIT_EXCEEDED to too many concurrent long requests
    def refuse(request: Any) -> Any:
        from connectors.sandbox.salesforce import PeerFault

        raise PeerFault(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")

    peer.add_route("GET", r"/services/data/v59\.0/query/?", refuse)
    with pytest.raises(SalesforceLimitError, match="too many long-running requests") as raised:
        read()
    assert (raised.value.used, raised.value.total) == (1, 15000)


@MODES
def test_transient_503_is_retried_then_succeeds(
    peer: SalesforcePeer, read: Callable[..., RawTable], bulk: bool
) -> None:
    clean = read(bulk=bulk)
    peer.calls.clear()
    peer.faults.unavailable_calls = 2

    table = read(bulk=bulk)

    first_call = f"POST {API}/jobs/query" if bulk else f"GET {API}/query/"
    assert peer.calls[first_call] == 3  # two 503s, then the answer
    pd.testing.assert_frame_equal(table.frame, clean.frame)
    assert table.fingerprint == clean.fingerprint


def test_rest_retries_only_the_failed_page(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    pages = -(-len(live(peer)) // peer.page_size)
    peer.faults.path_prefix = f"{API}/query/01g"  # the nextRecordsUrl pages only
    peer.faults.unavailable_calls = 2

    table = read()

    assert len(table) == len(live(peer))
    assert peer.calls[f"GET {API}/query/"] == 1  # the query itself was not run again
    assert peer.count("GET", f"{API}/query/01g") == pages - 1 + 2


@MODES
def test_unavailable_after_every_attempt_is_retriable(
    peer: SalesforcePeer, read: Callable[..., RawTable], bulk: bool
) -> None:
    peer.faults.unavailable_calls = 100
    with pytest.raises(SalesforceUnavailableError) as raised:
        read(bulk=bulk)
    assert isinstance(raised.value, RetriableError)
    assert "HTTP 503" in str(raised.value) and "SERVER_UNAVAILABLE" in str(raised.value)
    assert "(gave up after 4 attempts) — Salesforce may be down or slow" in str(raised.value)
    assert peer.count() == FAST.attempts


def test_slow_answer_times_out_and_is_retried(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    peer.faults.slow_calls = 1
    peer.faults.slow_seconds = 600  # the peer's stop wakes it
    table = read(timeout=0.5)
    assert len(table) == len(live(peer))
    assert peer.calls[f"GET {API}/query/"] == 2


@MODES
def test_always_slow_is_unavailable(
    peer: SalesforcePeer, read: Callable[..., RawTable], bulk: bool
) -> None:
    peer.faults.slow_calls = 2
    peer.faults.slow_seconds = 600
    with pytest.raises(SalesforceUnavailableError, match=r"did not answer within 0.3 s"):
        read(
            timeout=0.3,
            bulk=bulk,
            retry=RetryPolicy(attempts=2, first_wait=0, max_wait=0, jitter=0),
        )
    assert peer.count() == 2


@MODES
@pytest.mark.parametrize(
    ("options", "code", "said"),
    [
        ({"where": "Status = = 'New'"}, "MALFORMED_QUERY", "unexpected token: '='"),
        ({"fields": ["Id", "Foo__c"]}, "INVALID_FIELD", "No such column 'Foo__c'"),
        ({"object_name": "Chantier__c"}, "INVALID_TYPE", "sObject type 'Chantier__c'"),
    ],
    ids=["malformed query", "unknown field", "unknown object"],
)
def test_refused_query_is_permanent_and_not_retried(
    peer: SalesforcePeer,
    read: Callable[..., RawTable],
    bulk: bool,
    options: dict[str, Any],
    code: str,
    said: str,
) -> None:
    with pytest.raises(SalesforceQueryError) as raised:
        read(bulk=bulk, **options)
    assert isinstance(raised.value, PermanentError)
    assert not isinstance(raised.value, RetriableError)
    assert code in str(raised.value) and said in str(raised.value)
    assert "SELECT " in str(raised.value)  # the query, so a person can see what was sent
    assert peer.count() == 1


def test_untrusted_certificate_is_a_config_error(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    with (
        requests.Session() as stranger,
        pytest.raises(ConfigError, match="TLS certificate") as raised,
    ):
        read(session=stranger)
    assert isinstance(raised.value.__cause__, requests.exceptions.SSLError)
    assert peer.count() == 0  # refused during the handshake, never retried into a request


def test_session_ca_bundle_wins_over_the_environment(
    peer: SalesforcePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets REQUESTS_CA_BUNDLE override a session's `verify` (psf/requests #3829)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    with requests.Session() as session:
        session.verify = peer.ca_path  # trust_env left on, as the datafix layer does
        table = read_salesforce(
            peer.session_auth(), object_name="Account", fields=["Name"], session=session
        )
    assert len(table) == 5


def test_unreachable_instance_is_retriable(http: requests.Session) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    auth = SalesforceAuth(session_id="00Dx!token", instance_url=f"https://127.0.0.1:{port}")
    with pytest.raises(SalesforceUnavailableError, match="could not be reached"):
        read_salesforce(auth, object_name="WorkOrder", fields=["Id"], session=http, retry=FAST)


# --- Credentials and connection ---------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"session_id": "00Dx!token"},
        {"instance_url": "https://acme.my.salesforce.com"},
        {"username": "u@acme.fr", "password": "p"},
        {"username": "u@acme.fr", "consumer_key": "3MVG9"},
        {
            "session_id": "00Dx!token",
            "instance_url": "https://a.my.salesforce.com",
            "password": "p",
        },
    ],
    ids=["nothing", "no instance", "no session", "no token", "no key file", "mixed"],
)
def test_incomplete_credentials_are_refused(values: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="give exactly one of"):
        SalesforceAuth(**values)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"instance_url": "http://acme.my.salesforce.com"}, "not an https address"),
        ({"instance_url": "https://acme.my.salesforce.com/services/data"}, "not an https"),
        ({"domain": "login.salesforce.com/evil?"}, "domain"),
    ],
    ids=["plain http", "with a path", "odd domain"],
)
def test_bad_addresses_are_refused(values: dict[str, str], match: str) -> None:
    base = {"session_id": "00Dx!token", "instance_url": "https://acme.my.salesforce.com"}
    with pytest.raises(ConfigError, match=match):
        SalesforceAuth(**{**base, **values})


def test_secrets_stay_out_of_repr() -> None:
    auth = SalesforceAuth(username="u@acme.fr", password="hunter2", security_token="tok3n")
    assert auth.mode == "password"
    assert "hunter2" not in repr(auth) and "tok3n" not in repr(auth)
    jwt = SalesforceAuth(username="u@acme.fr", consumer_key="3MVG9secret", private_key_file="k.pem")
    assert jwt.mode == "jwt" and "3MVG9secret" not in repr(jwt)


def test_missing_jwt_key_file_is_refused_before_any_call(tmp_path: Path) -> None:
    auth = SalesforceAuth(
        username="u@acme.fr", consumer_key="3MVG9", private_key_file=str(tmp_path / "none.pem")
    )
    with pytest.raises(ConfigError, match="private key file"):
        connect(auth)


@pytest.mark.parametrize(
    "version", ["v59.0", "59", "latest"], ids=["leading v", "no minor", "word"]
)
def test_bad_api_version_is_refused(peer: SalesforcePeer, version: str) -> None:
    with pytest.raises(ConfigError, match="API version"):
        connect(peer.session_auth(), version=version)


def test_connect_bounds_every_call_and_leaves_the_given_session_alone(
    peer: SalesforcePeer, http: requests.Session
) -> None:
    adapters = dict(http.adapters)
    sf = connect(peer.session_auth(), session=http, timeout=7, version="58.0")
    try:
        assert sf.session is not http
        assert sf.session.timeout == 7  # type: ignore[attr-defined]
        assert sf.base_url == f"{peer.instance_url}/services/data/v58.0/"
        assert sf.query("SELECT Id FROM Account")["totalSize"] == 5
        assert peer.calls["GET /services/data/v58.0/query/"] == 1
    finally:
        sf.session.close()
    assert http.adapters == adapters and http.verify == peer.ca_path
    assert http.get(f"{peer.instance_url}/services/data/").ok  # still open and usable
    assert DEFAULT_API_VERSION == "59.0"
