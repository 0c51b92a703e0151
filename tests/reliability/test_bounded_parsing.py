"""Issue 12, bounded parsing: hostile or broken input gets a message, never a traceback or a hang.

A YAML alias bomb, a 50 MB datafix, a `matches:` pattern with a lookahead (and one that makes a
backtracking engine run for ever), a header-only export, a file of NUL bytes, a file the hub may
not read: each is refused (or read) with a message naming the file and the problem. Through the
`datafix` command where a user would meet them, every call under a bounded wait.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from connectors.errors import SourceDataError
from connectors.files.client import read_csv
from tests.landlords import common
from tests.reliability.tenants_export import TENANT_FIELDS

LANDLORD = "bounded-habitat"
HEADER = "N° locataire;Nom;Prénom;Date d'entrée;Statut"
ROWS = ["T001;Martin;Léa;01/02/2020;ACT", "T002;Durand;Hugo;15/06/2018;SOR"]
WAIT = 120  # seconds: a hang fails the test instead of blocking the suite


def datafix(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command under a bounded wait (TimeoutExpired fails the test: a hang)."""
    return common.datafix(*args, env=env, timeout=WAIT)


def landlord(home: Path, *, skip_matches: str = "^total", rows: bytes | None = None) -> dict:
    folder = home.parent / "datafixes"
    folder.mkdir(exist_ok=True)
    path = folder / f"{LANDLORD}.yaml"
    path.write_text(
        f"""landlord:
  id: {LANDLORD}
  name: Bounded Habitat (test)
sources:
  locataires:
    kind: csv
    path: locataires.csv
    settle_seconds: 0
entities:
  tenants:
    source: locataires
    max_quarantine_percent: 90
    skip_rows:
      - {{column: Nom, matches: '{skip_matches}'}}
{TENANT_FIELDS}""",
        encoding="utf-8",
    )
    inbox = home / "inbox" / LANDLORD
    inbox.mkdir(parents=True, exist_ok=True)
    content = rows if rows is not None else ("\n".join([HEADER, *ROWS]) + "\n").encode()
    (inbox / "locataires.csv").write_bytes(content)
    return {"DATAFIX_DATAFIXES_DIR": str(folder), "_path": str(path)}


def preview_with_a_long_name(
    home: Path, skip_matches: str, *, length: int
) -> subprocess.CompletedProcess[str]:
    """`datafix preview` of the rows plus a third whose name is `length` × `a` then `!`."""
    rows = [*ROWS, "T003;" + "a" * length + "!;Zoé;01/01/2026;ACT"]
    content = ("\n".join([HEADER, *rows]) + "\n").encode()
    env = landlord(home, skip_matches=skip_matches, rows=content)
    env.pop("_path")
    return datafix("preview", LANDLORD, env=env)


def no_traceback(completed: subprocess.CompletedProcess[str]) -> str:
    output = completed.stdout + completed.stderr
    assert "Traceback" not in output and "MemoryError" not in output, output
    return output


def test_a_yaml_alias_bomb_is_refused_with_the_limit(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text("\n".join(lines) + "\n", encoding="utf-8")
    checked = datafix("check", str(bomb), env={})
    output = no_traceback(checked)
    assert checked.returncode == 1
    assert f"{bomb}:" in output and "aliases are expanded" in output and "100,000" in output


def test_a_50_mb_datafix_is_refused_unparsed(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("w", encoding="utf-8") as stream:
        stream.write("landlord: {id: huge, name: Huge}\nnotes:\n")
        line = "  - " + "x" * 95 + "\n"
        stream.write(line * (50 * 1024 * 1024 // len(line)))
    started = time.monotonic()
    checked = datafix("check", str(huge), env={})
    output = no_traceback(checked)
    assert checked.returncode == 1
    assert f"{huge}:1:1:" in output and "above the 1 MB limit" in output
    assert time.monotonic() - started < WAIT


def test_a_lookahead_in_matches_is_a_check_error_with_its_position(hub_home: Path) -> None:
    env = landlord(hub_home, skip_matches="(?=a)(a+)+$")
    checked = datafix("check", env.pop("_path"), env=env)
    output = no_traceback(checked)
    assert checked.returncode == 1
    # the pattern's line and column in the file, the construct, and how to rewrite it
    assert f"{LANDLORD}.yaml:14:" in output and "lookahead" in output and "RE2" in output


def test_a_lookahead_pattern_on_a_long_value_is_refused_not_run_for_ever(hub_home: Path) -> None:
    # Arrow's RE2 refuses the lookahead, so pandas ran it with Python's backtracking `re`:
    # 2^40 steps on this cell. The datafix is refused before anything is read.
    preview = preview_with_a_long_name(hub_home, "(?=a)(a+)+$", length=40)
    output = no_traceback(preview)
    assert preview.returncode == 1
    assert f"{LANDLORD}.yaml:14:" in output and "lookahead" in output


def test_a_backtracking_pattern_runs_in_linear_time(hub_home: Path) -> None:
    # a guard: without lookaround, the nested repetition is matched by RE2 in linear time
    preview = preview_with_a_long_name(hub_home, "^(a+)+$", length=5000)
    no_traceback(preview)
    assert preview.returncode == 0, preview.stdout
    assert "read 3, accepted 3" in preview.stdout  # no row matched the pattern: none skipped


def test_a_header_only_export_says_no_data_rows(hub_home: Path) -> None:
    env = landlord(hub_home, rows=(HEADER + "\r\n").encode())
    env.pop("_path")
    preview = datafix("preview", LANDLORD, env=env)
    output = no_traceback(preview)
    assert preview.returncode == 1
    assert "locataires.csv: no data rows" in output
    assert "row_count" not in output and "landlord_id" not in output


@pytest.mark.parametrize(
    ("content", "what"),
    [
        pytest.param(b"\x00" * 4096, "NUL bytes", id="nul-bytes"),
        pytest.param(b"PK\x03\x04" + bytes(range(256)) * 8, "Excel workbook", id="a-zip"),
        pytest.param(bytes(range(1, 32)) * 100, "control characters", id="binary-junk"),
    ],
)
def test_a_binary_file_is_not_a_text_csv_file(hub_home: Path, content: bytes, what: str) -> None:
    env = landlord(hub_home, rows=content)
    env.pop("_path")
    preview = datafix("preview", LANDLORD, env=env)
    output = no_traceback(preview)
    assert preview.returncode == 1
    assert "locataires.csv: not a text/CSV file" in output and what in output


def test_an_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tests run as root, who reads any file: the operating system's refusal is simulated
    path = tmp_path / "locataires.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-8")
    real_open = Path.open

    def refusing_open(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", refusing_open)
    with pytest.raises(SourceDataError, match=r"^locataires\.csv: the hub may not read"):
        read_csv([path])


def test_a_full_disk_while_writing_an_export_leaves_nothing_half_written(tmp_path: Path) -> None:
    # the file size limit (RLIMIT_FSIZE) stands for a full disk: the write fails part-way
    script = f"""
import resource, signal, sys
from pathlib import Path
from connectors.errors import RetriableError
from connectors.files.export import write_csv_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
rows = [[f"F{{n:06d}}", "Martin", "12,50"] for n in range(5000)]
try:
    write_csv_atomic(Path({str(tmp_path / "drop" / "factures.csv")!r}), ["Ref", "Nom", "HT"], rows)
except RetriableError as error:
    print("refused:", error)
    sys.exit(3)
"""
    (tmp_path / "drop").mkdir()
    completed = common.python("-c", script, timeout=WAIT)
    output = no_traceback(completed)
    assert completed.returncode == 3, output
    assert "factures.csv: the disk is full" in output and "nothing was written" in output
    assert list((tmp_path / "drop").iterdir()) == []  # no partial file, no temporary left
