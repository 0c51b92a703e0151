"""The record store: the org's rows per object, typed on write, with indexes for
external-id matching."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from connectors.sandbox.salesforce.schema import (
    FIELD_SERVICE_SCHEMA,
    UTC,
    FieldSpec,
    ObjectSpec,
    salesforce_id,
)


class SalesforceStore:
    """Records per object, typed: `str`, `Decimal`, `int`, `bool`, `date`, aware `datetime`,
    `None`. Thread-safe through the peer's lock only: use it from one thread at a time."""

    def __init__(self, schema: Mapping[str, ObjectSpec] = FIELD_SERVICE_SCHEMA) -> None:
        self.schema = dict(schema)
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema}
        self._numbers = itertools.count(1)
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)

    def spec(self, object_name: str) -> ObjectSpec | None:
        lowered = object_name.lower()
        return next((spec for name, spec in self.schema.items() if name.lower() == lowered), None)

    def _typed(self, spec: ObjectSpec, values: Mapping[str, Any]) -> dict[str, Any]:
        typed: dict[str, Any] = {}
        for name, value in values.items():
            field_spec = spec.field(name)
            if field_spec is None:
                raise KeyError(f"no field {name} on {spec.name}")
            typed[field_spec.name] = _coerce(field_spec, value)
        return typed

    def insert(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Add a record (system fields filled in when absent); its id."""
        spec = self.spec(object_name)
        if spec is None:
            raise KeyError(f"no object {object_name}")
        record: dict[str, Any] = {field_spec.name: None for field_spec in spec.fields}
        now = self.clock()
        record.update(
            Id=salesforce_id(spec.key_prefix, next(self._numbers)),
            IsDeleted=False,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
        )
        record.update(self._typed(spec, values))
        self.records[spec.name][record["Id"]] = record
        return record["Id"]

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change fields of a record; `LastModifiedDate` and `SystemModstamp` move to now."""
        spec = self.spec(object_name)
        assert spec is not None
        record = self.records[spec.name][record_id]
        now = self.clock()
        record.update(self._typed(spec, values))
        record.update(LastModifiedDate=now, SystemModstamp=now)

    def get(self, object_name: str, record_id: str | None) -> dict[str, Any] | None:
        spec = self.spec(object_name)
        if spec is None or record_id is None:
            return None
        return self.records[spec.name].get(record_id)

    def rows(self, object_name: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        spec = self.spec(object_name)
        assert spec is not None
        return [
            record
            for record in self.records[spec.name].values()
            if include_deleted or not record["IsDeleted"]
        ]

    def index(self, object_name: str, field_name: str) -> dict[Any, list[str]]:
        """Live record ids by the value of `field_name` (text compared case-insensitively, as
        Salesforce matches external ids); built afresh, so it sees any change a test made."""
        spec = self.spec(object_name)
        assert spec is not None
        field_spec = spec.field(field_name)
        assert field_spec is not None
        index: dict[Any, list[str]] = {}
        for record in self.rows(spec.name):
            value = record.get(field_spec.name)
            if value is not None:
                index.setdefault(match_key(value), []).append(record["Id"])
        return index

    def find(self, object_name: str, field_name: str, value: Any) -> list[dict[str, Any]]:
        """The live records whose `field_name` matches `value` (case-insensitive text)."""
        spec = self.spec(object_name)
        assert spec is not None
        ids = self.index(spec.name, field_name).get(match_key(value), [])
        return [self.records[spec.name][record_id] for record_id in ids]

    def duplicates(self, object_name: str, field_name: str) -> dict[Any, list[str]]:
        """`{value: [Id, …]}` for every value of `field_name` that 2+ live records hold."""
        return {
            value: ids for value, ids in self.index(object_name, field_name).items() if len(ids) > 1
        }


def match_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _coerce(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    kind = spec.type
    if kind == "boolean":
        return bool(value)
    if kind in ("currency", "double"):
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if kind == "int":
        return int(value)
    if kind == "datetime":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if kind == "date":
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    return str(value)
