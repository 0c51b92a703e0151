"""Data contracts for canonical frames, checked with great-expectations (GX Core 1.x).

Each entity's suite is derived from its `EntitySpec` (`schemas.canonical`); nothing here lists
columns by hand, so a column added to the model is covered the next time the suite is built:

- the table has at least one row (an empty canonical table means an empty or truncated export);
- the natural key is not null and unique; every required column is not null;
- CHOICE columns hold one of their choices; bounded INTEGER / CENTS columns lie in range;
- `landlord_id` holds exactly one value (a partition never mixes landlords);
- the entity's `RowRule`s: `a_not_before_b`, `a_not_above_b`, `sign_matches_kind`.

Row rules are judged row by row before the contract runs (`row_rule_breaks`, vectorised): the
normalise stage quarantines the rows that break one (or only counts them, or leaves them for
the contract to block, as the datafix's `rules:` says), so here they are a safety net. The
table rules block: the key unique and present, one landlord, at least one row, and the share
of quarantined rows (`quarantine_guard`, `max_quarantine_percent`).

Nulls are ignored by every check except the not-null ones. `run_contract` returns a
`ContractResult` made of plain, JSON-safe values that the Dagster asset checks put into their
metadata. `contract_description` lists the expectations in words without importing GX.

Importing this module is cheap: great-expectations (about 3 s to import) is imported on the
first `run_contract`, which also builds the ephemeral context and the suites once per process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from schemas.canonical import CREDIT_KINDS, DEBIT_KINDS, ENTITIES, ColumnType, EntitySpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LANDLORD_COLUMN = "landlord_id"
SOURCE_ROW_COLUMN = "source_row"
MAX_KEYS_PER_FAILURE = 50
MAX_FAILING_KEYS = 200
MAX_SAMPLE_VALUES = 10
_KEYS_IN_SUMMARY = 5

# The frame handed to GX carries this positional index: GX then names failing rows by position
# (a cheap list of ints), and the natural keys are read back from the frame with one `take`.
_ROW_INDEX = "__row__"

_RESULT_FORMAT: dict[str, Any] = {
    # SUMMARY, not COMPLETE: both give the failing rows once `unexpected_index_column_names` is
    # set, but COMPLETE also copies every unexpected value and builds a `df.filter(items=[...])`
    # string of every failing index. With a key *column*, GX reads each failing row with `df.at`
    # (and keeps all of them, even in SUMMARY). Measured on a 1M-row ledger with 500k bad `kind`
    # values: COMPLETE + key column ~96 s, SUMMARY + key column ~35 s, SUMMARY + the key as a
    # string index ~3 s, SUMMARY + this positional index + exclude_unexpected_values ~0.1 s.
    "result_format": "SUMMARY",
    "partial_unexpected_count": MAX_KEYS_PER_FAILURE,
    "unexpected_index_column_names": [_ROW_INDEX],
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
}

_validate_lock = threading.Lock()
_engine_lock = threading.Lock()
_engine: _GxEngine | None = None


@dataclass(frozen=True)
class ContractExpectation:
    """One expectation of an entity's contract, described before it becomes a GX object."""

    name: str
    gx_type: str
    description: str
    columns: tuple[str, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    reports_values: bool = False


@dataclass(frozen=True)
class ContractResult:
    """The outcome of one entity's contract on one canonical frame, in plain JSON-safe values."""

    entity: str
    passed: bool
    failures: list[dict]
    statistics: dict
    rows: int
    warnings: list[dict] = field(default_factory=list)  # failures of rules set to `warn`

    def failing_keys(self) -> list[str]:
        """Natural keys of the failing rows over all failures, first seen first, at most 200."""
        keys: dict[str, None] = {}
        for failure in self.failures:
            for key in failure["failing_keys"]:
                keys.setdefault(key, None)
                if len(keys) == MAX_FAILING_KEYS:
                    return list(keys)
        return list(keys)

    def summary(self) -> str:
        """One line a person reads: what failed and on which keys."""
        evaluated = self.statistics.get("evaluated_expectations", 0)
        if self.passed:
            text = f"{self.entity}: all {evaluated} expectations passed on {self.rows:,} rows"
            if self.warnings:
                warned = "; ".join(_describe_failure(failure) for failure in self.warnings)
                text += f" (warnings, rows loaded: {warned})"
            return text
        details = "; ".join(_describe_failure(failure) for failure in self.failures)
        return f"{self.entity}: {len(self.failures)} of {evaluated} expectations failed ({details})"

    def blocked_by(self, failure: dict | None) -> ContractResult:
        """This result with one more failure (a table rule judged outside GX), if any."""
        if failure is None:
            return self
        return replace(self, passed=False, failures=[*self.failures, failure])


def quarantine_guard(
    entity: str,
    read: int,
    rejected: int,
    reasons: dict[str, int],
    keys: Callable[[], Iterable[pd.Series]],
    max_percent: float,
) -> dict | None:
    """The `max_quarantine_percent` table rule as a failure, or None when the share is fine.

    `rejected` rows of `read` were quarantined, `reasons` counts them by reason, `keys()`
    gives their keys chunk by chunk (read only when the rule fails). A broken mapping (a wrong
    column, a wrong sign) quarantines most rows: loading the few left would quietly empty the
    warehouse of that entity, so the load is blocked instead.
    """
    if not read or rejected * 100 <= max_percent * read:
        return None
    ordered = sorted(reasons.items(), key=lambda item: -item[1])
    counted = ", ".join(f"{reason} {count:,}" for reason, count in ordered)
    failing: dict[str, None] = {}
    for part in keys():
        failing.update(dict.fromkeys(_distinct_keys(part)))
        if len(failing) >= MAX_KEYS_PER_FAILURE:
            break
    return {
        "expectation": "max_quarantine_percent",
        "column": None,
        "columns": [],
        "unexpected_count": rejected,
        "failing_keys": list(failing)[:MAX_KEYS_PER_FAILURE],
        "observed_value": round(rejected * 100 / read, 1),
        "reasons": {str(reason): int(count) for reason, count in ordered},
        "message": f"{rejected:,} of {read:,} rows quarantined"
        f" ({rejected * 100 / read:.0f} % > max_quarantine_percent {max_percent:g} %;"
        f" {counted}): fix the mapping or the data, or raise `max_quarantine_percent` for"
        f" {entity} in the datafix",
    }


def row_rule_breaks(spec: EntitySpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per row rule of `spec`, which rows of `frame` break it (vectorised, one bool array each).

    A row missing a value the rule compares is not judged: the not-null checks report it.
    """
    import pandas as pd

    broken: dict[str, np.ndarray] = {}
    for rule in spec.rules:
        if not set(rule.columns) <= set(frame.columns):
            continue
        first, second = frame[rule.columns[0]], frame[rule.columns[1]]
        if rule.kind == "sign_matches_kind":
            # From `LEDGER_KINDS`: a debit-only kind must not be negative, a credit-only kind
            # not positive; a kind allowing both signs (and zero) never breaks the rule.
            breaks = (first.isin(DEBIT_KINDS) & (second < 0)) | (
                first.isin(CREDIT_KINDS) & (second > 0)
            )
        elif rule.kind == "a_not_before_b":
            breaks = first < second
        elif rule.kind == "a_not_above_b":
            breaks = first > second
        else:
            raise ValueError(f"{spec.name}: rule {rule.name!r} has an unknown kind {rule.kind!r}")
        broken[rule.name] = pd.Series(breaks).fillna(False).to_numpy(dtype=bool)
    return broken


def contract_description(entity: str) -> list[str]:
    """The entity's expectations in words, in suite order (for docs and check descriptions)."""
    return [f"{item.name}: {item.description}" for item in contract_expectations(entity)]


@cache
def contract_expectations(entity: str) -> tuple[ContractExpectation, ...]:
    """The entity's contract, derived from its `EntitySpec`, in suite order."""
    spec = _entity_spec(entity)
    key = spec.key
    items = [
        ContractExpectation(
            "row_count",
            "ExpectTableRowCountToBeBetween",
            "the table has at least 1 row (an empty table means an empty or truncated export)",
            kwargs={"min_value": 1},
        ),
        ContractExpectation(
            f"{key}_not_null",
            "ExpectColumnValuesToNotBeNull",
            f"every row has a {key} (natural key)",
            (key,),
            {"column": key},
        ),
        ContractExpectation(
            f"{key}_unique",
            "ExpectColumnValuesToBeUnique",
            f"no two rows share a {key} (natural key)",
            (key,),
            {"column": key},
        ),
    ]
    items += [
        ContractExpectation(
            f"{name}_not_null",
            "ExpectColumnValuesToNotBeNull",
            f"every row has a {name} (required)",
            (name,),
            {"column": name},
        )
        for name in spec.required_columns
        if name != key
    ]
    for column in spec.columns:
        if column.type is ColumnType.CHOICE:
            items.append(
                ContractExpectation(
                    f"{column.name}_in_set",
                    "ExpectColumnValuesToBeInSet",
                    f"{column.name} is one of {', '.join(column.choices)} (or empty)",
                    (column.name,),
                    {"column": column.name, "value_set": list(column.choices)},
                    reports_values=True,
                )
            )
    for column in spec.columns:
        bounded = column.min_value is not None or column.max_value is not None
        if column.type in (ColumnType.INTEGER, ColumnType.CENTS) and bounded:
            items.append(
                ContractExpectation(
                    f"{column.name}_in_range",
                    "ExpectColumnValuesToBeBetween",
                    f"{column.name} is {_range_text(column.min_value, column.max_value)}"
                    " (or empty)",
                    (column.name,),
                    {
                        "column": column.name,
                        "min_value": column.min_value,
                        "max_value": column.max_value,
                    },
                    reports_values=True,
                )
            )
    items.append(
        ContractExpectation(
            f"{LANDLORD_COLUMN}_single_value",
            "ExpectColumnUniqueValueCountToBeBetween",
            f"{LANDLORD_COLUMN} holds exactly one value (a partition never mixes landlords)",
            (LANDLORD_COLUMN,),
            {"column": LANDLORD_COLUMN, "min_value": 1, "max_value": 1},
            reports_values=True,
        )
    )
    items += [_rule_expectation(spec, rule_index) for rule_index in range(len(spec.rules))]
    return tuple(items)


def run_contract(entity: str, frame: pd.DataFrame, *, warn: Collection[str] = ()) -> ContractResult:
    """Validate one canonical frame against its entity's contract and name the failing keys.

    A failure of an expectation named in `warn` (a row rule the datafix sets to `warn`) is
    reported in `warnings` and does not fail the contract.
    """
    started = time.perf_counter()
    spec = _entity_spec(entity)
    expectations = contract_expectations(entity)
    engine = _get_engine()
    view = _validation_view(spec, expectations, frame)
    with _validate_lock:
        # One pandas data source holds one active batch at a time: validate one frame at a time.
        # Batch.validate, not ValidationDefinition.run: the latter also serialises every result
        # into the context's in-memory results store, which only grows.
        try:
            definition, suite = engine.for_entity(entity)
            batch = definition.get_batch(batch_parameters={"dataframe": view})
            suite_result = batch.validate(suite, result_format=_RESULT_FORMAT)
        finally:
            engine.release_batches()
    by_name = {item.name: item for item in expectations}
    failed = [
        _failure(by_name[result.expectation_config.meta["contract"]], result, spec, frame)
        for result in sorted(
            suite_result.results, key=lambda r: r.expectation_config.meta["contract_order"]
        )
        if not result.success
    ]
    statistics = {key: _plain(value) for key, value in dict(suite_result.statistics).items()} | {
        "rows": len(frame),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return _verdict(entity, failed, warn, statistics, len(frame))


def _verdict(
    entity: str, failed: list[dict], warn: Collection[str], statistics: dict, rows: int
) -> ContractResult:
    """The result of the expectations `failed` on `rows` rows, those named in `warn` warning."""
    failures = [failure for failure in failed if failure["expectation"] not in warn]
    return ContractResult(
        entity=entity,
        passed=not failures,
        failures=failures,
        statistics=statistics,
        rows=rows,
        warnings=[failure for failure in failed if failure["expectation"] in warn],
    )


def run_contract_chunks(
    entity: str, frames: Callable[[], Iterable[pd.DataFrame]], *, warn: Collection[str] = ()
) -> ContractResult:
    """The contract over a table read chunk by chunk (`frames()`, in order), as one verdict.

    Row rules are judged per chunk (GX on the first, the same expectations vectorised on the
    others: `_chunk_contract`) and their failures summed (counts added, failing keys and
    sample values in order of appearance, capped as for one frame). The table rules are judged
    over every chunk: at least one row in all; the key unique across chunks (64-bit hashes of
    every key, a match confirmed on the key's text; GX's own check when there is one chunk);
    one landlord in all.
    A failure in any chunk, the last included, fails the whole entity.
    """
    import numpy as np
    import pandas as pd

    from pipelines.lib.spool import KeyHashes, key_hashes

    started = time.perf_counter()
    spec = _entity_spec(entity)
    key = spec.key
    merged: dict[str, dict] = {}
    warned: dict[str, dict] = {}
    statistics: dict[str, Any] = {}
    rows = 0
    seen = KeyHashes()  # every key so far, 8 bytes each
    repeated: list[np.ndarray] = []  # hashes met more than once
    first_keys: pd.Series | None = None  # the first chunk's keys, hashed once a second comes
    first_unique: dict | None = None  # GX's verdict on the key when there is one chunk only
    landlords: set[str] = set()
    unique = f"{key}_unique"
    table_rules = {"row_count", unique, f"{LANDLORD_COLUMN}_single_value"}

    def remember(keys: pd.Series) -> None:
        hashed = key_hashes(keys.dropna())
        again = seen.contains(hashed) | pd.Series(hashed).duplicated(keep=False).to_numpy()
        if again.any():
            repeated.append(hashed[again])
        seen.add(hashed)

    for frame in frames():
        if not len(frame):
            continue
        rows += len(frame)
        # GX judges the first chunk (its suite, its statistics); each later chunk gets the same
        # row expectations as vectorised checks (`_chunk_contract`): GX's per-validation cost
        # (~0.3 s of graph building) would otherwise be paid again for every chunk
        if not statistics:
            result = run_contract(entity, frame, warn=warn)
            statistics = result.statistics
            first_keys = frame[key]
            first_unique = next((f for f in result.failures if f["expectation"] == unique), None)
        else:
            result = _chunk_contract(entity, frame, warn=warn)
            if first_keys is not None:  # a second chunk: the key is judged across chunks
                remember(first_keys)
                first_keys = None
            remember(frame[key])
        for failure in result.failures:
            if failure["expectation"] not in table_rules:
                _merge_failure(merged, failure)
        for failure in result.warnings:
            _merge_failure(warned, failure)
        landlord_failure = f"{LANDLORD_COLUMN}_single_value"
        for failure in result.failures:
            if failure["expectation"] == landlord_failure:
                _merge_failure(merged, failure)  # broken inside one chunk: broken in all
        if LANDLORD_COLUMN in frame:
            landlords.update(frame[LANDLORD_COLUMN].dropna().astype("str").unique().tolist())
    if not rows:
        merged["row_count"] = {
            "expectation": "row_count",
            "column": None,
            "columns": [],
            "unexpected_count": 0,
            "failing_keys": [],
            "observed_value": 0,
        }
    if first_keys is not None:  # one chunk: GX judged the key on the whole table
        if first_unique is not None:
            merged[unique] = first_unique
    elif repeated:
        found = _repeated_keys(frames, key, np.unique(np.concatenate(repeated)))
        if found:
            merged[unique] = found
    if len(landlords) > 1 and f"{LANDLORD_COLUMN}_single_value" not in merged:
        merged[f"{LANDLORD_COLUMN}_single_value"] = {
            "expectation": f"{LANDLORD_COLUMN}_single_value",
            "column": LANDLORD_COLUMN,
            "columns": [LANDLORD_COLUMN],
            "unexpected_count": 0,
            "failing_keys": [],
            "observed_value": len(landlords),
            "sample_values": sorted(landlords)[:MAX_SAMPLE_VALUES],
        }
    order = {item.name: index for index, item in enumerate(contract_expectations(entity))}
    # failing and warning expectations in the suite's order (`_verdict` splits them by `warn`)
    ranked = sorted(
        [*merged.values(), *warned.values()], key=lambda f: order.get(f["expectation"], len(order))
    )
    evaluated = int(statistics.get("evaluated_expectations") or len(order))
    failed = len({f["expectation"] for f in ranked})
    statistics = dict(statistics) | {
        "evaluated_expectations": evaluated,
        "successful_expectations": evaluated - failed,
        "unsuccessful_expectations": failed,
        "success_percent": round(100 * (evaluated - failed) / evaluated, 2) if evaluated else None,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return _verdict(entity, ranked, warn, statistics, rows)


def _chunk_contract(
    entity: str, frame: pd.DataFrame, *, warn: Collection[str] = ()
) -> ContractResult:
    """The row expectations of the entity's suite on one later chunk, vectorised, as GX judges
    them (nulls ignored except by the not-null checks; a pair with a missing side not judged;
    the first `MAX_KEYS_PER_FAILURE` failing rows named): what `run_contract` reports for the
    same frame, without GX's fixed cost per validation. The table rules (row count, key unique,
    one landlord) are left to `run_contract_chunks`, which judges them across chunks; an
    expectation on a column the chunk lacks too (GX already reported it on the first chunk)."""
    import numpy as np

    spec = _entity_spec(entity)
    breaks = row_rule_breaks(spec, frame)
    failed: list[dict] = []
    for item in contract_expectations(entity):
        if item.gx_type in _TABLE_RULE_TYPES or not set(item.columns) <= set(frame.columns):
            continue
        if item.gx_type == "ExpectColumnValuesToNotBeNull":
            unexpected = frame[item.columns[0]].isna().to_numpy(dtype=bool)
        elif item.gx_type == "ExpectColumnValuesToBeInSet" and item.name in breaks:
            unexpected = breaks[item.name]  # the sign rule's helper column (`_helper_columns`)
        elif item.gx_type == "ExpectColumnValuesToBeInSet":
            values = frame[item.columns[0]]
            allowed = values.isin(item.kwargs["value_set"]) | values.isna()
            unexpected = ~allowed.to_numpy(dtype=bool)
        elif item.gx_type == "ExpectColumnValuesToBeBetween":
            values = frame[item.columns[0]]
            numbers = values.to_numpy(dtype="float64", na_value=np.nan)
            low, high = item.kwargs["min_value"], item.kwargs["max_value"]
            unexpected = np.zeros(len(numbers), dtype=bool)
            if low is not None:
                unexpected |= numbers < low
            if high is not None:
                unexpected |= numbers > high
        elif item.gx_type == "ExpectColumnPairValuesAToBeGreaterThanB":
            unexpected = breaks[item.name]
        else:  # an expectation type this function does not know: the chunk judged by GX
            return run_contract(entity, frame, warn=warn)
        count = int(unexpected.sum())
        if not count:
            continue
        positions = np.flatnonzero(unexpected)[:MAX_KEYS_PER_FAILURE].tolist()
        failure: dict[str, Any] = {
            "expectation": item.name,
            "column": item.columns[0] if item.columns else None,
            "columns": list(item.columns),
            "unexpected_count": count,
            "failing_keys": _keys_at(spec.key, frame, positions),
        }
        if item.reports_values and item.columns[0] in frame.columns:
            failure["sample_values"] = _distinct_text(frame[item.columns[0]].take(positions))
        failed.append(failure)
    return _verdict(entity, failed, warn, {}, len(frame))


# judged across chunks by `run_contract_chunks`, not per chunk
_TABLE_RULE_TYPES = frozenset(
    {
        "ExpectTableRowCountToBeBetween",
        "ExpectColumnValuesToBeUnique",
        "ExpectColumnUniqueValueCountToBeBetween",
    }
)


def _merge_failure(merged: dict[str, dict], failure: dict) -> None:
    """Add one chunk's failure of an expectation to the failures so far."""
    name = failure["expectation"]
    held = merged.get(name)
    if held is None:
        merged[name] = dict(failure)
        return
    held["unexpected_count"] += failure["unexpected_count"]
    keys = dict.fromkeys([*held["failing_keys"], *failure["failing_keys"]])
    held["failing_keys"] = list(keys)[:MAX_KEYS_PER_FAILURE]
    if "sample_values" in failure:
        values = dict.fromkeys([*held.get("sample_values", []), *failure["sample_values"]])
        held["sample_values"] = list(values)[:MAX_SAMPLE_VALUES]


def _repeated_keys(
    frames: Callable[[], Iterable[pd.DataFrame]], key: str, repeated: np.ndarray
) -> dict | None:
    """The `<key>_unique` failure for the keys whose hash is in `repeated`, confirmed on their
    text over every chunk (a hash collision alone is no duplicate); None when none is."""
    import numpy as np

    from pipelines.lib.spool import key_hashes

    counts: dict[str, int] = {}
    for frame in frames():
        keys = frame[key].dropna().astype("str")
        hashed = key_hashes(keys)
        for text in keys[np.isin(hashed, repeated)]:
            counts[text] = counts.get(text, 0) + 1
    shared = {text: count for text, count in counts.items() if count > 1}
    if not shared:
        return None
    return {
        "expectation": f"{key}_unique",
        "column": key,
        "columns": [key],
        "unexpected_count": sum(shared.values()),
        "failing_keys": list(shared)[:MAX_KEYS_PER_FAILURE],
    }


def _entity_spec(entity: str) -> EntitySpec:
    try:
        return ENTITIES[entity]
    except KeyError:
        known = ", ".join(ENTITIES)
        raise ValueError(f"unknown entity {entity!r}; the canonical entities are {known}") from None


def _range_text(min_value: int | None, max_value: int | None) -> str:
    if min_value is not None and max_value is not None:
        return f"between {min_value} and {max_value}"
    if min_value is not None:
        return f"at least {min_value}"
    return f"at most {max_value}"


def _rule_expectation(spec: EntitySpec, rule_index: int) -> ContractExpectation:
    rule = spec.rules[rule_index]
    description = f"{rule.description} ({rule.kind} on {', '.join(rule.columns)})"
    if rule.kind in ("a_not_before_b", "a_not_above_b"):
        first, second = rule.columns
        # a >= b, or a <= b written as b >= a; rows missing either value are not judged.
        column_a, column_b = (first, second) if rule.kind == "a_not_before_b" else (second, first)
        return ContractExpectation(
            rule.name,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            description,
            rule.columns,
            {
                "column_A": column_a,
                "column_B": column_b,
                "or_equal": True,
                "ignore_row_if": "either_value_is_missing",
            },
        )
    if rule.kind == "sign_matches_kind":
        # A helper column named after the rule, computed vectorised in `_validation_view`.
        # GX could express this with two ExpectColumnValuesToBeBetween carrying a
        # `row_condition`, but each one runs DataFrame.query over the whole frame and, on the
        # nullable Int64 dtype, a Python call per value: ~0.35-0.85 s per 1M rows, against
        # ~0.05 s for the helper column and one in-set check.
        return ContractExpectation(
            rule.name,
            "ExpectColumnValuesToBeInSet",
            description,
            rule.columns,
            {"column": rule.name, "value_set": [True]},
        )
    raise ValueError(f"{spec.name}: rule {rule.name!r} has an unknown kind {rule.kind!r}")


def _helper_columns(spec: EntitySpec, frame: pd.DataFrame) -> dict[str, Any]:
    """Per-row booleans for the rules GX checks as a helper column (see `_rule_expectation`)."""
    sign_rules = {rule.name for rule in spec.rules if rule.kind == "sign_matches_kind"}
    return {
        name: ~broken for name, broken in row_rule_breaks(spec, frame).items() if name in sign_rules
    }


def _validation_view(
    spec: EntitySpec, expectations: tuple[ContractExpectation, ...], frame: pd.DataFrame
) -> pd.DataFrame:
    """The narrow frame GX reads: only the checked columns, a positional index, helper columns.

    GX filters the whole frame (every column) for each column check, so dropping the lineage
    columns it never reads matters at a million rows. Bounded integer columns become float64
    (missing -> NaN): GX's range check is vectorised only for numpy int/float dtypes and calls
    Python once per value on pandas' nullable Int64; the bounds are small integers, so the
    comparison is exact.
    """
    import numpy as np
    import pandas as pd

    checked = dict.fromkeys(
        name for item in expectations for name in (item.columns or ()) if name in frame.columns
    )
    columns: dict[str, Any] = {name: frame[name].array for name in checked}
    for item in expectations:
        if item.gx_type == "ExpectColumnValuesToBeBetween" and item.columns[0] in columns:
            name = item.columns[0]
            series = frame[name]
            if not pd.api.types.is_float_dtype(series.dtype) and series.dtype != object:
                columns[name] = series.to_numpy(dtype="float64", na_value=np.nan)
    columns |= _helper_columns(spec, frame)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame), name=_ROW_INDEX), copy=False)


def _failure(item: ContractExpectation, result: Any, spec: EntitySpec, frame: pd.DataFrame) -> dict:
    """One failing expectation as plain values: counts, natural keys, and a sample of values."""
    payload: dict = dict(result.result or {})
    failure: dict[str, Any] = {
        "expectation": item.name,
        "column": item.columns[0] if item.columns else None,
        "columns": list(item.columns),
        "unexpected_count": int(payload.get("unexpected_count") or 0),
        "failing_keys": [],
    }
    error = _exception_message(result.exception_info)
    if error is not None:
        failure["error"] = error
        return failure
    if "observed_value" in payload:
        failure["observed_value"] = _plain(payload["observed_value"])
    positions = _failing_positions(payload.get("partial_unexpected_index_list") or [])
    if positions:
        failure["failing_keys"] = _keys_at(spec.key, frame, positions)
        if item.reports_values and item.columns[0] in frame.columns:
            values = frame[item.columns[0]].take(positions[:MAX_KEYS_PER_FAILURE])
            failure["sample_values"] = _distinct_text(values)
    elif item.reports_values and item.columns and item.columns[0] in frame.columns:
        failure["sample_values"] = _distinct_text(frame[item.columns[0]].dropna())
    return failure


def _exception_message(exception_info: Any) -> str | None:
    """The first error GX caught while computing the expectation (e.g. a missing column)."""
    if not isinstance(exception_info, dict):
        return None
    # One entry per metric that failed to compute, or (older shape) a single flat entry.
    entries = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "great-expectations raised an error")
            return message.removeprefix("Error: ").splitlines()[0][:300]
    return None


def _failing_positions(index_list: list) -> list[int]:
    """Row positions from GX's index list, whichever of its two shapes it comes in."""
    positions: list[int] = []
    for entry in index_list:
        value = entry.get(_ROW_INDEX) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            positions.extend(int(position) for position in value[: 2 * MAX_KEYS_PER_FAILURE])
        elif value is not None:
            positions.append(int(value))
        if len(positions) >= 2 * MAX_KEYS_PER_FAILURE:
            break
    return positions


def _distinct_keys(keys: pd.Series) -> list[str]:
    """Distinct keys as text, first seen first, at most `MAX_KEYS_PER_FAILURE`."""
    return [str(key) for key in keys.dropna().unique()[:MAX_KEYS_PER_FAILURE].tolist()]


def _keys_at(key: str, frame: pd.DataFrame, positions: list[int]) -> list[str]:
    """Natural keys (as str) of the rows at `positions`, distinct, first seen first, capped."""
    if key not in frame.columns:
        return [f"<row {position}>" for position in positions[:MAX_KEYS_PER_FAILURE]]
    keys = frame[key].take(positions)
    texts: dict[str, None] = {}
    for position, value in zip(positions, keys.tolist(), strict=True):
        texts.setdefault(_key_text(key, value, frame, position), None)
        if len(texts) == MAX_KEYS_PER_FAILURE:
            break
    return list(texts)


def _key_text(key: str, value: Any, frame: pd.DataFrame, position: int) -> str:
    import pandas as pd

    if not pd.isna(value):
        return str(value)
    # A row without its natural key is named by where it came from.
    if SOURCE_ROW_COLUMN in frame.columns:
        source_row = frame[SOURCE_ROW_COLUMN].iloc[position]
        if not pd.isna(source_row):
            return f"<no {key}: {source_row}>"
    return f"<no {key}: row {position}>"


def _distinct_text(values: pd.Series) -> list[str]:
    import pandas as pd

    texts = ["<empty>" if pd.isna(value) else str(value) for value in values.unique().tolist()]
    return sorted(texts)[:MAX_SAMPLE_VALUES]


def _plain(value: Any) -> Any:
    """numpy scalars and containers -> plain Python, so the value is JSON-safe."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _describe_failure(failure: dict) -> str:
    name = failure["expectation"]
    if "error" in failure:
        return f"{name}: {failure['error']}"
    if "message" in failure:
        return f"{name}: {failure['message']}"
    keys = failure["failing_keys"][:_KEYS_IN_SUMMARY]
    if keys:
        rows = failure["unexpected_count"]
        return f"{name}: {', '.join(keys)}" + (f" ({rows:,} rows)" if rows > len(keys) else "")
    text = f"{name}: observed {failure.get('observed_value')}"
    if failure.get("sample_values"):
        text += f" ({', '.join(failure['sample_values'])})"
    return text


@dataclass(frozen=True)
class _GxEngine:
    """What is built once per process: the context and its pandas data source, and for each
    entity checked, its batch definition and suite (built at the entity's first check: a run
    checks one or two entities of the eight)."""

    context: Any
    data_source: Any
    batch_definitions: dict[str, Any] = field(default_factory=dict)
    suites: dict[str, Any] = field(default_factory=dict)

    def for_entity(self, entity: str) -> tuple[Any, Any]:
        """The batch definition and the suite of `entity`."""
        with _engine_lock:
            if entity not in self.suites:
                self._add(entity)
        return self.batch_definitions[entity], self.suites[entity]

    def _add(self, entity: str) -> None:
        import great_expectations as gx
        import great_expectations.expectations as gxe

        asset = self.data_source.add_dataframe_asset(name=entity)
        self.batch_definitions[entity] = asset.add_batch_definition_whole_dataframe(
            f"{entity}_whole"
        )
        suite = self.context.suites.add(gx.ExpectationSuite(name=f"{entity}_contract"))
        for order, item in enumerate(contract_expectations(entity)):
            expectation_class = getattr(gxe, item.gx_type)
            suite.add_expectation(
                expectation_class(
                    **item.kwargs,
                    description=item.description,
                    meta={"contract": item.name, "contract_order": order},
                )
            )
        self.suites[entity] = suite

    def release_batches(self) -> None:
        """Drop the engine's reference to the last frame, which would outlive the run."""
        batch_manager = self.data_source.get_execution_engine().batch_manager
        batch_manager.reset_batch_cache()
        batch_manager.batch_data_cache.clear()


def _get_engine() -> _GxEngine:
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = _build_engine()
    return _engine


_UNUSED_BY_CONTRACTS = ("scipy.stats", "altair")


def _build_engine() -> _GxEngine:
    # GX 1.24 ships no analytics client; the variable keeps any version that does quiet.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        # GX logs its plugin registry at DEBUG and its temporary docs folder at INFO.
        gx_logger.setLevel(logging.WARNING)
    from connectors.lazy import deferred_imports

    # GX imports scipy.stats and altair at its start for one expectation the contracts do not
    # use (`expect_column_kl_divergence_to_be_less_than`, at call time only): bound as stand-ins
    # imported at their first use, they cost nothing (~0.7 s of CPU and ~60 MB per process)
    with deferred_imports(*_UNUSED_BY_CONTRACTS):
        import great_expectations as gx
        import great_expectations.expectations  # the expectation classes `_add` takes
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # Every pandas batch under 1 GB is fingerprinted with an MD5 of hash_pandas_object over
    # the whole frame (~0.4 s per 1M rows), only to label the batch in the result's metadata.
    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return _GxEngine(context=context, data_source=context.data_sources.add_pandas(name="canonical"))
