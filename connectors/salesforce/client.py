"""Read one Salesforce object into a text `RawTable`, through simple-salesforce used as is.

Two ways to read the same rows:
- REST (`bulk=False`): `GET …/query/?q=` then `GET <nextRecordsUrl>` page after page (up to 2,000
  records a page); each page is retried on its own, since a page URL can be fetched again.
- Bulk API 2.0 (`bulk=True`, for large objects): a query job is created, polled, and its CSV
  results read locator page after locator page; a transient fault restarts the job.

Both give the same table: one column per requested field (relationship fields such as
`Account.Name` flattened, `attributes` dropped), every value text: numbers exactly as Salesforce
wrote them (JSON numbers are parsed as `Decimal`, never as floats), booleans `true`/`false`,
null `""`, dates `2026-03-01`, date-times `2026-03-01T14:30:00.000Z` (REST writes
`…+0000` and Bulk `…Z` for the same instant: the REST form is rewritten to the Bulk one).
Rows are sorted by `key` so the table and its fingerprint do not depend on the order Salesforce
chose; lineage is `WorkOrder:0WO…`.

Every HTTP call has a timeout (set on the session, so the Bulk calls that simple-salesforce makes
without one are covered too). Errors are grouped by what to do next (`connectors.errors`): an
expired session is a `SalesforceSessionError` (fix the credentials), an exhausted API limit a
`SalesforceLimitError` (retriable, once the 24-hour limit resets), 5xx / timeouts / dropped
connections a `SalesforceUnavailableError` (retried here with exponential backoff and jitter,
then retriable), a refused query a `SalesforceQueryError` (permanent). Secrets never appear in a
message.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlparse

import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import DEFAULT_API_VERSION
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connectors.errors import ConfigError, ConnectorError, PermanentError, RetriableError
from connectors.lazy import pd
from connectors.rawtable import (
    RawTable,
    column_text,
    frame_fingerprint,
    key_lineage,
    line_lineage,
    streamed_pages,
)
from connectors.retry import RetryPolicy, with_retries
from connectors.salesforce.models import SALESFORCE_RETRY, SalesforceAuth
from connectors.salesforce.soql import build_query, check_name, check_object

__all__ = [
    "DEFAULT_API_VERSION",
    "SalesforceLimitError",
    "SalesforceQueryError",
    "SalesforceSessionError",
    "SalesforceUnavailableError",
    "TimedSession",
    "check_api_version",
    "connect",
    "detail_text",
    "error_detail",
    "read_salesforce",
    "record_value",
    "translate_error",
]

T = TypeVar("T")

_VERSION = re.compile(r"\d{2,3}\.\d")
_API_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
# REST writes `2026-03-01T14:30:00.000+0000`, Bulk API 2.0 `2026-03-01T14:30:00.000Z`
_REST_DATETIME = r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)\+0000$"


class SalesforceSessionError(ConfigError):
    """The session id is expired or invalid, or the login was refused: fix the credentials."""


class SalesforceLimitError(RetriableError):
    """The org's API request limit is used up; calls succeed again once it resets."""

    def __init__(self, message: str, used: int | None = None, total: int | None = None) -> None:
        super().__init__(message)
        self.used = used
        self.total = total


class SalesforceUnavailableError(RetriableError):
    """Salesforce did not answer properly (5xx, timeout, dropped connection): try again later."""


class SalesforceQueryError(PermanentError):
    """Salesforce refused the query (MALFORMED_QUERY, INVALID_FIELD …): fix the datafix."""


# --------------------------------------------------------------------------------------------
# The HTTP session


class TimedSession(requests.Session):
    """A session that gives every call a timeout and keeps the last answer's `Sforce-Limit-Info`.

    simple-salesforce passes no timeout on its Bulk calls and records the API usage only after
    a successful call; an exhausted limit arrives on a refused one, so it is read here.
    Built from the caller's session when one is given (TLS trust, proxies, mounted adapters
    are shared, never changed); only a session made here is closed by `close()`.
    """

    _copied = ("headers", "cookies", "auth", "proxies", "hooks", "params", "verify", "cert")

    def __init__(self, timeout: float, template: requests.Session | None = None) -> None:
        super().__init__()
        self.timeout = timeout
        self.limit_info: str | None = None
        self.borrowed = template is not None
        if template is not None:
            for name in (*self._copied, "stream", "trust_env", "max_redirects"):
                setattr(self, name, getattr(template, name))
            super().close()  # the default adapters made by __init__ are not used
            self.adapters = template.adapters

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        # requests lets REQUESTS_CA_BUNDLE override a session's own `verify` (psf/requests
        # #3829): a CA bundle set on the session must win, so it is passed on every call
        kwargs.setdefault("verify", self.verify)
        response = super().request(method, url, *args, **kwargs)
        # the usage reported with *this* answer: a refusal is judged on its own figures
        self.limit_info = response.headers.get("Sforce-Limit-Info")
        return response

    def close(self) -> None:
        if not self.borrowed:
            super().close()


# --------------------------------------------------------------------------------------------
# Errors


def error_detail(error: SalesforceError) -> tuple[str, str]:
    """Salesforce's `errorCode` and `message` from an error body (a JSON list of objects)."""
    content: Any = error.content
    if isinstance(content, bytes | bytearray):
        content = content.decode("utf-8", "replace")
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return "", " ".join(content.split())[:300]
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        content = content[0]
    if isinstance(content, Mapping):
        code = str(content.get("errorCode") or content.get("error") or "")
        message = str(content.get("message") or content.get("error_description") or "")
        return code, " ".join(message.split())[:500]
    return "", " ".join(str(content).split())[:300]


def detail_text(code: str, message: str) -> str:
    """Salesforce's error code and message as one text for messages (`CODE: message`)."""
    return f"{code}: {message}" if code and message else code or message or "no detail"


def _limit_error(host: str, code: str, message: str, limit_info: str | None) -> ConnectorError:
    usage = _API_USAGE.search(limit_info or "")
    used, total = (int(usage[1]), int(usage[2])) if usage else (None, None)
    said = detail_text(code, message)
    figures = f"{used}/{total} calls in 24h" if used is not None else "usage not reported"
    concurrent = "concurrent" in message.lower()
    if concurrent or (used is not None and total is not None and used < total):
        return SalesforceLimitError(
            f"Salesforce {host} refused the call ({said}): too many long-running requests at"
            f" once ({figures}) — the pull will be retried later",
            used,
            total,
        )
    return SalesforceLimitError(
        f"Salesforce {host}: API limit exhausted: {figures} ({said}) — the pull will resume when"
        " the limit resets",
        used,
        total,
    )


def translate_error(
    error: Exception, host: str, soql: str | None, session: TimedSession
) -> ConnectorError | None:
    """The connector error a simple-salesforce or requests exception stands for."""
    if isinstance(error, ConnectorError):
        return error
    if isinstance(error, SalesforceAuthenticationFailed):
        return SalesforceSessionError(
            f"Salesforce login refused ({detail_text(str(error.code or ''), error.auth_message)}) —"
            " check the username, password, security token or connected app (JWT) and the"
            " domain (login / test)"
        )
    if isinstance(error, SalesforceError):
        code, message = error_detail(error)
        said = detail_text(code, message)
        if isinstance(error, SalesforceExpiredSession):
            return SalesforceSessionError(
                f"Salesforce session expired or invalid on {host} ({said}) — renew the session"
                " id / check the credentials"
            )
        if isinstance(error, SalesforceRefusedRequest):
            if code == "REQUEST_LIMIT_EXCEEDED":
                return _limit_error(host, code, message, session.limit_info)
            return ConfigError(
                f"Salesforce {host} refused the call ({said}) — check the integration user's"
                " permissions on the object and its fields"
            )
        if isinstance(error, SalesforceMalformedRequest):
            query = f" in: {soql}" if soql else ""
            return SalesforceQueryError(
                f"Salesforce {host} refused the query ({said}){query} — fix the datafix"
                " `object`, `fields` or `where`"
            )
        if isinstance(error, SalesforceResourceNotFound):
            return ConfigError(
                f"Salesforce {host}: resource not found ({said}) at {error.url} — check the"
                " instance URL and the API version"
            )
        if isinstance(error, SalesforceGeneralError) and (
            error.status >= 500 or error.status == 429
        ):
            return SalesforceUnavailableError(
                f"Salesforce {host} answered HTTP {error.status} ({said})"
            )
        return PermanentError(f"Salesforce {host} answered HTTP {error.status} ({said})")
    if isinstance(error, SalesforceOperationError):
        return PermanentError(f"Salesforce {host}: Bulk API 2.0 job did not complete: {error}")
    if isinstance(error, requests.exceptions.SSLError):
        return ConfigError(
            f"Salesforce {host}: the TLS certificate could not be verified ({error}) — check the"
            " instance URL, or install the CA bundle that signs this server's certificate"
        )
    if isinstance(error, requests.exceptions.Timeout):
        return SalesforceUnavailableError(
            f"Salesforce {host} did not answer within {session.timeout:g} s"
        )
    if isinstance(
        error,
        requests.exceptions.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError,
    ):
        return SalesforceUnavailableError(f"Salesforce {host} could not be reached ({error})")
    if isinstance(error, requests.exceptions.JSONDecodeError | json.JSONDecodeError):
        return SalesforceUnavailableError(f"Salesforce {host} sent an unreadable answer ({error})")
    return None


class _Caller:
    """Runs calls to Salesforce with the retry policy, raising connector errors only."""

    def __init__(self, session: TimedSession, host: str, retry: RetryPolicy) -> None:
        self.session = session
        self.host = host
        self.retry = retry

    def __call__(self, call: Callable[[], T], soql: str | None = None) -> T:
        def once() -> T:
            try:
                return call()
            except Exception as error:
                translated = translate_error(error, self.host, soql, self.session)
                if translated is None or translated is error:
                    raise
                raise translated from error

        try:
            return with_retries(once, self.retry, retriable=(SalesforceUnavailableError,))
        except SalesforceUnavailableError as error:
            error.args = (f"{error} — Salesforce may be down or slow; the next run will try again",)
            raise


# --------------------------------------------------------------------------------------------
# Connecting


def check_api_version(version: str) -> None:
    """Raise a `ConfigError` unless `version` is an API version like `62.0`."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ConfigError(
            f"Salesforce API version {version!r} is not valid — write it like"
            f" {DEFAULT_API_VERSION} (no leading v)"
        )


def _host(auth: SalesforceAuth) -> str:
    if auth.instance_url:
        return urlparse(auth.instance_url).netloc
    return f"{auth.domain}.salesforce.com"


def connect(
    auth: SalesforceAuth,
    *,
    session: requests.Session | None = None,
    timeout: float = 30,
    version: str = DEFAULT_API_VERSION,
    retry: RetryPolicy | None = None,
) -> Salesforce:
    """A simple-salesforce client for `auth`, every call bounded by `timeout` seconds.

    `session` is used as a template (TLS trust such as `verify=ca.pem`, proxies, mounted
    adapters) and is never modified. The session id + instance URL mode makes no call; the
    password and JWT modes log in now (retried on transient faults). JSON numbers are parsed as
    `Decimal`. The caller closes the client's session (`sf.session.close()`) when done.
    """
    check_api_version(version)
    if timeout <= 0:
        raise ConfigError(f"Salesforce timeout {timeout!r} must be a positive number of seconds")
    mode = auth.mode
    auth.check_files()
    http = TimedSession(timeout, session)
    options: dict[str, Any] = {
        "session": http,
        "version": version,
        "parse_float": Decimal,
        "object_pairs_hook": dict,
    }
    try:
        if mode == "session":
            return Salesforce(session_id=auth.session_id, instance_url=auth.instance_url, **options)
        caller = _Caller(http, _host(auth), retry or SALESFORCE_RETRY)
        login = (
            {"password": auth.password, "security_token": auth.security_token}
            if mode == "password"
            else {"consumer_key": auth.consumer_key, "privatekey_file": auth.private_key_file}
        )
        return caller(
            lambda: Salesforce(username=auth.username, domain=auth.domain, **login, **options)
        )
    except BaseException:
        http.close()
        raise


# --------------------------------------------------------------------------------------------
# Reading


def record_value(record: Mapping[str, Any], parts: Sequence[str]) -> Any:
    """The value at `parts` (`["Account", "Name"]`) in a REST record; None through a null."""
    value: Any = record
    for part in parts:
        if value is None:
            return None
        try:
            value = value[part]
        except KeyError:  # SOQL names are case-insensitive; Salesforce answers in its own case
            lowered = part.lower()
            value = next((item for name, item in value.items() if name.lower() == lowered), None)
    return value


def _rest_frame(
    caller: _Caller, sf: Salesforce, soql: str, fields: Sequence[str]
) -> list[pd.DataFrame]:
    return list(_rest_pages(caller, sf, soql, fields))


def _rest_pages(
    caller: _Caller, sf: Salesforce, soql: str, fields: Sequence[str]
) -> Iterator[pd.DataFrame]:
    """The query's pages as text frames, each page called when the previous one is taken."""
    paths = [field.split(".") for field in fields]

    def page_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                label: column_text([record_value(record, parts) for record in records])
                for label, parts in zip(fields, paths, strict=True)
            }
        )

    page = caller(lambda: sf.query(soql), soql)
    expected = int(page["totalSize"])
    received = len(page["records"])
    yield page_frame(page["records"])
    seen: set[str] = set()
    while not page["done"]:
        # `done` is the has-more flag, `totalSize` the total checked below; a page that says
        # more follow without saying where, or points back at an earlier page, would end the
        # pull short or loop: refused
        next_url = page.get("nextRecordsUrl")
        if not next_url or next_url in seen:
            raise PermanentError(
                f"Salesforce {caller.host}: a page says more records follow but gives"
                f" {'no' if not next_url else 'an earlier page'} nextRecordsUrl, after {received}"
                f" of {expected} records for {soql} — nothing of this pull is loaded"
            )
        seen.add(next_url)
        page = caller(lambda url=next_url: sf.query_more(url, identifier_is_url=True), soql)
        received += len(page["records"])
        yield page_frame(page["records"])
    if received != expected:
        raise RetriableError(
            f"Salesforce {caller.host} announced {expected} records but sent {received} for"
            f" {soql} — the pull will be retried"
        )


def _csv_page(text: str, fields: Sequence[str], host: str) -> pd.DataFrame:
    if not text.strip():
        return pd.DataFrame({label: pd.Series([], dtype="str") for label in fields})
    page = pd.read_csv(io.StringIO(text), dtype="str", keep_default_na=False, na_filter=False)
    columns = {str(column).lower(): column for column in page.columns}
    missing = [field for field in fields if field.lower() not in columns]
    if missing:
        raise PermanentError(
            f"Salesforce {host}: the Bulk API results have no column {', '.join(missing)}"
            f" (columns: {', '.join(map(str, page.columns))})"
        )
    return pd.DataFrame({label: page[columns[label.lower()]] for label in fields}).astype("str")


@dataclasses.dataclass(frozen=True)
class _BulkQuery:
    """One Bulk API 2.0 query: the object, its SOQL, the fields its result pages must hold and
    how long to wait between polls of the job."""

    sf: Salesforce
    object_name: str
    soql: str
    fields: Sequence[str]
    wait: float

    def results(self) -> Iterator[str]:
        """The job's result pages as CSV texts, each fetched when the previous one is taken."""
        handler = getattr(self.sf.bulk2, self.object_name)
        return iter(handler.query(self.soql, wait=self.wait))  # type: ignore[arg-type]


def _bulk_frame(caller: _Caller, query: _BulkQuery) -> list[pd.DataFrame]:
    def run_job() -> list[pd.DataFrame]:
        return [_csv_page(text, query.fields, caller.host) for text in query.results()]

    return caller(run_job, query.soql)


def _bulk_pages(caller: _Caller, query: _BulkQuery) -> Iterator[pd.DataFrame]:
    """A Bulk API 2.0 query's result pages as text frames, each fetched when the previous one
    is taken. The job, its wait and the first page are retried whole as `_bulk_frame` retries
    the job; a later page is not (pages already handed on cannot be taken back): its failure
    is raised at once, translated, and fails the pull."""

    def start() -> tuple[Iterator[str], str | None]:
        texts = query.results()
        return texts, next(texts, None)

    texts, text = caller(start, query.soql)
    once = _Caller(caller.session, caller.host, dataclasses.replace(caller.retry, attempts=1))
    while text is not None:
        yield _csv_page(text, query.fields, caller.host)
        text = once(lambda: next(texts, None), query.soql)


def _selected_fields(fields: Sequence[str], key: Sequence[str]) -> tuple[list[str], list[str]]:
    """The fields to select (key fields appended when not listed) and the key's labels."""
    if isinstance(fields, str) or isinstance(key, str):
        raise ConfigError("`fields` and `key` are lists of field names, not a single string")
    if not fields:
        raise ConfigError("no fields to read from Salesforce — list them in `fields`")
    selected = [check_name(field) for field in fields]
    by_lower = {field.lower(): field for field in selected}
    key_labels = []
    for name in key:
        check_name(name, "key field")
        if name.lower() not in by_lower:
            selected.append(name)
            by_lower[name.lower()] = name
        key_labels.append(by_lower[name.lower()])
    return selected, key_labels


def _lineage(frame: pd.DataFrame, object_name: str, key_labels: Sequence[str]) -> pd.Series:
    """`WorkOrder:0WO…` (one key), `WorkOrder:A=1,B=2` (several), `WorkOrder:row 7` (none)."""
    if key_labels:
        return key_lineage(frame, object_name, key_labels, named=False)
    return line_lineage(f"{object_name}:row ", range(1, len(frame) + 1))


def read_salesforce(
    auth: SalesforceAuth,
    *,
    object_name: str,
    fields: Sequence[str],
    where: str | None = None,
    since: tuple[str, str] | None = None,
    bulk: bool = False,
    key: Sequence[str] = ("Id",),
    session: requests.Session | None = None,
    timeout: float = 30,
    version: str = DEFAULT_API_VERSION,
    retry: RetryPolicy | None = None,
    bulk_wait: float = 2.0,
    stream: bool = False,
) -> RawTable:
    """Read `fields` of `object_name` (filtered by `where`, and `since` for incremental pulls).

    `since=("SystemModstamp", "2026-01-01T00:00:00Z")` adds `SystemModstamp >= 2026-01-01T00:00:00Z`
    (`>=`, so rows sharing the bound's timestamp are read again rather than lost). Every name
    is checked before any call is made. `key` fields (default `Id`) are read even when not
    listed in `fields`, and name each row: `WorkOrder:0WO…`. `bulk_wait` is the pause before
    polling a Bulk API 2.0 job.

    `stream`: return a table streamed from Salesforce (`RawTable.peer_stream`): the query
    pages (or Bulk result pages) are fetched as its chunks are read, one page held at a time,
    and the session is closed at the end. Its rows come in Salesforce's order (a whole read
    sorts them by key), so its fingerprint is that of the rows in any order (`FrameHasher`).
    """
    check_object(object_name)
    selected, key_labels = _selected_fields(fields, key)
    soql = build_query(object_name, selected, where=where, since=since)
    if bulk_wait < 0:
        raise ConfigError("bulk_wait must not be negative")
    retry = retry or SALESFORCE_RETRY
    sf = connect(auth, session=session, timeout=timeout, version=version, retry=retry)
    http = sf.session
    assert isinstance(http, TimedSession)
    origin = f"Salesforce {sf.sf_instance} {object_name}"
    bulk_query = _BulkQuery(sf, object_name, soql, selected, bulk_wait)
    if stream:
        caller = _Caller(http, sf.sf_instance, retry)

        def pages() -> Iterator[RawTable]:
            try:
                if bulk:
                    frames = _bulk_pages(caller, bulk_query)
                else:
                    frames = _rest_pages(caller, sf, soql, selected)
                count = 0
                for frame in frames:
                    for label in frame.columns:
                        frame[label] = frame[label].str.replace(_REST_DATETIME, r"\1Z", regex=True)
                    if key_labels:
                        lineage = _lineage(frame, object_name, key_labels)
                    else:
                        numbers = range(count + 1, count + len(frame) + 1)
                        lineage = line_lineage(f"{object_name}:row ", numbers)
                    count += len(frame)
                    yield RawTable(frame=frame, source_rows=lineage, fingerprint="", origin=origin)
            finally:
                http.close()

        return streamed_pages(origin, pages, ordered=False)
    try:
        caller = _Caller(http, sf.sf_instance, retry)
        if bulk:
            frames = _bulk_frame(caller, bulk_query)
        else:
            frames = _rest_frame(caller, sf, soql, selected)
    finally:
        http.close()
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for label in frame.columns:
        frame[label] = frame[label].str.replace(_REST_DATETIME, r"\1Z", regex=True)
    if key_labels and len(frame) > 1:
        frame = frame.sort_values(key_labels, kind="stable", ignore_index=True)
    return RawTable(
        frame=frame,
        source_rows=_lineage(frame, object_name, key_labels),
        fingerprint=frame_fingerprint(frame),
        origin=origin,
    )
