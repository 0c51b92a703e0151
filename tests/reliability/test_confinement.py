"""Issue 12, *Why* "path and environment escape": a source's `path` and a datafix's `inbox` stay
inside that landlord's inbox, and `${VAR}` reads only `DATAFIX_*` variables or the names the
datafix declares under `secrets:`.

Each escape is a `datafix check` error at the setting (file:line:column) that never echoes the
target's content, and the run (`load_datafix`, what every run does first) refuses it the same
way. An audit hook proves nothing outside the inbox was even opened.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.secrets import forget_all
from pipelines.lib.checks import check_datafix
from pipelines.lib.datafixes import DatafixError, load_datafix

LANDLORD = "confine-habitat"
OUTSIDE = "/etc/passwd"  # a file every Linux host has, readable by the tests
OUTSIDE_LINE = "root:x:0:0"  # its first line: must never show in a message

_opened: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _opened is not None and event == "open" and args and isinstance(args[0], str | Path):
        _opened.append(os.path.realpath(os.fspath(args[0])))


sys.addaudithook(_audit)


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every file the code under test opens (realpath), from Python's audit hook."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def write(folder: Path, *, path: str = "locataires.csv", top: str = "", url: str = "") -> Path:
    """A datafix of LANDLORD reading `path` (a CSV), with `top` lines (inbox, secrets) and
    optionally a `sql` source at `url` for ledger entries."""
    sql = (
        f"""
  erp:
    kind: sql
    url: "{url}"
    table: ecritures"""
        if url
        else ""
    )
    ledger = (
        """
  ledger_entries:
    source: erp
    fields: {entry_ref: id, tenant_ref: t, entry_date: d, kind: {const: rent}, amount_cents: a}"""
        if url
        else ""
    )
    text = f"""\
landlord: {{id: {LANDLORD}, name: Confine Habitat}}
{top}
sources:
  locataires:
    kind: csv
    path: "{path}"{sql}
entities:
  tenants:
    source: locataires
    fields: {{tenant_ref: root, status: {{const: active}}}}{ledger}
"""
    datafix = folder / f"{LANDLORD}.yaml"
    datafix.write_text(text, encoding="utf-8")
    return datafix


def line_of(datafix: Path, needle: str) -> int:
    lines = datafix.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


@pytest.fixture
def inbox(hub_home: Path) -> Path:
    folder = hub_home / "inbox" / LANDLORD
    folder.mkdir(parents=True)
    (folder / "locataires.csv").write_text("root;x\nT1;a\n", encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def no_operator_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production default: only `$DATAFIX_HOME/inbox/<landlord>` is allowed."""
    monkeypatch.delenv("DATAFIX_INBOX_ROOTS", raising=False)


def refused_without_reading(datafix: Path, opened: list[str], setting: str) -> str:
    """`datafix check` reports a problem at `setting`'s line, reads nothing outside the inbox
    and echoes nothing of /etc/passwd; returns the report."""
    problems = check_datafix(datafix)
    report = "\n".join(str(problem) for problem in problems)
    assert any(p.line == line_of(datafix, setting) for p in problems), report
    assert all(str(p).startswith(f"{datafix}:") for p in problems), report
    assert OUTSIDE_LINE not in report
    assert not [path for path in opened if path.startswith("/etc/")], opened
    return report


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("../../../../../../etc/passwd", id="dot-dot"),
        pytest.param(OUTSIDE, id="absolute"),
        pytest.param("sub/../../other/x.csv", id="dot-dot-inside-a-glob"),
    ],
)
def test_a_path_leaving_the_inbox_is_a_check_error(
    tmp_path: Path, inbox: Path, opened: list[str], path: str
) -> None:
    datafix = write(tmp_path, path=path)
    report = refused_without_reading(datafix, opened, "path:")
    assert "inbox" in report


def test_a_link_to_etc_passwd_in_the_inbox_is_refused_unread(
    tmp_path: Path, inbox: Path, opened: list[str]
) -> None:
    (inbox / "passwd.csv").symlink_to(OUTSIDE)
    datafix = write(tmp_path, path="passwd.csv")
    report = refused_without_reading(datafix, opened, "path:")
    assert "outside the inbox" in report


def test_a_linked_directory_leading_out_is_refused_unread(
    tmp_path: Path, inbox: Path, opened: list[str]
) -> None:
    (inbox / "exports").symlink_to("/etc", target_is_directory=True)
    datafix = write(tmp_path, path="exports/passwd")
    report = refused_without_reading(datafix, opened, "path:")
    assert "outside the inbox" in report


def test_another_landlords_inbox_is_refused(
    tmp_path: Path, hub_home: Path, inbox: Path, opened: list[str]
) -> None:
    other = hub_home / "inbox" / "voisin-habitat"
    other.mkdir(parents=True)
    (other / "locataires.csv").write_text("root;x\nSECRET-TENANT;a\n", encoding="utf-8")
    datafix = write(tmp_path, top='inbox: "${DATAFIX_HOME}/inbox/voisin-habitat"')
    opened.clear()  # the test's own writes

    report = refused_without_reading(datafix, opened, "inbox:")

    assert "SECRET-TENANT" not in report
    assert not [p for p in opened if p.startswith(str(other.resolve()))], opened
    with pytest.raises(DatafixError, match="inbox"):
        load_datafix(datafix)  # the run refuses it too


def test_an_inbox_holding_another_landlords_is_refused(
    tmp_path: Path, hub_home: Path, opened: list[str]
) -> None:
    datafix = write(tmp_path, top='inbox: "${DATAFIX_HOME}/inbox"')
    refused_without_reading(datafix, opened, "inbox:")


def test_inbox_etc_is_a_check_error_and_the_run_refuses_it(
    tmp_path: Path, opened: list[str]
) -> None:
    datafix = write(tmp_path, path="passwd", top="inbox: /etc")

    report = refused_without_reading(datafix, opened, "inbox:")
    assert "/etc is outside the folders an inbox may be in" in report
    with pytest.raises(DatafixError) as refused:
        load_datafix(datafix)
    assert f"{datafix}:{line_of(datafix, 'inbox:')}:" in str(refused.value)
    assert not [path for path in opened if path.startswith("/etc/")], opened


def test_an_inbox_linked_to_etc_is_refused(
    tmp_path: Path, hub_home: Path, opened: list[str]
) -> None:
    (hub_home / "inbox").mkdir()
    (hub_home / "inbox" / LANDLORD).symlink_to("/etc", target_is_directory=True)
    datafix = write(tmp_path, path="passwd")
    report = refused_without_reading(datafix, opened, "landlord:")
    assert "leads to /etc" in report


def test_an_operator_root_allows_an_inbox_elsewhere(
    tmp_path: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    drop = tmp_path / "drop" / LANDLORD
    drop.mkdir(parents=True)
    (drop / "locataires.csv").write_text("root;x\nT1;a\n", encoding="utf-8")
    datafix = write(tmp_path, top=f'inbox: "{drop}"')
    assert check_datafix(datafix) != []  # outside $DATAFIX_HOME/inbox: refused by default

    monkeypatch.setenv("DATAFIX_INBOX_ROOTS", str(tmp_path / "drop"))

    assert check_datafix(datafix) == []
    assert load_datafix(datafix).inbox() == drop


NEIGHBOUR = "voisin-habitat"


def neighbour(folder: Path, inbox: str) -> None:
    """Another landlord's datafix beside LANDLORD's, naming `inbox`."""
    text = f"""\
landlord: {{id: {NEIGHBOUR}, name: Voisin}}
inbox: "{inbox}"
sources: {{locataires: {{kind: csv, path: "*.csv"}}}}
entities: {{tenants: {{source: locataires, fields: {{tenant_ref: a, status: {{const: active}}}}}}}}
"""
    (folder / f"{NEIGHBOUR}.yaml").write_text(text, encoding="utf-8")


@pytest.fixture
def drop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An operator's root holding LANDLORD's inbox `drop/ours`."""
    root = tmp_path / "drop"
    (root / "ours").mkdir(parents=True)
    monkeypatch.setenv("DATAFIX_INBOX_ROOTS", str(root))
    return root


def test_a_neighbours_inbox_is_read_again_when_its_datafix_changes(
    tmp_path: Path, drop: Path
) -> None:
    """Every load compares the inbox with the others' as their files say now: a neighbour's
    datafix rewritten in place (same size, same second) between two loads of this process."""
    datafix = write(tmp_path, top=f'inbox: "{drop}/ours"')
    neighbour(tmp_path, f"{drop}/aaaa")
    assert load_datafix(datafix).inbox() == drop / "ours"

    neighbour(tmp_path, f"{drop}/ours")
    with pytest.raises(DatafixError, match=f"inside the inbox of landlord `{NEIGHBOUR}`"):
        load_datafix(datafix)

    neighbour(tmp_path, f"{drop}/aaaa")
    assert load_datafix(datafix).inbox() == drop / "ours"


def test_a_settled_neighbours_datafix_rewritten_in_place_is_read_again(
    tmp_path: Path, drop: Path, opened: list[str]
) -> None:
    """A datafix that last changed seconds ago is known by its status (not read again at each
    load) until it changes: rewritten in place, same size, it is read again."""
    datafix = write(tmp_path, top=f'inbox: "{drop}/ours"')
    neighbour(tmp_path, f"{drop}/aaaa")
    time.sleep(2.5)  # its change time now older than what the hub reads again each time
    assert load_datafix(datafix).inbox() == drop / "ours"
    opened.clear()
    assert load_datafix(datafix).inbox() == drop / "ours"
    assert str((tmp_path / f"{NEIGHBOUR}.yaml").resolve()) not in opened

    neighbour(tmp_path, f"{drop}/ours")
    with pytest.raises(DatafixError, match=f"inside the inbox of landlord `{NEIGHBOUR}`"):
        load_datafix(datafix)


def test_a_neighbours_inbox_follows_its_variable(
    tmp_path: Path, drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datafix = write(tmp_path, top=f'inbox: "{drop}/ours"')
    neighbour(tmp_path, "${DATAFIX_NEIGHBOUR_INBOX}")
    monkeypatch.setenv("DATAFIX_NEIGHBOUR_INBOX", str(drop / "theirs"))
    assert load_datafix(datafix).inbox() == drop / "ours"

    monkeypatch.setenv("DATAFIX_NEIGHBOUR_INBOX", str(drop))
    with pytest.raises(DatafixError, match=f"inside the inbox of landlord `{NEIGHBOUR}`"):
        load_datafix(datafix)


# a neighbour's inbox named through a link: case id -> (the path under `drop`, what is said)
LINKED_INBOXES = {
    "the-inbox-a-link": ("link", "inside the inbox"),
    "through-a-linked-folder": ("link/in", "holds the inbox"),
    "dot-dot-after-a-link": ("link/../link/in", "holds the inbox"),
    "dot": ("link/./in", "holds the inbox"),
}


@pytest.mark.parametrize(("named", "said"), LINKED_INBOXES.values(), ids=LINKED_INBOXES.keys())
def test_a_neighbours_inbox_follows_its_links_as_they_are_now(
    tmp_path: Path, drop: Path, named: str, said: str
) -> None:
    """A neighbour's inbox through a link: where the link leads at each load, not where it led
    at the first."""
    datafix = write(tmp_path, top=f'inbox: "{drop}/ours"')
    elsewhere = drop / "elsewhere"
    (elsewhere / "in").mkdir(parents=True)
    (drop / "link").symlink_to(elsewhere, target_is_directory=True)
    neighbour(tmp_path, f"{drop}/{named}")
    assert load_datafix(datafix).inbox() == drop / "ours"

    (drop / "link").unlink()
    (drop / "link").symlink_to(drop / "ours", target_is_directory=True)
    with pytest.raises(DatafixError, match=f"{said} of landlord `{NEIGHBOUR}`"):
        load_datafix(datafix)


# --- ${VARIABLES} ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["HOME", "PATH"])
def test_an_undeclared_variable_is_refused_by_check_and_run(
    tmp_path: Path, inbox: Path, name: str
) -> None:
    datafix = write(tmp_path, top=f'inbox: "${{{name}}}/inbox"')
    problems = check_datafix(datafix)
    report = "\n".join(map(str, problems))
    assert f"{datafix}:{line_of(datafix, 'inbox:')}:" in report
    assert f"may not read variable `{name}`" in report
    assert "secrets:" in report  # how to fix it
    assert os.environ[name] not in report
    with pytest.raises(DatafixError, match=f"may not read variable `{name}`"):
        load_datafix(datafix)


def test_a_declared_secret_is_read_and_never_printed(
    tmp_path: Path, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "Tok3n-@:/?#-ünï"
    monkeypatch.setenv("CONFINE_ERP_PASSWORD", token)
    url = "postgresql+psycopg://confine_nobody:${CONFINE_ERP_PASSWORD}@127.0.0.1:5432/test"
    undeclared = write(tmp_path, url=url)
    assert "may not read variable `CONFINE_ERP_PASSWORD`" in "\n".join(
        map(str, check_datafix(undeclared))
    )

    datafix = write(tmp_path, url=url, top="secrets: [CONFINE_ERP_PASSWORD]")
    forget_all()
    loaded = load_datafix(datafix)
    settings = loaded.source("erp")
    assert token not in repr(settings)
    checked = subprocess.run(
        [str(Path(sys.executable).with_name("datafix")), "check", str(datafix)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = checked.stdout + checked.stderr
    # the variable was read: the server was reached and refused the role
    assert 'role "confine_nobody" does not exist' in output, output
    assert token not in output
    assert "Tok3n" not in output


@pytest.mark.parametrize(
    ("database", "said"),
    [
        pytest.param("{home}/warehouse.db", "is the hub's warehouse", id="the-warehouse"),
        pytest.param("{home}/inbox/../warehouse.db", "is the hub's warehouse", id="dot-dot"),
        pytest.param("{home}/dagster/history/runs.db", "is the hub's own state", id="dagster"),
        pytest.param(
            "{home}/inbox/voisin-habitat/erp.db",
            "is in the inbox of landlord `voisin-habitat`",
            id="another-landlord",
        ),
        pytest.param("{inbox}/to-warehouse.db", "is the hub's warehouse", id="link-in-inbox"),
    ],
)
def test_a_sqlite_source_on_the_hubs_state_or_another_landlords_is_refused_unread(
    tmp_path: Path, inbox: Path, hub_home: Path, opened: list[str], database: str, said: str
) -> None:
    """A SQL source's SQLite file names the hub's warehouse (every landlord's data), its
    Dagster instance or another landlord's inbox: refused by check and run, never opened."""
    (hub_home / "warehouse.db").write_bytes(b"SQLite format 3\0")
    (inbox / "to-warehouse.db").symlink_to(hub_home / "warehouse.db")
    path = database.format(home=hub_home, inbox=inbox)
    datafix = write(tmp_path, url=f"sqlite:///{path}")
    opened.clear()  # what the test itself wrote

    report = refused_without_reading(datafix, opened, "url:")
    assert said in report, report
    assert not [p for p in opened if p.endswith(".db")], opened
    with pytest.raises(Exception, match=said.replace("`", ".")) as refused:
        load_datafix(datafix).source("erp")
    assert f"source `erp`: `url`: {path} " in str(refused.value)


def test_a_sqlite_source_in_the_landlords_own_inbox_is_read(
    tmp_path: Path, inbox: Path, opened: list[str]
) -> None:
    sqlite3.connect(inbox / "erp.db").close()
    datafix = write(tmp_path, url=f"sqlite:///{inbox}/erp.db")
    assert not [p for p in check_datafix(datafix) if "url" in str(p)]
    assert load_datafix(datafix).source("erp").url == f"sqlite:///{inbox}/erp.db"
