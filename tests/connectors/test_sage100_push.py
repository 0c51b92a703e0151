"""`Sage100FileSink`: the import file's content, its name, its atomic appearance, read-back."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import openpyxl
import pytest

from connectors.delivery import OutgoingRecord
from connectors.errors import ConfigError
from connectors.files.export import clean_stale_temporaries, is_temporary
from connectors.sage.sage100 import Sage100FileSink

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")

COLUMNS = ["JO_Num", "EC_Date", "CT_Num", "EC_Intitule", "EC_Sens", "EC_Montant"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    return folder


def sink(drop: Path, archive: Path | None = None, **options: object) -> Sage100FileSink:
    return Sage100FileSink(
        "sage",
        drop_folder=drop,
        file_prefix="HUB_ECR",
        columns=COLUMNS,
        amount_columns=["EC_Montant"],
        archive_folders=[archive] if archive else [],
        **options,  # type: ignore[arg-type]
    )


def entry(number: int, *, label: str | None = None, cents: int | None = None) -> OutgoingRecord:
    fields = {
        "JO_Num": "VTE",
        "EC_Date": dt.date(2026, 3, 1) + dt.timedelta(days=number % 28),
        "CT_Num": f"LOC{number:05d}",
        "EC_Intitule": f"Loyer {number}" if label is None else label,
        "EC_Sens": number % 2,
        "EC_Montant": number * 100 + 7 if cents is None else cents,
    }
    return OutgoingRecord(f"E{number}", f"idem-{number}", fields)


def visible(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def test_csv_content_encoding_and_decimal_comma(drop: Path) -> None:
    records = [
        entry(1, label="Échéance février €", cents=123456),
        entry(2, label="-RETENUE", cents=-5),
        entry(3, label='=HYPERLINK("x")', cents=0),
    ]
    outcomes = sink(drop).send(records)
    assert [d.outcome for d in outcomes] == ["sent"] * 3
    (name,) = visible(drop)
    assert {d.peer_id for d in outcomes} == {name}
    raw = (drop / name).read_bytes()
    assert b"\xc9ch\xe9ance f\xe9vrier \x80" in raw  # cp1252: É é €
    assert raw.count(b"\r\n") == 4
    assert raw.decode("cp1252").splitlines() == [
        "JO_Num;EC_Date;CT_Num;EC_Intitule;EC_Sens;EC_Montant;HUB_ID",
        "VTE;02/03/2026;LOC00001;Échéance février €;1;1234,56;idem-1",
        "VTE;03/03/2026;LOC00002;'-RETENUE;0;-0,05;idem-2",
        'VTE;04/03/2026;LOC00003;"\'=HYPERLINK(""x"")";1;0,00;idem-3',
    ]


def test_date_format_ddmmyy_and_xlsx_numbers(drop: Path) -> None:
    sink(drop, date_format="ddmmyy").send([entry(1)])
    (name,) = visible(drop)
    assert (drop / name).read_text(encoding="cp1252").splitlines()[1].split(";")[1] == "020326"
    other = drop / "xlsx"
    other.mkdir()
    outcomes = sink(other, format="xlsx").send([entry(1, cents=-123456), entry(2, label="@x")])
    workbook = openpyxl.load_workbook(other / str(outcomes[0].peer_id))
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    assert rows[1] == ("VTE", "02/03/2026", "LOC00001", "Loyer 1", 1, -1234.56, "idem-1")
    assert rows[2][3] == "'@x"


def test_unwritable_record_is_dead_the_others_written(drop: Path) -> None:
    records = [entry(1), entry(2, label="maison 🏠"), entry(3)]
    outcomes = sink(drop).send(records)
    assert [d.outcome for d in outcomes] == ["sent", "dead", "sent"]
    assert "cp1252" in outcomes[1].message and "🏠" in outcomes[1].message
    text = (drop / visible(drop)[0]).read_text(encoding="cp1252")
    assert "idem-1" in text and "idem-3" in text and "idem-2" not in text


def test_name_is_deterministic_and_a_resend_makes_no_second_file(drop: Path, archive: Path) -> None:
    records = [entry(number) for number in range(1, 6)]
    target = sink(drop, archive)
    first = target.send(records)
    name = str(first[0].peer_id)
    assert name.startswith(f"HUB_ECR_{dt.date.today():%Y%m%d}_") and name.endswith(".csv")
    assert target.send(records)[0].peer_id == name
    assert visible(drop) == [name]
    shutil.move(drop / name, archive / name)  # Sage imported and archived it
    assert target.send(records)[0].peer_id == name
    assert visible(drop) == []
    other = target.send(records[:4])[0].peer_id
    assert other != name and visible(drop) == [other]


def test_read_back_finds_records_in_drop_and_archive_folders(drop: Path, archive: Path) -> None:
    target = sink(drop, archive)
    archived = [entry(1), entry(2, label="-x")]
    target.send(archived)
    shutil.move(drop / visible(drop)[0], archive / visible(drop)[0])
    xlsx = sink(drop, archive, format="xlsx").send([entry(3)])[0].peer_id
    newer = OutgoingRecord("E1", "idem-1-v2", entry(1).fields)
    held = target.read_back([*archived, entry(3), entry(4), newer])
    assert held == {"E1": visible(archive)[0], "E2": visible(archive)[0], "E3": xlsx}


def test_missing_drop_folder_and_unknown_fields_are_config_errors(drop: Path) -> None:
    with pytest.raises(ConfigError, match="drop folder"):
        sink(drop / "absent").send([entry(1)])
    record = OutgoingRecord("E1", "i", {"JO_Num": "VTE", "EC_Lettrage": "A"})
    with pytest.raises(ConfigError, match="EC_Lettrage"):
        sink(drop).send([record])
    assert visible(drop) == []


def test_batch_size_is_the_max_rows_per_file(drop: Path) -> None:
    assert sink(drop).batch_size(12_000) == 5_000
    assert sink(drop, max_rows_per_file=100).batch_size(40) == 40


def test_a_watcher_only_ever_sees_complete_files(drop: Path) -> None:
    rows_per_file = 10_000
    seen: dict[str, int] = {}
    stop = threading.Event()
    problems: list[str] = []

    def watch() -> None:
        while not stop.is_set():
            for name in visible(drop):
                if name in seen:
                    continue
                text = (drop / name).read_bytes().decode("cp1252")
                rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
                if len(rows) != rows_per_file + 1 or rows[-1][-1] != f"idem-end-{rows_per_file}":
                    problems.append(f"{name}: {len(rows)} rows, last {rows[-1]}")
                seen[name] = len(rows)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        target = sink(drop)
        for batch in range(5):
            records = [
                OutgoingRecord(f"E{n}", f"idem-{batch}-{n}", entry(n).fields)
                for n in range(1, rows_per_file)
            ]
            last = OutgoingRecord("END", f"idem-end-{rows_per_file}", entry(batch).fields)
            target.send([*records, last])
    finally:
        stop.set()
        watcher.join()
    assert problems == []
    assert len(visible(drop)) == 5
    assert len(seen) >= 1  # the watcher parsed files while they were being written


KILLED_WRITER = """
import sys, time
from connectors.files.export import write_csv_atomic
def rows():
    n = 0
    while True:  # never ends: the writer is killed mid-file
        n += 1
        if n % 50_000 == 0:
            time.sleep(0.01)
        yield ["VTE", "01/03/2026", f"LOC{n}", "Loyer", 1, "12,34", f"idem-{n}"]
write_csv_atomic(sys.argv[1], ["a", "b", "c", "d", "e", "f", "g"], rows(), encoding="cp1252")
"""


def test_a_writer_killed_mid_file_leaves_no_file_under_a_final_name(drop: Path) -> None:
    final = drop / "HUB_ECR_20260301_0123456789ab.csv"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(final)], cwd=REPO, env={**os.environ}
    )
    try:
        while True:  # until the temporary file holds more than a megabyte
            temporaries = [p for p in drop.iterdir() if is_temporary(p.name)]
            if temporaries and temporaries[0].stat().st_size > 1_000_000:
                break
            assert writer.poll() is None, "the writer ended before it was killed"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert visible(drop) == [] and not final.exists()
    assert clean_stale_temporaries(drop) == temporaries
    assert os.listdir(drop) == []
