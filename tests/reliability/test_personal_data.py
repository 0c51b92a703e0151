"""Issue 12, personal data kept in: tenants' names, e-mails, phones and IBANs (and the ledger
labels that carry names) appear nowhere under `DATAFIX_HOME` in plain text except the
warehouse's canonical personal columns; `quarantine.raw` keeps them encrypted, yet an operator
still reads and requeues the row; the home is 0700 and every file the hub writes 0600.

The personal values are read from the demo's source files with pandas and sqlite3, never
through the hub's code, and every file under the home is scanned as bytes (SQLite databases
table by table, since the warehouse rightly holds the canonical names).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import stat
from pathlib import Path

import pandas as pd
import pytest

from connectors.sandbox.demo_calendar import DemoCalendar
from connectors.sandbox.demo_files import write_demo_sources
from pipelines.lib.environment import REPO_ROOT
from tests.landlords.common import datafix, datafix_ok

# The warehouse columns allowed to hold personal data in plain text: the canonical model's
# personal columns (written out here, not read from the hub's model).
CANONICAL_PERSONAL = {
    ("tenants", "full_name"),
    ("ledger_entries", "label"),
    ("completions", "technician"),
    ("completions", "tenant_comment"),
}
LOIRE = "loire-habitat"
SQLITE_MAGIC = b"SQLite format 3\x00"


def loire_tenants(inbox: Path) -> pd.DataFrame:
    """The Loire tenants export as the landlord wrote it (cp1252, `;`), totals row dropped."""
    (path,) = inbox.glob("locataires_*.csv")
    frame = pd.read_csv(path, sep=";", encoding="cp1252", dtype="str", keep_default_na=False)
    return frame[frame["N° locataire"].str.match(r"^\d+$")]


def personal_values(inbox: Path) -> set[str]:
    """Every tenant name, e-mail, phone and IBAN of the file landlords, and the ledger labels
    that name a tenant, as the sources hold them."""
    values: set[str] = set()
    tenants = loire_tenants(inbox / LOIRE)
    for column in ("Nom  du locataire", "Courriel", "Téléphone", "IBAN"):
        values |= set(tenants[column])
    for number in set(tenants["Téléphone"]) | set(tenants["IBAN"]):
        values.add(number.replace(" ", ""))  # compact forms too
    (ledger_path,) = (inbox / LOIRE).glob("quittancement_*.csv")
    ledger = pd.read_csv(ledger_path, sep=";", encoding="cp1252", dtype="str")
    labels = ledger["Libellé"].dropna()
    values |= set(labels[labels.str.contains("Virement reçu de")])
    with sqlite3.connect(inbox / "cite-jardins" / "erp.db") as erp:
        for nom, prenom in erp.execute("SELECT nom, prenom FROM tiers"):
            values |= {nom, f"{nom} {prenom}"}  # raw rows keep `nom` in a cell of its own
        values |= {
            label
            for (label,) in erp.execute("SELECT libelle FROM ecritures")
            if label and "Virement reçu de" in label
        }
    values.discard("")
    assert len(values) > 300, "the demo's sources should carry names, e-mails, phones, IBANs"
    return values


def needles(values: set[str]) -> re.Pattern[bytes]:
    """One pattern finding any value as UTF-8 or as JSON with non-ASCII escaped (`\\u00e9`)."""
    forms = {value.encode() for value in values}
    forms |= {json.dumps(value)[1:-1].encode() for value in values}
    return re.compile(b"|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))


def sqlite_hits(path: Path, pattern: re.Pattern[bytes], warehouse: bool) -> list[str]:
    """Cells of a SQLite database matching `pattern` (the warehouse's canonical personal
    columns excepted); the database is opened read-only, its WAL included."""
    hits = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as database:
        tables = [
            row[0]
            for row in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            columns = [row[1] for row in database.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                if warehouse and (table, column) in CANONICAL_PERSONAL:
                    continue
                for (value,) in database.execute(f'SELECT "{column}" FROM "{table}"'):
                    text = value if isinstance(value, bytes) else str(value).encode()
                    found = pattern.search(text)
                    if found:
                        hits.append(f"{path.name}:{table}.{column}: {found.group().decode()!r}")
                        break
    return hits


def plain_text_hits(home: Path, pattern: re.Pattern[bytes]) -> list[str]:
    """Where the personal values appear under `home`, the inbox (the landlord's own drop)
    excepted."""
    hits = []
    inbox = home / "inbox"
    databases = {p for p in home.rglob("*") if p.is_file() and p.read_bytes()[:16] == SQLITE_MAGIC}
    for path in sorted(home.rglob("*")):
        if not path.is_file() or path.is_relative_to(inbox):
            continue
        if path in databases:
            hits += sqlite_hits(path, pattern, warehouse=path.name == "warehouse.db")
            continue
        # a database's WAL, journal or shared memory is read through the database itself
        if any(
            path.name == f"{db.name}{suffix}"
            for db in databases
            for suffix in ("-wal", "-shm", "-journal")
        ):
            continue
        found = pattern.search(path.read_bytes())
        if found:
            hits.append(f"{path.relative_to(home)}: {found.group()[:60]!r}")
    return hits


@pytest.mark.slow
@pytest.mark.usefixtures("sandbox")
def test_after_the_demo_no_personal_value_is_in_plain_text_under_the_home(hub_home: Path) -> None:
    completed = datafix_ok("demo")
    values = personal_values(hub_home / "inbox")
    pattern = needles(values)
    # the scan finds them where they belong: the sources and the canonical columns
    month = DemoCalendar.from_environment().export_month  # the demo day's: today's
    source = hub_home / "inbox" / LOIRE / f"locataires_{month}.csv"
    assert pattern.search(source.read_bytes()) is not None
    with sqlite3.connect(hub_home / "warehouse.db") as warehouse:
        names = [row[0] for row in warehouse.execute("SELECT full_name FROM tenants")]
    assert any(pattern.search(name.encode()) for name in names)
    hits = plain_text_hits(hub_home, pattern)
    assert not hits, "personal data in plain text:\n" + "\n".join(hits[:30])
    # nor in what the command printed
    printed = pattern.search((completed.stdout + completed.stderr).encode())
    assert printed is None, printed


def quarantined_tenants(home: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(home / "warehouse.db") as warehouse:
        return warehouse.execute(
            "SELECT source_row, raw, raw_hash FROM quarantine"
            " WHERE landlord_id = ? AND entity = 'tenants' ORDER BY source_row",
            (LOIRE,),
        ).fetchall()


def test_a_quarantined_row_is_encrypted_at_rest_and_still_fixed_and_requeued(
    hub_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_demo_sources(hub_home)  # the landlord's nightly drop
    inbox = hub_home / "inbox" / LOIRE
    datafix_ok("pull", LOIRE)
    tenants = loire_tenants(inbox)
    # the row the demo seeds with an unknown status code (SUS), with its personal cells
    suspended = tenants[tenants["Statut"] == "SUS"].iloc[0]
    personal = [suspended[c] for c in ("Nom  du locataire", "Courriel", "Téléphone", "IBAN")]
    rows = quarantined_tenants(hub_home)
    (raw_text,) = [raw for _, raw, _ in rows if '"SUS"' in raw]
    raw = json.loads(raw_text)
    assert raw["Statut"] == "SUS"  # what is not personal stays readable
    assert raw["N° locataire"] == suspended["N° locataire"]
    for value in personal:
        assert value not in raw_text, f"{value!r} kept in plain text in quarantine.raw"
    for _, text, _ in rows:
        assert not any(value in text for value in set(tenants["Nom  du locataire"]))

    # the operator reads the row, decrypted with the key
    shown = datafix_ok("quarantine", LOIRE, "--entity", "tenants")
    assert suspended["Nom  du locataire"] in shown.stdout
    assert "SUS" in shown.stdout

    # a second pull of the same files keeps one quarantine row per rejected row, not two
    datafix_ok("pull", LOIRE, "--full-refresh")
    assert [(r, h) for r, _, h in quarantined_tenants(hub_home)] == [(r, h) for r, _, h in rows]

    # landlord IT maps the code, then requeues: the row loads with its name as the source has it
    datafixes = hub_home / "datafixes"
    datafixes.mkdir()
    text = (REPO_ROOT / "datafixes" / f"{LOIRE}.yaml").read_text()
    fixed = text.replace("SOR: left # sorti", "SOR: left # sorti\n          SUS: active")
    assert fixed != text
    (datafixes / f"{LOIRE}.yaml").write_text(fixed)
    monkeypatch.setenv("DATAFIX_DATAFIXES_DIR", str(datafixes))
    requeued = datafix_ok("requeue", LOIRE, "--entity", "tenants")
    assert re.search(r"requeued: 1 loaded", requeued.stdout), requeued.stdout
    with sqlite3.connect(hub_home / "warehouse.db") as warehouse:
        loaded = warehouse.execute(
            "SELECT full_name, status FROM tenants WHERE landlord_id = ? AND tenant_ref = ?",
            (LOIRE, suspended["N° locataire"]),
        ).fetchall()
    assert loaded == [(suspended["Nom  du locataire"], "active")]


def test_the_home_is_private_0700_and_the_files_the_hub_writes_0600(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"  # not there yet: the hub creates it
    env = {"DATAFIX_HOME": str(home)}
    first = datafix("pull", LOIRE, env=env)  # nothing dropped yet: the hub makes its folders
    assert home.is_dir(), first.stdout + first.stderr
    # the landlord's drop lands in the inbox the hub made
    drop = tmp_path / "drop"
    write_demo_sources(drop)
    inbox = home / "inbox" / LOIRE
    for folder in (inbox.parent, inbox):  # made by the hub, else by the drop, privately
        if not folder.is_dir():
            folder.mkdir(mode=0o700)
    dropped = set()
    for path in (drop / "inbox" / LOIRE).iterdir():
        dropped.add(Path(shutil.copy(path, inbox / path.name)))
    datafix_ok("pull", LOIRE, env=env)
    assert (home / "warehouse.db").is_file()
    assert any(home.rglob("dagster.yaml"))
    loose = []
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir() and mode != 0o700:
            loose.append(f"{path.relative_to(tmp_path)}/ {mode:o}")
        elif path.is_file() and path not in dropped and mode != 0o600:
            loose.append(f"{path.relative_to(tmp_path)} {mode:o}")
    assert not loose, "readable by others:\n" + "\n".join(loose)


# --- the key and the sealed cells, as functions -----------------------------------------------


def test_the_generated_key_is_private_made_once_and_reused(hub_home: Path) -> None:
    from pipelines.lib.personal import KEY_FILE, RawSealer

    plain = json.dumps({"N° locataire": "0045012", "Nom": "MONTAGNAC Capucine"})
    sealed = RawSealer().seal(plain, {"N° locataire"})
    key_file = hub_home / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "MONTAGNAC" not in sealed and "0045012" in sealed
    # another process (a new sealer) reads the same key: the row opens, the hash is the same
    again = RawSealer()
    assert again.open(sealed, "quarantine row 1") == json.loads(plain)
    assert again.raw_hash(plain) == RawSealer().raw_hash(plain)
    assert len(list(hub_home.glob("*quarantine.key*"))) == 1


def test_a_configured_key_wins_and_a_wrong_one_is_named_not_echoed(
    hub_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    from connectors.errors import ConfigError
    from pipelines.lib.personal import KEY_FILE, KEY_VARIABLE, RawSealer

    plain = json.dumps({"IBAN": "FR76 3000 4012 3400 0000 4501 204"})
    monkeypatch.setenv(KEY_VARIABLE, Fernet.generate_key().decode())
    sealed = RawSealer().seal(plain, set())
    assert not (hub_home / KEY_FILE).exists()  # nothing generated when the key is configured
    # sealed with that key, the row does not open with another: the error says which key
    monkeypatch.setenv(KEY_VARIABLE, Fernet.generate_key().decode())
    with pytest.raises(ConfigError, match=r"quarantine row 7: cell `IBAN` .* another key"):
        RawSealer().open(sealed, "quarantine row 7")
    monkeypatch.setenv(KEY_VARIABLE, "hunter2-not-a-key")
    with pytest.raises(ConfigError, match=KEY_VARIABLE) as refused:
        RawSealer()
    assert "hunter2" not in str(refused.value)
