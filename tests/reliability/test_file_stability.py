"""Issue 12, file stability: a file still being written is never loaded as if it were whole.

A CSV cut in the middle of its last line (a copy still running) loads every complete row and
quarantines the torn one as `truncated_row`, naming the file and line; a short line inside a
file is quarantined too, never padded with blanks; a file whose size or modification time keeps
changing is waited for, then left for the next run with a message saying so. Everything runs
through the `datafix` command, on real files.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from tests.landlords.common import connected, datafix, datafix_ok, live_rows
from tests.reliability.tenants_export import HOUSEHOLD_SIZE, TENANT_FIELDS

LANDLORD = "stable-habitat"
HEADER = "N° locataire;Nom;Prénom;Date d'entrée;Statut;Nb pers."
ROWS = [
    "T001;Martin;Léa;01/02/2020;ACT;2",
    "T002;Durand;Hugo;15/06/2018;SOR;1",
    "T003;Petit;Zoé;01/01/2026;ACT;1",
    "T004;Moreau;Jules;03/03/2021;ACT;4",
]


def write_datafix(home: Path, extra_source_settings: str = "") -> dict[str, str]:
    """The landlord's datafix in a folder of its own; returns the environment pointing at it."""
    folder = home.parent / "datafixes"
    folder.mkdir(exist_ok=True)
    (folder / f"{LANDLORD}.yaml").write_text(
        f"""landlord:
  id: {LANDLORD}
  name: Stable Habitat (test)
sources:
  locataires:
    kind: csv
    path: locataires.csv{extra_source_settings}
entities:
  tenants:
    source: locataires
    max_quarantine_percent: 50
{TENANT_FIELDS}{HOUSEHOLD_SIZE}""",
        encoding="utf-8",
    )
    return {"DATAFIX_DATAFIXES_DIR": str(folder)}


def drop(home: Path, content: bytes, *, age: float = 60.0) -> Path:
    """Write the landlord's export into its inbox, `age` seconds old (a finished copy)."""
    inbox = home / "inbox" / LANDLORD
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / "locataires.csv"
    path.write_bytes(content)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def tenants_and_quarantine(home: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The tenants loaded (their references, sorted) and the quarantine rows (row, reason,
    message) in source order."""
    url = f"sqlite:///{home}/warehouse.db"
    tenants = [ref for (ref,) in live_rows(url, LANDLORD, "tenants", "tenant_ref")]
    with connected(url) as conn:
        quarantined = conn.execute(
            sa.text("SELECT source_row, reason, message FROM quarantine ORDER BY source_row")
        ).all()
    return tenants, [tuple(row) for row in quarantined]


def test_a_csv_cut_in_the_middle_of_its_last_line_quarantines_that_row(hub_home: Path) -> None:
    env = write_datafix(hub_home)
    whole = "\r\n".join([HEADER, *ROWS]).encode("cp1252")
    torn = whole[: whole.rindex(b";4")]  # "T004;…;ACT": the copy stopped before ";4"
    drop(hub_home, torn)

    preview = datafix_ok("preview", LANDLORD, env=env)
    assert "read 4, accepted 3, quarantined 1" in preview.stdout
    assert "locataires.csv:5  [truncated_row]" in preview.stdout

    datafix_ok("run", LANDLORD, "--no-push", env=env)
    tenants, quarantined = tenants_and_quarantine(hub_home)
    assert tenants == ["T001", "T002", "T003"]  # the torn row is not loaded padded with blanks
    assert [(row, reason) for row, reason, _ in quarantined] == [
        ("locataires.csv:5", "truncated_row")
    ]
    message = quarantined[0][2]
    assert "locataires.csv:5" in message and "cut" in message


def test_an_unterminated_quote_at_the_end_is_a_torn_row_the_rest_loads(hub_home: Path) -> None:
    env = write_datafix(hub_home)
    rows = [*ROWS[:3], 'T004;"Moreau']  # the copy stopped inside a quoted value
    drop(hub_home, "\n".join([HEADER, *rows]).encode("utf-8"))
    preview = datafix_ok("preview", LANDLORD, env=env)
    assert "read 4, accepted 3, quarantined 1" in preview.stdout
    assert "locataires.csv:5  [truncated_row]" in preview.stdout


def test_a_short_line_inside_a_csv_is_quarantined_not_padded(hub_home: Path) -> None:
    env = write_datafix(hub_home)
    rows = [ROWS[0], "T002;Durand;Hugo;15/06/2018;SOR", *ROWS[2:]]  # a field lost mid-file
    drop(hub_home, ("\n".join([HEADER, *rows]) + "\n").encode("utf-8"))
    datafix_ok("run", LANDLORD, "--no-push", env=env)
    tenants, quarantined = tenants_and_quarantine(hub_home)
    assert tenants == ["T001", "T003", "T004"]
    assert [(row, reason) for row, reason, _ in quarantined] == [("locataires.csv:3", "short_row")]
    assert "5 fields where the header has 6" in quarantined[0][2]


def test_a_file_still_growing_is_not_read_and_is_read_once_it_settles(hub_home: Path) -> None:
    env = write_datafix(hub_home, "\n    settle_seconds: 1")
    path = drop(hub_home, ("\n".join([HEADER, *ROWS]) + "\n").encode("utf-8"), age=0)
    stop = threading.Event()

    def keep_copying() -> None:
        number = 5
        while not stop.is_set():
            with path.open("ab") as stream:
                stream.write(f"T{number:03d};Nom{number};Léa;01/02/2020;ACT;1\n".encode())
            number += 1
            stop.wait(0.2)

    writer = threading.Thread(target=keep_copying, daemon=True)
    writer.start()
    try:
        growing = datafix("preview", LANDLORD, env=env)
    finally:
        stop.set()
        writer.join(timeout=10)
    assert growing.returncode == 1, growing.stdout + growing.stderr
    assert "locataires.csv" in growing.stdout and "still being written" in growing.stdout
    assert "accepted" not in growing.stdout  # nothing of the moving file was read
    assert "Traceback" not in growing.stdout + growing.stderr

    # the copy is over: a file younger than the interval is waited for, then read whole
    lines = path.read_bytes().count(b"\n")
    settled = datafix_ok("preview", LANDLORD, env=env)
    assert f"read {lines - 1}, accepted {lines - 1}, quarantined 0" in settled.stdout


def test_a_young_file_is_waited_for_then_read(hub_home: Path) -> None:
    env = write_datafix(hub_home, "\n    settle_seconds: 1.5")
    path = drop(hub_home, ("\n".join([HEADER, *ROWS[:2]]) + "\n").encode("utf-8"), age=0)

    def finish_the_copy() -> None:
        time.sleep(0.5)
        with path.open("ab") as stream:
            stream.write(("\n".join(ROWS[2:]) + "\n").encode("utf-8"))

    writer = threading.Thread(target=finish_the_copy)
    writer.start()
    try:
        preview = datafix("preview", LANDLORD, env=env)
    finally:
        writer.join(timeout=10)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "read 4, accepted 4, quarantined 0" in preview.stdout


def test_a_first_line_longer_than_the_header_is_refused_not_cut(hub_home: Path) -> None:
    # pandas dropped the extra value of a first data line silently (a ParserWarning only)
    env = write_datafix(hub_home)
    rows = [ROWS[0] + ";extra", *ROWS[1:]]
    drop(hub_home, ("\n".join([HEADER, *rows]) + "\n").encode("utf-8"))
    preview = datafix("preview", LANDLORD, env=env)
    assert preview.returncode == 1, preview.stdout + preview.stderr
    assert "locataires.csv:2: more fields than the header" in preview.stdout
