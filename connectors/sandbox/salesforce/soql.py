"""SOQL: a practical subset, parsed and run over the store (see the package docstring)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.sandbox.salesforce.schema import (
    NUMBER_TYPES,
    UTC,
    FieldSpec,
    ObjectSpec,
)
from connectors.sandbox.salesforce.store import SalesforceStore
from connectors.sandbox.salesforce.wire import PeerFault, malformed, no_column

_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
    |(?P<number>[+-]?\d+(?:\.\d+)?)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    |(?P<op><=|>=|!=|<>|=|<|>)
    |(?P<punct>[(),])""",
    re.VERBOSE,
)
_KEYWORDS = frozenset(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
    ]
)
_STRING_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int

    @property
    def word(self) -> str:
        return self.text.upper() if self.kind == "name" else ""


@dataclass(frozen=True)
class FieldPath:
    """A resolved field path: the reference fields followed, then the field read."""

    hops: tuple[FieldSpec, ...]
    field: FieldSpec

    @property
    def name(self) -> str:
        return ".".join([*(hop.relationship_name or "" for hop in self.hops), self.field.name])


# a parsed WHERE condition: does this record (in this store) match?
Condition = Callable[[dict[str, Any], SalesforceStore], bool]


@dataclass(frozen=True)
class Query:
    """A parsed SOQL query (the subset above)."""

    object: ObjectSpec
    fields: tuple[FieldPath, ...]
    condition: Condition | None
    order: tuple[tuple[FieldPath, bool, bool], ...]  # path, descending, nulls last
    limit: int | None

    def run(self, store: SalesforceStore, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        rows = [
            record
            for record in sorted(
                store.rows(self.object.name, include_deleted=include_deleted),
                key=lambda record: record["Id"],
            )
            if self.condition is None or self.condition(record, store)
        ]
        for path, descending, nulls_last in reversed(self.order):
            present = [row for row in rows if path_value(path, row, store) is not None]
            absent = [row for row in rows if path_value(path, row, store) is None]
            present.sort(
                key=lambda row: _sort_key(path_value(path, row, store)), reverse=descending
            )
            rows = present + absent if nulls_last else absent + present
        return rows if self.limit is None else rows[: self.limit]


def path_value(path: FieldPath, record: dict[str, Any] | None, store: SalesforceStore) -> Any:
    for hop in path.hops:
        if record is None:
            return None
        record = store.get(hop.reference_to or "", record.get(hop.name))
    return None if record is None else record.get(path.field.name)


def _sort_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _tokens(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise malformed(
                f"ERROR at Row:1:Column:{position + 1} unexpected token: '{text[position]}'"
            )
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup or "", match.group(), position + 1))
        position = match.end()
    tokens.append(_Token("end", "<EOF>", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str, schema: Callable[[str], ObjectSpec | None]) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        self.schema = schema
        self.object: ObjectSpec | None = None

    # -- token helpers
    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def unexpected(self, token: _Token | None = None) -> PeerFault:
        token = token or self.peek()
        return malformed(f"ERROR at Row:1:Column:{token.column} unexpected token: '{token.text}'")

    def expect_word(self, *words: str) -> None:
        for word in words:
            if self.peek().word != word:
                raise self.unexpected()
            self.take()

    def accept_word(self, word: str) -> bool:
        if self.peek().word == word:
            self.take()
            return True
        return False

    def expect_punct(self, text: str) -> None:
        if self.peek().text != text:
            raise self.unexpected()
        self.take()

    # -- names
    def resolve(self, dotted: str) -> FieldPath:
        assert self.object is not None
        current = self.object
        parts = dotted.split(".")
        if len(parts) > 1 and parts[0].lower() == current.name.lower():
            parts = parts[1:]  # `WorkOrder.Status` is allowed
        hops = []
        for part in parts[:-1]:
            hop = current.relationship(part)
            if hop is None or hop.reference_to is None:
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{part}' in field path. If you are"
                    " attempting to use a custom relationship, be sure to append the '__r'"
                    " after the custom relationship name. Please reference your WSDL or the"
                    " describe call for the appropriate names.",
                )
            hops.append(hop)
            target = self.schema(hop.reference_to)
            assert target is not None
            current = target
        spec = current.field(parts[-1])
        if spec is None:
            raise no_column(parts[-1], current.name)
        return FieldPath(tuple(hops), spec)

    def field_name(self) -> str:
        token = self.take()
        if token.kind != "name" or token.word in _KEYWORDS:
            raise self.unexpected(token)
        if self.peek().text == "(":
            raise malformed(
                f"ERROR at Row:1:Column:{token.column} function {token.text}() is not supported"
                " by this local peer"
            )
        return token.text

    # -- grammar
    def query(self) -> Query:
        self.expect_word("SELECT")
        names = [self.field_name()]
        while self.peek().text == ",":
            self.take()
            names.append(self.field_name())
        self.expect_word("FROM")
        token = self.take()
        if token.kind != "name" or token.word in _KEYWORDS or "." in token.text:
            raise self.unexpected(token)
        self.object = self.schema(token.text)
        if self.object is None:
            raise PeerFault(
                400,
                "INVALID_TYPE",
                f"sObject type '{token.text}' is not supported. If you are attempting to use a"
                " custom object, be sure to append the '__c' after the entity name. Please"
                " reference your WSDL or the describe call for the appropriate names.",
            )
        fields = tuple(self.resolve(name) for name in names)
        seen: set[str] = set()
        for path in fields:
            if path.name.lower() in seen:
                raise malformed(f"duplicate field selected: {path.name}")
            seen.add(path.name.lower())
        condition = None
        if self.accept_word("WHERE"):
            condition = self.disjunction()
        order: list[tuple[FieldPath, bool, bool]] = []
        if self.accept_word("ORDER"):
            self.expect_word("BY")
            while True:
                path = self.resolve(self.field_name())
                descending = self.accept_word("DESC")
                if not descending:
                    self.accept_word("ASC")
                nulls_last = descending
                if self.accept_word("NULLS"):
                    if self.accept_word("LAST"):
                        nulls_last = True
                    else:
                        self.expect_word("FIRST")
                        nulls_last = False
                order.append((path, descending, nulls_last))
                if self.peek().text != ",":
                    break
                self.take()
        limit = None
        if self.accept_word("LIMIT"):
            token = self.take()
            if token.kind != "number" or not token.text.isdigit():
                raise self.unexpected(token)
            limit = int(token.text)
        if self.peek().kind != "end":
            raise self.unexpected()
        return Query(self.object, fields, condition, tuple(order), limit)

    def disjunction(self) -> Condition:
        return self.joined("OR", self.conjunction, any)

    def conjunction(self) -> Condition:
        return self.joined("AND", self.negation, all)

    def joined(
        self,
        word: str,
        operand: Callable[[], Condition],
        combine: Callable[[Iterable[bool]], bool],
    ) -> Condition:
        """One `operand`, or several joined by `word` (`OR`, `AND`) and combined by `combine`
        (`any`, `all`)."""
        parts = [operand()]
        while self.accept_word(word):
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        return lambda record, store: combine(part(record, store) for part in parts)

    def negation(self) -> Condition:
        if self.accept_word("NOT"):
            inner = self.negation()
            return lambda record, store: not inner(record, store)
        if self.peek().text == "(":
            self.take()
            inner = self.disjunction()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def literal(self, path: FieldPath) -> Any:
        token = self.take()
        spec = path.field
        kind = spec.type
        if token.word == "NULL":
            return None
        if kind == "datetime":
            if token.kind != "datetime":
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{spec.name}' must be of type dateTime"
                    " and should not be enclosed in quotes",
                )
            text = token.text.replace("Z", "+00:00")
            return dt.datetime.fromisoformat(text).astimezone(UTC)
        if kind == "date":
            if token.kind != "date":
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{spec.name}' must be of type date"
                    " and should not be enclosed in quotes",
                )
            return dt.date.fromisoformat(token.text)
        if kind == "boolean":
            if token.word not in ("TRUE", "FALSE"):
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{spec.name}' must be of type boolean"
                    " and should not be enclosed in quotes",
                )
            return token.word == "TRUE"
        if kind in NUMBER_TYPES:
            if token.kind != "number":
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{spec.name}' must be of type double"
                    " and should not be enclosed in quotes",
                )
            return Decimal(token.text)
        if token.kind != "string":
            if token.kind == "end" or token.kind in ("op", "punct"):
                raise self.unexpected(token)
            raise PeerFault(
                400,
                "INVALID_FIELD",
                f"value of filter criterion for field '{spec.name}' must be of type string and"
                " should be enclosed in quotes",
            )
        return re.sub(
            r"\\(.)", lambda m: _STRING_ESCAPES.get(m[1], m[1]), token.text[1:-1], flags=re.S
        )

    def comparison(self) -> Condition:
        path = self.resolve(self.field_name())
        token = self.peek()
        if token.kind == "op":
            self.take()
            operator = "!=" if token.text == "<>" else token.text
            literal = self.literal(path)
            return lambda record, store: _compare(
                path_value(path, record, store), operator, literal
            )
        negate = self.accept_word("NOT")
        if self.accept_word("IN"):
            self.expect_punct("(")
            values = [self.literal(path)]
            while self.peek().text == ",":
                self.take()
                values.append(self.literal(path))
            self.expect_punct(")")
            keys = {_sort_key(value) for value in values}
            return lambda record, store: (
                (_sort_key(path_value(path, record, store)) in keys) != negate
            )
        if not negate and self.accept_word("LIKE"):
            pattern_token = self.peek()
            literal = self.literal(path)
            if not isinstance(literal, str):
                raise self.unexpected(pattern_token)
            pattern = re.compile(
                "".join(
                    ".*" if char == "%" else "." if char == "_" else re.escape(char)
                    for char in literal
                ),
                re.IGNORECASE | re.DOTALL,
            )
            return lambda record, store: bool(
                isinstance(value := path_value(path, record, store), str)
                and pattern.fullmatch(value)
            )
        raise self.unexpected()


def _compare(value: Any, operator: str, literal: Any) -> bool:
    if literal is None or value is None:
        if operator == "=":
            return value is None and literal is None
        if operator == "!=":
            return (value is None) != (literal is None)
        return False
    left, right = _sort_key(value), _sort_key(literal)
    if operator == "=":
        return left == right
    if operator == "!=":
        return left != right
    if operator == "<":
        return left < right
    if operator == "<=":
        return left <= right
    if operator == ">":
        return left > right
    return left >= right


def parse_soql(text: str, schema: Callable[[str], ObjectSpec | None]) -> Query:
    """Parse `text` against the known objects; a `PeerFault` (400) says what is wrong."""
    return _Parser(text, schema).query()
