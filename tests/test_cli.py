"""End to end: the `datafix` command as a user runs it, in a subprocess, on real files."""

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.sandbox.demo_calendar import DemoCalendar
from connectors.sandbox.demo_files import (
    DEMO_BAD_ROWS,
    DEMO_LANDLORDS,
    DEMO_ROWS,
    DEMO_SANDBOX_LANDLORDS,
)
from pipelines.lib.environment import REPO_ROOT
from schemas.canonical import ENTITIES
from tests.landlords.common import DATAFIX, connected, datafix, datafix_ok

CASES = REPO_ROOT / "tests" / "cases" / "landlords"


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every canonical table's rows, sorted, lineage included."""
    tables = {}
    with connected(url) as conn:
        for entity in ENTITIES:
            table = sa.Table(entity, sa.MetaData(), autoload_with=conn)
            rows = conn.execute(sa.select(table)).all()
            tables[entity] = sorted(tuple(str(v) for v in row) for row in rows)
    return tables


@pytest.mark.slow
@pytest.mark.usefixtures("sandbox")
def test_demo_balances_and_names_every_quarantined_row(warehouse_url: str) -> None:
    completed = datafix_ok("demo")
    assert f"{len(DEMO_LANDLORDS)} of {len(DEMO_LANDLORDS)} landlord(s) ok" in completed.stdout
    assert len(DEMO_LANDLORDS) == 5
    # the test's sandbox is up: the demo reuses it rather than starting its own
    assert "sandbox peers already running" in completed.stdout
    with connected(warehouse_url) as conn:
        runs = conn.execute(
            sa.text("SELECT landlord_id, entity, read, loaded, quarantined FROM load_runs")
        ).all()
        quarantined = conn.execute(
            sa.text("SELECT landlord_id, entity, source_row, reason, message FROM quarantine")
        ).all()
    by_entity = {(r.landlord_id, r.entity): r for r in runs}
    expected = {(lid, e) for lid, entities in DEMO_ROWS.items() for e in entities}
    assert set(by_entity) == expected
    for (landlord, entity), run in by_entity.items():
        assert run.read == run.loaded + run.quarantined, (landlord, entity)
        assert run.read == DEMO_ROWS[landlord][entity], (landlord, entity)
        assert run.quarantined == DEMO_BAD_ROWS[landlord][entity], (landlord, entity)
        # the summary printed the same figures
        assert re.search(
            rf"{entity}\s+loaded\s+{run.read}\s+{run.loaded}\s+{run.quarantined}\s",
            completed.stdout,
        ), (landlord, entity)
    assert len(quarantined) == sum(sum(e.values()) for e in DEMO_BAD_ROWS.values())
    month = re.escape(DemoCalendar.from_environment().export_month)  # the demo day's: today's
    for row in quarantined:
        if row.landlord_id == "opale-logement":
            assert re.fullmatch(rf"travaux_{month}\.xlsx:\w+:\d+", row.source_row), row
        elif row.landlord_id == "loire-habitat":
            assert re.fullmatch(rf"\w+_{month}\.csv:\d+", row.source_row), row
        elif row.landlord_id == "val-de-seine":  # the SOAP operation and the record's key
            assert re.fullmatch(r"List(Tenants|LedgerEntries):\w+=[\w-]+", row.source_row), row
        elif row.landlord_id == "residences-estuaire":  # the sObject and its Salesforce id
            assert re.fullmatch(r"(WorkOrder:0WO|ServiceAppointment:08p)\w{15}", row.source_row)
        else:
            assert re.fullmatch(r"\w+:\w+=\S+", row.source_row), row
        assert row.message and row.reason


@pytest.mark.slow
@pytest.mark.usefixtures("sandbox")
def test_demo_twice_and_previews_leave_the_warehouse_identical(hub_home: Path) -> None:
    url = f"sqlite:///{hub_home}/warehouse.db"
    assert datafix("demo").returncode == 0
    first = snapshot(url)
    # preview pulls and normalises every landlord but writes nothing
    for landlord in DEMO_ROWS:
        completed = datafix("preview", landlord, "--limit", "3")
        assert completed.returncode == 0, completed.stderr
        assert "nothing was written" in completed.stdout
        for entity in DEMO_ROWS[landlord]:
            assert f"== {entity}: read {DEMO_ROWS[landlord][entity]}," in completed.stdout
    assert snapshot(url) == first
    second_run = datafix("demo")
    assert second_run.returncode == 0
    assert "unchanged" in second_run.stdout
    # the web-service landlords resume from their watermarks: nothing new is transferred
    for landlord in DEMO_SANDBOX_LANDLORDS:
        report = second_run.stdout.split(f"\n{landlord} (run ", 1)[1].split("\n\n", 1)[0]
        for entity in DEMO_ROWS[landlord]:
            assert re.search(rf"\n  {entity}\s+unchanged\s+0\s+0\s+0\s", report), report
    assert snapshot(url) == first
    # re-reading everything changes no value and rewrites no row (lineage included)
    assert datafix("run", "--full-refresh").returncode == 0
    assert snapshot(url) == first


def test_preview_on_a_fresh_home_creates_no_warehouse(hub_home: Path) -> None:
    from connectors.sandbox.demo_files import write_demo_sources

    write_demo_sources(hub_home)
    completed = datafix("preview", "loire-habitat", "--entity", "tenants")
    assert completed.returncode == 0, completed.stderr
    assert "[unmapped_value]" in completed.stdout or "[bad_date]" in completed.stdout
    assert not (hub_home / "warehouse.db").exists()


def test_preview_runs_the_contract(hub_home: Path, tmp_path: Path) -> None:
    shutil.copytree(CASES / "inbox", hub_home / "inbox")
    blocked = datafix(
        "preview", "broken-habitat", env={"DATAFIX_DATAFIXES_DIR": str(CASES / "datafixes")}
    )
    assert blocked.returncode == 0, blocked.stderr
    assert "by reason: unmapped_value 1" in blocked.stdout
    assert "-- contract: would BLOCK the load" in blocked.stdout
    assert "move_out_after_move_in: B002" in blocked.stdout  # a rule the datafix sets to block
    assert "max_quarantine_percent" in blocked.stdout and "failing keys: B002, B003" in (
        blocked.stdout
    )
    # without `rules:` the rule quarantines B002 (2 of 3 rows quarantined: under 70 %)
    folder = tmp_path / "datafixes"
    folder.mkdir()
    text = (CASES / "datafixes" / "broken-habitat.yaml").read_text(encoding="utf-8")
    text = text.replace("    rules: {move_out_after_move_in: block}\n", "")
    text = text.replace(
        "    source: locataires\n", "    source: locataires\n    max_quarantine_percent: 70\n"
    )
    (folder / "broken-habitat.yaml").write_text(text, encoding="utf-8")
    quarantined = datafix("preview", "broken-habitat", env={"DATAFIX_DATAFIXES_DIR": str(folder)})
    assert "[move_out_after_move_in]  move_out_after_move_in: move_out_date 2019-08-31," in (
        quarantined.stdout
    )
    assert "by reason: move_out_after_move_in 1, unmapped_value 1" in quarantined.stdout
    assert "-- contract: passes" in quarantined.stdout
    assert not (hub_home / "warehouse.db").exists()


@pytest.mark.usefixtures("sandbox")
def test_check_passes_on_the_web_service_demo_datafixes_while_the_sandbox_runs() -> None:
    paths = [
        str(REPO_ROOT / "datafixes" / f"{landlord}.yaml") for landlord in DEMO_SANDBOX_LANDLORDS
    ]
    completed = datafix("check", *paths)
    assert completed.returncode == 0, completed.stdout
    assert sorted(re.findall(r"^(.*): ok$", completed.stdout, re.M)) == sorted(paths)


def test_sandbox_serves_the_peers_prints_how_to_reach_them_and_stops(hub_home: Path) -> None:
    # DATAFIX_SANDBOX_PORT=0: ports the system picks, so parallel workers never collide
    completed = datafix_ok("sandbox", "--seconds", "0", env={"DATAFIX_SANDBOX_PORT": "0"})
    urls = re.findall(r"^  \S.*? +(https?://127\.0\.0\.1:\d+) +started$", completed.stdout, re.M)
    assert len(urls) == 4 and urls[2].startswith("https://"), completed.stdout
    assert f"landlord ERP WSDL      {urls[0]}/wsdl" in completed.stdout
    assert f"works-order ERP WSDL   {urls[3]}/wsdl" in completed.stdout
    assert (
        f"Salesforce CA bundle   {hub_home / 'sandbox' / 'salesforce-ca.pem'}" in completed.stdout
    )
    assert (hub_home / "sandbox" / "salesforce-ca.pem").read_text().startswith("-----BEGIN")
    assert f"DATAFIX_SANDBOX_ERP_WSDL={urls[0]}/wsdl" in completed.stdout
    assert f"DATAFIX_SANDBOX_SF_INSTANCE_URL={urls[2]}" in completed.stdout
    assert completed.stdout.rstrip().endswith("sandbox stopped")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sandbox_runs_until_signalled_then_stops_cleanly(
    stop_signal: signal.Signals, hub_home: Path
) -> None:
    process = subprocess.Popen(
        [DATAFIX, "sandbox"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DATAFIX_SANDBOX_PORT": "0"},
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # until the peers serve
        lines.append(line)
        if line.startswith("Serving until Ctrl-C"):
            break
    wsdl = next(line.split("=", 1)[1].strip() for line in lines if "_ERP_WSDL=" in line)
    port = int(wsdl.rsplit(":", 1)[1].split("/")[0])
    process.send_signal(stop_signal)
    rest, errors = process.communicate()
    assert process.returncode == 0, errors
    assert rest.strip().endswith("sandbox stopped")
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


def write_three_mistakes(folder: Path) -> Path:
    text = (CASES / "datafixes" / "acme-habitat.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "    path: locataires_*.csv", "    path: locataires_*.csv\n    sepparator: ';'"
    )
    text = text.replace("      tenant_ref: ", "      tenant_reff: ")
    text = text.replace('{from: "Date d\'entrée"', '{from: "Date d\'entre"')
    path = folder / "acme-habitat.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_prints_every_mistake_with_line_and_column(hub_home: Path, tmp_path: Path) -> None:
    shutil.copytree(CASES / "inbox", hub_home / "inbox")
    folder = tmp_path / "datafixes"
    folder.mkdir()
    path = write_three_mistakes(folder)
    completed = datafix("check", str(path))
    assert completed.returncode == 1
    located = re.findall(rf"^{re.escape(str(path))}:(\d+):(\d+): (.*)$", completed.stdout, re.M)
    lines = path.read_text(encoding="utf-8").splitlines()
    messages = {message: int(line) for line, _, message in located}
    assert len(located) == 3, completed.stdout
    assert lines[messages["unknown key `sepparator`"] - 1].strip().startswith("sepparator")
    assert (
        lines[messages["`tenant_reff` is not a column of tenants"] - 1]
        .strip()
        .startswith("tenant_reff")
    )
    missing = next(m for m in messages if m.startswith("column `Date d'entre`"))
    assert "Date d'entre\"" in lines[messages[missing] - 1]
    assert completed.stdout.count("hint:") == 3
    assert "did you mean `separator`?" in completed.stdout
    assert "did you mean `tenant_ref`?" in completed.stdout


def test_check_passes_on_good_files(hub_home: Path) -> None:
    shutil.copytree(CASES / "inbox", hub_home / "inbox")
    completed = datafix("check", env={"DATAFIX_DATAFIXES_DIR": str(CASES / "datafixes")})
    assert completed.returncode == 0, completed.stdout
    assert completed.stdout.count(": ok") == 2


@pytest.mark.slow
def test_run_exit_code_reports_a_failed_contract_and_runs_the_others(hub_home: Path) -> None:
    shutil.copytree(CASES / "inbox", hub_home / "inbox")
    env = {"DATAFIX_DATAFIXES_DIR": str(CASES / "datafixes")}
    completed = datafix("run", env=env)
    assert completed.returncode == 1, completed.stdout
    assert "acme-habitat (run" in completed.stdout and "broken-habitat (run" in completed.stdout
    assert re.search(r"acme-habitat \(run \w+\): ok", completed.stdout)
    assert re.search(r"broken-habitat \(run \w+\): FAILED", completed.stdout)
    assert "failing keys: B002" in completed.stdout
    assert "move_out_after_move_in" in completed.stdout
    # B003's status is unmapped: 1 of 3 rows quarantined passes max_quarantine_percent (20)
    assert "max_quarantine_percent" in completed.stdout
    assert "failing keys: B002, B003" in completed.stdout
    with connected(f"sqlite:///{hub_home}/warehouse.db") as conn:
        loaded = dict(
            conn.execute(
                sa.text("SELECT landlord_id, count(*) FROM tenants GROUP BY landlord_id")
            ).all()
        )
        runs = {
            row.landlord_id: row
            for row in conn.execute(
                sa.text("SELECT landlord_id, status, reason, loaded, quarantined FROM load_runs")
            )
        }
        kept = conn.execute(
            sa.text(
                "SELECT source_row, reason FROM quarantine WHERE landlord_id = 'broken-habitat'"
                " AND resolved_at IS NULL"
            )
        ).all()
    # the blocked landlord loaded nothing; the other loaded its 2 good rows (1 quarantined)
    assert loaded == {"acme-habitat": 2}
    # the blocked load left its trace: the audit row with the reason, its quarantined row
    blocked = runs["broken-habitat"]
    assert (blocked.status, blocked.loaded, blocked.quarantined) == ("blocked", 0, 1)
    assert "move_out_after_move_in: B002" in blocked.reason
    assert (runs["acme-habitat"].status, runs["acme-habitat"].reason) == ("loaded", None)
    assert kept == [("locataires_2026-10.csv:4", "unmapped_value")]


def test_run_reports_a_missing_source_without_stopping_other_landlords(hub_home: Path) -> None:
    (hub_home / "inbox").mkdir()
    shutil.copytree(CASES / "inbox" / "acme-habitat", hub_home / "inbox" / "acme-habitat")
    env = {"DATAFIX_DATAFIXES_DIR": str(CASES / "datafixes")}
    completed = datafix("run", "broken-habitat", "acme-habitat", env=env)
    assert completed.returncode == 1
    assert re.search(r"acme-habitat \(run \w+\): ok", completed.stdout)
    assert "inbox folder" in completed.stdout and "broken-habitat" in completed.stdout


def test_run_refuses_an_invalid_datafix_before_running(hub_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "datafixes"
    folder.mkdir()
    write_three_mistakes(folder)
    completed = datafix("run", "acme-habitat", env={"DATAFIX_DATAFIXES_DIR": str(folder)})
    assert completed.returncode == 1
    assert "datafix refused, nothing was run" in completed.stdout
    assert "unknown key `sepparator`" in completed.stdout
