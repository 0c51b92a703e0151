"""Loading and checking datafix files, with every problem located as `file:line:column`.

`load_datafix` is what every run uses: it refuses a file with any structural or semantic
problem, collecting all problems at once so landlord IT fixes a file in one pass. What
`datafix check` verifies beyond (unset variables, sources that cannot be opened, mapped columns
missing from a source's header, sink targets) is in `pipelines/lib/checks.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import re
import threading
import time
import types
import typing
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ValidationError

from connectors import registry
from connectors.errors import ConfigError
from connectors.secrets import remember
from pipelines.lib.boundedyaml import MAX_BYTES, load_bounded
from pipelines.lib.environment import (
    datafix_home,
    datafixes_dir,
    default_inbox,
    inbox_roots,
    interpolation_env,
    variable_allowed,
    warehouse_url,
)
from schemas.config import Env, resolve_settings
from schemas.datafix import (
    ENV_REFERENCE,
    Datafix,
    Issue,
    KindOf,
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
    """A valid datafix with where it came from, its content hash (lineage), and the settings of
    its sources and sinks with every `${VARIABLE}` resolved (once, here).

    A variable that is not set fails only the source or sink that names it, when it is used:
    the landlord's other entities still run.
    """

    datafix: Datafix
    path: Path
    sha: str
    _resolved: dict[str, BaseModel | ConfigError] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        sections: dict[str, BaseModel] = {
            f"source:{name}": settings for name, settings in self.datafix.sources.items()
        }
        if self.datafix.push is not None:
            sections |= {f"sink:{name}": spec for name, spec in self.datafix.push.sinks.items()}
        for key, settings in sections.items():
            what, _, name = key.partition(":")
            try:
                resolved = resolve_settings(settings, self._resolve)
            except ConfigError as error:
                self._resolved[key] = ConfigError(f"{what} `{name}`: {error}")
                continue
            problem = next(self._database_problems(resolved), None)
            if problem is not None:
                field, message, hint = problem
                self._resolved[key] = ConfigError(
                    f"{self.path.name}: {what} `{name}`: `{field}`: {message} — {hint}"
                )
                continue
            self._resolved[key] = resolved

    def _database_problems(self, settings: BaseModel) -> Iterator[tuple[str, str, str]]:
        """(field, message, hint) for each SQLite database the settings name that is the hub's
        own state or another landlord's (see `database_problem`)."""
        for field, value in settings:
            if isinstance(value, BaseModel):
                yield from self._database_problems(value)
            elif isinstance(value, str) and SQLITE_URL.match(value):
                database = value.split("///", 1)[1].split("?", 1)[0]
                if database and database != ":memory:":
                    problem = database_problem(self.landlord_id, Path(database), self.path)
                    if problem is not None:
                        yield field, *problem

    @property
    def landlord_id(self) -> str:
        """The landlord's id (also the Dagster partition key)."""
        return self.datafix.landlord.id

    def _resolve(self, text: str, marker: Env) -> str:
        return resolve_setting(text, marker, self.datafix.secrets)

    def inbox(self) -> Path:
        """The folder where this landlord's files land; ConfigError when it is outside the
        folders allowed to this landlord (see `inbox_problem`)."""
        inbox = self.configured_inbox()
        problem = inbox_problem(self.landlord_id, inbox, self.path)
        if problem is not None:
            raise ConfigError(f"{self.path.name}: `inbox`: {problem[0]} — {problem[1]}")
        return inbox

    def configured_inbox(self) -> Path:
        """The folder the datafix names (or the default), not yet checked."""
        if self.datafix.inbox is None:
            return default_inbox(self.landlord_id)
        return Path(resolve_env(self.datafix.inbox, self.datafix.secrets)).expanduser()

    def environment_issues(self) -> list[Issue]:
        """Problems that depend on the hub's environment, not on the file alone: an `inbox`
        outside the folders allowed to this landlord; a SQLite database that is the hub's own
        state or another landlord's."""
        issues = []
        for key, settings in self._resolved.items():
            if isinstance(settings, ConfigError):
                continue
            section = ("sources",) if key.startswith("source:") else ("push", "sinks")
            for field, message, hint in self._database_problems(settings):
                path = (*section, key.partition(":")[2], field)
                issues.append(Issue(path=path, message=message, hint=hint))
        try:
            inbox = self.configured_inbox()
        except ConfigError:
            return issues  # an unset or refused variable: reported where it is named
        problem = inbox_problem(self.landlord_id, inbox, self.path)
        if problem is not None:
            issues.append(Issue(path=("inbox",), message=problem[0], hint=problem[1]))
        return issues

    def source(self, name: str) -> Any:
        """Settings of source `name`, variables resolved; ConfigError naming an unset one."""
        return self._settings(f"source:{name}")

    def sink(self, name: str) -> Any:
        """Settings of sink `name`, variables resolved; ConfigError naming an unset one."""
        return self._settings(f"sink:{name}")

    def _settings(self, key: str) -> Any:
        settings = self._resolved[key]
        if isinstance(settings, ConfigError):
            raise settings
        return settings


class Document:
    """A parsed YAML document with the position of every value and key."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.values: dict[YamlPath, Position] = {}
        self.keys: dict[YamlPath, Position] = {}
        self.problems: list[Located] = []
        self.data: Any = None
        try:
            node, self.data = load_bounded(text)
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


def read_datafix(path: Path) -> tuple[LoadedDatafix | None, list[Located], Document]:
    """Parse and validate one file; returns the datafix (when valid) and every problem."""
    loaded, problems, document, _ = read_datafix_best_effort(path)
    return loaded, problems, document


@dataclass(frozen=True)
class _Parsed:
    valid: bool
    problems: list[Located]
    document: Document
    best_effort: Datafix | None
    sha: str


class _ParseCache:
    """Parsed and validated datafixes by (path, content hash): a run (and every asset of it)
    parses a landlord's file once; any change to the file is a new entry."""

    size = 1024

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple[Any, ...], _Parsed] = OrderedDict()
        self.lock = threading.Lock()
        self.parses = 0

    def get(self, path: Path, raw: bytes | None = None) -> _Parsed:
        """The file at `path`, parsed; `raw`: its bytes, already read."""
        if raw is None:
            raw = _read_bounded(path)
        # the kinds known decide what validates: a kind registered later is a new entry
        key = (str(path.resolve()), hashlib.sha256(raw).hexdigest(), _known_kinds())
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        parsed = _parse(path, raw, key[1])
        with self.lock:
            self.parses += 1
            self.entries[key] = parsed
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return parsed


_CACHE = _ParseCache()


def _known_kinds() -> tuple[str, ...]:
    """The source and sink kinds registered now: part of what a parsed datafix is kept by."""
    return (*registry.source_kind_names(), "|", *registry.sink_kind_names())


def _read_bounded(path: Path) -> bytes:
    """The bytes of a datafix file, up to MAX_BYTES + 1 (a larger file is refused unread,
    `_parse`), read into a buffer of the file's size rather than of MAX_BYTES."""
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        raw = stream.read(min(size, MAX_BYTES) + 1)
        if size < len(raw) <= MAX_BYTES:  # it grew meanwhile
            raw += stream.read(MAX_BYTES + 1 - len(raw))
        return raw


def parse_count() -> int:
    """How many times this process has parsed and validated a datafix file (cache misses)."""
    return _CACHE.parses


def read_datafix_best_effort(
    path: Path,
) -> tuple[LoadedDatafix | None, list[Located], Document, LoadedDatafix | None]:
    """As read_datafix, plus a best-effort datafix (unknown keys dropped) to check further."""
    parsed = _CACHE.get(path)
    best_effort = None
    if parsed.best_effort is not None:
        best_effort = LoadedDatafix(parsed.best_effort, path, parsed.sha)
    loaded = best_effort if parsed.valid else None
    return loaded, list(parsed.problems), parsed.document, best_effort


def _parse(path: Path, raw: bytes, sha: str) -> _Parsed:
    """Parse and validate the bytes of one datafix file, collecting every problem."""
    if len(raw) > MAX_BYTES:
        size = path.stat().st_size / 1e6
        problem = Located(
            path,
            1,
            1,
            f"the file is {size:.1f} MB, above the {MAX_BYTES // (1 << 20)} MB limit for a"
            " datafix; it was not parsed",
            "a datafix maps sources to entities in a few kilobytes: keep the data itself in"
            " the sources",
        )
        return _Parsed(False, [problem], Document(path, ""), None, sha)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problem = Located(path, 1, 1, f"not UTF-8 text ({error})", "save it as UTF-8")
        return _Parsed(False, [problem], Document(path, ""), None, sha)
    document = Document(path, text)
    problems = list(document.problems)
    if problems:
        return _Parsed(False, problems, document, None, sha)
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
        return _Parsed(False, problems, document, None, sha)
    problems.extend(document.at(issue) for issue in variable_issues(document.data))
    try:
        datafix = Datafix.model_validate(document.data)
    except ValidationError as error:
        problems.extend(document.at(issue) for issue in _pydantic_issues(error, document.data))
        recovered = _without_unknown_keys(document.data, error)
        if recovered is None:
            return _Parsed(False, sorted_problems(problems), document, None, sha)
        datafix = recovered
    problems.extend(document.at(issue) for issue in semantic_issues(datafix, file_stem=path.stem))
    if problems:
        return _Parsed(False, sorted_problems(problems), document, datafix, sha)
    return _Parsed(True, [], document, datafix, sha)


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
    """A valid datafix, or DatafixError listing every problem (an `inbox` outside the folders
    allowed to the landlord included)."""
    loaded, problems, document = read_datafix(path)
    if loaded is None:
        raise DatafixError(problems)
    problems = [document.at(issue) for issue in loaded.environment_issues()]
    if problems:
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


def unset_variable_hint(name: str) -> str:
    """How to set a variable a datafix names (the sandbox's own are set by its commands)."""
    if name.startswith("DATAFIX_SANDBOX_"):
        return (
            f"export {name}=… (see .env.example); for the local sandbox peers run it under"
            ' `datafix demo`, or eval "$(datafix sandbox --env)" first'
        )
    return f"export {name}=… (see .env.example); secrets never go in the datafix itself"


def undeclared_variable_hint(name: str) -> str:
    """How to let a datafix read variable `name` (it is neither `DATAFIX_*` nor declared)."""
    return (
        f"add it to the datafix's top-level `secrets:` list (secrets: [{name}]), or rename it"
        f" DATAFIX_{name}; a datafix reads no other variable of the hub's environment"
    )


def variable_issues(data: Any) -> list[Issue]:
    """`${NAME}`s a datafix may not read: neither `DATAFIX_*` nor declared under `secrets:`."""
    if not isinstance(data, dict):
        return []
    declared = data.get("secrets")
    names = [n for n in declared if isinstance(n, str)] if isinstance(declared, list) else []
    return [
        Issue(
            path=yaml_path,
            message=f"`${{{name}}}`: this datafix may not read variable `{name}`",
            hint=undeclared_variable_hint(name),
        )
        for yaml_path, name in env_references(data)
        if yaml_path[:1] != ("secrets",) and not variable_allowed(name, names)
    ]


def _value_of(name: str, environment: dict[str, str], declared: list[str] | tuple[str, ...]) -> str:
    if not variable_allowed(name, declared):
        raise ConfigError(
            f"this datafix may not read variable `{name}` — {undeclared_variable_hint(name)}"
        )
    if name not in environment:
        raise ConfigError(f"environment variable `{name}` is not set — {unset_variable_hint(name)}")
    return environment[name]


def resolve_env(text: str, declared: list[str] | tuple[str, ...] = ()) -> str:
    """Replace `${VAR}` references (`DATAFIX_*` ones and the `declared` names); ConfigError
    naming the first variable unset or not allowed. Values of declared names are secrets."""
    return resolve_setting(text, Env(), declared)


_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_QUERY = re.compile(
    r"[?&;](?:password|passwd|pwd|pass|secret|client_secret|token|access_token|api_?key|apikey"
    r"|session_?id|sig|signature)=$",
    re.IGNORECASE,
)
_ODBC_SECRET = re.compile(r"(?:^|;)\s*(?:pwd|password)\s*=\s*$", re.IGNORECASE)
_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|key|session|credential|jeton|mot_?de_?passe", re.IGNORECASE
)
_ODBC_BRACES = re.compile(r"[;{}]|^\s|\s$")


def _slot(text: str, start: int, end: int, marker: Env) -> str:
    """Where a `${VAR}` sits: `userinfo` or `query` of a URL, an ODBC `pwd`, or `plain`."""
    if marker.check == "odbc":
        bare = _ODBC_SECRET.search(text[:start]) and text[end:].lstrip()[:1] in ("", ";")
        return "pwd" if bare else "plain"
    scheme = _SCHEME.match(text)
    if scheme is None:
        return "plain"
    rest = text[scheme.end() :]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    offset = start - scheme.end()
    if "@" in authority and 0 <= offset < authority.rindex("@"):
        return "userinfo"
    if _SECRET_QUERY.search(text[:start]) and "?" in text[:start]:
        return "query"
    return "plain"


def resolve_setting(text: str, marker: Env, declared: list[str] | tuple[str, ...] = ()) -> str:
    """A setting with its `${VAR}` references replaced, each quoted for where it sits: URL-
    encoded in a URL's user info or password query parameter, in braces as an ODBC `PWD=`
    that needs them. The values of secrets (declared names, `Secret` settings, passwords in
    URLs and connection strings, names like `*PASSWORD*`/`*TOKEN*`) are remembered so that no
    message, log or metadata ever shows them (`connectors.secrets.scrub`)."""
    secret_values: list[str] = []
    try:
        return _resolved_setting(text, marker, declared, secret_values)
    finally:  # those read before a variable that is refused too
        remember(secret_values)


def _resolved_setting(
    text: str, marker: Env, declared: list[str] | tuple[str, ...], secret_values: list[str]
) -> str:
    """`resolve_setting`'s text; the secret values it reads are added to `secret_values`
    instead of remembered."""
    environment = interpolation_env(declared)
    pieces: list[str] = []
    last = 0
    for match in ENV_REFERENCE.finditer(text):
        name = match.group(1)
        value = _value_of(name, environment, declared)
        slot = _slot(text, match.start(), match.end(), marker)
        if (
            slot != "plain"
            or marker.check == "secret"
            or name in declared
            or _SECRET_NAME.search(name)
        ):
            secret_values.append(value)
        if slot in ("userinfo", "query"):
            value = quote(value, safe="")
        elif slot == "pwd" and _ODBC_BRACES.search(value):
            value = "{" + value.replace("}", "}}") + "}"
        pieces += [text[last : match.start()], value]
        last = match.end()
    return "".join(pieces) + text[last:] if pieces else text


def inbox_problem(
    landlord_id: str, inbox: Path, datafix: Path | None = None
) -> tuple[str, str] | None:
    """Why `inbox` may not be this landlord's inbox (message, hint), or None.

    Allowed: `$DATAFIX_HOME/inbox/<landlord>` or below it, or a folder inside one the
    operator lists in `DATAFIX_INBOX_ROOTS`; never another landlord's inbox, a folder holding
    one, or one holding the hub's home. Links are followed first: a link to `/etc` is `/etc`.
    Nothing inside the folder is opened.
    """
    resolved = Path(os.path.realpath(inbox))
    default_root, *operator_roots = inbox_roots()
    own = default_root / landlord_id  # itself a link (to /etc …) is not its own folder
    fix = (
        f"use the default ({own}: leave `inbox` out), or a folder inside one listed in"
        " DATAFIX_INBOX_ROOTS"
    )
    if resolved.is_relative_to(own):
        return None
    for other, folder in _other_inboxes(landlord_id, datafix):
        if _within(str(resolved), folder):
            return f"{inbox} is inside the inbox of landlord `{other}`", fix
        if _within(folder, str(resolved)):
            return f"{inbox} holds the inbox of landlord `{other}`", fix
    home = Path(os.path.realpath(datafix_home()))
    if home.is_relative_to(resolved) or resolved.is_relative_to(default_root):
        return f"{inbox} holds the hub's home or other landlords' inboxes", fix
    if any(resolved.is_relative_to(root) for root in operator_roots):
        return None
    where = f" (it leads to {resolved})" if resolved != Path(os.path.abspath(inbox)) else ""
    return f"{inbox} is outside the folders an inbox may be in{where}", fix


SQLITE_URL = re.compile(r"^sqlite(?:\+\w+)?:///")


def database_problem(
    landlord_id: str, database: Path, datafix: Path | None = None
) -> tuple[str, str] | None:
    """Why a datafix may not open the SQLite database `database` (message, hint), or None:
    the hub's warehouse, anything of the hub's Dagster instance or its keys, or a file in
    another landlord's inbox. Links are followed first; the file is not opened."""
    resolved = Path(os.path.realpath(database))
    fix = "name the landlord's own database (in its inbox, or wherever its ERP keeps it)"
    home = Path(os.path.realpath(datafix_home()))
    warehouse = warehouse_url()
    if SQLITE_URL.match(warehouse):
        own = Path(os.path.realpath(warehouse.split("///", 1)[1].split("?", 1)[0]))
        beside = resolved.parent == own.parent and resolved.name.startswith(own.name + "-")
        if resolved == own or beside:  # its -wal and -shm files too
            return f"{database} is the hub's warehouse: every landlord's data", fix
    if resolved.parent == home or resolved.is_relative_to(home / "dagster"):
        return f"{database} is the hub's own state (in {home})", fix
    default_root = Path(os.path.realpath(default_inbox(landlord_id))).parent
    if resolved.is_relative_to(default_root / landlord_id):
        return None
    if resolved.is_relative_to(default_root):
        other = resolved.relative_to(default_root).parts[0]
        return f"{database} is in the inbox of landlord `{other}`", fix
    for other, folder in _other_inboxes(landlord_id, datafix):
        if _within(str(resolved), folder):
            return f"{database} is in the inbox of landlord `{other}`", fix
    return None


def _within(path: str, folder: str) -> bool:
    """`Path(path).is_relative_to(folder)` for two real paths (absolute, normalised), by their
    text: a check compares one path with every other landlord's inbox."""
    if path.startswith("//") or folder.startswith("//"):  # `//` is a root of its own
        return Path(path).is_relative_to(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _other_inboxes(landlord_id: str, datafix: Path | None) -> list[tuple[str, str]]:
    """The inbox folders (links followed: their real paths) other landlords' datafixes name,
    in the datafixes folder and beside `datafix`."""
    folders = {datafixes_dir()}
    if datafix is not None:
        folders.add(datafix.parent)
    # what a datafix's `${VARIABLE}`s resolve against (`interpolation_env`), read once
    environment = (tuple(os.environ.items()), str(datafix_home()))
    found: list[tuple[str, str]] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        parents: dict[str, str] = {}  # real paths of the folders the inboxes are in
        for named in _INBOXES.named(folder, environment):
            if named.stem == landlord_id or named.landlord_id == landlord_id:
                continue
            if named.secret_values:
                remember(named.secret_values)  # as resolving its variables does, each time
            if named.inbox is not None:  # None: a variable unset or refused
                found.append((named.landlord_id, named.real_path(parents)))
    return found


@dataclass(frozen=True)
class _NamedInbox:
    """The inbox one datafix names, `${VARIABLE}`s resolved, links not followed (None: a
    variable unset or refused), and the secret values read to resolve it."""

    stem: str
    landlord_id: str
    inbox: Path | None
    secret_values: list[str]
    # (folder, last part) of an absolute inbox without `..`, `.` or a root alone
    split: tuple[str, str] | None = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        inbox = self.inbox
        simple = inbox is not None and inbox.is_absolute() and ".." not in inbox.parts
        split = (str(inbox.parent), inbox.name) if simple and inbox.name else None
        object.__setattr__(self, "split", split)

    def real_path(self, parents: dict[str, str]) -> str:
        """`os.path.realpath(inbox)`; `parents` holds the real paths of the folders already
        resolved (the inboxes of a hub mostly share one): the inbox's real path is its folder's
        joined with its last part, followed if that is a link."""
        if self.split is None:
            return os.path.realpath(self.inbox)
        parent, name = self.split
        folder = parents.get(parent)
        if folder is None:
            folder = parents[parent] = os.path.realpath(parent)
        joined = os.path.join(folder, name)
        return os.path.realpath(joined) if os.path.islink(joined) else joined


class _NamedInboxes:
    """Per datafixes folder, the inbox each of its datafixes names, kept while the folder's
    files (their names and bytes), the environment and the kinds known are the same: every
    load of a datafix checks its inbox against all the others (`inbox_problem`), some fifteen
    times in one landlord's run, where parsing each datafix and resolving its variables again
    cost 50 ms per load with 300 landlords.

    A file's bytes are read again unless its status (inode, size, modification and change
    times) is the one it had when they were last read and it had changed more than
    `SETTLED_NS` before then: any later write sets its change time to the clock's time then,
    so a file rewritten within one tick of the clock is read again (git's racy-clean rule)."""

    SETTLED_NS = 2_000_000_000

    def __init__(self) -> None:
        self.entries: dict[Path, tuple[tuple[Any, ...], list[_NamedInbox]]] = {}
        self.digests: dict[str, tuple[tuple[int, ...], bytes]] = {}
        self.lock = threading.Lock()

    def named(self, folder: Path, environment: tuple[Any, ...]) -> list[_NamedInbox]:
        """A `_NamedInbox` for each datafix of `folder` that names an inbox (one that does not
        has its default one, refused anyway)."""
        names = sorted(  # as folder.glob("*.yaml"), the hidden ones left out
            entry.name
            for entry in os.scandir(folder)
            if entry.name.endswith(".yaml") and not entry.name.startswith(".")
        )
        digests = [(name, self._digest(os.path.join(folder, name))) for name in names]
        key = (tuple(digests), environment, _known_kinds())
        with self.lock:
            kept = self.entries.get(folder)
        if kept is not None and kept[0] == key:
            return kept[1]
        found: list[_NamedInbox] = []
        for name, digest in digests:
            if digest is None:
                continue
            path = folder / name
            try:
                other = _CACHE.get(path).best_effort
            except OSError:
                continue
            if other is None or other.inbox is None:
                continue
            secret_values: list[str] = []
            try:
                text = _resolved_setting(other.inbox, Env(), other.secrets, secret_values)
                inbox: Path | None = Path(text).expanduser()
            except ConfigError:
                inbox = None
            found.append(_NamedInbox(path.stem, other.landlord.id, inbox, secret_values))
        with self.lock:
            self.entries[folder] = (key, found)
        return found

    def _digest(self, path: str) -> bytes | None:
        """The SHA-256 of the file's bytes (None: it cannot be read)."""
        try:
            status = os.stat(path)
        except OSError:
            return None
        stamp = (
            status.st_dev,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
        with self.lock:
            known = self.digests.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        read_at = time.time_ns()
        try:
            digest = hashlib.sha256(_read_bounded(Path(path))).digest()
        except OSError:
            return None
        if status.st_ctime_ns < read_at - self.SETTLED_NS:
            with self.lock:
                self.digests[path] = (stamp, digest)
        return digest


_INBOXES = _NamedInboxes()


def sorted_problems(problems: list[Located]) -> list[Located]:
    """Problems without repeats, in file, line and column order."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (str(p.file), p.line, p.column))


def _pydantic_issues(error: ValidationError, data: Any) -> Iterator[Issue]:
    for detail in error.errors():
        loc = tuple(detail["loc"])
        kind = detail["type"]
        message = str(detail["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1], data)
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
                hint=_field_description(loc, data) or f"add `{loc[-1]}:`",
                key_position=True,
            )
        elif kind == "kind_unknown":
            context = detail.get("ctx", {})
            yield Issue(
                path=(*loc, "kind"),
                message=message,
                hint=did_you_mean(str(context.get("tag", "")), list(context.get("allowed", []))),
            )
        elif kind == "kind_missing":
            yield Issue(path=loc, message=message, key_position=True)
        else:
            yield Issue(path=loc, message=message, hint=_field_description(loc, data))


def _walk_annotation(loc: tuple[Any, ...], data: Any) -> tuple[Any, Any]:
    """The type annotation (and the raw YAML value) reached by following a pydantic error
    location from Datafix; a source's or sink's model is the one its `kind:` names."""
    current: Any = Datafix
    node = data
    for element in loc:
        current = _unwrap(current, node)
        if current is None:
            return None, None
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            fields.update(current.model_fields)
            if element not in fields:
                return None, None
            current = fields[element].annotation
        else:
            origin = typing.get_origin(current)
            if origin is dict:
                current = typing.get_args(current)[1]
            elif origin is list:
                current = typing.get_args(current)[0]
        node = _child(node, element)
    return current, node


def _child(node: Any, element: Any) -> Any:
    if isinstance(node, dict):
        return node.get(element)
    if isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node):
        return node[element]
    return None


def _unwrap(annotation: Any, node: Any) -> Any:
    """The model (or plain type) an annotation stands for, given the raw value it validates."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        for marker in annotation.__metadata__:
            if isinstance(marker, KindOf):
                return marker.model_for(node)
        return _unwrap(typing.get_args(annotation)[0], node)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        tag = node.get("kind") if isinstance(node, dict) else None
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                literal = getattr(member.model_fields.get("kind"), "annotation", None)
                if tag is not None and tag in typing.get_args(literal):
                    return member
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return models[0] if len(models) == 1 else (members[0] if members else None)
    return annotation


def _allowed_keys(loc: tuple[Any, ...], data: Any) -> list[str]:
    model = _unwrap(*_walk_annotation(loc, data))
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


def _field_description(loc: tuple[Any, ...], data: Any) -> str:
    parent = _unwrap(*_walk_annotation(loc[:-1], data))
    if isinstance(parent, type) and issubclass(parent, BaseModel) and loc:
        for name, field in parent.model_fields.items():
            if loc[-1] in (name, field.alias):
                return field.description or ""
    return ""
