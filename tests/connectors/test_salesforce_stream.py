"""Salesforce streamed page by page (`read_salesforce(stream=True)`, issue 13), against the
local HTTPS peer (simple-salesforce unmodified): REST query pages and Bulk API 2.0 result pages
are fetched as the chunks are read; the rows are those of a whole read, whatever the chunk size;
the fingerprint is the same for REST and Bulk (rows in any order) and follows the values; a
session expiring on page 2 fails the stream with the session error a whole read gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import requests

from connectors.rawtable import RawTable
from connectors.salesforce.client import SalesforceSessionError, read_salesforce
from connectors.sandbox.salesforce import SalesforcePeer
from tests.connectors.test_salesforce_client import API, FAST, WORK_ORDER_FIELDS, live

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")
MODES = pytest.mark.parametrize("bulk", [False, True], ids=["rest", "bulk"])


@pytest.fixture
def read(peer: SalesforcePeer, http: requests.Session) -> Callable[..., RawTable]:
    def reader(**options: Any) -> RawTable:
        options = {"object_name": "WorkOrder", "fields": WORK_ORDER_FIELDS} | options
        options |= {"retry": FAST, "bulk_wait": 0, "session": http}
        return read_salesforce(peer.session_auth(), **options)

    return reader


def by_id(table: RawTable) -> tuple[pd.DataFrame, list[str]]:
    order = table.frame["Id"].argsort(kind="stable")
    frame = table.frame.iloc[order].reset_index(drop=True)
    return frame, table.source_rows.iloc[order].tolist()


@MODES
def test_a_streamed_read_gives_the_rows_of_a_whole_read(
    peer: SalesforcePeer, read: Callable[..., RawTable], bulk: bool
) -> None:
    whole = read(bulk=bulk)
    pages = f"{API}/jobs/query/750" if bulk else f"{API}/query/01g"
    calls = peer.count("GET", pages)  # the whole read's: every page
    streamed = read(bulk=bulk, stream=True)
    assert streamed.peer_stream
    chunks = streamed.chunks(7)
    first = next(chunks)
    assert len(first.frame) == 7
    # one page fetched so far: REST's first query (no `query/01g…` next page) / Bulk's job
    # state polls and its first result page, not the later ones
    assert peer.count("GET", pages) - calls == (3 if bulk else 0)
    rest = list(chunks)
    assert all(len(chunk.frame) == 7 for chunk in rest[:-1]) and 1 <= len(rest[-1].frame) <= 7
    joined = read(bulk=bulk, stream=True).whole()
    frame, lineage = by_id(joined)
    pd.testing.assert_frame_equal(frame, whole.frame)
    assert lineage == whole.source_rows.tolist()
    assert len(joined) == len(live(peer))


def test_rest_and_bulk_streams_share_a_fingerprint_that_follows_the_values(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    rest = read(stream=True).whole().fingerprint
    bulk = read(bulk=True, stream=True).whole().fingerprint  # the peer shuffles Bulk results
    assert rest == bulk and len(rest) == 64
    with peer.lock:
        record = live(peer)[10]
        peer.store.update("WorkOrder", record["Id"], {"Subject": record["Subject"] + "!"})
    assert read(stream=True).whole().fingerprint != rest


def test_a_session_expiring_on_page_2_fails_the_stream(
    peer: SalesforcePeer, read: Callable[..., RawTable]
) -> None:
    chunks = read(stream=True).chunks(peer.page_size)
    assert len(next(chunks).frame) == peer.page_size  # page 1
    peer.faults.expired_session = True
    with pytest.raises(SalesforceSessionError) as raised:
        next(chunks)
    assert "session expired or invalid" in str(raised.value)
    assert peer.session_id not in str(raised.value)
    peer.faults.expired_session = False
