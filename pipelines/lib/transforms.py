"""The transform engine: a datafix entity mapping applied to raw text rows, column by column.

Every rule of the datafix format is interpreted here, vectorised over whole columns (no Python
loop per row). A row that cannot be mapped is not dropped: it is returned as a reject with a
reason code from `schemas.canonical.QUARANTINE_REASONS` and a message naming the field, the
source column and the value, and saying how to fix it. For every batch:
`read == len(rows) + len(rejects)`; blank rows and rows matched by `skip_rows` are `skipped`.
"""

from __future__ import annotations

import functools
import json
import os
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from connectors.errors import ConfigError
from connectors.lazy import after_import, lazy_module, np, pa, pd
from connectors.rawtable import RawTable, header_key
from pipelines.lib.quality import row_rule_breaks
from schemas.canonical import ENTITIES, PANDAS_DTYPES, ColumnSpec, ColumnType, EntitySpec
from schemas.datafix import (
    DATE_TESTS,
    NUMBER_TESTS,
    CaseOutcome,
    Condition,
    EntityMapping,
    Feed,
    FieldRule,
    SignRule,
    compile_pattern,
    did_you_mean,
)

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:
    pc = lazy_module("pyarrow.compute")


def _use_a_fast_arrow_pool(arrow: types.ModuleType) -> None:
    """Allocate Arrow memory (every text column) with jemalloc rather than mimalloc.

    Arrow's default allocator, mimalloc, spends about 1 s of system time the first time a
    process transforms a million rows (measured on the bench ledger: 1.0-1.3 s of `sys` in
    the first normalise, 0.1 s in the next ones), and the hub runs each landlord in a fresh
    process. jemalloc (or the system allocator where pyarrow has no jemalloc) avoids it, with
    a lower peak RSS. Only the allocator changes; an explicit ARROW_DEFAULT_MEMORY_POOL wins.
    Chosen once pyarrow is imported, before the hub's first use of pandas or Arrow
    (`connectors.lazy.after_import`).
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pool = arrow.jemalloc_memory_pool()
        # freed pages go back to the system at once, not a second later: each chunk's text
        # columns are freed before the next chunk's are made (~10 MB less peak RSS, same CPU)
        arrow.jemalloc_set_decay_ms(0)
    except NotImplementedError:
        pool = arrow.system_memory_pool()
    arrow.set_memory_pool(pool)


after_import("pyarrow", _use_a_fast_arrow_pool)

DEFAULT_DATE_FORMATS: tuple[str, ...] = ("%d/%m/%Y", "%d/%m/%y", "%d-%m-%Y", "%d.%m.%Y")
ISO_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
)
# excel serial numbers accepted as dates: 1954-10-03 .. 2119-01-09
EXCEL_SERIAL_RANGE = (20_000, 80_000)
EXCEL_EPOCH = "1899-12-30"  # day 0 of Excel's serial dates (pd.Timestamp at use)
LOCAL_TIMEZONE = "Europe/Paris"

TRUE_WORDS = ("oui", "o", "yes", "y", "true", "vrai", "1", "x")
FALSE_WORDS = ("non", "n", "no", "false", "faux", "0")

# Python's `\s` spelled out (every character for which str.isspace() is true), the euro sign
# and `eur`: written this way the pattern runs in Arrow's RE2, whereas pandas sends a pattern
# with `\s` through Python's `re` one value at a time (RE2's `\s` is ASCII only).
_SPACES_OR_EURO = (
    "[\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
    "\u3000€]|(?i:eur)"
)


_FORMAT_TOKENS = (("yyyy", "%Y"), ("yy", "%y"), ("dd", "%d"), ("mm", "%m"))
_TIME_TOKENS = (("HH", "%H"), ("MI", "%M"), ("SS", "%S"))

REJECT_COLUMNS = ["source_row", "key", "raw", "reason", "message", "open_columns"]
# rows mapped at a time by the field and row rules (EntityTransformer.apply)
MAP_ROWS = 262_144


@dataclass(frozen=True)
class NormalisedBatch:
    """Canonical rows and rejected rows of one entity from one source read."""

    entity: str
    rows: pd.DataFrame
    rejects: pd.DataFrame
    rows_in_source: int
    skipped: int
    warnings: dict[str, int] = field(default_factory=dict)  # row rule set to `warn` → rows

    @property
    def read(self) -> int:
        """Data rows offered to the mapping (blank and `skip_rows` rows excluded)."""
        return self.rows_in_source - self.skipped


@dataclass
class _FieldResult:
    values: pd.Series
    errors: pd.Series  # reason code per row, <NA> where the value is fine
    messages: pd.Series  # message per failing row, <NA> elsewhere


def to_strftime(fmt: str) -> str:
    """Turn a datafix date format (`dd/mm/yyyy HH:MI`) into strftime (`%d/%m/%Y %H:%M`)."""
    if "%" in fmt:
        return fmt
    converted = fmt
    for token, directive in _TIME_TOKENS:
        converted = converted.replace(token, directive)
    for token, directive in _FORMAT_TOKENS:
        converted = converted.replace(token, directive)
    return converted


def normalise_code(values: pd.Series) -> pd.Series:
    """Codes compared ignoring case, accents and repeated spaces (`  Réglé ` == `regle`)."""
    return (
        values.str.normalize("NFKD")
        .str.replace("[\u0300-\u036f]", "", regex=True)
        .str.casefold()
        .str.replace(r"\s+", " ", regex=True)
        .str.strip()
    )


def _code_key(value: object) -> str:
    return _text_code_key(str(value))


@functools.lru_cache(maxsize=4096)
def _text_code_key(text: str) -> str:
    """`normalise_code` of one text, remembered: a map's keys and a column's choices are keyed
    again on every batch (five pandas string operations each)."""
    return normalise_code(pd.Series([text], dtype="str")).iloc[0]


def _no_text(index: pd.Index) -> pd.Series:
    """An all-<NA> `str` Series on `index`, from Arrow nulls: `pd.Series(pd.NA, dtype="str")`
    builds the same thing by repeating one value (9 ms per million rows, ~25 times a batch)."""
    return pd.Series(pa.nulls(len(index), pa.large_string()), index=index, dtype="str")


def _blank_cells(cells: pd.Series) -> np.ndarray:
    """Which cells are blank (empty or white space only, as `str.strip` sees it) as a mask,
    without building the stripped text: Arrow's `utf8_is_space` tests the same characters
    `utf8_trim_whitespace` (pandas' `str.strip`) removes."""
    text = _arrow_text(cells)
    if text is None:
        return (cells.str.strip() == "").to_numpy(dtype=bool, na_value=False)
    blank = pc.or_(pc.equal(text, ""), pc.utf8_is_space(text))
    return pc.fill_null(blank, False).to_numpy(zero_copy_only=False)


def _blank_to_na(values: pd.Series) -> pd.Series:
    """The values stripped (`str.strip`), a blank one <NA>: in Arrow (trim, then nulls where
    empty), half the cost of pandas' strip and mask over a million cells."""
    text = _arrow_text(values)
    if text is None:
        stripped = values.astype("str").str.strip()
        blank = stripped == ""
        return stripped.mask(blank) if blank.any() else stripped
    stripped = pc.utf8_trim_whitespace(text)
    blank = pc.equal(stripped, "")
    if pc.any(blank).as_py():
        stripped = pc.if_else(blank, pa.scalar(None, pa.large_string()), stripped)
    return pd.Series(stripped, index=values.index, dtype="str", name=values.name)


def _fail(
    result_index: pd.Index, mask: pd.Series, code: str, message: pd.Series
) -> tuple[pd.Series, pd.Series]:
    errors = _no_text(result_index).mask(mask, code)
    messages = _no_text(result_index)
    if mask.any():
        messages = messages.mask(mask, message)
    return errors, messages


def _strictly_increasing(keys: pd.Series) -> bool:
    """Whether the keys (blanks aside) rise strictly from row to row, so no two are equal: most
    exports list their references in order, and one comparison of neighbours (a vectorised pass)
    then saves hashing a million keys to look for repeats."""
    text = _arrow_text(keys) if keys.dtype == "str" else None
    if text is None:
        return False
    present = text.drop_null()
    if len(present) < 2:
        return True
    rising = pc.greater(present.slice(1), present.slice(0, len(present) - 1))
    return bool(pc.all(rising).as_py())


def _placed(index: pd.Index, positions: np.ndarray, values: pd.Series) -> pd.Series:
    """A column on `index` holding `values` at `positions` (in order) and <NA> elsewhere: a
    take, where a reindex on labels would hash the whole index."""
    where = np.full(len(index), -1, dtype=np.intp)
    where[positions] = np.arange(len(positions))
    return pd.Series(values.array.take(where, allow_fill=True), index=index)


def _value_message(values: pd.Series, mask: pd.Series, prefix: str, suffix: str) -> pd.Series:
    """The message of each row in `mask` (<NA> elsewhere: callers only read the masked rows).

    Built on the masked rows alone: a few rejects among a million rows must not cost five string
    concatenations over every row (nor a reindex over its labels: the rows are placed back by
    position when `mask` is aligned with `values`, as every caller's is).
    """
    if isinstance(mask, pd.Series) and not mask.index.equals(values.index):
        shown = values[mask].fillna("").str.slice(0, 60)
        return (prefix + "'" + shown + "'" + suffix).reindex(values.index)
    flags = (
        mask.to_numpy(dtype=bool, na_value=False)
        if isinstance(mask, pd.Series)
        else np.asarray(mask, dtype=bool)
    )
    positions = np.flatnonzero(flags)
    shown = values.iloc[positions].fillna("").str.slice(0, 60)
    return _placed(values.index, positions, prefix + "'" + shown + "'" + suffix)


def per_distinct(
    values: pd.Series, compute: Callable[[pd.Series], tuple[pd.Series, ...]]
) -> tuple[pd.Series, ...]:
    """Run `compute` once per distinct value and spread the results back over the rows.

    Source columns repeat a lot (a status code, a date, a rent amount): parsing each distinct
    value once is several times faster than parsing every cell. Blank (<NA>) cells stay blank.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) == 0 or len(uniques) * 2 > len(values):
        return compute(values)
    results = compute(pd.Series(uniques, dtype=values.dtype))
    spread = []
    for result in results:
        if result.dtype == bool:
            taken = np.where(codes >= 0, result.to_numpy()[codes], False)
        elif not result.notna().any():
            # the usual error and message columns: nothing to spread, skip the take
            taken = result.array[:0].take(np.full(len(codes), -1, np.intp), allow_fill=True)
        else:
            taken = result.array.take(codes, allow_fill=True)
        spread.append(pd.Series(taken, index=values.index))
    return tuple(spread)


def parse_cents(values: pd.Series, *, unit: str = "euros") -> tuple[pd.Series, pd.Series]:
    """French and plain amounts to integer cents, exactly (no float on the way).

    Accepts `1 234,56 €` (space, U+00A0 or U+202F thousands), `1.234,56`, `1234.56`,
    `1,234.56`, `-12,50`, `12,50-`, `(12,50)`, `+3`. More than two decimals is an error unless
    the extra digits after a decimal comma are zeros; `1.234` is ambiguous (1,234 or 1 234?)
    and refused. Returns (cents as Int64, bad mask); blanks are <NA>, not bad.
    """
    if unit != "euros" or not len(values):
        return _parse_any_cents(values, unit=unit)
    # `1234`, `-12,5`, `1234.56` (what number cells and most exports hold), then the same once
    # spaces and the euro sign are gone (`1 234,56 €`, as every rule below removes them first),
    # are read in one Arrow pass each; the other values go through every rule below (same
    # results, checked value for value)
    cents = np.zeros(len(values), dtype=np.int64)
    valid = np.zeros(len(values), dtype=bool)
    left = values.notna().to_numpy(dtype=bool, copy=True)
    for cleaned in (False, True):
        if not left.any():
            break
        text = _arrow_text(values if left.all() else values[left])
        if text is None:
            break
        if cleaned:
            text = pc.replace_substring_regex(text, pattern=_SPACES_OR_EURO, replacement="")
        read, amounts = _plain_cents(text)
        if not read.any():
            continue
        rows = np.flatnonzero(left)[read]
        cents[rows] = amounts
        valid[rows] = True
        left[rows] = False
    bad = np.zeros(len(values), dtype=bool)
    if left.any():
        other, other_bad = _parse_any_cents(values[left], unit=unit)
        cents[left] = other.to_numpy(dtype=np.int64, na_value=0)
        valid[left] = other.notna().to_numpy(dtype=bool)
        bad[left] = other_bad.to_numpy(dtype=bool)
    result = pd.Series(pd.arrays.IntegerArray(cents, ~valid), index=values.index)
    return result, pd.Series(bad, index=values.index, name=values.name)


# a plain amount's parts: sign, whole euros, cents (one or two digits)
_PLAIN_PARTS = r"^(?P<sign>[-+]?)(?P<whole>[0-9]{1,15})(?:[.,](?P<cents>[0-9]{1,2}))?$"


def _arrow_text(values: pd.Series) -> pa.Array | None:
    """The values as one Arrow text array (None when some are not text); a column made of
    several chunks (files read one after the other) is made one."""
    try:
        text = pa.array(values.array, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text


def _plain_cents(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(which values are plain amounts, their cents): `-12,5` → -1250, `1234.56` → 123456."""
    parts = pc.extract_regex(text, pattern=_PLAIN_PARTS)
    read = parts.is_valid().to_numpy(zero_copy_only=False)
    if not read.any():
        return read, np.zeros(0, dtype=np.int64)
    parts = parts.filter(parts.is_valid())
    whole = pc.cast(parts.field("whole"), pa.int64()).to_numpy()
    # an absent decimal part is "" (0 cents), `5` is 50 cents
    fraction = pc.utf8_rpad(parts.field("cents"), width=2, padding="0")
    amounts = whole * 100 + pc.cast(fraction, pa.int64()).to_numpy()
    negative = pc.equal(parts.field("sign"), "-").to_numpy(zero_copy_only=False)
    return read, np.where(negative, -amounts, amounts)


def _parse_any_cents(values: pd.Series, *, unit: str) -> tuple[pd.Series, pd.Series]:
    present = values.notna()
    text = values.str.replace(_SPACES_OR_EURO, "", regex=True)
    negative = text.str.contains(r"^\(.*\)$|^-|-$", regex=True)
    core = text.str.replace(r"^\((.*)\)$", r"\1", regex=True).str.replace(
        r"^[-+]|-$", "", regex=True
    )
    # a dot is a thousands separator only where it cannot be a decimal point (`1.234,56`,
    # `1.234.567`); a lone `1.234` (an Excel number cell) would otherwise become 1 000 × too big
    comma_style = core.str.fullmatch(r"\d{1,3}(?:\.\d{3})+,\d+|\d{1,3}(?:\.\d{3}){2,}|\d+(?:,\d+)?")
    dot_style = ~comma_style & core.str.fullmatch(r"(?:\d{1,3}(?:,\d{3})+|\d+)\.\d{1,2}")
    comma_digits = core.str.replace(".", "", regex=False)
    dot_digits = core.str.replace(",", "", regex=False).str.replace(".", ",", regex=False)
    digits = comma_digits.where(comma_style, dot_digits)
    whole = digits.str.replace(r",.*$", "", regex=True)
    fraction = digits.str.replace(r"^[^,]*,?", "", regex=True)
    well_formed = (comma_style | dot_style).fillna(False) & (whole.str.len() <= 15)
    if unit == "cents":
        fraction_ok = fraction.str.fullmatch(r"0*")
    else:
        fraction_ok = fraction.str.fullmatch(r"\d{0,2}0*")
    good = present & well_formed & fraction_ok.fillna(False)
    whole_int = pd.to_numeric(whole.where(good, "0"), errors="coerce").fillna(0).astype("int64")
    if unit == "cents":
        cents = whole_int
    else:
        cents_part = (fraction.where(good, "") + "00").str.slice(0, 2)
        cents = whole_int * 100 + pd.to_numeric(cents_part, errors="coerce").fillna(0).astype(
            "int64"
        )
    cents = cents.where(~negative.fillna(False), -cents)
    result = pd.array(cents.to_numpy(), dtype="Int64")
    result = pd.Series(result, index=values.index).where(good)
    return result, present & ~good


def parse_dates(
    values: pd.Series, formats: list[str] | None, *, with_time: bool
) -> tuple[pd.Series, pd.Series]:
    """Dates in the declared formats, ISO, or Excel serial numbers; returns (datetime64, bad)."""
    present = values.notna()
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    todo = present.copy()
    declared = [to_strftime(fmt) for fmt in formats] if formats else list(DEFAULT_DATE_FORMATS)
    for fmt in (*declared, *ISO_FORMATS, "%Y-%m-%d %H:%M:%S%z"):
        if not todo.any():
            break
        attempt = pd.to_datetime(values[todo], format=fmt, errors="coerce")
        if isinstance(attempt.dtype, pd.DatetimeTZDtype):
            attempt = attempt.dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None)
        attempt = attempt.astype("datetime64[ns]")
        ok = attempt.notna() & attempt.dt.year.between(1900, 2100)
        parsed.loc[ok[ok].index] = attempt[ok]
        todo &= ~ok.reindex(values.index, fill_value=False)
    if todo.any():
        serial = pd.to_numeric(
            values[todo].where(values[todo].str.fullmatch(r"\d{5}(?:\.\d+)?")), errors="coerce"
        )
        in_range = serial.between(*EXCEL_SERIAL_RANGE)
        as_dates = pd.Timestamp(EXCEL_EPOCH) + pd.to_timedelta(serial[in_range], unit="D")
        as_dates = as_dates.dt.round("s") if with_time else as_dates.dt.floor("D")
        parsed.loc[as_dates.index] = as_dates
        todo.loc[as_dates.index] = False
    if not with_time:
        parsed = parsed.dt.floor("D")
    return parsed, todo


def parse_integers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whole numbers (`3`, `3.0`, `3,0`, `+3`); returns (Int64, bad mask)."""
    present = values.notna()
    good = present & values.str.fullmatch(r"[-+]?\d{1,15}(?:[.,]0+)?").fillna(False)
    whole = values.where(good).str.replace(r"[.,]0+$", "", regex=True)
    numbers = pd.to_numeric(whole, errors="coerce").astype("Int64")
    return numbers, present & ~good


def parse_booleans(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """oui/non, o/n, yes/no, true/false, vrai/faux, 1/0, x; returns (boolean, bad mask)."""
    present = values.notna()
    codes = normalise_code(values)
    truth = codes.map({**dict.fromkeys(TRUE_WORDS, True), **dict.fromkeys(FALSE_WORDS, False)})
    result = truth.astype("boolean")
    return result, present & result.isna()


class EntityTransformer:
    """Applies one feed of an entity mapping (its only one unless `feed` names another) to raw
    tables from that feed's source; the entity's row-rule severities apply to every feed."""

    def __init__(
        self,
        entity: str,
        mapping: EntityMapping,
        *,
        feed: Feed | None = None,
        today: date | None = None,
    ) -> None:
        self.spec: EntitySpec = ENTITIES[entity]
        self.mapping = mapping
        self.feed = mapping.all_feeds[0] if feed is None else feed
        # the run date that `today` means in a case's date test (Paris), fixed per transformer
        self.today = today

    @property
    def source_columns(self) -> list[str]:
        """Every source column the mapping reads (fields and row filters)."""
        columns: list[str] = []
        for rule in self.feed.fields.values():
            columns.extend(rule.read_columns)
        columns.extend(row_filter.column for row_filter in self.feed.skip_rows)
        return list(dict.fromkeys(columns))

    def apply(
        self, raw: RawTable, *, earlier: Callable[[pd.Series], pd.Series] | None = None
    ) -> NormalisedBatch:
        """Map `raw` onto the canonical entity; rows that fail go to `rejects`.

        `earlier` (a chunk of a longer table, `spool.KeyIndex.earlier`): for each key, the
        lineage of the row of an earlier chunk holding it, or <NA>; such a row is a
        `duplicate_key` naming that row, as if the table had been read whole.
        """
        frame = raw.frame
        labels = self._resolve_columns(frame, raw.origin)
        keep = self._rows_to_keep(frame, labels)
        kept = int(keep.sum())
        if keep.iloc[:kept].all():
            # the rows set aside (totals, trailing blanks) are all at the bottom: a slice of
            # the frame, where a boolean selection would copy every column
            data, source_rows = frame.iloc[:kept], raw.source_rows.iloc[:kept]
        else:
            data, source_rows = frame.loc[keep], raw.source_rows.loc[keep]
        error_code, message = _read_faults(raw, data.index)
        # the field rules and row rules read one row at a time: applied a part of the rows at a
        # time, their intermediate columns stay small (the 1M-line bench ledger's peak RSS in
        # normalise 905 -> 800 MB, for ~0.1 s more); the key rules below read every row
        parts = [
            self._map_part(
                data.iloc[start : start + MAP_ROWS],
                labels,
                error_code.iloc[start : start + MAP_ROWS],
                message.iloc[start : start + MAP_ROWS],
            )
            for start in range(0, max(len(data), 1), MAP_ROWS)
        ]
        if len(parts) == 1:
            rows, error_code, message, warnings = parts[0]
        else:
            rows = pd.concat([part[0] for part in parts])
            error_code = pd.concat([part[1] for part in parts])
            message = pd.concat([part[2] for part in parts])
            warnings = {}
            for part in parts:
                for rule, count in part[3].items():
                    warnings[rule] = warnings.get(rule, 0) + count
        del parts
        rows["source_row"] = source_rows.astype("str")
        # only rows that are otherwise fine compete for a key: a rejected row never hides one
        # (keys compared as factorized codes: hashing the text once, no copies of the column)
        duplicate = np.zeros(len(rows), dtype=bool)
        if not _strictly_increasing(rows[self.spec.key]):
            key_codes, _ = pd.factorize(rows[self.spec.key], use_na_sentinel=True)
            competing = np.flatnonzero((key_codes >= 0) & error_code.isna().to_numpy(dtype=bool))
            repeated = pd.Series(key_codes[competing]).duplicated(keep="first")
            duplicate[competing[repeated.to_numpy(dtype=bool)]] = True
        duplicate = pd.Series(duplicate, index=rows.index)
        seen_before = None
        if earlier is not None:
            competing_rows = error_code.isna() & rows[self.spec.key].notna()
            seen_before = earlier(rows.loc[competing_rows, self.spec.key]).reindex(rows.index)
            duplicate |= seen_before.notna()
        if duplicate.any():
            first_line = rows.loc[error_code.isna()].drop_duplicates(self.spec.key, keep="first")
            first_by_key = first_line.set_index(self.spec.key)["source_row"]
            key_values = rows.loc[duplicate, self.spec.key]
            first_at = key_values.map(first_by_key).astype("str")
            if seen_before is not None:
                first_at = seen_before.loc[duplicate].fillna(first_at).astype("str")
            error_code = error_code.mask(duplicate, "duplicate_key")
            message = message.mask(
                duplicate,
                f"{self.spec.key} '"
                + key_values
                + "' already appears at "
                + first_at
                + " — keep one row per reference in the export",
            )
        rejected = error_code.notna()
        rejects = reject_frame(
            data.loc[rejected],
            rows.loc[rejected, self.spec.key],
            source_rows.loc[rejected],
            error_code,
            message,
            open_columns=self._open_columns(labels),
        )
        return NormalisedBatch(
            entity=self.spec.name,
            rows=rows.loc[~rejected].reset_index(drop=True),
            rejects=rejects,
            rows_in_source=len(frame),
            skipped=int((~keep).sum()),
            warnings=warnings,
        )

    def _map_part(
        self, data: pd.DataFrame, labels: dict[str, str], error_code: pd.Series, message: pd.Series
    ) -> tuple[pd.DataFrame, pd.Series, pd.Series, dict[str, int]]:
        """The field rules and the row rules over `data` (some of the rows): the canonical
        rows, each row's first reason and message (`error_code`, `message`: the reader's own
        faults so far), and the rows each `warn` rule let through."""
        results = {
            name: self._apply_rule(self.feed.fields.get(name), data, labels, self.spec.column(name))
            for name in self.spec.column_names
        }
        for result in results.values():
            first = error_code.isna() & result.errors.notna()
            if first.any():
                error_code = error_code.mask(first, result.errors)
                message = message.mask(first, result.messages)
        rows = pd.DataFrame({name: result.values for name, result in results.items()})
        return (rows, *self._row_rules(rows, error_code, message))

    def _row_rules(
        self, rows: pd.DataFrame, error_code: pd.Series, message: pd.Series
    ) -> tuple[pd.Series, pd.Series, dict[str, int]]:
        """Rows breaking a row rule of the contract, as the datafix's `rules:` says: quarantined
        (the default) with the rule's name as reason, counted (`warn`), or left in for the
        contract to block (`block`). Only rows that are otherwise fine are judged."""
        judged = error_code.isna().to_numpy(dtype=bool, copy=True)
        warnings: dict[str, int] = {}
        breaks = row_rule_breaks(self.spec, rows)
        for rule in self.spec.rules:
            broken = breaks.get(rule.name)
            severity = self.mapping.rules.get(rule.name, "quarantine")
            if broken is None or severity == "block" or not (hit := broken & judged).any():
                continue
            if severity == "warn":
                warnings[rule.name] = int(hit.sum())
                continue
            judged &= ~hit
            mask = pd.Series(hit, index=rows.index)
            shown = [f"{column} " + _shown(rows.loc[mask, column]) for column in rule.columns]
            error_code = error_code.mask(mask, rule.name)
            message = message.mask(
                mask,
                (f"{rule.name}: " + shown[0] + ", " + shown[1]).reindex(rows.index)
                + f" — {rule.description} Fix the row at the source, or set"
                f" `rules: {{{rule.name}: warn}}` for this entity if such rows are legitimate",
            )
        return error_code, message, warnings

    def _open_columns(self, labels: dict[str, str]) -> str:
        """The source columns a quarantine row may keep readable, as a JSON list: those the
        mapping reads for non-personal fields or row filters only. Any other cell (a personal
        field's, a column the datafix does not map) is sealed (`pipelines.lib.personal`)."""
        plain: set[str] = {row_filter.column for row_filter in self.feed.skip_rows}
        personal: set[str] = set()
        for name, rule in self.feed.fields.items():
            is_personal = name not in self.spec.column_names or self.spec.column(name).personal
            (personal if is_personal else plain).update(rule.read_columns)
        return json.dumps(sorted(labels[c] for c in plain - personal if c in labels))

    def _resolve_columns(self, frame: pd.DataFrame, origin: str) -> dict[str, str]:
        by_key = {header_key(label): label for label in frame.columns}
        labels: dict[str, str] = {}
        missing = []
        for column in self.source_columns:
            label = by_key.get(header_key(column))
            if label is None:
                missing.append(column)
            else:
                labels[column] = label
        if missing:
            hints = "; ".join(
                f"`{name}`: {did_you_mean(name, [str(c) for c in frame.columns])}"
                for name in missing
            )
            raise ConfigError(
                f"{origin}: the {self.spec.name} mapping reads column(s) missing from the"
                f" header: {hints}"
            )
        return labels

    def _rows_to_keep(self, frame: pd.DataFrame, labels: dict[str, str]) -> pd.Series:
        if frame.empty:
            return pd.Series(True, index=frame.index)
        # a row is blank when every cell is: narrow the candidates column by column, so only
        # the first column is scanned in full
        candidates = np.arange(len(frame))
        for label in frame.columns:
            cells = frame[label]
            if len(candidates) < len(frame):
                cells = cells.iloc[candidates]
            candidates = candidates[_blank_cells(cells)]
            if not len(candidates):
                break
        blank = np.zeros(len(frame), dtype=bool)
        blank[candidates] = True
        keep = pd.Series(~blank, index=frame.index)
        for row_filter in self.feed.skip_rows:
            cell = frame[labels[row_filter.column]].str.strip()
            if row_filter.matches is not None:
                # one RE2 pass over the column: cheaper than finding its distinct values first
                (hit,) = _pattern_hits(row_filter.matches)(cell)
            elif row_filter.equals is not None:
                hit = cell == row_filter.equals.strip()
            else:
                hit = (cell == "") if row_filter.blank else (cell != "")
            keep &= ~hit.fillna(False)
        return keep

    def _origin_values(
        self, rule: FieldRule, data: pd.DataFrame, labels: dict[str, str]
    ) -> pd.Series:
        if rule.from_ is not None:
            return _blank_to_na(data[labels[rule.from_]])
        if rule.concat is not None:
            parts = [_blank_to_na(data[labels[name]]) for name in rule.concat]
            joined = (
                pd.concat(parts, axis=1).apply(
                    lambda row: rule.separator.join(v for v in row if isinstance(v, str)), axis=1
                )
                if len(data)
                else pd.Series([], dtype="str", index=data.index)
            )
            return _blank_to_na(joined.astype("str"))
        return pd.Series(_as_text(rule.const), index=data.index, dtype="str")

    def _apply_rule(
        self, rule: FieldRule | None, data: pd.DataFrame, labels: dict[str, str], column: ColumnSpec
    ) -> _FieldResult:
        index = data.index
        no_error = _no_text(index)
        if rule is None:
            return _FieldResult(_empty(column, index), no_error, no_error.copy())
        values, errors, messages = self._rule_values(rule, data, labels, column)
        where = _where(column.name, rule)
        return self._range_and_required(column.name, column, where, values, errors, messages)

    def _rule_values(
        self, rule: FieldRule, data: pd.DataFrame, labels: dict[str, str], column: ColumnSpec
    ) -> tuple[pd.Series, pd.Series, pd.Series]:
        """A rule's values, reason codes and messages, before the range and required checks
        (the field is `column`'s)."""
        where = _where(column.name, rule)
        if rule.cases is not None:
            return self._apply_cases(rule, data, labels, column, where)
        if rule.debit is not None and rule.credit is not None:
            values, errors, messages = self._fold_debit_credit(rule, data, labels, where)
        else:
            raw_values = self._origin_values(rule, data, labels)
            default_after_map = column.type is ColumnType.CHOICE and rule.map is not None
            if rule.default is not None and not default_after_map:
                raw_values = raw_values.fillna(_as_text(rule.default))
            if column.type is ColumnType.TEXT and rule.map is None:
                values, errors, messages = self._convert(rule, raw_values, column, where)
            else:
                values, errors, messages = per_distinct(
                    raw_values, lambda distinct: self._convert(rule, distinct, column, where)
                )
            if rule.default is not None and default_after_map:
                values = values.mask(raw_values.isna(), _as_text(rule.default))
        if rule.sign is not None:
            values, errors, messages = self._apply_sign(
                rule.sign, values, errors, messages, data, labels, where
            )
        return values, errors, messages

    def _range_and_required(
        self,
        name: str,
        column: ColumnSpec,
        where: str,
        values: pd.Series,
        errors: pd.Series,
        messages: pd.Series,
    ) -> _FieldResult:
        if column.type in (ColumnType.INTEGER, ColumnType.CENTS) and (
            column.min_value is not None or column.max_value is not None
        ):
            low = column.min_value if column.min_value is not None else -(2**62)
            high = column.max_value if column.max_value is not None else 2**62
            outside = values.notna() & ~values.between(low, high).fillna(True) & errors.isna()
            if outside.any():
                shown = values.astype("str").where(outside, "")
                bounds = f"between {column.min_value} and {column.max_value}"
                if column.max_value is None:
                    bounds = f"at least {column.min_value}"
                errors = errors.mask(outside, "out_of_range")
                messages = messages.mask(outside, f"{where}: value " + shown + f" must be {bounds}")
                values = values.mask(outside)
        if column.required:
            missing = values.isna() & errors.isna()
            if missing.any():
                errors = errors.mask(missing, "missing_value")
                messages = messages.mask(
                    missing,
                    f"{where}: {name} is required but the cell is blank — fill it in the"
                    " source, or give a `default` in the datafix",
                )
        return _FieldResult(values, errors, messages)

    def _apply_sign(
        self,
        sign: SignRule,
        values: pd.Series,
        errors: pd.Series,
        messages: pd.Series,
        data: pd.DataFrame,
        labels: dict[str, str],
        where: str,
    ) -> tuple[pd.Series, pd.Series, pd.Series]:
        """An unsigned amount signed by its indicator column (codes compared like `map`'s)."""
        indicator = _blank_to_na(data[labels[sign.column]])
        positive_keys = [_code_key(code) for code in sign.positive]
        negative_keys = [_code_key(code) for code in sign.negative]

        def sides(distinct: pd.Series) -> tuple[pd.Series, pd.Series]:
            codes = normalise_code(distinct)
            return codes.isin(positive_keys), codes.isin(negative_keys)

        positive, negative = per_distinct(indicator, sides)
        values = values.mask(negative, -values)
        unknown = values.notna() & ~positive & ~negative & errors.isna()
        if unknown.any():
            expected = (
                " or ".join(f"'{code}'" for code in sign.positive)
                + " (positive), "
                + " or ".join(f"'{code}'" for code in sign.negative)
                + " (negative)"
            )
            holds = f"{where}: sign column '{sign.column}' holds "
            advice = f", expected {expected} — fix the cell, or add the value under `sign`"
            errors = errors.mask(unknown, "bad_sign")
            messages = messages.mask(unknown, _value_message(indicator, unknown, holds, advice))
            values = values.mask(unknown)
        return values, errors, messages

    def _apply_cases(
        self,
        rule: FieldRule,
        data: pd.DataFrame,
        labels: dict[str, str],
        column: ColumnSpec,
        where: str,
    ) -> tuple[pd.Series, pd.Series, pd.Series]:
        """First match over whole columns: each case takes the rows no earlier case took and
        whose conditions all hold; a row a condition cannot read (an amount or a date) is
        rejected where it would decide; the rest get `else`, or are rejected (`no_case`)."""
        assert rule.cases is not None
        index = data.index
        today = self.today or pd.Timestamp.now(tz=LOCAL_TIMEZONE).date()
        cells = _CaseCells(data, labels, pd.Timestamp(today))
        left = np.ones(len(index), dtype=bool)
        errors = _no_text(index)
        messages = _no_text(index)
        parts: list[pd.Series] = []
        outcomes: list[tuple[CaseOutcome, np.ndarray]] = []
        for case in rule.cases:
            if not left.any():
                break
            if case.when is None:
                outcomes.append((case, left.copy()))
                left[:] = False
                break
            holds, unreadable, code, message = cells.holds(case.when, where)
            rejected = left & unreadable
            if rejected.any():
                errors = errors.mask(rejected, code)
                messages = messages.mask(rejected, message)
                left &= ~rejected
            taken = left & holds
            if taken.any():
                outcomes.append((case, taken))
                left &= ~taken
        if left.any():
            if rule.else_ is not None:
                outcomes.append((rule.else_, left))
            else:
                errors = errors.mask(left, "no_case")
                messages = messages.mask(
                    left,
                    f"{where}: no case holds for this row and the rule has no `else` — add a"
                    " case that takes it, or an `else`",
                )
        for outcome, taken in outcomes:
            values, part_errors, part_messages = self._outcome(outcome, data, labels, column, taken)
            parts.append(values)
            failed = part_errors.notna().to_numpy(dtype=bool)
            if failed.any():
                # the case's rows are `taken`, in frame order: place its failures by position
                # (aligning the part on the frame's labels hashes a million-row index)
                at = np.flatnonzero(taken)[failed]
                hit = np.zeros(len(index), dtype=bool)
                hit[at] = True
                errors = errors.mask(hit, _placed(index, at, part_errors[failed]))
                messages = messages.mask(hit, _placed(index, at, part_messages[failed]))
        if not parts:
            return _empty(column, index), errors, messages
        if len(parts) == 1 and len(parts[0]) == len(index):
            values = pd.Series(parts[0].array, index=index)
        else:
            # each part holds its case's rows in frame order: put them back by position (a
            # take), not by label (a reindex hashes the whole index)
            order = np.full(len(index), -1, dtype=np.intp)
            start = 0
            for _, taken in outcomes:
                rows_at = np.flatnonzero(taken)
                order[rows_at] = np.arange(start, start + len(rows_at))
                start += len(rows_at)
            joined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
            values = pd.Series(joined.array.take(order, allow_fill=True), index=index)
        return values.astype(PANDAS_DTYPES[column.type]), errors, messages

    def _outcome(
        self,
        outcome: CaseOutcome,
        data: pd.DataFrame,
        labels: dict[str, str],
        column: ColumnSpec,
        taken: np.ndarray,
    ) -> tuple[pd.Series, pd.Series, pd.Series]:
        """The values of one case on the rows it takes (only the columns its rule reads)."""
        rows_index = data.index[taken]
        if outcome.then is None and outcome.value is None:  # `value: null`: left empty
            empty = _empty(column, rows_index)
            return empty, _no_text(rows_index), _no_text(rows_index)
        if outcome.then is None:
            # a fixed value: converted once, then repeated over the rows
            rule = FieldRule.model_validate({"const": outcome.value})
            one = self._rule_values(rule, data.iloc[:1][[]], labels, column)
            repeat = np.zeros(len(rows_index), dtype=np.intp)
            values, errors, messages = (
                pd.Series(result.array.take(repeat), index=rows_index) for result in one
            )
            return values, errors, messages
        rule = outcome.then
        read = [labels[name] for name in rule.read_columns]
        rows = data[read] if taken.all() else data[read].iloc[taken]
        return self._rule_values(rule, rows, labels, column)

    def _fold_debit_credit(
        self, rule: FieldRule, data: pd.DataFrame, labels: dict[str, str], where: str
    ) -> tuple[pd.Series, pd.Series, pd.Series]:
        assert rule.debit is not None and rule.credit is not None
        debit_text = _blank_to_na(data[labels[rule.debit]])
        credit_text = _blank_to_na(data[labels[rule.credit]])
        debit, bad_debit = per_distinct(debit_text, lambda v: parse_cents(v, unit=rule.unit))
        credit, bad_credit = per_distinct(credit_text, lambda v: parse_cents(v, unit=rule.unit))
        both_blank = debit_text.isna() & credit_text.isna()
        values = (debit.fillna(0) - credit.fillna(0)).mask(both_blank)
        if rule.negate:
            values = -values
        bad = bad_debit | bad_credit
        # the value named in a message, on the bad rows only (_value_message reads no other)
        at = np.flatnonzero(bad.to_numpy(dtype=bool))
        shown = _placed(
            data.index,
            at,
            debit_text.iloc[at].where(bad_debit.to_numpy(dtype=bool)[at], credit_text.iloc[at]),
        )
        errors, messages = _fail(
            data.index,
            bad,
            "bad_amount",
            _value_message(shown, bad, f"{where}: ", " is not an amount — write it like 1 234,56"),
        )
        return values.mask(bad), errors, messages

    def _convert(
        self, rule: FieldRule, values: pd.Series, column: ColumnSpec, where: str
    ) -> tuple[pd.Series, pd.Series, pd.Series]:
        index = values.index
        unmapped = pd.Series(False, index=index)
        if rule.map is not None:
            lookup = {_code_key(key): _as_text(target) for key, target in rule.map.items()}
            codes = normalise_code(values)
            mapped = codes.map(lookup).astype("str")
            unmapped = values.notna() & mapped.isna()
            if rule.unmapped == "default":
                mapped = mapped.mask(unmapped, _as_text(rule.default))
                unmapped = pd.Series(False, index=index)
            shown_unmapped = values
            values = mapped
        else:
            shown_unmapped = values
        parser = _PARSERS[column.type]
        parsed, bad = parser(values, rule, column)
        bad &= ~unmapped
        errors = _no_text(index)
        messages = _no_text(index)
        if unmapped.any():
            known = ", ".join(sorted(str(k) for k in (rule.map or {})))
            advice = (
                f" has no entry in `map` (known: {known}) — add it to the map, or set"
                " `unmapped: default`"
            )
            errors = errors.mask(unmapped, "unmapped_value")
            messages = messages.mask(
                unmapped, _value_message(shown_unmapped, unmapped, f"{where}: ", advice)
            )
        if bad.any():
            code, advice = _ADVICE[column.type](rule, column)
            errors = errors.mask(bad, code)
            messages = messages.mask(bad, _value_message(values, bad, f"{where}: ", advice))
        return parsed.mask(bad | unmapped), errors, messages


def _pattern_hits(pattern: str) -> Callable[[pd.Series], tuple[pd.Series]]:
    """Whether each (distinct) cell holds a match of a `matches:` pattern, through RE2 (linear
    time: a hostile pattern or a long cell cannot hang the run); a blank cell never matches.

    The whole column goes through Arrow's `match_substring_regex`, which is RE2 too, with the
    options `compile_pattern` sets (case ignored, an unanchored search): a key column of a
    million distinct values costs one call, not a million. A pattern or a column Arrow does not
    take (another RE2 release, values that are not text) is matched value by value."""
    compiled = compile_pattern(pattern)

    def hits(values: pd.Series) -> tuple[pd.Series]:
        cells = _arrow_text(values)
        try:
            if cells is None:
                raise pa.ArrowTypeError("not text")
            found = pc.fill_null(
                pc.match_substring_regex(cells, pattern=pattern, ignore_case=True), False
            )
            flags = found.to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            flags = [isinstance(v, str) and compiled.search(v) is not None for v in values]
        return (pd.Series(flags, index=values.index, dtype=bool),)

    return hits


def _read_faults(raw: RawTable, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """Reason code and message per row on `index`: the reader's own (`RawTable.faults`: a torn
    or short line) where it could not read the row whole, <NA> elsewhere. A faulty row is
    quarantined with the reader's reason whatever its cells would map to."""
    error_code, message = _no_text(index), _no_text(index)
    if raw.faults is None or raw.faults.empty:
        return error_code, message
    faults = raw.faults.reindex(index)
    found = faults["reason"].notna()
    return (
        error_code.mask(found, faults["reason"].astype("str")),
        message.mask(found, faults["message"].astype("str")),
    )


def reject_frame(
    raw_rows: pd.DataFrame,
    keys: pd.Series,
    source_rows: pd.Series,
    error_code: pd.Series,
    message: pd.Series,
    open_columns: str = "[]",
) -> pd.DataFrame:
    """Rejected rows as quarantine records: lineage, key, the raw values as JSON, reason and
    message (`raw_rows` keep every column the source had, so a requeue can map them again),
    and which raw columns may stay readable at rest (`open_columns`, a JSON list: every other
    cell is sealed when the row is written, `pipelines.lib.personal`)."""
    if raw_rows.empty:
        return pd.DataFrame({name: pd.Series(dtype="str") for name in REJECT_COLUMNS})
    raw_json = [
        json.dumps(record, ensure_ascii=False) for record in raw_rows.to_dict(orient="records")
    ]
    return pd.DataFrame(
        {
            "source_row": source_rows.astype("str").to_numpy(),
            "key": keys.astype("str").to_numpy(),
            "raw": raw_json,
            "reason": error_code.loc[raw_rows.index].to_numpy(),
            "message": message.loc[raw_rows.index].to_numpy(),
            "open_columns": open_columns,
        }
    )


def _shown(values: pd.Series) -> pd.Series:
    """Canonical values as a person reads them in a message: dates as ISO days, blanks shown."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.strftime("%Y-%m-%d")
    return values.astype("str")


def _where(name: str, rule: FieldRule) -> str:
    """How a message names a field and what it reads: `kind ← column 'Code'`."""
    if rule.cases is not None:
        return f"{name} (cases)"
    columns = rule.source_columns
    if not columns:
        return f"{name} (constant)"
    if len(columns) == 1:
        return f"{name} ← column '{columns[0]}'"
    return f"{name} ← columns " + " + ".join(f"'{column}'" for column in columns)


class _CaseCells:
    """The source columns a rule's conditions read, each read once per way it is tested (text,
    amount, date in some formats) and each distinct value parsed once."""

    def __init__(self, data: pd.DataFrame, labels: dict[str, str], today: pd.Timestamp) -> None:
        self.data = data
        self.labels = labels
        self.today = today
        self._text: dict[str, pd.Series] = {}
        self._codes: dict[str, pd.Series] = {}
        self._amounts: dict[str, tuple[pd.Series, pd.Series]] = {}
        self._dates: dict[tuple[str, tuple[str, ...]], tuple[pd.Series, pd.Series]] = {}

    def text(self, column: str) -> pd.Series:
        if column not in self._text:
            self._text[column] = _blank_to_na(self.data[self.labels[column]])
        return self._text[column]

    def amounts(self, column: str) -> tuple[pd.Series, pd.Series]:
        if column not in self._amounts:
            self._amounts[column] = per_distinct(self.text(column), parse_cents)  # type: ignore[assignment]
        return self._amounts[column]

    def dates(self, column: str, formats: list[str] | None) -> tuple[pd.Series, pd.Series]:
        key = (column, tuple(formats or ()))
        if key not in self._dates:
            self._dates[key] = per_distinct(  # type: ignore[assignment]
                self.text(column), lambda v: parse_dates(v, formats, with_time=False)
            )
        return self._dates[key]

    def holds(
        self, conditions: list[Condition], where: str
    ) -> tuple[np.ndarray, np.ndarray, str, pd.Series]:
        """(rows where every condition holds, rows a condition cannot read while none of the
        others fails, the reason code and message of those)."""
        size = len(self.data)
        holds = np.ones(size, dtype=bool)
        fails = np.zeros(size, dtype=bool)
        unreadable = np.zeros(size, dtype=bool)
        code = ""
        message = _no_text(self.data.index)
        for condition in conditions:
            passed, bad, bad_code, advice = self._test(condition)
            holds &= passed
            fails |= ~passed & ~bad
            if bad.any():
                fresh = bad & ~unreadable
                code = code or bad_code
                shown = self.text(condition.column)
                message = message.mask(
                    pd.Series(fresh, index=self.data.index),
                    _value_message(
                        shown,
                        pd.Series(fresh, index=self.data.index),
                        f"{where}: column '{condition.column}' holds ",
                        advice,
                    ),
                )
                unreadable |= bad
        return holds, unreadable & ~fails, code or "bad_amount", message

    def _test(self, condition: Condition) -> tuple[np.ndarray, np.ndarray, str, str]:
        cell = self.text(condition.column)
        passed = np.ones(len(cell), dtype=bool)
        bad = np.zeros(len(cell), dtype=bool)
        if condition.blank is not None:
            passed &= cell.isna().to_numpy(dtype=bool) == condition.blank
        codes = [condition.equals] if condition.equals is not None else []
        codes += condition.in_ or []
        if condition.equals is not None or condition.in_ is not None:
            keys = [_code_key(_as_text(code)) for code in codes]
            (among,) = per_distinct(cell, lambda v: (normalise_code(v).isin(keys),))
            passed &= among.to_numpy(dtype=bool)
        if condition.matches is not None:
            (hit,) = per_distinct(cell.str.strip(), _pattern_hits(condition.matches))
            passed &= hit.to_numpy(dtype=bool)
        numbers = [(test, getattr(condition, test)) for test in NUMBER_TESTS]
        numbers = [(test, bound) for test, bound in numbers if bound is not None]
        if numbers:
            cents, unreadable = self.amounts(condition.column)
            bad |= unreadable.to_numpy(dtype=bool)
            for test, bound in numbers:
                threshold = int(parse_cents(pd.Series([str(bound)], dtype="str"))[0].iloc[0])
                passed &= _compare(cents, test, threshold)
            return (
                passed & ~bad,
                bad,
                "bad_amount",
                (" — not an amount (write it like 1 234,56), so no case can be chosen"),
            )
        moments = [(test, getattr(condition, test)) for test in DATE_TESTS]
        moments = [(test, bound) for test, bound in moments if bound is not None]
        if moments:
            days, unreadable = self.dates(condition.column, condition.formats)
            bad |= unreadable.to_numpy(dtype=bool)
            for test, bound in moments:
                limit = self.today if bound == "today" else pd.Timestamp(bound)
                passed &= _compare(days, test, limit)
            formats = ", ".join(condition.formats or ["dd/mm/yyyy", "dd/mm/yy"])
            return (
                passed & ~bad,
                bad,
                "bad_date",
                (
                    f" — not a date in the formats {formats} (nor ISO nor an Excel serial), so no"
                    " case can be chosen; fix the cell or add its format under the condition's"
                    " `formats`"
                ),
            )
        return passed, bad, "", ""


def _compare(values: pd.Series, test: str, bound: object) -> np.ndarray:
    """`values <op> bound` as a plain mask; a blank value never passes."""
    if test in ("above", "after"):
        result = values > bound
    elif test in ("at_least", "on_or_after"):
        result = values >= bound
    elif test in ("below", "before"):
        result = values < bound
    else:
        result = values <= bound
    return result.to_numpy(dtype=bool, na_value=False)


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _empty(column: ColumnSpec, index: pd.Index) -> pd.Series:
    """An all-blank column of the canonical type: one missing value repeated by a take (a
    `pd.Series(pd.NA, …).astype` builds a million Python objects first, 0.1 s a column)."""
    missing = pd.array([None], dtype=PANDAS_DTYPES[column.type])
    return pd.Series(missing.take(np.full(len(index), -1, np.intp), allow_fill=True), index=index)


def _parse_text(
    values: pd.Series, rule: FieldRule, column: ColumnSpec
) -> tuple[pd.Series, pd.Series]:
    return values.astype("str"), pd.Series(False, index=values.index)


def _parse_choice(
    values: pd.Series, rule: FieldRule, column: ColumnSpec
) -> tuple[pd.Series, pd.Series]:
    lookup = {_code_key(choice): choice for choice in column.choices}
    chosen = normalise_code(values).map(lookup).astype("str")
    return chosen, values.notna() & chosen.isna()


def _parse_cents(
    values: pd.Series, rule: FieldRule, column: ColumnSpec
) -> tuple[pd.Series, pd.Series]:
    cents, bad = parse_cents(values, unit=rule.unit)
    return (-cents if rule.negate else cents), bad


def _parse_date(
    values: pd.Series, rule: FieldRule, column: ColumnSpec
) -> tuple[pd.Series, pd.Series]:
    return parse_dates(values, rule.formats, with_time=False)


def _parse_datetime(
    values: pd.Series, rule: FieldRule, column: ColumnSpec
) -> tuple[pd.Series, pd.Series]:
    local, bad = parse_dates(values, rule.formats, with_time=True)
    # the repeated autumn hour is read as its first (summer-time) occurrence, a skipped spring
    # hour is moved forward: a clock time is never silently lost
    summer_first = np.ones(len(local), dtype=bool)
    utc = local.dt.tz_localize(LOCAL_TIMEZONE, ambiguous=summer_first, nonexistent="shift_forward")
    return utc.dt.tz_convert("UTC"), bad


def _parse_integer(
    values: pd.Series, rule: FieldRule, column: ColumnSpec
) -> tuple[pd.Series, pd.Series]:
    return parse_integers(values)


def _parse_boolean(
    values: pd.Series, rule: FieldRule, column: ColumnSpec
) -> tuple[pd.Series, pd.Series]:
    return parse_booleans(values)


_PARSERS: dict[
    ColumnType, Callable[[pd.Series, FieldRule, ColumnSpec], tuple[pd.Series, pd.Series]]
] = {
    ColumnType.TEXT: _parse_text,
    ColumnType.CHOICE: _parse_choice,
    ColumnType.CENTS: _parse_cents,
    ColumnType.DATE: _parse_date,
    ColumnType.DATETIME: _parse_datetime,
    ColumnType.INTEGER: _parse_integer,
    ColumnType.BOOLEAN: _parse_boolean,
}


def _date_advice(rule: FieldRule, column: ColumnSpec) -> tuple[str, str]:
    formats = ", ".join(rule.formats or ["dd/mm/yyyy", "dd/mm/yy"])
    return "bad_date", (
        f" is not a date in the formats {formats} (nor ISO yyyy-mm-dd nor an Excel serial) —"
        " fix the cell, or add its format under `formats`"
    )


_ADVICE: dict[ColumnType, Callable[[FieldRule, ColumnSpec], tuple[str, str]]] = {
    ColumnType.TEXT: lambda rule, column: ("unmapped_value", " is not allowed"),
    ColumnType.CHOICE: lambda rule, column: (
        "unmapped_value",
        " is not one of " + ", ".join(column.choices) + " — add a `map` from the source codes",
    ),
    ColumnType.CENTS: lambda rule, column: (
        "bad_amount",
        " is not an amount with at most 2 decimals — write it like 1 234,56",
    ),
    ColumnType.DATE: _date_advice,
    ColumnType.DATETIME: _date_advice,
    ColumnType.INTEGER: lambda rule, column: ("bad_integer", " is not a whole number"),
    ColumnType.BOOLEAN: lambda rule, column: (
        "bad_boolean",
        " is not yes/no (oui/non, o/n, 1/0, vrai/faux) — fix the cell or add a `map`",
    ),
}


__all__ = [
    "DEFAULT_DATE_FORMATS",
    "EntityTransformer",
    "NormalisedBatch",
    "normalise_code",
    "parse_booleans",
    "parse_cents",
    "parse_dates",
    "parse_integers",
]


def union_feeds(
    entity: str, parts: Sequence[tuple[str, NormalisedBatch, RawTable]]
) -> NormalisedBatch:
    """The batches of an entity's several feeds as one load: every row and reject tagged with
    its feed's label (`source_name`). A key found in two feeds is never settled by order: every
    row holding it is quarantined (`key_in_two_sources`), its message naming each lineage."""
    spec = ENTITIES[entity]
    rows = pd.concat(
        [batch.rows.assign(source_name=label) for label, batch, _ in parts], ignore_index=True
    )
    rejects = [batch.rejects.assign(source_name=label) for label, batch, _ in parts]
    feeds_per_key = rows.groupby(spec.key, sort=False)["source_name"].nunique()
    clashing = feeds_per_key.index[feeds_per_key > 1]
    if len(clashing):
        hit = rows[spec.key].isin(clashing)
        clash = rows.loc[hit, [spec.key, "source_name", "source_row"]]
        where = (
            (clash["source_name"] + " at " + clash["source_row"])
            .groupby(clash[spec.key], sort=False)
            .agg(" and ".join)
        )
        for label, _, raw in parts:
            mine = clash.loc[clash["source_name"] == label]
            if mine.empty:
                continue
            lineage = raw.source_rows.astype("str")
            picked = lineage.isin(set(mine["source_row"]))
            keys = (
                mine.set_index("source_row")[spec.key]
                .reindex(lineage.loc[picked])
                .set_axis(lineage.index[picked])
            )
            reason = pd.Series("key_in_two_sources", index=keys.index, dtype="str")
            message = (
                f"{spec.key} '"
                + keys
                + "' is in two sources: "
                + keys.map(where)
                + " — the hub loads neither; keep the row in one source only"
            )
            found = reject_frame(raw.frame.loc[picked], keys, lineage.loc[picked], reason, message)
            rejects.append(found.assign(source_name=label))
        rows = rows.loc[~hit].reset_index(drop=True)
    warnings: dict[str, int] = {}
    for _, batch, _ in parts:
        for name, count in batch.warnings.items():
            warnings[name] = warnings.get(name, 0) + count
    return NormalisedBatch(
        entity=entity,
        rows=rows,
        rejects=pd.concat(rejects, ignore_index=True),
        rows_in_source=sum(batch.rows_in_source for _, batch, _ in parts),
        skipped=sum(batch.skipped for _, batch, _ in parts),
        warnings=warnings,
    )
