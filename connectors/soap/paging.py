"""Paging that cannot lose rows: which arguments the next call sends, and when the pull ends.

`Pager` walks the pages of one pull under a `SoapPaging` (page number, offset, continuation
token or cursor). Its rules:

- **The end**, in this order of preference: the answer's total (`total_path`: the pull ends
  once that many records are read), a "more pages follow" flag (`has_more_path`), the next
  token (`continuation_token`: no token is the end), else an empty page. A short page is never
  the end by itself.
- **A server cap on the page size** (fewer records than asked although more remain, or, with
  no total or flag, a short page that the next page shows was not the last) is detected and
  followed: page-number and offset paging go on asking the size the server really gives, so
  no page boundary falls between two records (a page number is always `records read / size`;
  when a cap appears mid-way, the size is the largest that keeps that exact). Token and cursor
  paging need nothing: the server says where the next page starts.
- **Counts**: records read ≠ the announced total (more than it, or an empty page or no next
  token before it, or a total that changes from one page to the next) fails the pull with
  both numbers. When the total is reached on a full page and nothing else in the answer (a
  flag, a token) confirms the end, one page more is asked: it must be empty, so a total short
  by whole pages cannot cut the pull either. A flag
  that says more follow on an empty page, a token sent twice and a cursor that does not move
  fail it too (they would loop or cut the pull silently).

Nothing is returned before the pull is complete, so a failed pull loads nothing. No I/O here:
the caller makes the calls and reads the answer's fields (`connectors.soap.client.read_soap`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from connectors.errors import ConnectorError, PermanentError, RetriableError
from connectors.soap.models import SoapPaging

__all__ = ["Pager"]

log = logging.getLogger(__name__)

_NUMBERED = ("page_number", "offset")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class Pager:
    """The state of one paged pull (`paging`); `origin` (`<wsdl> <operation>`) opens messages.

    Use: `arguments()` for the next call; `after_page(count, ...)` with what the answer held,
    True once the pull is complete. Attributes after the pull: `read` (records), `pages`
    (calls), `total` (the announced total, when `total_path` is set), `size` (the page size
    last asked: below `page_size` when the server caps it), `capped` (the server's cap seen).
    """

    def __init__(self, paging: SoapPaging, origin: str) -> None:
        self.paging = paging
        self.origin = origin
        self.size = paging.page_size
        self.read = 0
        self.pages = 0
        self.total: int | None = None
        self.capped: int | None = None
        self._token: str | None = None
        self._tokens: set[str] = set()
        self._cursor: str | None = None
        self._probed = False

    # the next call ---------------------------------------------------------------------------
    def arguments(self) -> dict[str, Any]:
        """The paging arguments of the next call."""
        paging = self.paging
        arguments: dict[str, Any] = {paging.page_size_argument: self.size}
        if paging.kind == "page_number":
            arguments[paging.page_argument] = paging.first_page + self.read // self.size
        elif paging.kind == "offset":
            arguments[paging.offset_argument] = paging.first_offset + self.read
        elif paging.kind == "continuation_token" and self._token is not None:
            arguments[paging.token_argument] = self._token
        elif paging.kind == "cursor" and self._cursor is not None:
            arguments[paging.cursor_argument] = self._cursor
        return arguments

    # after each answer -----------------------------------------------------------------------
    def after_page(
        self,
        count: int,
        *,
        total: Any = None,
        has_more: Any = None,
        next_token: Any = None,
        last_cursor: Any = None,
    ) -> bool:
        """Take in a page of `count` records; True when the pull is complete.

        `total`, `has_more` and `next_token` are the answer's values at `total_path`,
        `has_more_path` and `token_path` (None when not configured or absent); `last_cursor`
        the value of `cursor_field` in the page's last record.
        """
        paging = self.paging
        asked = self.size
        self.pages += 1
        self.read += count
        if paging.total_path:
            self._take_total(total)
        if paging.kind == "continuation_token":
            self._take_token(next_token)
        if paging.kind == "cursor" and count:
            self._take_cursor(last_cursor)

        more = self._more(count, has_more)
        if not more:
            self._check_end(has_more)
            return not self._probe(count, asked)
        if paging.kind == "continuation_token" and self._token is None:
            raise self._mismatch("and no token for a next page")
        if count == 0:
            self._empty_page_before_the_end()
        if count < asked:
            self._follow_cap(count, asked)
        return False

    def _more(self, count: int, has_more: Any) -> bool:
        """Whether more records remain, by the best indicator the answer gives."""
        paging = self.paging
        if self.total is not None:
            if self.read > self.total:
                raise self._mismatch("more than that")
            return self.read < self.total
        if paging.has_more_path:
            return self._flag(has_more)
        if paging.kind == "continuation_token":
            return self._token is not None
        return count > 0

    def _probe(self, count: int, asked: int) -> bool:
        """Whether to ask one page more although the total is reached: when nothing else in
        the answer can confirm the end and the last page was full, a total short by whole
        pages would cut the pull silently; the page after must be empty."""
        if self.total is None or self._probed or count == 0 or count < (self.capped or asked):
            return False
        if self.paging.has_more_path or self.paging.kind == "continuation_token":
            return False  # the flag or the token confirmed the end (`_check_end`)
        self._probed = True
        return True

    def _check_end(self, has_more: Any) -> None:
        """At the end the total decided: the other indicators must not say more follow."""
        paging = self.paging
        if self.total is None:
            return
        if paging.has_more_path and self._flag(has_more):
            raise self._mismatch("yet its answer says more pages follow")
        if paging.kind == "continuation_token" and self._token is not None:
            raise self._mismatch("yet its answer gives a token for a next page")

    def _empty_page_before_the_end(self) -> None:
        paging = self.paging
        if self.total is not None:
            raise self._mismatch("then an empty page")
        if paging.has_more_path:
            raise self._fault(
                f"the service sent an empty page (page {self.pages}, after"
                f" {self.read} records) while `{paging.has_more_path}` says more pages follow —"
                " its paging is broken; nothing of this pull is loaded; ask the landlord's IT"
            )
        # continuation token: an empty page with a next token is allowed (the service skips
        # ahead); a repeated token or max_pages stops a loop

    def _follow_cap(self, count: int, asked: int) -> None:
        """A short page while more remain: the server caps the page size at `count`."""
        # a page number must start exactly where the records read end: the largest size that
        # divides them (the cap itself when it shows on the first page); a token or a cursor
        # says where the next page starts, whatever the size
        kind = self.paging.kind
        size = count if kind == "offset" else math.gcd(self.read, count)
        if kind not in _NUMBERED:
            size = asked
        if self.capped is None and self.pages == 1 and (self.total is not None or self._flagged):
            log.warning(
                "%s: the service caps pages at %d records (%d asked); paging on with %d",
                self.origin,
                count,
                asked,
                size,
            )
        self.capped = count if self.capped is None else min(self.capped, count)
        self.size = size

    @property
    def _flagged(self) -> bool:
        return bool(self.paging.has_more_path)

    # the answer's indicators -----------------------------------------------------------------
    def _take_total(self, value: Any) -> None:
        path = self.paging.total_path
        if value is None and self.total is not None:
            return  # some services announce the total on the first page only
        try:
            total = int(str(value).strip())
            if total < 0:
                raise ValueError
        except ValueError:
            shown = "missing" if value is None else repr(value)
            raise self._fault(
                f"the answer's total `{path}` is {shown}, not a count of records"
                " — fix `paging.total_path` in the datafix, or leave it out"
            ) from None
        if self.total is not None and total != self.total:
            raise self._fault(
                f"the service announced {self.total} records, then {total} on"
                f" page {self.pages} — the data changed during the pull; nothing of it is"
                " loaded; the pull will be run again",
                RetriableError,
            )
        self.total = total

    def _take_token(self, value: Any) -> None:
        if _empty(value):
            self._token = None
            return
        token = str(value)
        if token in self._tokens:
            raise self._fault(
                "the service sent the continuation token of an earlier page"
                " again — its paging is broken; ask the landlord's IT"
            )
        self._tokens.add(token)
        self._token = token

    def _take_cursor(self, value: Any) -> None:
        field = self.paging.cursor_field
        if _empty(value):
            raise self._fault(
                f"the last record of page {self.pages} has no `{field}`, so the"
                " next page cannot be asked — fix `paging.cursor_field` in the datafix"
            )
        cursor = str(value)
        if cursor == self._cursor:
            raise self._fault(
                f"the cursor `{field}` did not move ({cursor!r} again on page"
                f" {self.pages}) — the records are not ordered by `{field}`; pick the field the"
                " service pages on"
            )
        self._cursor = cursor

    def _flag(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = "" if value is None else str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise self._fault(
            f"the answer's `{self.paging.has_more_path}` is"
            f" {'missing' if value is None else repr(value)}, not true or false — fix"
            " `paging.has_more_path` in the datafix"
        )

    def _fault(self, message: str, error: type[ConnectorError] = PermanentError) -> ConnectorError:
        """The error `message` raises, naming the pull it is about."""
        return error(f"{self.origin}: {message}")

    def _mismatch(self, what: str) -> ConnectorError:
        return self._fault(
            f"the service announced {self.total} records but sent {self.read}"
            f" ({what}, after {self.pages} pages) — nothing of this pull is loaded; its total"
            " or its paging is wrong: check the paging settings, or ask the landlord's IT"
        )
