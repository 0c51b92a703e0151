"""Paging that cannot lose rows (`connectors.soap.paging.Pager`, `read_soap`).

Two levels: the pager's rules against a simulated server for every paging style, end
indicator and page-size cap (no I/O, so every combination runs); then `read_soap` against the
local ERP peer with its switches `page_cap` (a server cap below the page size the datafix
asks) and `total_skew` (a peer that lies about its total): more than 2,000 records arrive,
each once, in order, or the pull fails with both numbers and returns nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import ConfigError, PermanentError, RetriableError
from connectors.registry import SourceRequest
from connectors.retry import RetryPolicy
from connectors.sandbox.soap_erp import LandlordErpPeer
from connectors.soap.client import read_soap
from connectors.soap.kinds import SOAP_SOURCE, SoapSource
from connectors.soap.models import SoapPaging
from connectors.soap.paging import Pager

FAST = RetryPolicy(attempts=3, first_wait=0.01, max_wait=0.02, jitter=0.0)
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


# --- The pager against a simulated server ----------------------------------------------------


@dataclass
class Server:
    """A paged list of `count` records (ids 1 …), answering each style's arguments as a real
    service would: at most `cap` records a page, the total announced `skew` off."""

    paging: SoapPaging
    count: int
    cap: int | None = None
    skew: int = 0
    calls: int = 0

    def answer(self, arguments: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:
        self.calls += 1
        paging = self.paging
        size = arguments[paging.page_size_argument]
        if self.cap is not None:
            size = min(size, self.cap)
        if paging.kind == "page_number":
            start = (arguments[paging.page_argument] - paging.first_page) * size
        elif paging.kind == "offset":
            start = arguments[paging.offset_argument] - paging.first_offset
        elif paging.kind == "continuation_token":
            start = int(arguments.get(paging.token_argument, 0))
        else:
            start = int(arguments.get(paging.cursor_argument, 0))  # ids are 1 …: id = position
        page = list(range(start + 1, min(start + size, self.count) + 1))
        more = start + size < self.count
        return page, {
            "total": self.count + self.skew,
            "has_more": more,
            "next_token": str(start + size) if more else None,
            "last_cursor": page[-1] if page else None,
        }


def pull(server: Server, *, max_pages: int = 1000) -> list[int]:
    pager = Pager(server.paging, "erp.wsdl ListMovements")
    read: list[int] = []
    for _ in range(max_pages):
        page, answer = server.answer(pager.arguments())
        read.extend(page)
        if pager.after_page(len(page), **answer):
            return read
    raise AssertionError("the pull did not end")


def paging(kind: str, end: str, page_size: int = 10) -> SoapPaging:
    settings: dict[str, Any] = {"kind": kind, "page_size": page_size}
    if end == "total":
        settings["total_path"] = "total"
    elif end == "has_more":
        settings["has_more_path"] = "hasMore"
    if kind == "cursor":
        settings["cursor_field"] = "id"
    return SoapPaging(**settings)


STYLES = ["page_number", "offset", "continuation_token", "cursor"]
ENDS = ["total", "has_more", "token or empty page"]


@pytest.mark.parametrize("kind", STYLES)
@pytest.mark.parametrize("end", ENDS)
@pytest.mark.parametrize("cap", [None, 7, 3, 1], ids=["no-cap", "cap-7", "cap-3", "cap-1"])
@pytest.mark.parametrize("count", [0, 1, 9, 10, 53, 70])
def test_every_record_once_in_order(kind: str, end: str, cap: int | None, count: int) -> None:
    server = Server(paging(kind, end), count, cap=cap)
    assert pull(server) == list(range(1, count + 1))


@pytest.mark.parametrize("kind", STYLES)
def test_the_total_ends_the_pull_without_an_extra_call(kind: str) -> None:
    server = Server(paging(kind, "total"), 68, cap=7)
    assert len(pull(server)) == 68
    assert server.calls == 10  # 68 records, 7 a page: no empty page asked


@pytest.mark.parametrize("kind", ["page_number", "offset", "cursor"])
def test_a_total_reached_on_a_full_page_is_confirmed_by_an_empty_page(kind: str) -> None:
    server = Server(paging(kind, "total"), 70, cap=7)
    assert len(pull(server)) == 70
    assert server.calls == 11  # nothing but the total says it ends: one page more, empty


@pytest.mark.parametrize("kind", ["page_number", "offset"])
def test_a_cap_is_followed_with_the_size_the_server_gives(kind: str) -> None:
    server = Server(paging(kind, "total", page_size=500), 2050, cap=100)
    pager = Pager(server.paging, "erp.wsdl ListMovements")
    sizes = []
    while True:
        arguments = pager.arguments()
        sizes.append(arguments["pageSize"])
        page, answer = server.answer(arguments)
        if pager.after_page(len(page), **answer):
            break
    assert sizes == [500] + [100] * 20
    assert (pager.read, pager.capped, pager.size) == (2050, 100, 100)


def test_a_short_page_is_not_the_end_without_a_total(caplog: pytest.LogCaptureFixture) -> None:
    # page_number without total or flag: a short first page may be a cap; only an empty page ends
    server = Server(paging("page_number", "token or empty page", page_size=50), 120, cap=20)
    assert pull(server) == list(range(1, 121))
    assert server.calls == 7  # 6 pages of 20, then the empty page


def test_a_cap_seen_with_a_total_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="connectors.soap.paging"):
        pull(Server(paging("page_number", "total", page_size=50), 120, cap=20))
    assert "caps pages at 20 records (50 asked)" in caplog.text


@pytest.mark.parametrize("kind", STYLES)
@pytest.mark.parametrize(
    "skew", [5, -5, -3, -13], ids=["too-high", "too-low", "at-a-page-end", "a-page-short"]
)
def test_a_total_that_lies_fails_the_pull_with_both_numbers(kind: str, skew: int) -> None:
    server = Server(paging(kind, "total"), 53, cap=None, skew=skew)
    with pytest.raises(PermanentError) as raised:
        pull(server)
    message = str(raised.value)
    assert message.startswith("erp.wsdl ListMovements: the service announced")
    assert f"announced {53 + skew} records but sent" in message
    assert "nothing of this pull is loaded" in message


def test_a_total_short_by_a_whole_page_is_caught_by_the_other_indicators() -> None:
    # 60 records, 10 a page, total says 50: the total is reached at a page boundary, but the
    # has-more flag (or the token) still says more follow
    for kind, end in (("page_number", "has_more"), ("continuation_token", "token")):
        settings = paging(kind, end)
        settings = SoapPaging(**{**settings.__dict__, "total_path": "total"})
        with pytest.raises(PermanentError, match="announced 50 records but sent 50"):
            pull(Server(settings, 60, skew=-10))


def test_a_total_that_changes_during_the_pull_is_retriable() -> None:
    pager = Pager(paging("page_number", "total"), "erp.wsdl ListMovements")
    assert not pager.after_page(10, total=30)
    with pytest.raises(RetriableError, match="announced 30 records, then 31 on page 2"):
        pager.after_page(10, total=31)


def test_a_total_given_on_the_first_page_only_is_kept() -> None:
    pager = Pager(paging("page_number", "total"), "erp.wsdl ListMovements")
    assert not pager.after_page(10, total=15)
    assert pager.after_page(5, total=None)


@pytest.mark.parametrize("total", [None, "many", -1])
def test_a_missing_or_unreadable_total_is_an_error(total: object) -> None:
    pager = Pager(paging("page_number", "total"), "erp.wsdl ListMovements")
    with pytest.raises(PermanentError, match="the answer's total `total` is"):
        pager.after_page(10, total=total)


def test_an_empty_page_while_the_flag_says_more_fails() -> None:
    pager = Pager(paging("page_number", "has_more"), "erp.wsdl ListMovements")
    with pytest.raises(PermanentError, match=r"empty page .* says more pages follow"):
        pager.after_page(0, has_more="true")


def test_a_cursor_that_does_not_move_fails() -> None:
    pager = Pager(paging("cursor", "token or empty page"), "erp.wsdl ListMovements")
    assert not pager.after_page(10, last_cursor="A10")
    assert pager.arguments() == {"pageSize": 10, "after": "A10"}
    with pytest.raises(PermanentError, match="cursor `id` did not move"):
        pager.after_page(10, last_cursor="A10")


def test_arguments_of_each_style() -> None:
    offset = Pager(SoapPaging("offset", page_size=5, offset_argument="debut", first_offset=1), "x")
    assert offset.arguments() == {"pageSize": 5, "debut": 1}
    offset.after_page(5)
    assert offset.arguments() == {"pageSize": 5, "debut": 6}
    token = Pager(SoapPaging("continuation_token", page_size=5), "x")
    assert token.arguments() == {"pageSize": 5}
    token.after_page(5, next_token="abc")
    assert token.arguments() == {"pageSize": 5, "continuationToken": "abc"}


@pytest.mark.parametrize(
    "settings",
    [
        {"kind": "cursor"},
        {"kind": "offset", "first_offset": 2},
        {"kind": "page_number", "total_path": ""},
        {"kind": "offset", "offset_argument": ""},
    ],
    ids=["cursor-without-field", "first-offset-2", "empty-total-path", "empty-offset-argument"],
)
def test_paging_settings_are_checked(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SoapPaging(**settings)


# --- read_soap against the ERP peer, with a server-side cap and a lying total ----------------

MANY = 2_150


def _stamped(count: int, record: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    """Records 1 … `count`, record n modified n minutes after 2026-03-01 00:00 UTC."""
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return [
        {**record(number), "modifiedAt": start + dt.timedelta(minutes=number)}
        for number in range(1, count + 1)
    ]


# MANY records of each list the ERP serves
SEED = {
    "tenants": _stamped(
        MANY,
        lambda number: {
            "tenantRef": f"LOC-{number:05d}",
            "lastName": f"Martin-{number}",
            "dwellingRef": f"LGT-{number:05d}",
            "moveInDate": dt.date(2020, 1, 1),
            "monthlyRent": Decimal("400.00") + number,
            "housingAid": False,
        },
    ),
    "ledger_entries": _stamped(
        MANY,
        lambda number: {
            "entryId": f"ECR-{number:06d}",
            "tenantRef": "LOC-00001",
            "entryDate": dt.date(2026, 3, 1),
            "kind": "QUI",
            "amount": Decimal("12.30"),
        },
    ),
    "work_orders": _stamped(
        MANY,
        lambda number: {
            "orderNumber": f"BT{number:06d}",
            "contractor": "Plomberie du Centre",
            "category": "dépannage",
            "committedAmount": Decimal("180.00"),
            "status": "scheduled",
        },
    ),
}


@pytest.fixture
def erp() -> Iterator[LandlordErpPeer]:
    """The ERP with more than 2,000 records of each list and pages capped at 100 records."""
    with LandlordErpPeer(SEED, page_cap=100) as peer:
        yield peer


PULLS = {
    "page number, total": (
        "ListTenants",
        "tenants.tenant",
        "tenantRef",
        {"total_path": "totalCount"},
    ),
    "page number, empty page": ("ListTenants", "tenants.tenant", "tenantRef", {}),
    "page number, has-more": (
        "ListLedgerEntries",
        "ledgerEntries.entry",
        "entryId",
        {"has_more_path": "hasMore"},
    ),
    "continuation token": ("ListWorkOrders", "workOrders.workOrder", "orderNumber", {}),
}


def pull_named(peer: LandlordErpPeer, name: str, **options: Any):  # type: ignore[no-untyped-def]
    operation, records, key, settings = PULLS[name]
    kind = "continuation_token" if name == "continuation token" else "page_number"
    return read_soap(
        peer.wsdl_url,
        operation=operation,
        records_path=records,
        paging=SoapPaging(kind, page_size=500, **settings),
        key=[key],
        retry=FAST,
        **options,
    )


@pytest.mark.parametrize("name", list(PULLS))
def test_a_page_size_above_the_servers_cap_still_brings_every_record(
    erp: LandlordErpPeer, name: str
) -> None:
    operation, _, key, settings = PULLS[name]
    table = pull_named(erp, name)
    values = table.frame[key].tolist()
    assert len(values) == MANY
    assert values == sorted(set(values))  # each once, in the ERP's order
    pages = -(-MANY // 100)
    extra = 0 if settings or name == "continuation token" else 1  # the empty page ends it
    assert erp.calls_by_operation[operation] == pages + extra


@pytest.mark.parametrize("skew", [7, -7, -50], ids=["more", "fewer", "half-a-page-fewer"])
def test_a_peer_lying_about_its_total_fails_the_pull(erp: LandlordErpPeer, skew: int) -> None:
    erp.total_skew = skew
    with pytest.raises(PermanentError) as raised:
        pull_named(erp, "page number, total")
    message = str(raised.value)
    assert message.startswith(f"{erp.wsdl_url} ListTenants: the service announced {MANY + skew}")
    assert "records but sent" in message
    assert "nothing of this pull is loaded" in message
    assert "\n" not in message


def test_a_lying_total_through_the_source_kind_loads_nothing(
    erp: LandlordErpPeer, tmp_path: Path
) -> None:
    erp.total_skew = 3
    source = SoapSource.model_validate(
        {
            "kind": "soap",
            "wsdl": erp.wsdl_url,
            "operation": "ListTenants",
            "records": "tenants.tenant",
            "paging": {"kind": "page_number", "page_size": 500, "total_path": "totalCount"},
            "key": ["tenantRef"],
        }
    )
    with pytest.raises(PermanentError, match=f"announced {MANY + 3} records but sent {MANY}"):
        SOAP_SOURCE.read(source, SourceRequest(entity="tenants", inbox=tmp_path))
    erp.total_skew = 0
    table = SOAP_SOURCE.read(source, SourceRequest(entity="tenants", inbox=tmp_path))
    assert len(table) == MANY


def test_a_wrong_total_path_fails_before_any_call(erp: LandlordErpPeer) -> None:
    with pytest.raises(ConfigError, match="`total` of total_path `total` is not in the response"):
        read_soap(
            erp.wsdl_url,
            operation="ListTenants",
            records_path="tenants.tenant",
            paging=SoapPaging("page_number", total_path="total"),
            retry=FAST,
        )
    assert erp.calls_by_operation["ListTenants"] == 0


def test_the_source_settings_take_every_paging_style() -> None:
    base = {"kind": "soap", "wsdl": "erp.wsdl", "operation": "Lister", "records": "a.b"}
    for paging_settings in (
        {"kind": "offset", "offset_argument": "debut", "total_path": "total"},
        {"kind": "cursor", "cursor_argument": "apres", "cursor_field": "numero"},
        {"kind": "continuation_token", "token_path": "suite", "has_more_path": "encore"},
    ):
        source = SoapSource.model_validate({**base, "paging": paging_settings})
        assert source.paging is not None
        SoapPaging(**source.paging.model_dump())
    with pytest.raises(ValueError, match="cursor_field"):
        SoapSource.model_validate({**base, "paging": {"kind": "cursor"}})
