"""`datafix check`: every problem of a datafix file, located as `file:line:column`.

Beyond what loading refuses (`pipelines/lib/datafixes.py`): `${VARIABLES}` that are not set,
sources that cannot be opened, mapped columns missing from a source's header (asked of each
source's kind), and sink targets a kind can check without sending anything.

A kind's header hook that finds several problems in the source's settings raises one
ConnectorError with a `problems` list of `(setting path, message, hint)` (the SOAP source's
check against its WSDL: `connectors.soap.wsdl.SettingProblems`); each is reported at its
own setting, and the mapped columns are still checked when the error carries the `header`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors import registry
from connectors.errors import ConnectorError
from connectors.rawtable import header_key
from pipelines.lib.datafixes import (
    LoadedDatafix,
    Located,
    read_datafix_best_effort,
    sorted_problems,
    unset_variable_hint,
)
from pipelines.lib.environment import interpolation_env, variable_allowed
from pipelines.lib.sources import concrete_feeds, source_header
from schemas.canonical import ENTITIES
from schemas.datafix import Feed, Issue, YamlPath, did_you_mean, env_references

__all__ = ["check_datafix"]


def check_datafix(path: Path, *, probe_sources: bool = True) -> list[Located]:
    """Every problem `datafix check` reports for one file (empty list: the file is good)."""
    _, problems, document, best_effort = read_datafix_best_effort(path)
    declared = best_effort.datafix.secrets if best_effort is not None else []
    environment = interpolation_env(declared)
    unresolved: set[str] = set()  # sources not probed: their unset variable is the problem
    if document.data is not None:
        for yaml_path, name in env_references(document.data):
            if yaml_path[:1] == ("secrets",):
                continue
            if name not in environment:
                if len(yaml_path) > 1 and yaml_path[0] == "sources":
                    unresolved.add(str(yaml_path[1]))
                if len(yaml_path) > 2 and yaml_path[:2] == ("push", "sinks"):
                    unresolved.add(f"push:{yaml_path[2]}")
                if not variable_allowed(name, declared):
                    continue  # reported as a variable the datafix may not read
                line, column = document.locate(yaml_path)
                problems.append(
                    Located(
                        path,
                        line,
                        column,
                        f"environment variable `{name}` is not set",
                        unset_variable_hint(name),
                    )
                )
    confined = best_effort.environment_issues() if best_effort is not None else []
    problems.extend(document.at(issue) for issue in confined)
    if best_effort is not None and probe_sources:
        if not confined:  # an inbox outside the landlord's folders is never opened
            problems.extend(document.at(issue) for issue in _probe_sources(best_effort, unresolved))
        problems.extend(document.at(issue) for issue in _probe_sinks(best_effort, unresolved))
    return sorted_problems(problems)


def _probe_sinks(loaded: LoadedDatafix, unresolved: set[str]) -> Iterator[Issue]:
    """Sinks whose kind can check them without sending anything (an ERP table must hold every
    mapped column, a Sage 100 drop folder must exist and be writable). Web services are not
    called, as for sources."""
    push = loaded.datafix.push
    if push is None:
        return
    for name, spec in push.sinks.items():
        kind = registry.sink_kind(spec.kind)
        if kind is None or kind.check is None or f"push:{name}" in unresolved:
            continue
        try:
            settings = loaded.sink(name)
            sink = kind.build(name, settings)
            try:
                kind.check(sink, settings)
            finally:
                sink.close()
        except ConnectorError as error:
            text = str(error)
            message = text if text.startswith(f"sink `{name}`") else f"sink `{name}`: {text}"
            yield Issue(path=("push", "sinks", name, kind.where(spec)), message=message)


def _probe_sources(loaded: LoadedDatafix, unresolved: set[str]) -> Iterator[Issue]:
    datafix = loaded.datafix
    headers: dict[tuple[Any, ...], list[str] | None] = {}
    for entity, mapping in datafix.entities.items():
        if entity not in ENTITIES:
            continue  # already reported: not a canonical entity
        for index, feed in enumerate(mapping.all_feeds):
            at: YamlPath = ("entities", entity)
            if mapping.feeds is not None:
                at = (*at, "feeds", index)
            yield from _probe_feed(loaded, entity, feed, at, unresolved, headers)


def _probe_feed(
    loaded: LoadedDatafix,
    entity: str,
    feed: Feed,
    at: YamlPath,
    unresolved: set[str],
    headers: dict[tuple[Any, ...], list[str] | None],
) -> Iterator[Issue]:
    """One feed's mapped columns and row filters against its source's header, read once per
    (source, sheet, header settings)."""
    datafix = loaded.datafix
    if feed.source not in datafix.sources or feed.source in unresolved:
        return  # an undeclared source is already reported; an unset variable too
    source = datafix.sources[feed.source]
    workbook = "sheet" in type(source).model_fields
    if feed.sheets is not None:
        try:
            concrete = [f for f in concrete_feeds(loaded, entity) if f.label == feed.label]
        except ConnectorError as error:
            yield Issue(path=(*at, "sheets"), message=str(error))
            return
        feed = concrete[0]  # the sheets a pattern matches share the feed's rules: probe one
    sheet = feed.sheet if workbook else None
    cache_key = (feed.source, sheet, feed.header_row, feed.header_rows)
    base: YamlPath = ("sources", feed.source)
    if cache_key not in headers:
        try:
            headers[cache_key] = source_header(loaded, entity, feed)
        except ConnectorError as error:
            headers[cache_key] = None
            kind = registry.source_kind(source.kind)
            where = kind.where(source) if kind is not None else "kind"
            placed = getattr(error, "problems", None)
            if placed:  # several problems, each at its setting (connectors.soap.wsdl)
                for setting, message, hint in placed:
                    yield Issue(
                        path=(*base, *setting),
                        message=f"source `{feed.source}`: {message}",
                        hint=hint,
                        key_position=setting[:1] == ("arguments",),
                    )
                headers[cache_key] = getattr(error, "header", None)
            elif workbook and "sheet" in str(error).lower():
                yield Issue(path=(*at, "sheet"), message=str(error))
            else:
                yield Issue(path=(*base, where), message=f"cannot open `{feed.source}`: {error}")
            if headers[cache_key] is None:
                return
    header = headers[cache_key]
    if header is None:
        return
    present = {header_key(label) for label in header}
    missing = [
        (field, position, column)
        for field, rule in feed.fields.items()
        for position, column in _rule_columns(rule)
        if header_key(column) not in present
    ]
    deeper = _two_row_header(loaded, entity, feed, source, missing) if missing else set()
    for field, position, column in missing:
        hint = did_you_mean(column, header)
        if header_key(column) in deeper:
            hint = (
                f"the header looks split over two rows (`{column}` is there when the row"
                " below the header is read as part of it): set `header_rows: 2` on the"
                " source or the entity"
            )
        yield Issue(
            path=(*at, "fields", field, *position),
            message=f"column `{column}` is not in the header of `{feed.source}`",
            hint=hint,
        )
    for index, row_filter in enumerate(feed.skip_rows):
        if header_key(row_filter.column) not in present:
            yield Issue(
                path=(*at, "skip_rows", index, "column"),
                message=f"column `{row_filter.column}` is not in the header of `{feed.source}`",
                hint=did_you_mean(row_filter.column, header),
            )


def _two_row_header(
    loaded: LoadedDatafix,
    entity: str,
    feed: Feed,
    source: Any,
    missing: list[tuple[str, YamlPath, str]],
) -> set[str]:
    """The header labels (as keys) read two rows deep, when the source reads one row and that
    deeper reading holds mapped columns the one-row header lacks (a forgotten `header_rows:
    2` under a merged `Montant` over `HT` / `TTC`); else empty."""
    depth = feed.header_rows or getattr(source, "header_rows", None)
    if depth != 1:
        return set()
    try:
        labels = source_header(loaded, entity, feed, header_rows=2) or []
    except ConnectorError:
        return set()
    keys = {header_key(label) for label in labels}
    return keys if any(header_key(column) in keys for _, _, column in missing) else set()


def _rule_columns(rule: Any) -> Iterator[tuple[YamlPath, str]]:
    if rule.from_ is not None:
        yield ("from",), rule.from_
    for index, column in enumerate(rule.concat or []):
        yield ("concat", index), column
    if rule.debit is not None:
        yield ("debit",), rule.debit
    if rule.credit is not None:
        yield ("credit",), rule.credit
    if rule.sign is not None:
        yield ("sign", "column"), rule.sign.column
    for index, case in enumerate(rule.cases or []):
        for position, condition in enumerate(case.when or []):
            yield ("cases", index, "when", position, "column"), condition.column
        if case.then is not None:
            for path, column in _rule_columns(case.then):
                yield ("cases", index, "then", *path), column
    if rule.else_ is not None and rule.else_.then is not None:
        for path, column in _rule_columns(rule.else_.then):
            yield ("else", "then", *path), column
