"""Errors and value formats shared by every API: `PeerFault`, REST/CSV date-times and
numbers, the typing of written values, per-record results and poisoned records."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from connectors.sandbox.salesforce.schema import NUMBER_TYPES, UTC, FieldSpec
from connectors.sandbox.salesforce.store import match_key


class PeerFault(Exception):
    """An error answer: HTTP status and Salesforce's `errorCode` and `message`."""

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields) if fields is not None else None


def malformed(message: str) -> PeerFault:
    return PeerFault(400, "MALFORMED_QUERY", message)


def no_column(name: str, entity: str) -> PeerFault:
    return PeerFault(
        400,
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom"
        " field, be sure to append the '__c' after the custom field name. Please reference your"
        " WSDL or the describe call for the appropriate names.",
    )


def rest_datetime(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}+0000"


def _csv_datetime(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"


# a Decimal travels through json.dumps as a marked string, then loses its quotes: the C encoder
# stays in charge and the digits are written exactly as stored
_NUMBER_MARK = "\x00decimal\x00"
_MARKED_NUMBER = re.compile(r'"\\u0000decimal\\u0000([-+0-9.Ee]+)"')


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{_NUMBER_MARK}{value}"
    if isinstance(value, dt.datetime):
        return rest_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def json_text(value: Any) -> str:
    """JSON with `Decimal` written digit for digit (the json module would need floats) and
    date-times as REST writes them."""
    text = json.dumps(value, ensure_ascii=False, default=_json_default, separators=(",", ":"))
    return _MARKED_NUMBER.sub(r"\1", text)


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return _csv_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


_WRITE_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(Z|[+-]\d{2}:?\d{2})?"
)
_TRUE_TEXT = frozenset({"true", "1", "yes"})
_FALSE_TEXT = frozenset({"false", "0", "no"})


def write_value(spec: FieldSpec, value: Any) -> Any:
    """A value a client wrote (JSON value or CSV text) as the store keeps it; ValueError when
    it is not of the field's type."""
    if value is None:
        return None
    kind = spec.type
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_TEXT | _FALSE_TEXT:
            return value.strip().lower() in _TRUE_TEXT
        raise ValueError(value)
    if kind in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float | str):
            raise ValueError(value)
        number = Decimal(str(value).strip())  # InvalidOperation is a ValueError
        if not number.is_finite():
            raise ValueError(value)
        return int(number) if kind == "int" else number
    if kind == "date":
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    if kind == "datetime":
        match = _WRITE_DATETIME.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(value)
        zone = match[2] or "+00:00"  # no offset: Salesforce reads the instant as UTC
        if zone != "Z" and ":" not in zone:
            zone = f"{zone[:3]}:{zone[3:]}"
        parsed = dt.datetime.fromisoformat(match[1] + ("+00:00" if zone == "Z" else zone))
        return parsed.astimezone(UTC)
    if isinstance(value, bool | dict | list):
        raise ValueError(value)
    return str(value)


def item_error(code: str, message: str, fields: Sequence[str] = ()) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": list(fields)}


@dataclass
class ItemResult:
    """The outcome of writing one record: an id and `created`, or errors."""

    id: str | None = None
    created: bool | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        if self.errors:
            body: dict[str, Any] = {"id": self.id} if self.id else {}
            return {**body, "success": False, "errors": self.errors}
        return {"id": self.id, "success": True, "errors": [], "created": self.created}

    def bulk_error(self) -> str:
        # Bulk API 2.0's sf__Error: `CODE:message:fields --` (exact text NOT VERIFIED)
        return " ".join(
            f"{error['statusCode']}:{error['message']}:{','.join(error['fields'])} --"
            for error in self.errors
        )


@dataclass
class Poison:
    """Records whose `field` matches are refused with `code`/`message` (`times` left: None =
    always)."""

    object: str
    field: str
    match: Any
    code: str
    message: str
    times: int | None

    def hits(self, value: Any) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if callable(self.match):
            return bool(self.match(value))
        return value is not None and match_key(value) == match_key(self.match)
