"""A SOAP source streamed page by page (`read_soap(stream=True)`, issue 13) gives exactly what a
whole read gives, against the sandbox ERP (a real SOAP service zeep calls over HTTP, pages
capped at 100 records): same text values, lineage and fingerprint, re-cut into chunks of any
size with page boundaries falling mid-chunk; a fault on page 3 fails the stream with the
operation's name, after the first two pages were handed on; an incremental read filtered chunk
by chunk resumes after the greatest row it kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.errors import PermanentError
from connectors.rawtable import RawTable, StreamEnd, Watermark, drain
from connectors.retry import RetryPolicy
from connectors.sandbox.soap_erp import LandlordErpPeer
from connectors.watermark import past_watermark, past_watermark_stream
from tests.connectors.test_soap_paging import MANY, PULLS, SEED, pull_named

FAST = RetryPolicy(attempts=2, first_wait=0.01, max_wait=0.02, jitter=0.0)


@pytest.fixture
def erp() -> Iterator[LandlordErpPeer]:
    with LandlordErpPeer(SEED, page_cap=100) as peer:
        yield peer


def pull(peer: LandlordErpPeer, name: str, *, stream: bool) -> RawTable:
    return pull_named(peer, name, stream=stream)


def drained(table: RawTable, size: int) -> tuple[list[RawTable], StreamEnd | None]:
    return drain(table.chunks(size))


@pytest.mark.parametrize("name", list(PULLS))
def test_a_streamed_pull_is_the_whole_read_cut_in_chunks(erp: LandlordErpPeer, name: str) -> None:
    whole = pull(erp, name, stream=False)
    streamed = pull(erp, name, stream=True)
    assert streamed.peer_stream and len(streamed.frame) == 0
    calls = sum(erp.calls_by_operation.values())
    chunks, end = drained(streamed, 7)
    assert sum(erp.calls_by_operation.values()) > calls  # the pages are called as read
    assert [len(chunk.frame) for chunk in chunks] == [7] * (MANY // 7) + [MANY % 7]
    assert end is not None and end.fingerprint == whole.fingerprint
    joined = pull(erp, name, stream=True).whole()
    assert joined.frame.equals(whole.frame)
    assert joined.source_rows.equals(whole.source_rows)
    assert joined.fingerprint == whole.fingerprint


def test_a_fault_on_page_3_fails_the_stream_naming_the_operation(erp: LandlordErpPeer) -> None:
    streamed = pull(erp, "page number, total", stream=True)
    stream = streamed.chunks(100)
    assert [len(next(stream).frame) for _ in range(2)] == [100, 100]  # pages 1 and 2
    erp.set_fault("fault_invalid_argument")
    with pytest.raises(PermanentError) as raised:
        next(stream)
    assert "ListTenants" in str(raised.value) and "InvalidArgument" in str(raised.value)
    assert erp.calls_by_operation["ListTenants"] == 3  # a permanent fault is not retried


def test_an_incremental_stream_resumes_after_the_greatest_row_kept(erp: LandlordErpPeer) -> None:
    """Rows past (tenantRef T…, by text) a watermark in the middle of the list, filtered chunk
    by chunk: the same rows as the whole table filtered at once; the next watermark is the
    greatest row kept, given by the stream's end."""
    whole = pull(erp, "page number, total", stream=False)
    middle = sorted(whole.frame["tenantRef"])[MANY // 2]
    after = Watermark("tenantRef", middle, ("tenantRef",), (middle,))
    expected = past_watermark(whole, after)
    chunks, end = drained(
        past_watermark_stream(pull(erp, "page number, total", stream=True), after), 9
    )
    kept = [ref for chunk in chunks for ref in chunk.frame["tenantRef"]]
    assert sorted(kept) == expected.frame["tenantRef"].tolist()
    assert len(kept) == MANY - MANY // 2 - 1
    assert end is not None and end.last is not None
    assert end.last["tenantRef"] == expected.frame["tenantRef"].iloc[-1]
