"""Building blocks of a datafix's source and sink settings, shared by every kind.

Each source or sink kind declares its settings as a pydantic model in its system's folder
(`connectors/<system>/kinds.py`), built from these pieces; `schemas/datafix.py` composes the
registered kinds into the datafix model. Settings that may hold `${VARIABLE}` references are
typed, so the hub knows what to resolve and what must never be written in clear:

- `EnvText`: text that may hold `${VAR}`s (a path, a host, a WSDL address);
- `Secret`: a password, token or key: must be one `${VAR}` reference, never in clear;
- `DatabaseUrl`: a SQLAlchemy URL; a password in it must be a `${VAR}`;
- `OdbcString`: an ODBC connection string; its `PWD=` must be a `${VAR}`.

`resolve_settings` returns a copy of a settings model with every such field resolved; the hub
does it once, when the datafix is loaded (`pipelines/lib/datafixes.py`).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

YamlPath = tuple[str | int, ...]
M = typing.TypeVar("M", bound=BaseModel)

__all__ = [
    "ENV_REFERENCE",
    "CursorSpec",
    "DatabaseUrl",
    "Env",
    "EnvText",
    "Issue",
    "OdbcString",
    "OutFieldRule",
    "Secret",
    "ShortFormRule",
    "SinkBase",
    "StrictModel",
    "YamlPath",
    "check_table_or_query",
    "did_you_mean",
    "env_fields",
    "map_key",
    "resolve_settings",
    "short_form",
]


class StrictModel(BaseModel):
    """Refuse unknown keys so a typo is an error, not a silently ignored setting.

    Settings typed `Secret`, `DatabaseUrl` or `OdbcString` show as `***` in a repr: once
    resolved they hold passwords, and a repr ends up in logs and tracebacks.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            info = type(self).model_fields.get(name) if name else None
            if info is not None and value is not None:
                marker, _ = _env_marker(info.annotation, list(info.metadata))
                if marker is not None and marker.check != "text":
                    yield name, "***"
                    continue
            yield name, value


@dataclass(frozen=True)
class Env:
    """Marks a text setting that may hold `${VAR}` references, and how it is checked:
    `text` (anything), `secret` (one reference only), `url` and `odbc` (no password in clear)."""

    check: Literal["text", "secret", "url", "odbc"] = "text"


EnvText = Annotated[str, Env()]
Secret = Annotated[str, Env("secret")]
DatabaseUrl = Annotated[str, Env("url")]
OdbcString = Annotated[str, Env("odbc")]


class Issue(BaseModel):
    """A problem found in a datafix, located by its YAML path."""

    model_config = ConfigDict(frozen=True)

    path: YamlPath
    message: str
    hint: str = ""
    key_position: bool = False  # point at the key itself rather than its value


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """A `did you mean …?` hint, or a list of what is allowed when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return "allowed: " + ", ".join(sorted(candidates))


# --- Settings holding ${VARIABLES} ------------------------------------------------------------


def _env_marker(annotation: Any, metadata: list[Any]) -> tuple[Env | None, bool]:
    """(the Env marker of a field, whether it is a list of such texts)."""
    for item in metadata:
        if isinstance(item, Env):
            return item, False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            found, many = _env_marker(member, [])
            if found is not None:
                return found, many
    if origin is typing.Annotated:
        return _env_marker(typing.get_args(annotation)[0], list(annotation.__metadata__))
    if origin is list:
        found, _ = _env_marker(typing.get_args(annotation)[0], [])
        return found, found is not None
    return None, False


def env_fields(model: BaseModel) -> Iterator[tuple[YamlPath, Env, str]]:
    """Every set `${VAR}`-capable text of a settings model: (YAML path, marker, value)."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = info.alias or name
        if isinstance(value, BaseModel):
            for path, marker, text in env_fields(value):
                yield (key, *path), marker, text
            continue
        marker, many = _env_marker(info.annotation, list(info.metadata))
        if marker is None or value is None:
            continue
        if many:
            for index, text in enumerate(value):
                yield (key, index), marker, text
        else:
            yield (key,), marker, value


def resolve_settings(model: M, resolve: Callable[[str, Env], str]) -> M:
    """A copy of `model` with every `${VAR}`-capable text passed through `resolve` (with the
    field's marker: a URL or connection string quotes a password its own way)."""
    update: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            resolved = resolve_settings(value, resolve)
            if resolved is not value:
                update[name] = resolved
            continue
        marker, many = _env_marker(info.annotation, list(info.metadata))
        if marker is None or value is None:
            continue
        update[name] = [resolve(t, marker) for t in value] if many else resolve(value, marker)
    return model.model_copy(update=update) if update else model


# --- Pieces several kinds share ---------------------------------------------------------------


class CursorSpec(StrictModel):
    """How an incremental source tells new and changed rows: a column that grows with them."""

    column: str = Field(
        description="Column whose value grows when a row is added or changed (a modification"
        " timestamp, or a sequence number)."
    )
    lookback_minutes: int = Field(
        0,
        ge=0,
        le=7 * 24 * 60,
        description="Re-read rows changed up to this many minutes before the last watermark, for"
        " sources whose transactions commit late (re-read rows change nothing if unchanged).",
    )


def check_table_or_query(table: str | None, query: str | None) -> None:
    """A database source reads exactly one of a table or a read-only single-statement query."""
    if (table is None) == (query is None):
        raise ValueError("give exactly one of `table` or `query`")
    if query is not None:
        statement = query.strip().rstrip(";").strip()
        if ";" in statement:
            raise ValueError("query must be a single statement (no `;` inside)")
        if not re.match(r"(?is)^(select|with)\b", statement):
            raise ValueError("query must be read-only: start it with SELECT or WITH")


def short_form(value: Any, map_key: Callable[[Any], str]) -> Any:
    """A field rule given as a bare column name is `{from: <name>}`; the keys of its `map` are
    made text (YAML reads an unquoted code such as `1:` or `01:` as a number)."""
    if isinstance(value, str):
        return {"from": value}
    if isinstance(value, dict) and isinstance(value.get("map"), dict):
        value = {**value, "map": {map_key(k): v for k, v in value["map"].items()}}
    return value


def map_key(key: object) -> str:
    """A `map` key as the text it is compared with (YAML reads `true:` as a boolean)."""
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


class ShortFormRule(StrictModel):
    """A field rule that may be written as a bare column name: `Status: status` is the short
    form of `Status: {from: status}`; the keys of its `map` are read as text."""

    @model_validator(mode="before")
    @classmethod
    def _bare_column_name(cls, value: Any) -> Any:
        return short_form(value, map_key)


class OutFieldRule(ShortFormRule):
    """How one field of a pushed record is filled: from an outgoing column, or a fixed value.

    `Status: status` is the short form of `Status: {from: status}`.
    """

    from_: str | None = Field(None, alias="from", description="Outgoing column to send.")
    value: str | int | bool | None = Field(None, description="A fixed value for every record.")
    as_: Literal["native", "text", "euros", "euros_comma", "date", "yyyymmdd", "datetime"] = Field(
        "native",
        alias="as",
        description="How the value is written: `native` (cents as a whole number, dates as"
        " dates), `text`, `euros` (cents as `1234.56`), `euros_comma` (`1234,56`), `date`"
        " (`2026-11-22`), `yyyymmdd` (`20261122`) or `datetime` (ISO 8601 with offset).",
    )
    map: dict[str, str | int | bool] | None = Field(
        None, description="Value → what the target expects (e.g. `done: Completed`)."
    )

    @model_validator(mode="after")
    def _one_origin(self) -> OutFieldRule:
        if (self.from_ is None) == (self.value is None):
            raise ValueError("give exactly one of `from` (an outgoing column) or `value`")
        return self


class SinkBase(StrictModel):
    """What every sink says: which records it receives and how their fields are filled."""

    sends: Literal["commitments", "invoices", "completions", "actions"] = Field(
        description="The outgoing records this sink receives."
    )
    fields: dict[str, OutFieldRule] = Field(
        min_length=1, description="Target field → outgoing column (or `{value: …}`)."
    )
    key: str | None = Field(
        None,
        description="Outgoing column the target keys records on, when not the record's own"
        " reference (e.g. `order_ref` for a Salesforce WorkOrder fed by completion reports:"
        " the latest report of each order is sent).",
    )
    batch_size: int | None = Field(
        None, ge=1, le=100_000, description="Records per call (default: the sink's own)."
    )
    max_attempts: int = Field(
        8, ge=1, le=100, description="Tries per record and run on transient refusals."
    )
    max_dead_percent: float = Field(
        0,
        ge=0,
        le=100,
        description="Records refused for good (dead letters) a push may leave, in % of the"
        " records it delivered, and still succeed. Default 0: one dead letter fails the push"
        " (`datafix push` / `datafix run` exit 1); every record dead or failed always fails it.",
    )
    timeout: float = Field(30, gt=0, le=600, description="Seconds per call.")
