"""The Sage X3 reader against the local `CAdxWebServiceXmlCC` peer (RPC/encoded, over HTTP).

Covers query then read, the query list alone, invoice lines as rows, `since` and criteria,
`status` 0 with X3's messages, call-context checks, the list-size guard, retries, HTTP Basic
authentication, exact decimals and the refusal of DTDs in the envelope and in `resultXml`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import ConfigError, PermanentError, RetriableError
from connectors.retry import RetryPolicy
from connectors.sage.client import parse_result_xml, read_sage_x3
from connectors.sandbox.http import HOSTILE_MODES, LocalHttpServer
from connectors.sandbox.sage_x3 import WSDL_PATH, SageAnswer, SageCall, SageX3Peer

FAST = RetryPolicy(attempts=3, first_wait=0.01, max_wait=0.02, jitter=0.01)
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")

CUSTOMERS = [
    {
        "BPCNUM": f"C{number:03d}",
        "BPCNAM": f"Office HLM n°{number}",
        "BPCSHO": f"OPH{number}",
        "BPCTYP": 1,
        "CUR": "EUR",
        "OSTAUZ": Decimal("15000.50") * number,
        "REP": ["REP01", "REP07"] if number == 1 else [],
        "CREDAT": dt.date(2019, 5, 2),
        "UPDDAT": dt.date(2026, 3, number),
    }
    for number in range(1, 5)
]
INVOICES = [
    {
        "SALFCY": "SED",
        "SIVTYP": "FRN",
        "NUM": "FRN-26/00051",
        "INVDAT": dt.date(2026, 3, 2),
        "BPCINV": "C001",
        "CUR": "EUR",
        "YBTNUM": "BT345678",
        "AMTNOT": Decimal("1000.10"),
        "AMTATI": Decimal("1200.12"),
        "UPDDAT": dt.date(2026, 3, 3),
        "SIH4_1": [
            {
                "ITMREF": "DEPANNAGE",
                "ITMDES": "Dépannage plomberie",
                "QTY": Decimal("1"),
                "GROPRI": Decimal("600.10"),
                "AMTNOTLIN": Decimal("600.10"),
            },
            {
                "ITMREF": "FOURNITURE",
                "QTY": Decimal("2.5"),
                "GROPRI": Decimal("160.00"),
                "AMTNOTLIN": Decimal("400.00"),
            },
        ],
    },
    {
        "SALFCY": "SED",
        "SIVTYP": "FRN",
        "NUM": "FRN-26/00052",
        "INVDAT": None,
        "BPCINV": "C002",
        "CUR": "EUR",
        "YBTNUM": "BT345679",
        "AMTNOT": Decimal("0.10"),
        "AMTATI": Decimal("0.12"),
        "UPDDAT": dt.date(2026, 3, 4),
        "SIH4_1": [],
    },
]
SEED = {"BPC": CUSTOMERS, "SIH": INVOICES}


@pytest.fixture
def sage(canary: LocalHttpServer, secret_file: Path) -> Iterator[SageX3Peer]:
    with SageX3Peer(SEED, secret_file=secret_file, canary_url=canary.url) as peer:
        yield peer


def _read(peer: SageX3Peer, public_name: str = "BPC", wsdl: str = "", **options: Any):
    """The peer's `public_name` objects read through its WSDL URL (or the WSDL file `wsdl`)."""
    arguments: dict[str, Any] = {
        "pool_alias": "SEED",
        "public_name": public_name,
        "keys": ["BPCNUM"] if public_name == "BPC" else ["NUM"],
        "retry": FAST,
    }
    arguments.update(options)
    return read_sage_x3(wsdl or peer.wsdl_url, **arguments)


# --- Reading --------------------------------------------------------------------------------


def test_customers_are_queried_then_read_one_by_one(sage: SageX3Peer) -> None:
    table = _read(sage)
    assert table.frame["BPCNUM"].tolist() == ["C001", "C002", "C003", "C004"]
    assert table.source_rows.tolist() == [f"BPC:BPCNUM=C00{number}" for number in range(1, 5)]
    assert dict(sage.calls_by_operation) == {"query": 1, "read": 4}
    first = table.frame.iloc[0].to_dict()
    assert first == {
        "BPCNUM": "C001",
        "BPCNAM": "Office HLM n°1",
        "BPCSHO": "OPH1",
        "BPCTYP": "1",
        "CUR": "EUR",
        "OSTAUZ": "15000.50",
        "REP.1": "REP01",
        "REP.2": "REP07",
        "CREDAT": "2019-05-02",
        "UPDDAT": "2026-03-01",
    }
    assert table.frame["REP.1"].tolist()[1:] == ["", "", ""]  # empty lists: blank cells
    assert table.origin == f"{sage.wsdl_url} BPC"


def test_the_call_context_is_sent_on_every_call(sage: SageX3Peer) -> None:
    _read(sage, language="ENG", request_config="adxwss.beautify=true")
    assert len(sage.contexts) == 5
    for context in sage.contexts:
        assert context["poolAlias"] == "SEED"
        assert context["codeLang"] == "ENG"
        assert context["requestConfig"] == "adxwss.beautify=true"


def test_amounts_are_exact_decimals(sage: SageX3Peer) -> None:
    table = _read(sage)
    assert table.frame["OSTAUZ"].tolist() == ["15000.50", "30001.00", "45001.50", "60002.00"]
    invoices = _read(sage, "SIH", details=False)
    assert invoices.frame["AMTATI"].tolist() == ["1200.12", "0.12"]


def test_invoice_lines_become_rows(sage: SageX3Peer) -> None:
    table = _read(sage, "SIH", lines="SIH4_1")
    assert table.source_rows.tolist() == [
        "SIH:NUM=FRN-26/00051 line 1",
        "SIH:NUM=FRN-26/00051 line 2",
        "SIH:NUM=FRN-26/00052",  # no lines: the invoice still shows, once
    ]
    rows = table.frame.to_dict("records")
    assert [row["ITMREF"] for row in rows] == ["DEPANNAGE", "FOURNITURE", ""]
    assert [row["AMTNOTLIN"] for row in rows] == ["600.10", "400.00", ""]
    assert [row["QTY"] for row in rows] == ["1", "2.5", ""]
    assert [row["YBTNUM"] for row in rows] == ["BT345678", "BT345678", "BT345679"]
    assert rows[2]["INVDAT"] == ""  # an empty X3 date
    assert rows[0]["INVDAT"] == "2026-03-02"


def test_without_lines_a_table_is_flattened_by_line_number(sage: SageX3Peer) -> None:
    table = _read(sage, "SIH")
    first = table.frame.iloc[0].to_dict()
    assert first["SIH4_1.1.ITMREF"] == "DEPANNAGE"
    assert first["SIH4_1.2.GROPRI"] == "160.00"
    assert table.frame.iloc[1]["SIH4_1.1.ITMREF"] == ""
    assert table.source_rows.tolist() == ["SIH:NUM=FRN-26/00051", "SIH:NUM=FRN-26/00052"]


def test_the_query_list_alone(sage: SageX3Peer) -> None:
    table = _read(sage, "SIH", details=False)
    assert list(table.frame.columns) == ["NUM", "BPCINV", "INVDAT", "AMTATI", "UPDDAT"]
    assert dict(sage.calls_by_operation) == {"query": 1}


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2026-03-03", ["C003", "C004"]),
        ("2026-03-01", ["C001", "C002", "C003", "C004"]),
        ("2026-03-05", []),
    ],
    ids=["inclusive-boundary", "everything", "nothing"],
)
def test_since_keeps_records_updated_at_or_after(
    sage: SageX3Peer, since: str, expected: list[str]
) -> None:
    table = _read(sage, since=("UPDDAT", since))
    assert table.frame["BPCNUM"].tolist() == expected
    assert sage.calls_by_operation["read"] == len(expected)  # only changed records are read


def test_criteria_are_sent_as_object_keys(sage: SageX3Peer) -> None:
    table = _read(sage, criteria={"BPCNUM": "C002"})
    assert table.frame["BPCNUM"].tolist() == ["C002"]


def test_the_wsdl_file_with_an_explicit_address(sage: SageX3Peer) -> None:
    table = _read(sage, wsdl=str(WSDL_PATH), address=sage.soap_url)
    assert len(table) == 4
    assert sage.wsdl_requests == 0


# --- Refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"public_name": "ZZZ", "keys": ["X"]},
            "ZZZ query: Sage X3 refused the call (status 0): [error] Web service ZZZ non publié",
        ),
        (
            {"criteria": {"NOPE": "1"}},
            "BPC query: Sage X3 refused the call (status 0): [error] Critère NOPE inconnu",
        ),
        (
            {"language": "ENG", "criteria": {"NOPE": "1"}},
            "[error] Unknown criterion NOPE",
        ),
    ],
    ids=["unknown-public-name", "unknown-criterion", "messages-in-the-call-language"],
)
def test_status_zero_carries_the_sage_messages(
    sage: SageX3Peer, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(PermanentError) as raised:
        _read(sage, **options)
    assert message in str(raised.value)
    assert sage.calls == 1  # refused for good: no retry


def test_a_read_refused_names_every_message(sage: SageX3Peer) -> None:
    sage.operations["read"] = lambda call: SageAnswer(
        0, None, ((3, f"{call.object_keys[0][1]} : Fiche inexistante"), (2, "Accès limité"))
    )
    with pytest.raises(PermanentError) as raised:
        _read(sage)
    assert "BPC read: Sage X3 refused the call (status 0):" in str(raised.value)
    assert "[error] C001 : Fiche inexistante; [warning] Accès limité" in str(raised.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool_alias": "PROD"}, "SOAP fault Server.userException: Pool alias 'PROD' unknown"),
        ({"language": "DEU"}, "Language code 'DEU' not available"),
    ],
    ids=["wrong-pool", "wrong-language"],
)
def test_a_wrong_call_context_is_refused(
    sage: SageX3Peer, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(PermanentError, match=message):
        _read(sage, **options)
    assert sage.calls == 1


def test_a_query_reaching_list_size_may_be_cut_and_stops(sage: SageX3Peer) -> None:
    with pytest.raises(ConfigError) as raised:
        _read(sage, list_size=4)
    assert "query returned 4 lines, the list_size limit" in str(raised.value)
    assert "raise `list_size`" in str(raised.value)
    assert len(_read(sage, list_size=5)) == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"keys": []}, "give the object's `keys`"),
        ({"keys": ["BPCNAME"]}, "key column `BPCNAME` is not among the columns"),
        ({"since": ("MODDAT", "2026-01-01")}, "`since` field `MODDAT` is not in the query list"),
        ({"lines": "BPC4_1"}, "the object has no table `BPC4_1`"),
        ({"list_size": 0}, "list_size must be at least 1"),
    ],
    ids=["no-keys", "wrong-key", "wrong-since-field", "wrong-lines-table", "list-size-0"],
)
def test_configuration_mistakes_say_what_to_fix(
    sage: SageX3Peer, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _read(sage, **options)


def test_an_unimplemented_operation_is_a_fault_and_save_can_be_added(sage: SageX3Peer) -> None:
    from connectors.soap.client import call_operation, make_client, service_for

    client = make_client(sage.wsdl_url, soap_encoding=True)
    service = service_for(client)
    context = {"codeLang": "FRA", "poolAlias": "SEED", "poolId": "", "requestConfig": ""}
    context |= {"codeUser": "", "password": ""}
    arguments = {"callContext": context, "publicName": "SIH", "objectXml": "<PARAM/>"}
    with pytest.raises(PermanentError, match="operation save is not available"):
        call_operation(service, "save", arguments, where="save", retry=FAST)

    def save(call: SageCall) -> SageAnswer:
        return SageAnswer(1, '<?xml version="1.0" encoding="UTF-8"?><RESULT/>')

    sage.operations["save"] = save
    answer = call_operation(service, "save", arguments, where="save", retry=FAST)
    assert answer["status"] == 1


# --- Transport faults and authentication ----------------------------------------------------


@pytest.mark.parametrize("mode", ["http_500", "http_503", "slow"])
def test_transient_faults_are_retried(sage: SageX3Peer, mode: str) -> None:
    sage.set_fault(mode, times=1)
    table = _read(sage, operation_timeout=0.5)
    assert len(table) == 4
    assert sage.calls_by_operation["query"] == 2


def test_a_failing_service_gives_up_with_a_retriable_error(sage: SageX3Peer) -> None:
    sage.set_fault("http_500")
    with pytest.raises(RetriableError, match=r"BPC query: HTTP 500 .* after 3 attempts"):
        _read(sage)
    assert sage.calls == 3


def test_a_malformed_answer_is_permanent(sage: SageX3Peer) -> None:
    sage.set_fault("malformed_xml")
    with pytest.raises(PermanentError, match="malformed XML"):
        _read(sage)


def test_http_basic_authentication(canary: LocalHttpServer) -> None:
    with SageX3Peer(SEED, credentials=("WSUSER", "s3cret")) as peer:
        assert len(_read(peer, auth=("WSUSER", "s3cret"))) == 4
        with pytest.raises(PermanentError) as raised:
            _read(peer, auth=("WSUSER", "wrong"))
        assert "HTTP 401, access refused" in str(raised.value)
        assert "wrong" not in str(raised.value)


# --- XML attacks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        *[(mode, "refused the answer: it carries a DTD") for mode in sorted(HOSTILE_MODES)],
        ("result_dtd_billion_laughs", "refused the resultXml payload: it carries a DTD"),
        ("result_xxe_file", "refused the resultXml payload: it carries a DTD"),
        ("result_xxe_http", "refused the resultXml payload: it carries a DTD"),
    ],
)
def test_dtds_are_refused_in_the_envelope_and_in_result_xml(
    sage: SageX3Peer,
    canary: LocalHttpServer,
    secret_file: Path,
    mode: str,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    sage.set_fault(mode)
    with pytest.raises(PermanentError) as raised:
        _read(sage)
    assert f"{sage.wsdl_url} BPC query: {message}" in str(raised.value)
    secret = secret_file.read_text(encoding="utf-8").strip()
    assert secret not in str(raised.value) and secret not in repr(raised.value)
    assert secret not in caplog.text
    assert canary.connections == 0
    assert sage.calls == 1


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('<?xml version="1.0" encoding="UTF-8"?><RESULT><GRP ID="A"/></RESULT>', "RESULT"),
        ("<?xml version='1.0' encoding='ISO-8859-1'?><RESULT>é</RESULT>", "RESULT"),
        ("", None),
        (None, None),
    ],
    ids=["utf8-declaration", "latin1-declaration-on-text", "empty", "nil"],
)
def test_result_xml_is_parsed_from_text(payload: str | None, expected: str | None) -> None:
    root = parse_result_xml(payload, "here")
    assert (root.tag if root is not None else None) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("<RESULT><GRP></RESULT>", "malformed XML"),
        ('<!DOCTYPE R [<!ENTITY x SYSTEM "file:///etc/passwd">]><RESULT>&x;</RESULT>', "DTD"),
    ],
    ids=["malformed", "doctype"],
)
def test_result_xml_refusals(payload: str, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        parse_result_xml(payload, "here")
