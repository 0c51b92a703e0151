"""One retry policy for SOAP sources and sinks, case by case, as datafixes/README.md says it.

Transient (retried with backoff): a timeout, a refused connection, a connection cut in the
middle of the answer, HTTP 5xx or 429 without a SOAP fault, a SOAP fault whose code the
datafix lists in `transient_faults` (`Server.Busy`, `Server.Unavailable`, `Server.Timeout` by
default). Permanent: every other SOAP fault (even an unlisted `Server.*`, sent with HTTP 500 as
SOAP 1.1 sends every fault), HTTP 4xx, malformed XML.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import PermanentError, RetriableError
from connectors.retry import RetryPolicy
from connectors.sandbox.http import LocalHttpServer, Reply
from connectors.sandbox.soap_erp import WSDL_PATH, LandlordErpPeer
from connectors.soap.client import read_soap
from connectors.soap.kinds import SoapSink as SoapSinkSettings
from connectors.soap.kinds import SoapSource
from connectors.soap.models import RETRIABLE_FAULT_CODES, SoapPaging
from connectors.soap.push import ReadBack, SoapSink
from tests.connectors.erp_records import erp_commitments, erp_reports, erp_tenant

TWO = RetryPolicy(attempts=2, first_wait=0.01, max_wait=0.01, jitter=0.0)
THREE = RetryPolicy(attempts=3, first_wait=0.01, max_wait=0.01, jitter=0.0)
ONCE = RetryPolicy(attempts=1, first_wait=0, max_wait=0, jitter=0)
README = Path(__file__).resolve().parents[2] / "datafixes" / "README.md"
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


@pytest.fixture
def erp() -> Iterator[LandlordErpPeer]:
    seed = {"tenants": [erp_tenant(number) for number in range(1, 6)]}
    with LandlordErpPeer(seed, slow_seconds=0.6) as peer:
        yield peer


def _read(peer: LandlordErpPeer, **options: Any):  # type: ignore[no-untyped-def]
    settings: dict[str, Any] = {
        "operation": "ListTenants",
        "records_path": "tenants.tenant",
        "paging": SoapPaging("page_number", page_size=10, total_path="totalCount"),
        "operation_timeout": 0.3,
        "retry": THREE,
    }
    settings.update(options)
    return read_soap(peer.wsdl_url, **settings)


def _break(peer: LandlordErpPeer, case: str, times: int | None) -> None:
    if case == "connection_cut":
        peer.cut_connections(times or 1000)
    else:
        peer.set_fault(case, times=times)


LISTED = frozenset({*RETRIABLE_FAULT_CODES, "Server.Maintenance"})
# case → (fault mode or switch, faults listed as transient, words of the message)
TRANSIENT = {
    "timeout": ("slow", RETRIABLE_FAULT_CODES, "no answer within 0.3 s (timeout)"),
    "connection cut mid-answer": (
        "connection_cut",
        RETRIABLE_FAULT_CODES,
        "the connection was cut in the middle of the answer",
    ),
    "HTTP 500": ("http_500", RETRIABLE_FAULT_CODES, "HTTP 500"),
    "HTTP 502": ("http_502", RETRIABLE_FAULT_CODES, "HTTP 502"),
    "HTTP 503": ("http_503", RETRIABLE_FAULT_CODES, "HTTP 503"),
    "HTTP 429": ("http_429", RETRIABLE_FAULT_CODES, "HTTP 429"),
    "Server.Busy (listed by default)": ("fault_busy", RETRIABLE_FAULT_CODES, "Server.Busy"),
    "Server.Maintenance listed by the datafix": ("fault_maintenance", LISTED, "Server.Maintenance"),
}
PERMANENT = {
    "Server.Maintenance not listed": ("fault_maintenance", RETRIABLE_FAULT_CODES, "Maintenance"),
    "a bare Server fault": ("fault_server", RETRIABLE_FAULT_CODES, "SOAP fault Server:"),
    "a Client fault": ("fault_invalid_argument", LISTED, "SOAP fault Client.InvalidArgument"),
    "HTTP 400": ("http_400", RETRIABLE_FAULT_CODES, "HTTP 400"),
    "malformed XML": ("malformed_xml", RETRIABLE_FAULT_CODES, "malformed XML"),
}


# --- Sources --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(TRANSIENT))
def test_source_retries_a_transient_failure_then_succeeds(erp: LandlordErpPeer, case: str) -> None:
    mode, listed, _ = TRANSIENT[case]
    _break(erp, mode, 2)
    table = _read(erp, retriable_faults=listed)
    assert len(table) == 5
    assert erp.calls_by_operation["ListTenants"] == 3  # twice refused, then the one page


@pytest.mark.parametrize("case", list(TRANSIENT))
def test_source_gives_up_on_a_transient_failure_after_the_attempts(
    erp: LandlordErpPeer, case: str
) -> None:
    mode, listed, words = TRANSIENT[case]
    _break(erp, mode, None)
    with pytest.raises(RetriableError) as raised:
        _read(erp, retriable_faults=listed, retry=TWO)
    assert str(raised.value).startswith(f"{erp.wsdl_url} ListTenants: ")
    assert words in str(raised.value)
    assert "gave up after 2 attempts" in str(raised.value)
    assert erp.calls_by_operation["ListTenants"] == 2


@pytest.mark.parametrize("case", list(PERMANENT))
def test_source_does_not_retry_a_permanent_failure(erp: LandlordErpPeer, case: str) -> None:
    mode, listed, words = PERMANENT[case]
    _break(erp, mode, None)
    with pytest.raises(PermanentError) as raised:
        _read(erp, retriable_faults=listed)
    assert words in str(raised.value)
    assert erp.calls_by_operation["ListTenants"] == 1


def test_source_retries_a_refused_connection() -> None:
    with LocalHttpServer(lambda request: Reply()) as server:
        address = f"{server.url}/soap"
    with pytest.raises(RetriableError, match="connection failed or was cut") as raised:
        read_soap(
            str(WSDL_PATH),
            address=address,
            operation="ListTenants",
            records_path="tenants.tenant",
            arguments={"pageNumber": 1, "pageSize": 1},
            retry=TWO,
        )
    assert "gave up after 2 attempts" in str(raised.value)


def test_source_setting_transient_faults_reaches_the_reader(
    erp: LandlordErpPeer, tmp_path: Path
) -> None:
    from connectors.registry import SourceRequest
    from connectors.soap.kinds import SOAP_SOURCE

    settings = {
        "kind": "soap",
        "wsdl": erp.wsdl_url,
        "operation": "ListTenants",
        "records": "tenants.tenant",
        "paging": {"kind": "page_number", "page_size": 10, "total_path": "totalCount"},
    }
    request = SourceRequest(entity="tenants", inbox=tmp_path)
    erp.set_fault("fault_maintenance", times=1)
    with pytest.raises(PermanentError, match=r"Server\.Maintenance"):
        SOAP_SOURCE.read(SoapSource.model_validate(settings), request)
    erp.set_fault("fault_maintenance", times=1)
    listed = {**settings, "transient_faults": ["Server.Busy", "Server.Maintenance"]}
    assert len(SOAP_SOURCE.read(SoapSource.model_validate(listed), request)) == 5


# --- Sinks ----------------------------------------------------------------------------------


def _sink(peer: LandlordErpPeer, kind: str, **options: Any) -> SoapSink:
    batch = kind == "batch"
    settings: dict[str, Any] = {
        "wsdl": peer.wsdl_url,
        "operation": "SubmitCommitments" if batch else "SubmitCompletionReport",
        "read_back": ReadBack("GetCommitments" if batch else "GetCompletionReports"),
        "amount_fields": ["AmountInclTax"] if batch else [],
        "operation_timeout": 0.3,
        "retry": THREE,
    }
    settings.update(options)
    return SoapSink(f"erp-{kind}", **settings)


def _send(peer: LandlordErpPeer, kind: str, **options: Any):  # type: ignore[no-untyped-def]
    records = erp_commitments(2) if kind == "batch" else erp_reports(2)
    return _sink(peer, kind, **options).send(records)


# each transient failure, for a batch sink and a per-record sink
EVERY_TRANSIENT_CASE_IN_BOTH_MODES = pytest.mark.parametrize(
    ("case", "kind"),
    [
        pytest.param(case, kind, id=f"{case}-{kind}")
        for kind in ("batch", "per-record")
        for case in TRANSIENT
    ],
)


def _operation(kind: str) -> str:
    return "SubmitCommitments" if kind == "batch" else "SubmitCompletionReport"


@EVERY_TRANSIENT_CASE_IN_BOTH_MODES
def test_sink_retries_a_transient_failure_then_sends(
    erp: LandlordErpPeer, case: str, kind: str
) -> None:
    mode, listed, _ = TRANSIENT[case]
    _break(erp, mode, 2)
    delivered = _send(erp, kind, retriable_faults=listed)
    assert [d.outcome for d in delivered] == ["sent", "sent"]


@EVERY_TRANSIENT_CASE_IN_BOTH_MODES
def test_sink_raises_retriable_for_the_outbox_once_the_attempts_are_used(
    erp: LandlordErpPeer, case: str, kind: str
) -> None:
    mode, listed, words = TRANSIENT[case]
    _break(erp, mode, None)
    with pytest.raises(RetriableError) as raised:
        _send(erp, kind, retriable_faults=listed, retry=ONCE)
    assert words in str(raised.value)
    assert erp.calls_by_operation[_operation(kind)] == 1


@pytest.mark.parametrize("case", [case for case in PERMANENT if case != "a Client fault"])
def test_sink_does_not_retry_a_permanent_failure(erp: LandlordErpPeer, case: str) -> None:
    mode, listed, words = PERMANENT[case]
    _break(erp, mode, None)
    with pytest.raises(PermanentError) as raised:
        _send(erp, "batch", retriable_faults=listed)
    assert words in str(raised.value)
    assert erp.calls_by_operation["SubmitCommitments"] == 1


def test_sink_a_client_fault_of_one_record_kills_that_record_only(erp: LandlordErpPeer) -> None:
    erp.set_fault("fault_invalid_argument", times=1)
    delivered = _send(erp, "per-record")
    assert [d.outcome for d in delivered] == ["dead", "sent"]
    assert erp.calls_by_operation["SubmitCompletionReport"] == 2


def test_sink_a_client_fault_listed_as_transient_is_retried(erp: LandlordErpPeer) -> None:
    erp.set_fault("fault_invalid_argument", times=1)
    listed = {*RETRIABLE_FAULT_CODES, "Client.InvalidArgument"}
    delivered = _send(erp, "per-record", retriable_faults=listed)
    assert [d.outcome for d in delivered] == ["sent", "sent"]


def test_sink_setting_transient_faults_defaults_to_the_code() -> None:
    settings = SoapSinkSettings.model_validate(
        {
            "kind": "soap",
            "sends": "commitments",
            "fields": {"Reference": "order_ref"},
            "wsdl": "erp.wsdl",
            "operation": "SubmitCommitments",
        }
    )
    assert set(settings.transient_faults) == RETRIABLE_FAULT_CODES


# --- README and code agree ------------------------------------------------------------------


def test_the_readme_states_the_retry_policy_the_code_applies() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Retries of web services") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    section = re.sub(r"\s+", " ", section)
    for code in sorted(RETRIABLE_FAULT_CODES):
        assert f"`{code}`" in section
    for words in ("timeout", "connection", "HTTP 5xx", "429", "`transient_faults`", "permanent"):
        assert words in section, words
