"""Loading and checking datafix files, with every problem located as `file:line:column`.

`load_datafix` is what every run uses: it refuses a file with any structural or semantic
problem. `check_datafix` goes further for `datafix check`: unset environment variables, sources
that cannot be opened, and mapped columns missing from the source's header. Both collect all
problems at once so landlord IT fixes a file in one pass.
"""

from __future__ import annotations

import copy
import hashlib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from connectors.errors import ConfigError, ConnectorError
from connectors.files.client import header_key
from pipelines.lib.environment import datafixes_dir, default_inbox, interpolation_env
from schemas.datafix import (
    ENV_REFERENCE,
    SOURCE_KINDS,
    Datafix,
    Issue,
    XlsxSource,
    YamlPath,
    did_you_mean,
    env_references,
    semantic_issues,
)

Position = tuple[int, int]


@dataclass(frozen=True)
class Located:
    """One problem in a datafix file, ready to print."""

    file: Path
    line: int
    column: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class DatafixError(ConfigError):
    """A datafix file has problems; `problems` lists them all."""

    def __init__(self, problems: list[Located]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True)
class LoadedDatafix:
    """A valid datafix with where it came from and its content hash (lineage)."""

    datafix: Datafix
    path: Path
    sha: str

    @property
    def landlord_id(self) -> str:
        """The landlord's id (also the Dagster partition key)."""
        return self.datafix.landlord.id

    def inbox(self) -> Path:
        """The folder where this landlord's files land."""
        if self.datafix.inbox is None:
            return default_inbox(self.landlord_id)
        return Path(resolve_env(self.datafix.inbox)).expanduser()


class _Document:
    """A parsed YAML document with the position of every value and key."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.values: dict[YamlPath, Position] = {}
        self.keys: dict[YamlPath, Position] = {}
        self.problems: list[Located] = []
        self.data: Any = None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = getattr(error, "problem", None) or str(error)
            self.problems.append(
                Located(
                    path,
                    line,
                    column,
                    f"not valid YAML: {problem}",
                    "check indentation (spaces, not tabs) and quote values containing `: ` or `#`",
                )
            )
            return
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: YamlPath) -> None:
        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.problems.append(
                        Located(
                            self.path,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            f"`{key}` appears twice here; the second one would silently win",
                            f"keep one `{key}` (the first is at line"
                            f" {seen[key].start_mark.line + 1})",
                        )
                    )
                seen[key] = key_node
                self.keys[(*path, key)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                self._walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def locate(self, path: YamlPath, *, key: bool = False) -> Position:
        """Line and column of the deepest known node along `path`."""
        known: YamlPath = ()
        for element in path:
            candidate = (*known, element)
            if candidate in self.values:
                known = candidate
            elif (*known, str(element)) in self.values:
                known = (*known, str(element))
        if key and known in self.keys:
            return self.keys[known]
        return self.values.get(known, (1, 1))

    def at(self, issue: Issue) -> Located:
        line, column = self.locate(issue.path, key=issue.key_position)
        return Located(self.path, line, column, issue.message, issue.hint)


def read_datafix(path: Path) -> tuple[LoadedDatafix | None, list[Located], _Document]:
    """Parse and validate one file; returns the datafix (when valid) and every problem."""
    loaded, problems, document, _ = _read_datafix(path)
    return loaded, problems, document


def _read_datafix(
    path: Path,
) -> tuple[LoadedDatafix | None, list[Located], _Document, LoadedDatafix | None]:
    """As read_datafix, plus a best-effort datafix (unknown keys dropped) to check further."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problem = Located(path, 1, 1, f"not UTF-8 text ({error})", "save it as UTF-8")
        return None, [problem], _Document(path, ""), None
    document = _Document(path, text)
    problems = list(document.problems)
    if problems:
        return None, problems, document, None
    if not isinstance(document.data, dict):
        problems.append(
            Located(
                path,
                1,
                1,
                "a datafix is a mapping with `landlord`, `sources`, `entities`",
                "start from a demo file in datafixes/",
            )
        )
        return None, problems, document, None
    sha = hashlib.sha256(raw).hexdigest()
    try:
        datafix = Datafix.model_validate(document.data)
    except ValidationError as error:
        problems.extend(document.at(issue) for issue in _pydantic_issues(error))
        recovered = _without_unknown_keys(document.data, error)
        if recovered is None:
            return None, _sorted(problems), document, None
        datafix = recovered
    problems.extend(document.at(issue) for issue in semantic_issues(datafix, file_stem=path.stem))
    best_effort = LoadedDatafix(datafix, path, sha)
    if problems:
        return None, _sorted(problems), document, best_effort
    return best_effort, [], document, best_effort


def _without_unknown_keys(data: Any, error: ValidationError) -> Datafix | None:
    """When unknown keys are the only structural problem, the datafix without them."""
    details = error.errors()
    if any(detail["type"] != "extra_forbidden" for detail in details):
        return None
    cleaned = copy.deepcopy(data)
    for detail in details:
        node, loc = cleaned, tuple(detail["loc"])
        for element in loc[:-1]:
            in_mapping = isinstance(node, dict) and element in node
            in_list = isinstance(node, list) and isinstance(element, int) and element < len(node)
            if in_mapping or in_list:
                node = node[element]
        if isinstance(node, dict):
            node.pop(loc[-1], None)
    try:
        return Datafix.model_validate(cleaned)
    except ValidationError:
        return None


def load_datafix(path: Path) -> LoadedDatafix:
    """A valid datafix, or DatafixError listing every problem."""
    loaded, problems, _ = read_datafix(path)
    if loaded is None:
        raise DatafixError(problems)
    return loaded


def landlord_ids(folder: Path | None = None) -> list[str]:
    """Landlords known to the hub: one per `<id>.yaml` in the datafixes folder."""
    folder = folder or datafixes_dir()
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.name.startswith("."))


def datafix_path(landlord_id: str) -> Path:
    """The datafix file of a landlord; ConfigError naming the known ones when absent."""
    path = datafixes_dir() / f"{landlord_id}.yaml"
    if not path.is_file():
        known = landlord_ids()
        raise ConfigError(
            f"no datafix for landlord `{landlord_id}` in {datafixes_dir()} — "
            + (did_you_mean(landlord_id, known) if known else "the folder has no .yaml file")
        )
    return path


def load_landlord(landlord_id: str) -> LoadedDatafix:
    """Load the datafix of one landlord by id."""
    return load_datafix(datafix_path(landlord_id))


def resolve_env(text: str) -> str:
    """Replace `${VAR}` references; ConfigError naming the first unset variable."""
    environment = interpolation_env()

    def substitute(match: Any) -> str:
        name = match.group(1)
        if name not in environment:
            hint = (
                ' — run it under `datafix demo`, or eval "$(datafix sandbox --env)" first'
                if name.startswith("DATAFIX_SANDBOX_")
                else ""
            )
            raise ConfigError(
                f"environment variable `{name}` is not set — export it (see .env.example);"
                f" secrets never go in the datafix itself{hint}"
            )
        return environment[name]

    return ENV_REFERENCE.sub(substitute, text)


def check_datafix(path: Path, *, probe_sources: bool = True) -> list[Located]:
    """Every problem `datafix check` reports for one file (empty list: the file is good)."""
    _, problems, document, best_effort = _read_datafix(path)
    environment = interpolation_env()
    unresolved: set[str] = set()  # sources not probed: their unset variable is the problem
    if document.data is not None:
        for yaml_path, name in env_references(document.data):
            if name not in environment:
                if len(yaml_path) > 1 and yaml_path[0] == "sources":
                    unresolved.add(str(yaml_path[1]))
                if len(yaml_path) > 2 and yaml_path[:2] == ("push", "sinks"):
                    unresolved.add(f"push:{yaml_path[2]}")
                line, column = document.locate(yaml_path)
                problems.append(
                    Located(
                        path,
                        line,
                        column,
                        f"environment variable `{name}` is not set",
                        f"export {name}=… before running (list it in .env.example); secrets"
                        " never go in the datafix itself",
                    )
                )
    if best_effort is not None and probe_sources:
        problems.extend(document.at(issue) for issue in _probe_sources(best_effort, unresolved))
        problems.extend(document.at(issue) for issue in _probe_sinks(best_effort, unresolved))
    return _sorted(problems)


def _probe_sinks(loaded: LoadedDatafix, unresolved: set[str]) -> Iterator[Issue]:
    """Sinks that can be checked without sending anything: an ERP table (it must hold every
    mapped column) and a Sage 100 drop folder (it must exist and be writable). Web services
    are not called, as for sources."""
    from pipelines.lib.sinks import build_sink  # sinks imports this module

    push = loaded.datafix.push
    if push is None:
        return
    for name, spec in push.sinks.items():
        if spec.kind not in ("sql", "sage100_file") or f"push:{name}" in unresolved:
            continue
        where = {"sql": "url" if getattr(spec, "url", None) else "connection"}.get(
            spec.kind, "folder"
        )
        try:
            sink = build_sink(loaded, name)
            try:
                sink.probe(list(spec.fields))  # type: ignore[attr-defined]
            finally:
                sink.close()
        except ConnectorError as error:
            text = str(error)
            message = text if text.startswith(f"sink `{name}`") else f"sink `{name}`: {text}"
            yield Issue(path=("push", "sinks", name, where), message=message)


_SOURCE_LOCATOR = {
    "csv": "path",
    "xlsx": "path",
    "sql": "url",
    "odbc": "connection",
    "soap": "wsdl",
    "salesforce": "auth",
    "sage_x3": "wsdl",
}


def _probe_sources(loaded: LoadedDatafix, unresolved: set[str]) -> Iterator[Issue]:
    from pipelines.lib.sources import source_header  # sources imports this module

    datafix = loaded.datafix
    headers: dict[tuple[Any, ...], list[str] | None] = {}
    for entity, mapping in datafix.entities.items():
        if mapping.source in unresolved:
            continue
        source = datafix.sources[mapping.source]
        sheet = mapping.sheet if isinstance(source, XlsxSource) else None
        cache_key = (mapping.source, sheet, mapping.header_row, mapping.header_rows)
        base: YamlPath = ("sources", mapping.source)
        if cache_key not in headers:
            try:
                headers[cache_key] = source_header(loaded, entity)
            except ConnectorError as error:
                headers[cache_key] = None
                where = _SOURCE_LOCATOR.get(source.kind, "kind")
                if isinstance(source, XlsxSource) and "sheet" in str(error).lower():
                    yield Issue(path=("entities", entity, "sheet"), message=str(error))
                else:
                    yield Issue(
                        path=(*base, where), message=f"cannot open `{mapping.source}`: {error}"
                    )
                continue
        header = headers[cache_key]
        if header is None:
            continue
        present = {header_key(label) for label in header}
        for field, rule in mapping.fields.items():
            for position, column in _rule_columns(rule):
                if header_key(column) not in present:
                    yield Issue(
                        path=("entities", entity, "fields", field, *position),
                        message=f"column `{column}` is not in the header of `{mapping.source}`",
                        hint=did_you_mean(column, header),
                    )
        for index, row_filter in enumerate(mapping.skip_rows):
            if header_key(row_filter.column) not in present:
                yield Issue(
                    path=("entities", entity, "skip_rows", index, "column"),
                    message=f"column `{row_filter.column}` is not in the header of"
                    f" `{mapping.source}`",
                    hint=did_you_mean(row_filter.column, header),
                )


def _rule_columns(rule: Any) -> Iterator[tuple[YamlPath, str]]:
    if rule.from_ is not None:
        yield ("from",), rule.from_
    for index, column in enumerate(rule.concat or []):
        yield ("concat", index), column
    if rule.debit is not None:
        yield ("debit",), rule.debit
    if rule.credit is not None:
        yield ("credit",), rule.credit


def _sorted(problems: list[Located]) -> list[Located]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (str(p.file), p.line, p.column))


def _pydantic_issues(error: ValidationError) -> Iterator[Issue]:
    for detail in error.errors():
        loc = tuple(detail["loc"])
        kind = detail["type"]
        message = str(detail["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            yield Issue(
                path=loc,
                message=f"unknown key `{loc[-1]}`",
                hint=did_you_mean(str(loc[-1]), allowed) if allowed else "remove it",
                key_position=True,
            )
        elif kind == "missing":
            yield Issue(
                path=loc[:-1],
                message=f"`{loc[-1]}` is required here",
                hint=_field_description(loc) or f"add `{loc[-1]}:`",
                key_position=True,
            )
        elif kind == "union_tag_invalid":
            tag = str(detail.get("ctx", {}).get("tag", ""))
            yield Issue(
                path=(*loc, "kind"),
                message=f"unknown source kind `{tag}`",
                hint=did_you_mean(tag, SOURCE_KINDS),
            )
        else:
            yield Issue(path=loc, message=message, hint=_field_description(loc))


def _walk_annotation(loc: tuple[Any, ...]) -> Any:
    """The type annotation reached by following a pydantic error location from Datafix."""
    current: Any = Datafix
    for element in loc:
        current = _unwrap(current, element)
        if current is None:
            return None
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            fields.update(current.model_fields)
            if element in fields:
                current = fields[element].annotation
                continue
            if isinstance(element, str) and element in SOURCE_KINDS:
                continue
            return None
        origin = typing.get_origin(current)
        if origin is dict:
            current = typing.get_args(current)[1]
        elif origin is list:
            current = typing.get_args(current)[0]
    return current


def _unwrap(annotation: Any, element: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0], element)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        tagged = {
            getattr(m.model_fields.get("kind"), "annotation", None): m
            for m in members
            if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields
        }
        for literal, member in tagged.items():
            if element in typing.get_args(literal):
                return member
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return models[0] if len(models) == 1 else (members[0] if members else None)
    return annotation


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model = _unwrap(_walk_annotation(loc), None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


def _field_description(loc: tuple[Any, ...]) -> str:
    parent = _unwrap(_walk_annotation(loc[:-1]), loc[-1] if loc else None)
    if isinstance(parent, type) and issubclass(parent, BaseModel) and loc:
        for name, field in parent.model_fields.items():
            if loc[-1] in (name, field.alias):
                return field.description or ""
    return ""
