"""Build the SOQL of a pull from datafix settings, refusing anything that could change its shape.

Names (object, fields, key, the `since` field) must be plain API names such as `WorkOrder`,
`BT_Number__c` or `Account.Name`; the `since` bound must be an ISO-8601 UTC date-time (or a
date) and is written as an unquoted SOQL literal; a free `where` condition may only filter: no
second statement, no clause of its own (`LIMIT`, `ORDER BY` …), no sub-query, and its quotes
and parentheses must balance. A refusal is a `ConfigError` that says what to write instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from connectors.errors import ConfigError

__all__ = [
    "build_query",
    "check_name",
    "check_object",
    "check_where",
    "datetime_literal",
]

# An API name: a letter, then letters, digits and single underscores (custom names end in
# `__c` / `__r`, namespaced ones start with `ns__`); Salesforce caps them at 80 characters.
_NAME = r"[A-Za-z](?:[A-Za-z0-9]|_(?=[A-Za-z0-9])|__(?=[A-Za-z0-9]))*"
_OBJECT = re.compile(rf"{_NAME}")
# a field, optionally reached through up to five parent relationships (`Account.Owner.Name`)
_FIELD = re.compile(rf"{_NAME}(?:\.{_NAME}){{0,5}}")
_MAX_NAME = 80

# `2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.000Z`, `…+00:00`, `…+0000`; or a date
_UTC_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d{1,3})?"
    r"(?P<zone>Z|\+00:00|\+0000)"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# words that would start a clause of their own inside a WHERE condition
_CLAUSE_WORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "WITH",
        "GROUP",
        "HAVING",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "FOR",
        "UPDATE",
        "USING",
        "TYPEOF",
        "ALL",
    }
)
_WHERE_TOKEN = re.compile(
    r"""\s+|'(?:[^'\\\n]|\\.)*'|[A-Za-z_][A-Za-z0-9_.]*(?::\d+)?|[-+]?\d[\d.:TZ+-]*|<=|>=|!=|<>|[=<>(),]"""
)


def check_object(name: object, what: str = "object") -> str:
    """`name` if it is a plain Salesforce object API name, else a ConfigError."""
    if not isinstance(name, str) or len(name) > _MAX_NAME or not _OBJECT.fullmatch(name):
        raise ConfigError(
            f"Salesforce {what} {name!r} is not an API name — write the object's API name as"
            " Salesforce shows it, e.g. WorkOrder, ServiceAppointment or Chantier__c"
        )
    return name


def check_name(name: object, what: str = "field") -> str:
    """`name` if it is a field API name, possibly through relationships (`Account.Name`)."""
    if (
        not isinstance(name, str)
        or not _FIELD.fullmatch(name)
        or any(len(part) > _MAX_NAME for part in name.split("."))
    ):
        raise ConfigError(
            f"Salesforce {what} {name!r} is not a field API name — write it as Salesforce shows"
            " it, e.g. WorkOrderNumber, BT_Number__c or Account.Name (letters, digits and"
            " underscores only)"
        )
    return name


def datetime_literal(value: object, field: str) -> str:
    """The unquoted SOQL literal for a `since` bound: an ISO-8601 UTC date-time or a date.

    The value is parsed, not just matched, so `2026-02-30` or `25:00` are refused; the literal
    is rewritten from the parsed value, so nothing of the input reaches the query unchecked.
    """
    text = value if isinstance(value, str) else ""
    how = (
        "write an ISO-8601 UTC date-time such as 2026-01-01T00:00:00Z (or a date such as"
        " 2026-01-01), without quotes"
    )
    if (match := _UTC_DATETIME.fullmatch(text)) is not None:
        try:
            parsed = dt.datetime.fromisoformat(f"{match['date']}T{match['time']}")
        except ValueError:
            raise ConfigError(
                f"`since` bound {value!r} for {field} is not a real date-time — {how}"
            ) from None
        fraction = match["fraction"] or ""
        return parsed.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
    if _DATE.fullmatch(text):
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            raise ConfigError(
                f"`since` bound {value!r} for {field} is not a real date — {how}"
            ) from None
    raise ConfigError(f"`since` bound {value!r} for {field} is not a UTC date-time — {how}")


def check_where(where: object) -> str:
    """A free WHERE condition, refused when it could do more than filter rows."""
    how = (
        "write a plain condition such as Status = 'Completed' AND City = 'Nantes'"
        " (quotes and parentheses balanced, no LIMIT/ORDER BY/sub-query, no `;`)"
    )
    if not isinstance(where, str) or not where.strip():
        raise ConfigError(f"Salesforce `where` {where!r} is empty — {how}, or leave it out")
    depth = 0
    position = 0
    while position < len(where):
        match = _WHERE_TOKEN.match(where, position)
        if match is None:
            raise ConfigError(
                f"Salesforce `where` {where!r}: unexpected {where[position : position + 12]!r}"
                f" at character {position + 1} — {how}"
            )
        token = match.group()
        position = match.end()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"Salesforce `where` {where!r}: a `)` closes nothing — {how}")
        elif (token[0].isalpha() or token[0] == "_") and token.upper() in _CLAUSE_WORDS:
            raise ConfigError(
                f"Salesforce `where` {where!r}: `{token}` would start another clause — {how}"
            )
    if depth:
        raise ConfigError(f"Salesforce `where` {where!r}: a `(` is never closed — {how}")
    return where.strip()


def build_query(
    object_name: str,
    fields: Sequence[str],
    *,
    where: str | None = None,
    since: tuple[str, str] | None = None,
) -> str:
    """`SELECT f1, f2 FROM Object [WHERE (where) AND Field >= literal]`, every part checked."""
    check_object(object_name)
    if not fields:
        raise ConfigError(
            f"no fields to read from Salesforce {object_name} — list them in `fields`"
        )
    names = [check_name(field) for field in fields]
    seen: dict[str, str] = {}
    for name in names:
        if (earlier := seen.get(name.lower())) is not None:
            raise ConfigError(
                f"Salesforce field {name!r} is listed twice (also as {earlier!r}) — keep one"
            )
        seen[name.lower()] = name
    conditions = []
    if where is not None:
        conditions.append(f"({check_where(where)})")
    if since is not None:
        if not (isinstance(since, tuple | list) and len(since) == 2):
            raise ConfigError(
                f"`since` {since!r} must be a (field, bound) pair, e.g."
                " ('SystemModstamp', '2026-01-01T00:00:00Z')"
            )
        field = check_name(since[0], "`since` field")
        conditions.append(f"{field} >= {datetime_literal(since[1], field)}")
    query = f"SELECT {', '.join(names)} FROM {object_name}"
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    return query
