"""Issue 13, many landlords: `datafix run` shares the landlords out among worker processes
(`DATAFIX_WORKERS`) and leaves the warehouse exactly as a run one landlord after the other does.

Six small landlords are generated here (a few hundred ledger lines each, some with a movement
code their datafix does not map, so quarantined), plus one whose export lacks a mapped column
(it fails). The same files are run once with two workers and once with one, each in a hub home of
its own; the expected counts are worked out from the generated lines, not by the hub's code.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tests.landlords.common import datafix
from tests.reliability.gate_kinds import finish, install_gated_landlord, start_run, wait_for

CODES = {"LOY": "rent", "CHG": "service_charges", "REG": "payment", "APL": "housing_aid"}
HEADER = "Réf;Locataire;Date;Code;Débit;Crédit"
BROKEN = "par-4"  # its export has no `Code` column: that landlord fails, the others load


@dataclass(frozen=True)
class Landlord:
    landlord_id: str
    lines: int
    unmapped: int  # lines whose code is not in the datafix's map: quarantined


DATAFIX = """landlord:
  id: {landlord_id}
  name: Parallel {landlord_id}
sources:
  grand_livre:
    kind: csv
    path: grand_livre.csv
    separator: ";"
entities:
  ledger_entries:
    source: grand_livre
    max_quarantine_percent: 50
    fields:
      entry_ref: Réf
      tenant_ref: Locataire
      entry_date:
        from: Date
        formats: [dd/mm/yyyy]
      kind:
        from: Code
        map: {{LOY: rent, CHG: service_charges, REG: payment, APL: housing_aid}}
        unmapped: reject
      amount_cents:
        debit: Débit
        credit: Crédit
"""


def generate(root: Path, count: int = 7) -> tuple[Path, list[Landlord]]:
    """`count` landlords' datafixes and exports under `root`; returns the datafixes folder and
    what each export holds."""
    datafixes = root / "datafixes"
    datafixes.mkdir()
    landlords = []
    for number in range(1, count + 1):
        landlord_id = f"par-{number}"
        rng = random.Random(number)
        lines, unmapped = [], 0
        for line in range(rng.randint(200, 400)):
            code = rng.choice([*CODES, "LOY", "REG"]) if rng.random() > 0.05 else "ZZZ"
            unmapped += code == "ZZZ"
            cents = rng.randint(100, 90_000)
            amount = f"{cents // 100},{cents % 100:02d}"
            debit, credit = (amount, "") if code in ("LOY", "CHG", "ZZZ") else ("", amount)
            day = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2025"
            fields = [f"E{line:05d}", f"T{rng.randint(1, 40):03d}", day, code, debit, credit]
            if landlord_id == BROKEN:
                del fields[3]
            lines.append(";".join(fields))
        header = HEADER.replace(";Code", "") if landlord_id == BROKEN else HEADER
        (datafixes / f"{landlord_id}.yaml").write_text(
            DATAFIX.format(landlord_id=landlord_id), encoding="utf-8"
        )
        landlords.append(Landlord(landlord_id, len(lines), unmapped))
        files = root / "files" / landlord_id
        files.mkdir(parents=True)
        (files / "grand_livre.csv").write_text("\n".join([header, *lines]) + "\n", "utf-8")
    return datafixes, landlords


def run_all(root: Path, home: Path, workers: int) -> tuple[int, str]:
    """`datafix run --no-push` over every landlord in a hub home of its own, with `workers`."""
    home.mkdir()
    for landlord in (root / "files").iterdir():  # each landlord's inbox in this home
        inbox = home / "inbox" / landlord.name
        inbox.mkdir(parents=True)
        for path in landlord.iterdir():
            (inbox / path.name).write_bytes(path.read_bytes())
    completed = datafix(
        "run",
        "--no-push",
        env={
            "DATAFIX_HOME": str(home),
            "DATAFIX_DATAFIXES_DIR": str(root / "datafixes"),
            "DATAFIX_WORKERS": str(workers),
            "DATAFIX_FILE_SETTLE_SECONDS": "0",
        },
    )
    return completed.returncode, completed.stdout + completed.stderr


def warehouse_rows(home: Path) -> dict[str, list[tuple[object, ...]]]:
    """The ledger and the quarantine, without what differs from run to run (ids, times)."""
    with sqlite3.connect(home / "warehouse.db") as conn:
        ledger = conn.execute(
            "SELECT landlord_id, entry_ref, tenant_ref, entry_date, kind, amount_cents,"
            " source_row, row_hash, deleted_at FROM ledger_entries"
            " ORDER BY landlord_id, entry_ref"
        ).fetchall()
        quarantined = conn.execute(
            "SELECT landlord_id, entity, source_row, reason FROM quarantine"
            " ORDER BY landlord_id, source_row"
        ).fetchall()
        balances = conn.execute(
            "SELECT landlord_id, tenant_ref, balance_cents FROM tenant_balances"
            " ORDER BY landlord_id, tenant_ref"
        ).fetchall()
        loads = conn.execute(
            "SELECT landlord_id, status, read, loaded, quarantined FROM load_runs"
            " ORDER BY landlord_id"
        ).fetchall()
    return {"ledger": ledger, "quarantine": quarantined, "balances": balances, "loads": loads}


def run_processes(home: Path) -> set[str]:
    """The processes the Dagster runs of this home ran in (their `datafix/pid` tag)."""
    with sqlite3.connect(home / "dagster" / "history" / "runs.db") as conn:
        rows = conn.execute("SELECT value FROM run_tags WHERE key = 'datafix/pid'").fetchall()
    return {value for (value,) in rows}


def test_two_workers_load_every_landlord_as_one_process_does(tmp_path: Path) -> None:
    datafixes, landlords = generate(tmp_path)
    parallel_code, parallel = run_all(tmp_path, tmp_path / "parallel", workers=2)
    sequential_code, sequential = run_all(tmp_path, tmp_path / "sequential", workers=1)

    # one landlord failed: reported, exit code 1, and every other one loaded
    assert (parallel_code, sequential_code) == (1, 1), parallel
    assert "6 of 7 landlord(s) ok, 1 failed" in parallel
    assert re.search(rf"^{BROKEN} \(run \w+\): FAILED$", parallel, re.MULTILINE), parallel
    assert "Code" in parallel.split(f"{BROKEN} (run")[1].split("\npar-5")[0]  # the cause

    # the summary, landlord by landlord in the order of the datafixes, is the same
    def summary(output: str) -> str:
        return re.sub(r"\(run \w+\)", "(run …)", output[output.index("\npar-1") :])

    assert summary(parallel) == summary(sequential)
    # the contract ran for every loaded landlord (its steps are in each run's selection)
    contracts = re.findall(r"^  ledger_entries +loaded +\d+ +\d+ +\d+ +\d+  (\w+)$", parallel, re.M)
    assert contracts == ["passed"] * 6, parallel
    order = re.findall(r"^(par-\d) \(run", parallel, re.MULTILINE)
    assert order == [landlord.landlord_id for landlord in landlords]

    # the warehouses hold the same rows, and the counts of the generated files
    rows = warehouse_rows(tmp_path / "parallel")
    assert rows == warehouse_rows(tmp_path / "sequential")
    expected_loads = sorted(
        (landlord.landlord_id, "loaded", landlord.lines, landlord.lines - landlord.unmapped,
         landlord.unmapped)
        for landlord in landlords
        if landlord.landlord_id != BROKEN
    )  # fmt: skip
    assert rows["loads"] == expected_loads
    loaded_per_landlord = {landlord.landlord_id: 0 for landlord in landlords}
    for row in rows["ledger"]:
        loaded_per_landlord[row[0]] += 1
    assert loaded_per_landlord == {
        landlord.landlord_id: 0
        if landlord.landlord_id == BROKEN
        else landlord.lines - landlord.unmapped
        for landlord in landlords
    }
    assert all(reason == "unmapped_value" for *_, reason in rows["quarantine"])
    assert len(rows["quarantine"]) == sum(
        landlord.unmapped for landlord in landlords if landlord.landlord_id != BROKEN
    )

    # the parallel runs ran in two processes (the command's and a spawned worker, each handed
    # a landlord at once)
    assert len(run_processes(tmp_path / "parallel")) == 2
    assert len(run_processes(tmp_path / "sequential")) == 1
    assert datafixes.is_dir()


def test_a_worker_killed_mid_run_fails_its_landlord_only(hub_home: Path) -> None:
    """Three landlords, two workers (the command's process and a spawned one) held at a gate
    inside their first landlord's pull: the spawned worker is killed with -9. Its landlord is
    reported failed, naming the dead worker; the other two load (the third by the command's
    process or a new worker) and the exit code is 1. A plugged source kind (`gated_csv`)
    reaches the spawned workers too."""
    datafixes = hub_home.parent / "datafixes"
    landlords = {"gate-a": 12, "gate-b": 7, "gate-c": 5}  # tenants in each export
    for landlord, rows in landlords.items():
        install_gated_landlord(hub_home, datafixes, landlord, rows)
    gate = hub_home.parent / "gate"
    gate.mkdir()
    env = {"DATAFIX_DATAFIXES_DIR": str(datafixes), "DATAFIX_WORKERS": "2",
           "DATAFIX_TEST_GATE": str(gate)}  # fmt: skip
    run = start_run(*landlords, env=env)
    wait_for(lambda: len(list(gate.glob("reached-*"))) == 2, "two processes at the gate")
    at_gate = {int(path.name.removeprefix("reached-")) for path in gate.glob("reached-*")}
    assert run.pid in at_gate  # the command's own process runs landlords too
    (worker,) = at_gate - {run.pid}  # and one spawned worker
    os.kill(worker, signal.SIGKILL)
    (gate / "open").touch()
    code, output = finish(run)

    assert code == 1, output
    assert "2 of 3 landlord(s) ok, 1 failed" in output, output
    assert f"(pid {worker}) ended with exit code -9" in output, output
    failed = re.findall(r"^(gate-\w)(?: \(run \w+\))?: FAILED$", output, re.MULTILINE)
    assert len(failed) == 1, output
    with sqlite3.connect(hub_home / "warehouse.db") as conn:
        loaded = dict(
            conn.execute("SELECT landlord_id, COUNT(*) FROM tenants GROUP BY landlord_id")
        )
    assert loaded == {
        landlord: rows for landlord, rows in landlords.items() if landlord != failed[0]
    }

    # the killed landlord runs again (its lock and Dagster run left by the dead worker taken over)
    code, output = finish(start_run(failed[0], env={"DATAFIX_DATAFIXES_DIR": str(datafixes)}))
    assert code == 0, output
    with sqlite3.connect(hub_home / "warehouse.db") as conn:
        count = conn.execute(
            "SELECT COUNT(*) FROM tenants WHERE landlord_id = ?", (failed[0],)
        ).fetchone()[0]
    assert count == landlords[failed[0]]
