"""The datafix file model: what a landlord's YAML may say, validated before anything runs.

A datafix names the landlord, its sources (spreadsheets, databases, web services) and, per
canonical entity, which source feeds it and how each canonical field is mapped; its `push:`
section names the sinks records go back out to. It holds no code: every transform is a
declarative rule interpreted by `pipelines.lib.transforms`. Secrets never appear in a datafix,
only `${ENV_VAR}` references, resolved once when the datafix is loaded.

Sources and sinks come in kinds (`csv`, `sql`, `soap` …), each defined whole in its system's
folder and listed in `connectors/registry.py`; this model takes every registered kind, by its
`kind:` value, with no list of kinds of its own.

Structural errors come from pydantic (unknown keys are refused); cross-references (an entity
naming a missing source, a field that is not a canonical column, a mapped value that is not an
allowed canonical value, a secret written in clear) come from `semantic_issues`, each with the
YAML path it concerns so the checker can print `file:line:column`.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from connectors import registry
from schemas.arrears import ArrearsSection
from schemas.canonical import ENTITIES, ColumnType
from schemas.config import (
    ENV_REFERENCE,
    Issue,
    ShortFormRule,
    SinkBase,
    StrictModel,
    YamlPath,
    did_you_mean,
    env_fields,
    map_key,
)
from schemas.outgoing import OUTGOING

__all__ = [
    "DATE_TESTS",
    "ENV_REFERENCE",
    "NUMBER_TESTS",
    "Case",
    "CaseOutcome",
    "Condition",
    "Datafix",
    "EntityMapping",
    "FieldRule",
    "Issue",
    "KindOf",
    "Landlord",
    "PushSection",
    "RowFilter",
    "SignRule",
    "SinkSettings",
    "SourceSettings",
    "YamlPath",
    "did_you_mean",
    "env_references",
    "semantic_issues",
]

LANDLORD_ID = r"^[a-z0-9][a-z0-9-]{1,62}$"


class KindOf:
    """A source's or a sink's settings, validated by the model of the kind its `kind:` names.

    Validation asks the registry at each call, so a kind registered at run time is accepted
    like the hub's own; the JSON Schema lists the kinds known when it is generated.
    """

    def __init__(self, what: Literal["source", "sink"]) -> None:
        self.what = what
        self.lookup = registry.source_kind if what == "source" else registry.sink_kind
        self.names = registry.source_kind_names if what == "source" else registry.sink_kind_names
        self.kinds = registry.source_kinds if what == "source" else registry.sink_kinds

    def model_for(self, value: object) -> type[BaseModel] | None:
        """The settings model of the kind a raw section names (None: unknown)."""
        kind = self.lookup(value.get("kind")) if isinstance(value, dict) else None
        return None if kind is None else kind.settings

    def validate(self, value: Any) -> BaseModel:
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "kind_section", "a {what} is a mapping starting with `kind:`", {"what": self.what}
            )
        if "kind" not in value:
            raise PydanticCustomError(
                "kind_missing",
                "`kind` is required: one of {allowed}",
                {"what": self.what, "allowed": ", ".join(self.names())},
            )
        kind = self.lookup(value["kind"])
        if kind is None:
            raise PydanticCustomError(
                "kind_unknown",
                "unknown {what} kind `{tag}`",
                {"what": self.what, "tag": str(value["kind"]), "allowed": self.names()},
            )
        return kind.settings.model_validate(value)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        choices = {name: handler.generate_schema(k.settings) for name, k in self.kinds().items()}
        return core_schema.no_info_plain_validator_function(
            self.validate,
            json_schema_input_schema=core_schema.tagged_union_schema(choices, "kind"),
        )


SOURCE_KIND = KindOf("source")
SINK_KIND = KindOf("sink")
SourceSettings = Annotated[StrictModel, SOURCE_KIND]
SinkSettings = Annotated[SinkBase, SINK_KIND]


class Landlord(StrictModel):
    """Who the datafix is for."""

    id: str = Field(
        pattern=LANDLORD_ID,
        description="Short id, lowercase letters, digits and dashes; must equal the file name.",
    )
    name: str = Field(min_length=1, description="The landlord's name as people say it.")


# an amount written in a condition: an optional sign, digits, at most 2 decimals
_THRESHOLD = re.compile(r"^[-+]?[0-9]{1,15}(?:[.,][0-9]{1,2})?$")
NUMBER_TESTS = ("above", "at_least", "below", "at_most")
DATE_TESTS = ("before", "after", "on_or_before", "on_or_after")
Scalar = str | int | bool


# what RE2 refuses that Python's `re` knows, and how to say the same without it
_UNSUPPORTED = (
    ("(?=", "a lookahead `(?=…)`", "match the text itself, or test it in a second condition"),
    ("(?!", "a negative lookahead `(?!…)`", "use a second condition with the opposite test"),
    ("(?<=", "a lookbehind `(?<=…)`", "match the preceding text as part of the pattern"),
    ("(?<!", "a negative lookbehind `(?<!…)`", "use a second condition with the opposite test"),
    ("(?P=", "a backreference `(?P=name)`", "list the accepted values with `in:` instead"),
    ("(?>", "an atomic group `(?>…)`", "write the group as a plain `(?:…)`"),
)
_BACKREFERENCE = re.compile(r"\\[1-9]")


def compile_pattern(pattern: str) -> Any:
    """A datafix `matches:` pattern compiled by RE2 (`google-re2`), case ignored: it matches in
    time linear in the cell's length whatever the pattern (no catastrophic backtracking).

    Raises ValueError naming the construct RE2 does not support and how to rewrite it.
    """
    import re2

    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        detail = error.args[0] if error.args else error
        detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        for token, what, how in _UNSUPPORTED:
            if token in pattern:
                raise ValueError(
                    f"matches `{pattern}` uses {what}, which the hub's regular expressions (RE2,"
                    f" linear time) do not support — {how}"
                ) from None
        if _BACKREFERENCE.search(pattern):
            raise ValueError(
                f"matches `{pattern}` uses a backreference (`\\1`), which the hub's regular"
                " expressions (RE2, linear time) do not support — list the accepted values with"
                " `in:` instead"
            ) from None
        raise ValueError(
            f"matches is not a valid regular expression: `{pattern}` ({detail}) — fix the"
            " pattern (RE2 syntax: no lookaround, no backreference)"
        ) from None


def _check_pattern(pattern: str) -> None:
    """`matches` must compile as an RE2 regular expression."""
    compile_pattern(pattern)


def _one_scalar(value: Any, what: str) -> Any:
    """A value written where one text, number or yes/no is expected (not a list or mapping)."""
    if isinstance(value, dict | list):
        raise ValueError(f"{what} is one value (a text, a number or yes/no), not a list or mapping")
    if isinstance(value, float):
        return str(value)
    if isinstance(value, date):  # YAML reads an unquoted 2026-03-01 as a date
        return value.isoformat()
    return value


def _list_of_scalars(value: Any, what: str) -> Any:
    """A list of codes; a single code is a list of one."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict | list):
            raise ValueError(f"{what} lists codes (texts or numbers), not mappings")
    return [map_key(item) if isinstance(item, bool) else str(item) for item in items]


class Condition(StrictModel):
    """One test of a case on a column of the same row; every test written must hold.

    Blank cells never pass a comparison; a cell a comparison cannot read (not an amount, not a
    date) sends the row to quarantine, unless an earlier case took it.
    """

    column: str = Field(description="Source column tested (of the same row).")
    blank: bool | None = Field(
        None, description="true: the cell is empty; false: the cell is not empty."
    )
    equals: Scalar | None = Field(
        None, description="The cell equals this code (case, accents and spaces ignored)."
    )
    in_: list[str] | None = Field(
        None,
        alias="in",
        description="The cell is one of these codes (case, accents and spaces ignored).",
    )
    matches: str | None = Field(
        None, description="The cell matches this regular expression (case ignored)."
    )
    above: str | int | None = Field(None, description="The cell is an amount > this one.")
    at_least: str | int | None = Field(None, description="The cell is an amount >= this one.")
    below: str | int | None = Field(None, description="The cell is an amount < this one.")
    at_most: str | int | None = Field(None, description="The cell is an amount <= this one.")
    before: date | Literal["today"] | None = Field(
        None, description="The cell is a date before this one (`yyyy-mm-dd` or `today`)."
    )
    after: date | Literal["today"] | None = Field(
        None, description="The cell is a date after this one (`yyyy-mm-dd` or `today`)."
    )
    on_or_before: date | Literal["today"] | None = Field(
        None, description="The cell is a date on or before this one (`yyyy-mm-dd` or `today`)."
    )
    on_or_after: date | Literal["today"] | None = Field(
        None, description="The cell is a date on or after this one (`yyyy-mm-dd` or `today`)."
    )
    formats: list[str] | None = Field(
        None,
        description="Date formats of the cell, tried in order (as a field rule's `formats`);"
        " `today` is the day of the run (Paris).",
    )

    @field_validator("equals", mode="before")
    @classmethod
    def _equals_is_one_value(cls, value: Any) -> Any:
        return _one_scalar(value, "`equals`")

    @field_validator("in_", mode="before", json_schema_input_type=list[Scalar] | Scalar | None)
    @classmethod
    def _in_is_a_list(cls, value: Any) -> Any:
        return _list_of_scalars(value, "`in`")

    @field_validator(*NUMBER_TESTS, mode="before", json_schema_input_type=str | int | float | None)
    @classmethod
    def _an_amount(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not _THRESHOLD.match(str(value)):
            raise ValueError(
                f"`{value}` is not an amount to compare with: write it like 100 or 12.50"
            )
        return str(value)

    @field_validator(*DATE_TESTS, mode="before")
    @classmethod
    def _a_date(cls, value: Any) -> Any:
        if value is None or value == "today":
            return value
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(
                f"`{value}` is not a date to compare with: write `today` or yyyy-mm-dd"
            ) from None

    @model_validator(mode="after")
    def _some_test(self) -> Condition:
        tests = [name for name in self.tests if getattr(self, name) is not None]
        if not tests:
            raise ValueError(
                "give at least one test: blank, equals, in, matches, above, at_least, below,"
                " at_most, before, after, on_or_before or on_or_after"
            )
        numbers = [name for name in tests if name in NUMBER_TESTS]
        dates = [name for name in tests if name in DATE_TESTS]
        if numbers and dates:
            raise ValueError(
                f"a column is compared as an amount ({numbers[0]}) or as a date ({dates[0]}),"
                " not both"
            )
        if self.formats is not None and not dates:
            raise ValueError("`formats` goes with a date test (before, after …)")
        if self.matches is not None:
            _check_pattern(self.matches)
        return self

    @property
    def tests(self) -> tuple[str, ...]:
        """The names of every test a condition may hold."""
        return ("blank", "equals", "in_", "matches", *NUMBER_TESTS, *DATE_TESTS)


class CaseOutcome(StrictModel):
    """What a case (or `else`) gives the field: a fixed value or a whole field rule."""

    value: Scalar | None = Field(
        None,
        description="A fixed value for the rows of this case; `null` leaves an optional field"
        " empty (a required one is then quarantined as missing).",
    )
    then: FieldRule | None = Field(
        None, description="A field rule for the rows of this case (`{from: …, map: …}`)."
    )

    @field_validator("value", mode="before")
    @classmethod
    def _value_is_one_value(cls, value: Any) -> Any:
        return _one_scalar(value, "`value`")

    @model_validator(mode="after")
    def _value_or_then(self) -> CaseOutcome:
        if ("value" in self.model_fields_set) == (self.then is not None):
            raise ValueError("give exactly one of `value` or `then`")
        return self


class Case(CaseOutcome):
    """One case of a conditional rule: the first case whose conditions all hold gives the value."""

    when: list[Condition] | None = Field(
        None,
        description="Conditions that must all hold (one mapping, or a list); a case without"
        " `when` takes every row left.",
    )

    @field_validator(
        "when", mode="before", json_schema_input_type=list[Condition] | Condition | None
    )
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [value]
        if value is not None and not isinstance(value, list):
            raise ValueError("`when` is a condition `{column: …, <test>: …}` or a list of them")
        return value


class SignRule(StrictModel):
    """The sign of an unsigned amount, read from an indicator column (`Sens` = D / C)."""

    column: str = Field(description="Indicator column (e.g. `Sens`).")
    positive: list[str] = Field(
        min_length=1,
        description="Indicator values of a positive amount (e.g. `D`); case, accents and spaces"
        " ignored.",
    )
    negative: list[str] = Field(
        min_length=1,
        description="Indicator values of a negative amount (e.g. `C`); case, accents and spaces"
        " ignored.",
    )

    @field_validator(
        "positive", "negative", mode="before", json_schema_input_type=list[Scalar] | Scalar
    )
    @classmethod
    def _codes(cls, value: Any) -> Any:
        return _list_of_scalars(value, "the indicator values")

    @model_validator(mode="after")
    def _apart(self) -> SignRule:
        both = {v.strip().casefold() for v in self.positive} & {
            v.strip().casefold() for v in self.negative
        }
        if both:
            raise ValueError(f"`{sorted(both)[0]}` is both positive and negative")
        return self


class FieldRule(ShortFormRule):
    """How one canonical field is computed from a source row.

    Exactly one origin: `from` (a column), `concat` (several columns), `const` (a fixed value),
    `debit` + `credit` (two amount columns folded into one signed amount), or `cases` (the
    first case whose conditions hold gives the value, else `else`).
    `tenant_ref: "N° locataire"` is the short form of `tenant_ref: {from: "N° locataire"}`.
    """

    from_: str | None = Field(None, alias="from", description="Source column to read.")
    concat: list[str] | None = Field(None, min_length=2, description="Columns joined in order.")
    separator: str = Field(" ", description="Text put between concatenated values.")
    const: str | int | bool | None = Field(None, description="A fixed value for every row.")
    debit: str | None = Field(None, description="Debit column (becomes a positive amount).")
    credit: str | None = Field(None, description="Credit column (becomes a negative amount).")
    map: dict[str, str | int | bool] | None = Field(
        None, description="Source value → canonical value; case, accents and spaces are ignored."
    )
    unmapped: Literal["reject", "default"] = Field(
        "reject",
        description="A value missing from `map`: quarantine the row, or use `default`.",
    )
    default: str | int | bool | None = Field(
        None, description="Value used when the source cell is blank (or unmapped, see above)."
    )
    formats: list[str] | None = Field(
        None,
        description="Date formats tried in order, e.g. `dd/mm/yyyy`, `yyyy-mm-dd HH:MI`."
        " Excel serial numbers are always understood.",
    )
    unit: Literal["euros", "cents"] = Field("euros", description="Unit of a source amount.")
    negate: bool = Field(False, description="Flip the sign of an amount.")
    sign: SignRule | None = Field(
        None,
        description="Sign of an unsigned amount (`from`) read from an indicator column; a blank"
        " or unknown indicator quarantines the row.",
    )
    cases: list[Case] | None = Field(
        None,
        min_length=1,
        description="Conditional rule: the first case whose `when` holds gives the value"
        " (`value`) or the rule (`then`); rows no case takes get `else`.",
    )
    else_: CaseOutcome | None = Field(
        None,
        alias="else",
        description="With `cases`: the value (`value`) or rule (`then`) of the rows no case"
        " takes; without it such a row is quarantined (`no_case`).",
    )

    @field_validator("else_", mode="before")
    @classmethod
    def _else_outcome(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dict | BaseModel):
            raise ValueError(
                f"`else` is `{{value: {value}}}` (a fixed value) or `{{then: {{from: …}}}}` (a"
                " rule), like a case"
            )
        return value

    @model_validator(mode="after")
    def _one_origin(self) -> FieldRule:
        origins = [
            name
            for name, present in (
                ("from", self.from_ is not None),
                ("concat", self.concat is not None),
                ("const", self.const is not None),
                ("debit/credit", self.debit is not None or self.credit is not None),
                ("cases", self.cases is not None),
            )
            if present
        ]
        if len(origins) != 1:
            found = ", ".join(origins) if origins else "none"
            raise ValueError(
                f"give exactly one of from, concat, const, debit+credit or cases (found: {found})"
            )
        if self.else_ is not None and self.cases is None:
            raise ValueError("`else` goes with `cases`")
        if self.sign is not None and self.from_ is None:
            raise ValueError("`sign` goes with `from` (the column of the unsigned amount)")
        if self.cases is not None:
            options = sorted(
                (self.model_fields_set - {"cases", "else_"})
                & {"map", "unmapped", "default", "formats", "unit", "negate", "separator"}
            )
            if options:
                raise ValueError(
                    f"`{options[0]}` does not go beside `cases`: put it in the `then` rule of"
                    " each case"
                )
        if (self.debit is None) != (self.credit is None):
            raise ValueError("debit and credit go together: name both columns")
        if self.unmapped == "default" and self.default is None:
            raise ValueError("unmapped: default needs a `default` value")
        return self

    @property
    def source_columns(self) -> list[str]:
        """The source columns this rule reads."""
        if self.from_ is not None:
            return [self.from_]
        if self.concat is not None:
            return list(self.concat)
        if self.debit is not None and self.credit is not None:
            return [self.debit, self.credit]
        if self.cases is not None:
            columns: list[str] = []
            for outcome in [*self.cases, *([self.else_] if self.else_ else [])]:
                columns.extend(c.column for c in getattr(outcome, "when", None) or [])
                if outcome.then is not None:
                    columns.extend(outcome.then.read_columns)
            return list(dict.fromkeys(columns))
        return []

    @property
    def read_columns(self) -> list[str]:
        """Every source column the rule reads: its origin's and its sign indicator's."""
        if self.sign is None:
            return self.source_columns
        return [*self.source_columns, self.sign.column]


CaseOutcome.model_rebuild()
Case.model_rebuild()


class RowFilter(StrictModel):
    """Rows to skip before mapping, e.g. a `Total` line at the bottom of an export."""

    column: str = Field(description="Source column tested.")
    matches: str | None = Field(None, description="Regular expression, case-insensitive.")
    equals: str | None = Field(None, description="Exact value (after trimming spaces).")
    blank: bool | None = Field(None, description="true: skip rows where the column is empty.")

    @model_validator(mode="after")
    def _one_test(self) -> RowFilter:
        tests = [self.matches is not None, self.equals is not None, self.blank is not None]
        if sum(tests) != 1:
            raise ValueError("give exactly one of matches, equals or blank")
        if self.matches is not None:
            _check_pattern(self.matches)
        return self


RuleSeverity = Literal["block", "quarantine", "warn"]


class _FeedRules(StrictModel):
    """Where one source's rows are and how they map: what a feed and a one-source entity share."""

    sheet: str | None = Field(None, description="Sheet of an xlsx source (overrides the source's).")
    header_row: int | Literal["auto"] | None = Field(
        None, description="Header row for this sheet (overrides the source's)."
    )
    header_rows: int | None = Field(
        None,
        ge=1,
        le=3,
        description="Header depth for this sheet (overrides the source's).",
    )
    skip_rows: list[RowFilter] = Field(default_factory=list, description="Rows to skip.")


class Feed(_FeedRules):
    """One of several sources (or sheets of one workbook) unioned into one entity, with its
    own field rules. Each row keeps its own lineage; a key found in two feeds is quarantined."""

    source: str = Field(description="Name of a source declared under `sources`.")
    sheets: str | None = Field(
        None,
        description="Every sheet whose name matches this pattern (`*` any text, `?` one"
        " character; case and accents ignored), each read with these rules.",
    )
    fields: dict[str, FieldRule] = Field(description="Canonical field → rule.")
    _label: str = PrivateAttr("")

    @model_validator(mode="after")
    def _one_sheet_setting(self) -> Feed:
        if self.sheet is not None and self.sheets is not None:
            raise ValueError("give `sheet` (one sheet) or `sheets` (a pattern), not both")
        self._label = self.source
        if self.sheet is not None or self.sheets is not None:
            self._label = f"{self.source}[{self.sheet or self.sheets}]"
        return self

    @property
    def label(self) -> str:
        """How the warehouse names this feed (`source_name` of its rows and quarantine rows):
        the source's name, with the sheet when the entity has several feeds (`classeur[Rejets]`)."""
        return self._label

    def with_sheet(self, sheet: str) -> Feed:
        """This feed on one concrete sheet its `sheets` pattern matched (the label stays)."""
        concrete = self.model_copy(update={"sheet": sheet, "sheets": None})
        concrete._label = self._label
        return concrete


class EntityMapping(_FeedRules):
    """Which source(s) feed a canonical entity, which rows to skip and how fields map.

    One source: `source` + `fields` (and the sheet, header and `skip_rows` settings). Several:
    `feeds`, a list of such blocks, unioned into one load."""

    source: str | None = Field(None, description="Name of a source declared under `sources`.")
    fields: dict[str, FieldRule] | None = Field(None, description="Canonical field → rule.")
    feeds: list[Feed] | None = Field(
        None,
        min_length=1,
        description="Several sources (or sheets) feeding this entity, each with its own field"
        " rules, instead of `source` + `fields`.",
    )
    mode: Literal["snapshot", "incremental"] = Field(
        "snapshot",
        description="snapshot: the source holds every row, so rows that vanish are soft-deleted;"
        " incremental: the source holds only new or changed rows, nothing is deleted.",
    )
    max_vanished_percent: float = Field(
        50.0,
        ge=0,
        le=100,
        description="Refuse a snapshot that would soft-delete more than this share of the rows"
        " already loaded (a truncated export must not wipe the warehouse).",
    )
    max_quarantine_percent: float = Field(
        20.0,
        ge=0,
        le=100,
        description="Block the load when more than this share of the rows read is quarantined"
        " (a broken mapping must never quietly quarantine everything).",
    )
    rules: dict[str, RuleSeverity] = Field(
        default_factory=dict,
        description="Row rule of the entity's contract → what a row breaking it does: `quarantine`"
        " (the default: the row is set aside, the rest loads), `warn` (loaded, counted) or"
        " `block` (the whole load is refused).",
    )
    _feeds: list[Feed] = PrivateAttr(default_factory=list)

    model_config = ConfigDict(
        **StrictModel.model_config,
        json_schema_extra={"oneOf": [{"required": ["source", "fields"]}, {"required": ["feeds"]}]},
    )

    @model_validator(mode="after")
    def _one_form(self) -> EntityMapping:
        if self.feeds is not None:
            single = [
                name
                for name in ("source", "fields", "sheet", "header_row", "header_rows")
                if getattr(self, name) is not None
            ] + (["skip_rows"] if self.skip_rows else [])
            if single:
                raise ValueError(
                    f"with `feeds`, put {', '.join(f'`{n}`' for n in single)} inside each feed,"
                    " not on the entity"
                )
            labels = [feed.label for feed in self.feeds]
            twice = sorted({label for label in labels if labels.count(label) > 1})
            if twice:
                raise ValueError(
                    f"two feeds read `{twice[0]}`: give each feed its own source or sheet"
                )
            self._feeds = list(self.feeds)
            return self
        if self.source is None or self.fields is None:
            missing = " and ".join(
                f"`{n}`" for n in ("source", "fields") if getattr(self, n) is None
            )
            raise ValueError(
                f"{missing} missing: an entity takes `source` + `fields` (one source) or"
                " `feeds` (several)"
            )
        shared = {name: getattr(self, name) for name in _FeedRules.model_fields}
        feed = Feed(**shared, source=self.source, fields=self.fields)
        feed._label = self.source  # one feed: its rows are named by the source alone
        self._feeds = [feed]
        return self

    @property
    def all_feeds(self) -> list[Feed]:
        """The feeds of this entity: its `feeds`, or the one its `source` + `fields` make."""
        return self._feeds

    @property
    def fed_by(self) -> list[str]:
        """The names of the sources this entity reads, in order, each once."""
        return list(dict.fromkeys(feed.source for feed in self._feeds))


OUTGOING_NAMES = ("commitments", "invoices", "completions", "actions")
SINK_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class PushSection(StrictModel):
    """What the hub pushes back for this landlord, and where."""

    confirmed: dict[str, dict[str, list[str | bool | int]]] = Field(
        default_factory=dict,
        description="Per outgoing record: column → values that let a record out.",
    )
    sinks: dict[str, SinkSettings] = Field(description="Named sinks.")


# --- Works tracking: the first-time-fix window and the works alerts' thresholds -------------


class WorksAlert(StrictModel):
    """One works alert: the days after which a key is listed as a warning, then as an error."""

    enabled: bool = Field(True, description="false: the check always passes, listing nothing.")
    warn_after_days: int = Field(
        ge=0, description="A key this many days late (or more) makes the check warn."
    )
    error_after_days: int | None = Field(
        None,
        ge=0,
        description="A key this many days late (or more) makes the check fail as an error;"
        " empty: never an error.",
    )


def _alert(warn: int, error: int | None, what: str) -> Any:
    return Field(
        default_factory=lambda: WorksAlert(warn_after_days=warn, error_after_days=error),
        description=f"{what} Default: warn from {warn} days"
        + (f", error from {error}." if error is not None else ", never an error."),
    )


class WorksAlerts(StrictModel):
    """The works alerts (Dagster asset checks on `insight_works`), each listing its keys."""

    orders_past_gtr: WorksAlert = _alert(
        0, 7, "Open orders past their GTR deadline (days late: since the deadline)."
    )
    commitment_not_sent: WorksAlert = _alert(
        3,
        10,
        "Accepted quotes whose order's commitment has not been delivered since (days since the"
        " acceptance); only when the datafix pushes commitments.",
    )
    invoice_without_order: WorksAlert = _alert(
        0, 0, "Invoices whose BT number is no known order (days since the invoice date)."
    )
    completion_not_invoiced: WorksAlert = _alert(
        30, 60, "Orders restored and never invoiced (days since the restoring visit)."
    )


class WorksSettings(StrictModel):
    """Works tracking: the first-time-fix window and the alerts' thresholds."""

    first_time_fix_days: int = Field(
        30,
        ge=0,
        description="An order restored at one visit is a first-time fix when no new order for"
        " the same dwelling and category follows within this many days.",
    )
    alerts: WorksAlerts = Field(default_factory=WorksAlerts, description="The works alerts.")


class Datafix(StrictModel):
    """One landlord's datafix file."""

    version: Literal[1] = Field(1, description="Format version of this file.")
    landlord: Landlord
    inbox: str | None = Field(
        None,
        description="Folder where the landlord's files land; default `$DATAFIX_HOME/inbox/<id>`."
        " It must be that folder (or below it), or inside a folder the operator lists in"
        " `DATAFIX_INBOX_ROOTS`, and never inside another landlord's inbox.",
    )
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description="Environment variables this datafix may read as `${NAME}` besides the"
        " `DATAFIX_*` ones (e.g. `[ERP_PASSWORD]`); their values are never shown in any"
        " message, log or run metadata.",
    )
    sources: dict[str, SourceSettings] = Field(description="Named sources.")
    entities: dict[str, EntityMapping] = Field(description="Canonical entity → mapping.")
    push: PushSection | None = Field(None, description="What goes back out, and where.")
    works: WorksSettings = Field(
        default_factory=WorksSettings,
        description="Works tracking: first-time-fix window and works alert thresholds.",
    )
    arrears: ArrearsSection = Field(
        default_factory=ArrearsSection,
        description="Arrears prevention: tenant profiles (rules tried in order, before the"
        " default ones), the actions each profile calls for, and alert thresholds.",
    )


def _choice_matches(value: object, choices: tuple[str, ...]) -> bool:
    return isinstance(value, str) and value in choices


def semantic_issues(datafix: Datafix, *, file_stem: str | None = None) -> list[Issue]:
    """Cross-reference checks the structure alone cannot express."""
    issues: list[Issue] = []
    if file_stem is not None and datafix.landlord.id != file_stem:
        issues.append(
            Issue(
                path=("landlord", "id"),
                message=f"landlord id `{datafix.landlord.id}` differs from the file name",
                hint=f"rename the file to `{datafix.landlord.id}.yaml` or set `id: {file_stem}`",
            )
        )
    for source_name, source in datafix.sources.items():
        issues.extend(_secret_issues(("sources", source_name), source))
    if datafix.push is not None:
        issues.extend(_push_issues(datafix))
    for entity_name, mapping in datafix.entities.items():
        if entity_name not in ENTITIES:
            issues.append(
                Issue(
                    path=("entities", entity_name),
                    message=f"`{entity_name}` is not a canonical entity",
                    hint=did_you_mean(entity_name, tuple(ENTITIES)),
                    key_position=True,
                )
            )
            continue
        spec = ENTITIES[entity_name]
        base: YamlPath = ("entities", entity_name)
        rule_names = tuple(rule.name for rule in spec.rules)
        issues.extend(
            Issue(
                path=(*base, "rules", name),
                message=f"`{name}` is not a row rule of {entity_name}",
                hint=did_you_mean(name, rule_names)
                if rule_names
                else f"{entity_name} has no row rules: remove `rules`",
                key_position=True,
            )
            for name in mapping.rules
            if name not in rule_names
        )
        several = mapping.feeds is not None
        for index, feed in enumerate(mapping.all_feeds):
            where: YamlPath = (*base, "feeds", index) if several else base
            issues.extend(_feed_issues(datafix, entity_name, mapping, feed, where))
    return issues


def _feed_issues(
    datafix: Datafix, entity_name: str, mapping: EntityMapping, feed: Feed, base: YamlPath
) -> list[Issue]:
    """A feed's source exists and suits the entity's settings; its fields are the entity's."""
    spec = ENTITIES[entity_name]
    issues: list[Issue] = []
    source = datafix.sources.get(feed.source)
    if source is None:
        issues.append(
            Issue(
                path=(*base, "source"),
                message=f"source `{feed.source}` is not declared under `sources`",
                hint=did_you_mean(feed.source, tuple(datafix.sources)),
            )
        )
    elif getattr(source, "cursor", None) is not None and mapping.mode != "incremental":
        issues.append(
            Issue(
                path=("entities", entity_name, "mode"),
                message=f"`{feed.source}` is pulled incrementally (it has a `cursor`), so"
                " each pull holds only changed rows",
                hint="set `mode: incremental` (a snapshot would soft-delete every row not in"
                " the latest changes)",
                key_position=True,
            )
        )
    else:
        for setting in ("sheet", "sheets"):
            if getattr(feed, setting) is not None and "sheet" not in type(source).model_fields:
                issues.append(
                    Issue(
                        path=(*base, setting),
                        message=f"`{setting}` only applies to {_workbook_kinds()} sources;"
                        f" `{feed.source}` is {source.kind}",
                        hint=f"remove `{setting}`",
                    )
                )
    for field_name, rule in feed.fields.items():
        if field_name not in spec.column_names:
            issues.append(
                Issue(
                    path=(*base, "fields", field_name),
                    message=f"`{field_name}` is not a column of {entity_name}",
                    hint=did_you_mean(field_name, spec.column_names),
                    key_position=True,
                )
            )
            continue
        issues.extend(_rule_issues(rule, spec.column(field_name), (*base, "fields", field_name)))
    # a misspelt required field is reported once, as the unknown key it is
    misspelt = {
        match
        for name in feed.fields
        if name not in spec.column_names
        for match in difflib.get_close_matches(name, spec.column_names, n=1, cutoff=0.6)
    }
    for required in spec.required_columns:
        if required not in feed.fields and required not in misspelt:
            issues.append(
                Issue(
                    path=(*base, "fields"),
                    message=f"{entity_name} needs `{required}` but the mapping has no rule for it",
                    hint=f"add `{required}: <source column>` under fields",
                    key_position=True,
                )
            )
    return issues


def _workbook_kinds() -> str:
    """The source kinds whose settings have a `sheet` (e.g. `xlsx`)."""
    kinds = registry.source_kinds().values()
    return " or ".join(k.name for k in kinds if "sheet" in k.settings.model_fields)


_SECRET_HINT = (
    "write `${VARIABLE}` instead and export the variable; secrets never live in a datafix"
)


def _secret_issues(base: YamlPath, settings: BaseModel) -> list[Issue]:
    """Secrets written in clear: passwords in URLs and connection strings, tokens, keys (every
    setting a kind types as `Secret`, `DatabaseUrl` or `OdbcString`)."""
    found: list[Issue] = []
    for path, marker, text in env_fields(settings):
        where = (*base, *path)
        if marker.check == "url" and _inline_password(text):
            found.append(
                Issue(
                    path=where,
                    message=f"the {path[-1]} holds a password in clear",
                    hint=_SECRET_HINT + " (e.g. postgresql://hub:${ERP_PASSWORD}@…)",
                )
            )
        elif marker.check == "odbc":
            match = re.search(r"(?i)(?:^|;)\s*(?:pwd|password)\s*=\s*([^;]*)", text)
            secret = match.group(1).strip() if match else ""
            if secret and not ENV_REFERENCE.fullmatch(secret):
                found.append(
                    Issue(
                        path=where,
                        message="the connection string holds a password in clear",
                        hint=_SECRET_HINT + " (e.g. PWD=${ERP_PASSWORD})",
                    )
                )
        elif marker.check == "secret" and not ENV_REFERENCE.fullmatch(text.strip()):
            found.append(
                Issue(path=where, message=f"`{path[-1]}` is written in clear", hint=_SECRET_HINT)
            )
    return found


_AS_TYPES: dict[str, tuple[ColumnType, ...]] = {
    "euros": (ColumnType.CENTS,),
    "euros_comma": (ColumnType.CENTS,),
    "date": (ColumnType.DATE, ColumnType.DATETIME),
    "yyyymmdd": (ColumnType.DATE, ColumnType.DATETIME),
    "datetime": (ColumnType.DATETIME,),
}


def _push_issues(datafix: Datafix) -> list[Issue]:
    """The `push:` section: known records and columns, allowed values, inputs mapped."""
    push = datafix.push
    assert push is not None
    issues: list[Issue] = []
    for name, rule in push.confirmed.items():
        base: YamlPath = ("push", "confirmed", name)
        spec = OUTGOING.get(name)
        if spec is None:
            issues.append(
                Issue(
                    path=base,
                    message=f"`{name}` is not something the hub pushes",
                    hint=did_you_mean(name, tuple(OUTGOING)),
                    key_position=True,
                )
            )
            continue
        allowed = (*spec.column_names, *spec.confirmed_options)
        for column, values in rule.items():
            if column not in allowed:
                issues.append(
                    Issue(
                        path=(*base, column),
                        message=f"`{column}` is not a column of the outgoing {name}",
                        hint=did_you_mean(column, allowed),
                        key_position=True,
                    )
                )
                continue
            choices = spec.column(column).choices if column in spec.column_names else ()
            if column == "quote_status":
                choices = ENTITIES["quotes"].column("status").choices
            for index, value in enumerate(values):
                if choices and value not in choices:
                    issues.append(
                        Issue(
                            path=(*base, column, index),
                            message=f"`{value}` is not an allowed value of {column}",
                            hint=did_you_mean(str(value), choices),
                        )
                    )
    for sink_name, sink in push.sinks.items():
        base = ("push", "sinks", sink_name)
        if not re.match(SINK_NAME, sink_name):
            issues.append(
                Issue(
                    path=base,
                    message=f"sink name `{sink_name}` is not allowed",
                    hint="use lowercase letters, digits, `-` and `_` (at most 64)",
                    key_position=True,
                )
            )
        issues.extend(_secret_issues(base, sink))
        spec = OUTGOING[sink.sends]
        unmapped = [entity for entity in spec.inputs[:1] if entity not in datafix.entities]
        for entity in unmapped:
            issues.append(
                Issue(
                    path=(*base, "sends"),
                    message=f"{sink.sends} are derived from {entity}, which this datafix does"
                    " not map",
                    hint=f"map `{entity}` under entities, or remove this sink",
                )
            )
        if sink.key is not None and sink.key not in spec.column_names:
            issues.append(
                Issue(
                    path=(*base, "key"),
                    message=f"`{sink.key}` is not a column of the outgoing {sink.sends}",
                    hint=did_you_mean(sink.key, spec.column_names),
                )
            )
        for target, rule in sink.fields.items():
            if rule.from_ is None:
                continue
            if rule.from_ not in spec.column_names:
                issues.append(
                    Issue(
                        path=(*base, "fields", target),
                        message=f"`{rule.from_}` is not a column of the outgoing {sink.sends}",
                        hint=did_you_mean(rule.from_, spec.column_names),
                    )
                )
                continue
            column_type = spec.column(rule.from_).type
            needs = _AS_TYPES.get(rule.as_)
            if needs is not None and column_type not in needs:
                issues.append(
                    Issue(
                        path=(*base, "fields", target, "as"),
                        message=f"`as: {rule.as_}` does not apply to {rule.from_}"
                        f" ({column_type.value})",
                        hint="use `as: text` or `native`",
                    )
                )
    return issues


def _inline_password(url: str) -> bool:
    """True when a URL carries a literal password (`user:secret@host`), not a `${VAR}`."""
    match = re.match(r"^[\w+.-]+://([^/@]*)@", url)
    if match is None or ":" not in match.group(1):
        return False
    password = match.group(1).split(":", 1)[1]
    return bool(password) and ENV_REFERENCE.fullmatch(password) is None


def _rule_issues(rule: FieldRule, column: Any, path: YamlPath) -> list[Issue]:
    issues: list[Issue] = []
    if column.type is ColumnType.CHOICE:
        for source_value, target in (rule.map or {}).items():
            if not _choice_matches(target, column.choices):
                hint = did_you_mean(str(target), column.choices)
                if not isinstance(target, str):
                    hint = f"write the value in quotes (YAML read it as a number); {hint}"
                issues.append(
                    Issue(
                        path=(*path, "map", source_value),
                        message=f"`{target}` is not an allowed value of {column.name}",
                        hint=hint,
                    )
                )
        for key in ("const", "default"):
            value = getattr(rule, key)
            if value is not None and not _choice_matches(value, column.choices):
                issues.append(
                    Issue(
                        path=(*path, key),
                        message=f"`{value}` is not an allowed value of {column.name}",
                        hint=did_you_mean(str(value), column.choices),
                    )
                )
    elif rule.map is not None and column.type not in (ColumnType.TEXT, ColumnType.BOOLEAN):
        issues.append(
            Issue(
                path=(*path, "map"),
                message=f"`map` applies to text, yes/no and choice columns; {column.name} is"
                f" {column.type.value}",
                hint="remove `map`",
            )
        )
    if (rule.debit is not None) and column.type is not ColumnType.CENTS:
        issues.append(
            Issue(
                path=path,
                message=f"debit/credit folding needs an amount column; {column.name} is"
                f" {column.type.value}",
                hint="use `from:` instead",
            )
        )
    if rule.formats is not None and column.type not in (ColumnType.DATE, ColumnType.DATETIME):
        issues.append(
            Issue(
                path=(*path, "formats"),
                message=f"`formats` applies to dates; {column.name} is {column.type.value}",
                hint="remove `formats`",
            )
        )
    if rule.sign is not None and column.type is not ColumnType.CENTS:
        issues.append(
            Issue(
                path=(*path, "sign"),
                message=f"`sign` applies to amounts; {column.name} is {column.type.value}",
                hint="remove `sign`",
                key_position=True,
            )
        )
    if rule.cases is not None:
        issues.extend(_case_issues(rule, column, path))
    return issues


def _case_issues(rule: FieldRule, column: Any, path: YamlPath) -> list[Issue]:
    """Each case's value or rule checked as the field's own; cases no row can reach."""
    issues: list[Issue] = []
    assert rule.cases is not None
    outcomes: list[tuple[YamlPath, CaseOutcome]] = [
        ((*path, "cases", index), case) for index, case in enumerate(rule.cases)
    ]
    if rule.else_ is not None:
        outcomes.append(((*path, "else"), rule.else_))
    for where, outcome in outcomes:
        if outcome.then is not None:
            issues.extend(_rule_issues(outcome.then, column, (*where, "then")))
        elif outcome.value is None:
            if column.required:
                issues.append(
                    Issue(
                        path=(*where, "value"),
                        message=f"`value: null` leaves {column.name} empty, but {column.name} is"
                        " required: every row of this case would be quarantined (missing_value)",
                        hint="give a value, or remove the case",
                    )
                )
        elif (problem := _value_problem(outcome.value, column)) is not None:
            issues.append(Issue(path=(*where, "value"), message=problem[0], hint=problem[1]))
    catch_all = next((i for i, case in enumerate(rule.cases) if case.when is None), None)
    if catch_all is not None:
        # what follows the catch-all is never reached: each later case, then `else` (its key)
        unreachable = [
            ((*path, "cases", index), f"case {index + 1}", False)
            for index in range(catch_all + 1, len(rule.cases))
        ]
        if rule.else_ is not None:
            unreachable.append(((*path, "else"), "`else`", True))
        for where, outcome, key_position in unreachable:
            issues.append(
                Issue(
                    path=where,
                    message=f"{outcome} of {column.name} can never apply: case {catch_all + 1}"
                    " has no `when` and takes every row left",
                    hint=f"remove {outcome}, or give case {catch_all + 1} a `when`",
                    key_position=key_position,
                )
            )
    return issues


def _value_problem(value: object, column: Any) -> tuple[str, str] | None:
    """(message, hint) when a fixed value cannot be a value of `column`, else None."""
    text = "true" if value is True else "false" if value is False else str(value)
    if column.type is ColumnType.CHOICE:
        if _choice_matches(value, column.choices):
            return None
        hint = did_you_mean(text, column.choices)
        if not isinstance(value, str):
            hint = f"write the value in quotes (YAML read it as a number); {hint}"
        return f"`{text}` is not an allowed value of {column.name}", hint
    if column.type is ColumnType.CENTS and (
        isinstance(value, bool) or not _THRESHOLD.match(text.replace(" ", ""))
    ):
        return f"`{text}` is not an amount for {column.name}", "write it like 12.50 or -12,50"
    if column.type is ColumnType.INTEGER and (
        isinstance(value, bool) or not re.fullmatch(r"[-+]?\d{1,15}", text)
    ):
        return f"`{text}` is not a whole number for {column.name}", "write it like 3"
    if column.type is ColumnType.BOOLEAN and not isinstance(value, bool):
        return f"`{text}` is not yes/no for {column.name}", "write true or false"
    if column.type in (ColumnType.DATE, ColumnType.DATETIME):
        try:
            date.fromisoformat(text[:10])
        except ValueError:
            return f"`{text}` is not a date for {column.name}", "write it like 2026-03-01"
    return None


def env_references(value: object, path: YamlPath = ()) -> list[tuple[YamlPath, str]]:
    """Every `${VAR}` referenced anywhere in a raw datafix document, with its YAML path."""
    found: list[tuple[YamlPath, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(env_references(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(env_references(item, (*path, index)))
    elif isinstance(value, str):
        found.extend((path, name) for name in ENV_REFERENCE.findall(value))
    return found
