"""How a SOAP source pages through its records, and which faults are worth retrying."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connectors.errors import ConfigError
from connectors.retry import RetryPolicy

__all__ = ["PAGING_KINDS", "RETRIABLE_FAULT_CODES", "SOAP_RETRY", "SoapPaging"]

# SOAP fault codes (the part after the namespace prefix) that mean "try again later", unless a
# datafix lists its own (`transient_faults`). Every other fault (`Client.*`, other `Server.*`
# codes) is permanent: retrying the same request cannot change the answer.
RETRIABLE_FAULT_CODES = frozenset({"Server.Busy", "Server.Unavailable", "Server.Timeout"})

PAGING_KINDS = ("page_number", "offset", "continuation_token", "cursor")


@dataclass(frozen=True)
class SoapPaging:
    """How an operation pages, named by its own argument and response fields.

    Four styles, each sending `page_size` as `page_size_argument`:

    - `page_number`: the page number as `page_argument` (`pageNumber`), from `first_page`;
    - `offset`: the number of records already read (plus `first_offset`) as `offset_argument`
      (`startIndex`);
    - `continuation_token`: the first call without a token, then the token the previous answer
      gave at `token_path`, sent back as `token_argument`; a token sent twice is refused;
    - `cursor`: the first call without a cursor, then the value of `cursor_field` (a record
      field, e.g. the id) of the last record read, sent as `cursor_argument` (keyset paging);
      a cursor that does not move is refused.

    The end of the pull is decided, in this order of preference, by the answer's total
    (`total_path`: the pull ends when that many records are read), a "more pages follow" flag
    (`has_more_path`), the next token (`continuation_token`: none means the end) or an empty
    page. A short page is never the end by itself: the server may cap the page size, which is
    then detected and followed (`connectors.soap.paging`). Records read ≠ the announced total
    fails the pull.

    Attributes:
        kind: one of `PAGING_KINDS`.
        page_size: records asked for per call, sent as `page_size_argument`.
        page_size_argument: the operation's page size argument (`pageSize`).
        page_argument / first_page: the page number argument and the first number, 0 or 1
            (`page_number`).
        offset_argument / first_offset: the offset argument and the offset of the first
            record, 0 or 1 (`offset`).
        token_argument / token_path: the token argument, and the answer's next token
            (`continuation_token`).
        cursor_argument / cursor_field: the cursor argument, and the record field whose last
            value it takes (`cursor`).
        total_path: answer path of the total number of records (any style; optional).
        has_more_path: answer path of the "more pages follow" flag (any style; optional).
    """

    kind: Literal["page_number", "offset", "continuation_token", "cursor"]
    page_size: int = 100
    page_size_argument: str = "pageSize"
    page_argument: str = "pageNumber"
    first_page: int = 1
    offset_argument: str = "offset"
    first_offset: int = 0
    token_argument: str = "continuationToken"
    token_path: str = "nextContinuationToken"
    cursor_argument: str = "after"
    cursor_field: str | None = None
    total_path: str | None = None
    has_more_path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PAGING_KINDS:
            raise ConfigError(
                f"paging kind `{self.kind}` is unknown — use one of {', '.join(PAGING_KINDS)}"
            )
        if self.page_size < 1:
            raise ConfigError(f"paging page_size must be at least 1 (got {self.page_size})")
        if self.first_page not in (0, 1):
            raise ConfigError(f"paging first_page must be 0 or 1 (got {self.first_page})")
        if self.first_offset not in (0, 1):
            raise ConfigError(f"paging first_offset must be 0 or 1 (got {self.first_offset})")
        names = ["page_size_argument", "page_argument", "offset_argument", "token_argument"]
        names += ["token_path", "cursor_argument"]
        for name in names:
            if not getattr(self, name):
                raise ConfigError(f"paging {name} must not be empty")
        if self.kind == "cursor" and not self.cursor_field:
            raise ConfigError(
                "paging kind `cursor` needs `cursor_field`: the record field (e.g. the id) whose"
                " last value is sent for the next page"
            )
        for name in ("total_path", "has_more_path", "cursor_field"):
            if getattr(self, name) == "":
                raise ConfigError(f"paging {name} must not be empty (leave it out instead)")


# How hard a SOAP call (and the WSDL load) is retried unless the caller says otherwise.
SOAP_RETRY = RetryPolicy(attempts=4, first_wait=0.5, max_wait=8.0, jitter=0.5)
