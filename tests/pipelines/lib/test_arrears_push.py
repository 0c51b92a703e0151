"""Prevention actions pushed through the outbox to a real SQL table (SQLite and PostgreSQL
warehouses, the peer a SQLite file), and the arrears alerts, on the hand-made ledger of
`test_arrears`.

The morning job is replayed as the assets run it: balances, arrears, actions, then the push.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from pipelines.lib.arrears import (
    debt_crossings,
    plans_broken_recently,
    refresh_actions,
    refresh_arrears,
)
from pipelines.lib.datafixes import load_datafix
from pipelines.lib.insight import record_tenant_balances
from pipelines.lib.push import push_landlord
from pipelines.lib.sinks import build_sink
from pipelines.lib.warehouse import Warehouse
from schemas.arrears import ArrearsSection
from schemas.tables import load_runs, prevention_actions
from tests.pipelines.lib.arrears_cases import entry, hand_made_warehouse, put
from tests.pipelines.lib.test_arrears import AS_OF, LANDLORD

TABLE = "taches_crm"


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    yield from hand_made_warehouse(warehouse_url)


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[str]:
    """The CRM's task table, in a database of its own."""
    url = f"sqlite:///{tmp_path}/crm.db"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TABLE {TABLE} (cle VARCHAR(200) NOT NULL, locataire VARCHAR(40),"
            " action VARCHAR(40), canal VARCHAR(20), modele VARCHAR(80), echeance DATE,"
            " statut VARCHAR(10), hub_idem VARCHAR(80))"
        )  # no unique key on purpose: a task written twice would show as two rows
    engine.dispose()
    yield url


def datafix(folder: Path, crm_url: str) -> Any:
    document = {
        "landlord": {"id": LANDLORD, "name": "Loire Habitat"},
        "inbox": str(folder / "inbox"),
        "sources": {"compta": {"kind": "csv", "path": "compta.csv"}},
        "entities": {
            "ledger_entries": {
                "source": "compta",
                "fields": {"entry_ref": "ref", "tenant_ref": "locataire", "entry_date": "date",
                           "kind": "nature", "amount_cents": "montant"},
            }
        },
        "push": {
            "sinks": {
                "crm": {
                    "kind": "sql", "sends": "actions", "url": crm_url, "table": TABLE,
                    "key_column": "cle", "idempotency_column": "hub_idem",
                    "fields": {"cle": "action_key", "locataire": "tenant_ref",
                               "action": "action", "canal": "channel", "modele": "template",
                               "echeance": "due_date", "statut": "status"},
                }
            }
        },
    }  # fmt: skip
    path = folder / f"{LANDLORD}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return load_datafix(path)


def morning(warehouse: Warehouse, run: str, as_of: dt.date = AS_OF) -> None:
    settings = ArrearsSection()
    with warehouse.engine.begin() as connection:
        record_tenant_balances(connection, LANDLORD, as_of, run)
        refresh_arrears(connection, LANDLORD, as_of, run, settings)
        refresh_actions(connection, LANDLORD, as_of, run, settings)


def tasks(crm_url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(crm_url)
    with engine.connect() as connection:
        found = connection.exec_driver_sql(
            f"SELECT cle, canal, statut FROM {TABLE} ORDER BY cle"
        ).all()
    engine.dispose()
    return [tuple(row) for row in found]


def test_actions_reach_the_crm_once_and_their_closing_once_more(
    warehouse: Warehouse, crm: str, tmp_path: Path
) -> None:
    loaded = datafix(tmp_path, crm)
    morning(warehouse, "run-1")
    [first] = push_landlord(warehouse, loaded, build_sink, run_id="run-1")
    assert (first.status, first.sent, first.dead, first.failed) == ("sent", 8, 0, 0)
    held = tasks(crm)
    assert len(held) == 8 and len({row[0] for row in held}) == 8  # 8 tasks, no duplicate
    assert ("C:plan_late:reminder:2026-06-30", "email", "open") in held

    # the same morning again: no action created, no key changed, nothing pushed
    with warehouse.engine.connect() as connection:
        keys = list(connection.execute(sa.select(prevention_actions.c.action_key)).scalars())
    morning(warehouse, "run-2")
    [second] = push_landlord(warehouse, loaded, build_sink, run_id="run-2")
    assert (second.queued, second.sent, second.unchanged, second.calls) == (0, 0, 8, 0)
    with warehouse.engine.connect() as connection:
        assert list(connection.execute(sa.select(prevention_actions.c.action_key)).scalars()) == (
            keys
        )
    assert tasks(crm) == held

    # C pays: its reminder closes, and the CRM's task is updated once (not a second task)
    with warehouse.engine.begin() as connection:
        put(connection, "ledger_entries", LANDLORD, [
            entry("C5", "C", "2026-06-30", "payment", -5_000, method="card"),
        ])  # fmt: skip
        # a load wrote the ledger: what the arrears' skip reads
        counts = dict.fromkeys(("rows_in_source", "read", "loaded", "inserted"), 1)
        counts |= dict.fromkeys(("skipped", "updated", "unchanged", "deleted", "quarantined"), 0)
        connection.execute(
            load_runs.insert().values(
                run_id="load-3", landlord_id=LANDLORD, entity="ledger_entries",
                source_name="compta", status="loaded", fingerprint="f", datafix_sha="s",
                finished_at=dt.datetime(2026, 7, 1, 3, tzinfo=dt.UTC), **counts,
            )
        )  # fmt: skip
    morning(warehouse, "run-3")
    [third] = push_landlord(warehouse, loaded, build_sink, run_id="run-3")
    assert (third.queued, third.sent) == (1, 1)
    after = tasks(crm)
    assert len(after) == 8
    assert ("C:plan_late:reminder:2026-06-30", "email", "closed") in after


def test_the_alerts_list_the_tenants_and_plans_concerned(warehouse: Warehouse) -> None:
    day_before = AS_OF - dt.timedelta(days=1)
    week_before = AS_OF - dt.timedelta(days=7)
    # a week ago: only B's first instalments were called (B3, B4 not posted yet)
    with warehouse.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE ledger_entries SET deleted_at = loaded_at WHERE entry_ref IN"
                    " ('B3', 'B4', 'A6')")
        )  # fmt: skip
    morning(warehouse, "run-0", week_before)
    morning(warehouse, "run-1", day_before)
    with warehouse.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE ledger_entries SET deleted_at = NULL WHERE entry_ref IN"
                    " ('B3', 'B4', 'A6')")
        )  # fmt: skip
    morning(warehouse, "run-2")
    with warehouse.engine.connect() as connection:
        # A: 210 000 the day before, 260 000 today (A6 came in); D 41 000 both days
        assert debt_crossings(connection, LANDLORD, 250_000) == ["A"]
        assert debt_crossings(connection, LANDLORD, 200_000) == []  # A was above already
        assert debt_crossings(connection, LANDLORD, 15_000) == ["B"]  # B: 0 → 20 000
        # B's plan: on track a week ago (nothing called unpaid), broken today; C late only
        assert plans_broken_recently(connection, LANDLORD, days=7) == ["P-B"]
