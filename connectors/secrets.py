"""Secrets out of every output: one function, `scrub`, masks them in any text the hub emits.

`scrub(text)` returns `text` with, as `***`:

- every secret value the process knows (`remember`: the hub registers the values of the
  variables a loaded datafix declares under `secrets:` or puts in a password, token or
  connection setting), longest first, also in their URL-encoded, HTML, JSON and repr forms;
- the password of any URL's user info (`scheme://user:password@host`), whatever its
  characters (`@ : / ? % #`, quotes, spaces, unicode), up to the last `@` before the host;
- password-like query parameters (`?password=`, `&pwd=`, `token=`, `api_key=` …);
- the value of an ODBC `PWD=` / `Password=`, bare or in braces with `}}` escapes.

Every message, log line and Dagster metadata value the hub emits goes through it: the CLI's
output streams, every log record (`scrub_log_records`), asset metadata and `dg.Failure`
descriptions.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "ScrubFilter",
    "ScrubbingStream",
    "forget_all",
    "known_secrets",
    "remember",
    "scrub",
    "scrub_exception",
    "scrub_log_records",
    "scrubbed",
]

MASK = "***"

# shorter values are not masked on their own: replacing every "ab" would garble all output
# (the structural rules below still mask them in URLs and connection strings)
MIN_LENGTH = 4

_lock = threading.Lock()
_known: set[str] = set()
_patterns: list[str] = []  # every form of every known secret, longest first

_SECRET_WORDS = (
    r"password|passwd|pwd|pass|mot_?de_?passe|secret|client_secret|token|access_token"
    r"|refresh_token|jeton|api_?key|apikey|cle_?api|session_?id|sid|auth|authorization"
    r"|signature|sig|key"
)

# scheme://user:password@host — the password runs to the line's last `@` followed by a host (a name,
# an IPv4 or a bracketed IPv6, then a port, path, query, quote, space or the end)
_URL_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<password>[^\n]*)"
    r"@(?=\[[0-9A-Fa-f:.]+\]|[\w.\-]+(?::\d+)?(?:[/?#'\"\s,;)>\]]|$))"
)
_QUERY_SECRET = re.compile(
    rf"(?P<head>[?&](?:{_SECRET_WORDS})=)(?P<value>[^&#;\s'\"]*)",
    re.IGNORECASE,
)
_ODBC_PASSWORD = re.compile(
    r"(?P<head>(?:^|(?<=[;\s'\"{(]))(?:pwd|password)\s*=\s*)"
    r"(?P<value>\{(?:[^}]|\}\})*\}?|[^;'\"\n]*)",
    re.IGNORECASE,
)


def _forms(secret: str) -> set[str]:
    """The ways a secret value can be written in a message, a URL, an envelope or a repr."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        html.escape(secret, quote=False),
        html.escape(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        secret.replace("}", "}}"),
    }
    return {form for form in forms if len(form) >= MIN_LENGTH}


def remember(values: Iterable[str]) -> None:
    """Add secret values the hub must never print (resolved passwords, tokens, keys)."""
    fresh = {v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH} - _known
    if not fresh:
        return
    with _lock:
        _known.update(fresh)
        forms = set(_patterns)
        for value in fresh:
            forms |= _forms(value)
        _patterns[:] = sorted(forms, key=len, reverse=True)


def forget_all() -> None:
    """Forget every remembered secret (tests)."""
    with _lock:
        _known.clear()
        _patterns.clear()


def known_secrets() -> frozenset[str]:
    """The secret values remembered so far."""
    return frozenset(_known)


def _mask_userinfo(match: re.Match[str]) -> str:
    password = match.group("password")
    if not password or password == MASK:
        return match.group(0)
    return f"{match.group('head')}{MASK}@"


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if not value or value in (MASK, "{***}"):
        return match.group(0)
    return f"{match.group('head')}{MASK}"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known or given secret, and every password in a URL, query or ODBC
    connection string, shown as `***`."""
    if not text:
        return text
    extra = sorted(
        {form for value in secrets if value for form in _forms(value)}, key=len, reverse=True
    )
    for form in [*extra, *_patterns]:
        if form in text:
            text = text.replace(form, MASK)
    if "://" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    if "=" in text:
        text = _ODBC_PASSWORD.sub(_mask_value, text)
        text = _QUERY_SECRET.sub(_mask_value, text)
    return text


def scrubbed(value: Any) -> Any:
    """`value` with `scrub` applied to every text inside it (mappings, lists, tuples)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: scrubbed(item) for key, item in value.items()}
    if type(value) in (list, tuple):  # exactly: records and named tuples are kept whole
        return type(value)(scrubbed(item) for item in value)
    return value


def scrub_exception(error: BaseException) -> BaseException:
    """`error` and the exceptions chained to it, their texts scrubbed in place (arguments, and
    a `description` or `message` attribute): what a traceback or a run's event log shows of
    them. Returns `error`."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        with contextlib.suppress(AttributeError, TypeError):
            current.args = tuple(scrubbed(arg) for arg in current.args)
        for name in ("description", "message", "msg", "problems"):
            value = getattr(current, name, None)
            if isinstance(value, str | list | tuple):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(current, name, scrubbed(value))
        pending += [current.__cause__, current.__context__]
    return error


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs each record's message (arguments merged in) and exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the record as the logger would
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


_record_factory_installed = False


def scrub_log_records() -> None:
    """Scrub every log record of the process as it is made (`logging.setLogRecordFactory`):
    the hub's loggers, Dagster's `context.log` (whose records become event-log entries) and any
    library's, whatever handlers are added later. Idempotent."""
    global _record_factory_installed
    with _lock:
        if _record_factory_installed:
            return
        _record_factory_installed = True
    make_record = logging.getLogRecordFactory()
    scrubbing = ScrubFilter()

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        scrubbing.filter(record)
        return record

    logging.setLogRecordFactory(scrubbed_record)


class ScrubbingStream:
    """A text stream (stdout, stderr) that scrubs each write before passing it on: the last
    guard of the command line's output."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text) if isinstance(text, str) else text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
