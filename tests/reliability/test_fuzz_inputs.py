"""Issue 12, fuzzing: mutated CSV, xlsx and datafix YAML through check, preview and a load.

Hypothesis (derandomized: the same cases in CI every time, a fixed budget well under 3 minutes
on 2 cores) mutates real inputs: a landlord's CSV export (bytes flipped, cut, inserted, lines
dropped or duplicated), an openpyxl-written workbook (cells replaced, then bytes of the file
itself), and a datafix file (characters and lines mutated). Each case runs the hub's own API as
`datafix check`, `datafix preview` and a load do (`check_datafix`, `pull` + `normalise`, the
readers), under a 30 s watchdog, and asserts:

- no traceback: the only exceptions allowed are the hub's own (`ConnectorError` and its
  subclasses), and each names the file it is about and says what is wrong;
- no read outside the inbox, the datafix folder, the temporary folder and the installed code
  (an audit hook on `open` records every path opened while a case runs);
- rows read = rows accepted + rows quarantined + rows skipped (nothing lost).

A few real `datafix` subprocesses close the file on the command as a user runs it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from connectors.errors import ConnectorError
from pipelines.lib.environment import REPO_ROOT
from tests.landlords.common import DATAFIX
from tests.reliability.tenants_export import HOUSEHOLD_SIZE, TENANT_FIELDS

LANDLORD = "fuzz-habitat"
HEADER = ["N° locataire", "Nom", "Prénom", "Date d'entrée", "Statut", "Nb pers."]
ROWS = [
    ["T001", "Martin", "Léa", "01/02/2020", "ACT", "2"],
    ["T002", "Durand", "Hugo", "15/06/2018", "SOR", "1"],
    ["T003", "Petit", "Zoé", "01/01/2026", "ACT", "3"],
    ["T004", "Moreau", 'Jules "Jo"', "03/03/2021", "PRE", ""],
    ["Total", "", "", "", "", "6"],
]
WATCHDOG = 30.0  # seconds a case may take before it counts as a hang
CASES = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def datafix_text(kind: str) -> str:
    extra = "    separator: ';'\n" if kind == "csv" else ""
    return f"""landlord:
  id: {LANDLORD}
  name: Fuzz Habitat (test)
sources:
  locataires:
    kind: {kind}
    path: locataires.{kind}
    settle_seconds: 0
{extra}entities:
  tenants:
    source: locataires
    max_quarantine_percent: 100
    skip_rows:
      - {{column: "N° locataire", matches: "^total"}}
{TENANT_FIELDS}{HOUSEHOLD_SIZE}"""


def csv_bytes() -> bytes:
    def quoted(value: str) -> str:
        return f'"{value.replace(chr(34), chr(34) * 2)}"' if '"' in value else value

    lines = [";".join(quoted(value) for value in row) for row in [HEADER, *ROWS]]
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def xlsx_bytes(cells: dict[tuple[int, int], Any]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [HEADER, *ROWS]:
        sheet.append(row)
    for (row, column), value in cells.items():
        sheet.cell(row=row, column=column, value=value)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# --- mutations ------------------------------------------------------------------------------

positions = st.integers(min_value=0, max_value=10_000)
junk = st.binary(min_size=1, max_size=40) | st.sampled_from(
    [b"\x00", b'"', b";", b"\r", b"\n", b"\xff\xfe", b"\xef\xbb\xbf", b";;;;;;;;", b"\x1a"]
)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with a few byte-level edits: flip, insert, delete, cut, duplicate a span."""
    data = bytearray(original)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(positions) % (len(data) + 1)
        edit = draw(st.sampled_from(["flip", "insert", "delete", "cut", "duplicate"]))
        if edit == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            data[at:at] = draw(junk)
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 50))]
        elif edit == "cut":
            del data[at:]
        elif edit == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


cell_values = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(10**18), max_value=10**18),
    st.floats(allow_nan=True, allow_infinity=False),
    st.dates(),
    st.booleans(),
    st.none(),
)
cells = st.dictionaries(
    st.tuples(st.integers(1, 8), st.integers(1, 8)), cell_values, max_size=6
).filter(lambda found: all(_xlsx_safe(value) for value in found.values()))


def _xlsx_safe(value: Any) -> bool:
    """openpyxl refuses control characters in a cell (an error of the test's writer, not of
    the hub): those are tried as bytes of the file instead."""
    return not isinstance(value, str) or not any(ord(c) < 32 and c not in "\t\n\r" for c in value)


# --- the harness ----------------------------------------------------------------------------


class Watch:
    """Records every file opened outside the allowed folders while `active` (an audit hook:
    it cannot be removed, so it stays idle between cases)."""

    def __init__(self) -> None:
        self.active = False
        self.allowed: tuple[str, ...] = ()
        self.outside: list[str] = []
        sys.addaudithook(self.hook)

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event != "open" or not isinstance(args[0], (str, bytes, Path)):
            return
        path = os.path.realpath(os.fsdecode(args[0]))
        if not path.startswith(self.allowed):
            self.outside.append(path)


WATCH = Watch()


def installed_code() -> tuple[str, ...]:
    """Where Python, the virtualenv and the hub's code live (imports and zoneinfo open them)."""
    places = {
        str(REPO_ROOT),
        sys.prefix,
        sys.base_prefix,
        *sysconfig.get_paths().values(),
        "/usr/share/zoneinfo",
        "/etc/localtime",
        "/dev/urandom",
        "/proc/self",
        "/sys/fs/cgroup",
    }
    return tuple(os.path.realpath(place) for place in places)


def run_case(
    home: Path, datafix: Path, inbox: Path, action: Callable[[], object]
) -> BaseException | None:
    """Run `action` under the watchdog and the audit hook; the hub's own error, or None."""
    outcome: dict[str, BaseException] = {}

    def target() -> None:
        try:
            action()
        except BaseException as error:  # judged below, in the test's thread
            outcome["error"] = error

    WATCH.allowed = (
        *installed_code(),
        os.path.realpath(home),
        os.path.realpath(inbox),
        os.path.realpath(datafix.parent),
        os.path.realpath(tempfile.gettempdir()),
    )
    WATCH.outside.clear()
    WATCH.active = True
    try:
        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(WATCHDOG)
    finally:
        WATCH.active = False
    assert not worker.is_alive(), f"hang: the case ran over {WATCHDOG:.0f} s"
    assert not WATCH.outside, f"read outside the inbox: {sorted(set(WATCH.outside))[:5]}"
    error = outcome.get("error")
    if error is not None and not isinstance(error, ConnectorError):
        raise AssertionError(f"traceback: {type(error).__name__}: {error}") from error
    return error


def check_and_load(
    home: Path, datafix: Path, inbox: Path, source: str, content: bytes | None = None
) -> None:
    """`datafix check`, then what `datafix preview` and a load run: pull + normalise, with
    the conservation of rows; a refusal names the file and the problem. For a CSV without
    quotes (`content`), no accepted row comes from a line with fewer fields than the header
    (padded with blanks)."""
    from pipelines.lib.checks import check_datafix
    from pipelines.lib.datafixes import load_datafix
    from pipelines.lib.stages import normalise, pull

    def action() -> None:
        problems = check_datafix(datafix)
        for problem in problems:
            assert str(problem.file) == str(datafix) and problem.message, problem
        loaded = load_datafix(datafix)
        normalised = normalise(loaded, pull(loaded, "tenants"))
        batch = normalised.batch
        assert batch is not None
        assert batch.read == len(batch.rows) + len(batch.rejects)
        if content is not None and b'"' not in content and b"\r\n" in content[:200]:
            lines = content.split(b"\n")  # the hub numbers lines by their `\n`
            for where in batch.rows["source_row"]:
                line = lines[int(where.rsplit(":", 1)[1]) - 1]
                assert line.count(b";") >= len(HEADER) - 1, f"{where} padded: {line!r}"
        assert set(batch.rejects["source_row"]) <= {
            f"{source}:{line}" for line in range(1, 100_000)
        } | {f"{source}:Sheet:{line}" for line in range(1, 100_000)}

    error = run_case(home, datafix, inbox, action)
    if error is not None:
        message = str(error)
        assert source in message or str(datafix) in message or LANDLORD in message, message
        assert len(message) > len(source) + 10, message  # says what is wrong, not only where


@pytest.fixture
def landlord_folders(hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    folder = hub_home.parent / "datafixes"
    folder.mkdir(exist_ok=True)
    monkeypatch.setenv("DATAFIX_DATAFIXES_DIR", str(folder))
    inbox = hub_home / "inbox" / LANDLORD
    inbox.mkdir(parents=True, exist_ok=True)
    return folder, inbox


@seed(12)
@CASES
@given(content=mutated(csv_bytes()))
def test_mutated_csv_exports(
    hub_home: Path, landlord_folders: tuple[Path, Path], content: bytes
) -> None:
    folder, inbox = landlord_folders
    datafix = folder / f"{LANDLORD}.yaml"
    datafix.write_text(datafix_text("csv"), encoding="utf-8")
    (inbox / "locataires.csv").write_bytes(content)
    check_and_load(hub_home, datafix, inbox, "locataires.csv", content)


@seed(12)
@settings(CASES, max_examples=25)
@given(changed=cells, flips=st.booleans(), data=st.data())
def test_mutated_workbooks(
    hub_home: Path,
    landlord_folders: tuple[Path, Path],
    changed: dict[tuple[int, int], Any],
    flips: bool,
    data: st.DataObject,
) -> None:
    folder, inbox = landlord_folders
    datafix = folder / f"{LANDLORD}.yaml"
    datafix.write_text(datafix_text("xlsx"), encoding="utf-8")
    content = xlsx_bytes(changed)
    if flips:
        content = data.draw(mutated(content))
    (inbox / "locataires.xlsx").write_bytes(content)
    check_and_load(hub_home, datafix, inbox, "locataires.xlsx")


def _bomb(depth: int) -> str:
    lines = ['bomb0: &b0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, depth + 1):
        lines.append(f"bomb{level}: &b{level} [" + ", ".join([f"*b{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# hostile fragments a mutation may put in a datafix: alias bombs, deep nesting, patterns a
# backtracking engine runs for ever on, a huge document, hostile `${VARIABLES}`
HOSTILE = st.sampled_from(
    [
        _bomb(8),
        _bomb(4),
        "deep: " + "[" * 5000 + "]" * 5000 + "\n",
        "deep: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
        "notes: |\n" + "  lorem ipsum\n" * 120_000,
        '      - {column: Nom, matches: "(?=a)(a+)+$"}\n',
        '      - {column: Nom, matches: "(a)\\\\1"}\n',
        '      - {column: Nom, matches: "^(a+)+$"}\n',
        "    path: ${HOME}/../../etc/passwd\n",
        "    path: ../../../../etc/passwd\n",
        "    path: /etc/passwd\n",
        "inbox: /etc\n",
    ]
)


def check_datafix_text(home: Path, landlord_folders: tuple[Path, Path], text: bytes) -> None:
    """`check_and_load` of the datafix `text` over the well-formed tenants CSV."""
    folder, inbox = landlord_folders
    datafix = folder / f"{LANDLORD}.yaml"
    datafix.write_bytes(text)
    (inbox / "locataires.csv").write_bytes(csv_bytes())
    check_and_load(home, datafix, inbox, "locataires.csv")


@st.composite
def hostile_datafix(draw: st.DrawFn) -> bytes:
    """The datafix with a hostile fragment put in at a line boundary, then byte mutations."""
    lines = datafix_text("csv").splitlines(keepends=True)
    at = draw(st.integers(0, len(lines)))
    text = "".join([*lines[:at], draw(HOSTILE), *lines[at:]]).encode("utf-8")
    return draw(mutated(text)) if draw(st.booleans()) else text


@seed(12)
@settings(CASES, max_examples=30)
@given(text=hostile_datafix())
def test_hostile_datafixes(
    hub_home: Path, landlord_folders: tuple[Path, Path], text: bytes
) -> None:
    check_datafix_text(hub_home, landlord_folders, text)


@seed(12)
@CASES
@given(text=mutated(datafix_text("csv").encode("utf-8")))
def test_mutated_datafixes(
    hub_home: Path, landlord_folders: tuple[Path, Path], text: bytes
) -> None:
    check_datafix_text(hub_home, landlord_folders, text)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("locataires.csv", csv_bytes()[:-9], id="torn-csv"),
        pytest.param("locataires.csv", b"\x00" * 512, id="nul-csv"),
        pytest.param("locataires.csv", csv_bytes()[:90], id="header-only-ish"),
    ],
)
def test_the_command_on_broken_inputs(
    hub_home: Path, landlord_folders: tuple[Path, Path], name: str, content: bytes
) -> None:
    folder, inbox = landlord_folders
    (folder / f"{LANDLORD}.yaml").write_text(datafix_text("csv"), encoding="utf-8")
    (inbox / name).write_bytes(content)
    for command in (["check", str(folder / f"{LANDLORD}.yaml")], ["preview", LANDLORD]):
        completed = subprocess.run(
            [DATAFIX, *command],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=os.environ.copy(),
        )
        output = completed.stdout + completed.stderr
        assert "Traceback" not in output, output
        assert completed.returncode in (0, 1), output
        if completed.returncode == 1:
            assert name in output or LANDLORD in output, output
