"""Sign and cases end to end: a landlord written here, not by the demo generator, run through
pull → normalise → load on SQLite and PostgreSQL.

Its ERP exports a ledger with unsigned amounts and a `Sens` D/C column, movement codes whose
kind depends on the direction (a `REG` debit is a refund paid out to the tenant, a credit a
payment), and tenants whose status follows from their move-out date. The expected balances,
statuses and rejects are computed below in plain Python over the CSV rows, not with the hub's
code.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from pipelines.lib.datafixes import load_datafix
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse
from tests.landlords.common import balances as warehouse_balances
from tests.pipelines.lib.helpers import write_datafix

LANDLORD = "habitat-des-marais"

LEDGER_CSV = """\
Extraction du grand livre locataires
Pièce;Compte;Date;Code;Montant;Sens
P001;L01;01/03/2026;QUIT;512,30;D
P002;L01;05/03/2026;REG;512,30;C
P003;L02;01/03/2026;QUIT;1 204,00;D
P004;L02;10/03/2026;REG;200,00;c
P005;L02;12/03/2026;REG;15,50;D
P006;L03;01/03/2026;QUIT;430,00;D
P007;L03;03/03/2026;APL;180,45;C
P008;L03;04/03/2026;REJ;430,00;D
P009;L01;06/03/2026;QUIT;12,00;X
P010;L02;06/03/2026;QUIT;12,00;
P011;L03;07/03/2026;ANN;5,00;D
P012;L04;01/03/2026;QUIT;0,01;d
TOTAL;;;;3 513,56;
"""

TENANTS_CSV = """\
Compte;Nom;Date d'entrée;Date de sortie
L01;Martin;01/09/2015;
L02;Bernard;15/01/2019;31/12/2099
L03;Petit;01/02/2010;30/06/2021
L04;Durand;01/05/2024;
"""

DATAFIX: dict[str, Any] = {
    "landlord": {"id": LANDLORD, "name": "Habitat des Marais"},
    "sources": {
        "ecritures": {"kind": "csv", "path": "grand_livre.csv"},
        "locataires": {"kind": "csv", "path": "locataires.csv"},
    },
    "entities": {
        "ledger_entries": {
            "source": "ecritures",
            "skip_rows": [{"column": "Pièce", "matches": "^total"}],
            "fields": {
                "entry_ref": "Pièce",
                "tenant_ref": "Compte",
                "entry_date": "Date",
                "amount_cents": {
                    "from": "Montant",
                    "sign": {"column": "Sens", "positive": "D", "negative": "C"},
                },
                "kind": {
                    "cases": [
                        {
                            "when": [
                                {"column": "Code", "equals": "REG"},
                                {"column": "Sens", "equals": "C"},
                            ],
                            "value": "payment",
                        },
                        {"when": {"column": "Code", "equals": "REG"}, "value": "refund_to_tenant"},
                    ],
                    "else": {
                        "then": {
                            "from": "Code",
                            "map": {
                                "QUIT": "rent_call",
                                "APL": "housing_aid",
                                "REJ": "rejected_debit",
                            },
                        }
                    },
                },
            },
        },
        "tenants": {
            "source": "locataires",
            "fields": {
                "tenant_ref": "Compte",
                "full_name": "Nom",
                "move_in_date": "Date d'entrée",
                "move_out_date": "Date de sortie",
                "status": {
                    "cases": [
                        {"when": {"column": "Date de sortie", "before": "today"}, "value": "left"},
                        {
                            "when": {"column": "Date de sortie", "on_or_after": "today"},
                            "value": "leaving",
                        },
                    ],
                    "else": {"value": "active"},
                },
            },
        },
    },
}


def expected_ledger() -> tuple[dict[str, int], dict[str, str]]:
    """(balance in cents per tenant of the rows that load, reason per rejected entry), from
    the CSV alone."""
    lines = LEDGER_CSV.splitlines()[1:]
    balances: dict[str, int] = defaultdict(int)
    rejected: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines)), delimiter=";"):
        if row["Pièce"].lower().startswith("total"):
            continue
        direction = row["Sens"].strip().upper()
        if direction not in ("D", "C"):
            rejected[row["Pièce"]] = "bad_sign"
            continue
        if row["Code"] not in ("REG", "QUIT", "APL", "REJ"):
            rejected[row["Pièce"]] = "unmapped_value"
            continue
        euros = Decimal(row["Montant"].replace(" ", "").replace(",", "."))
        cents = int(euros * 100)
        balances[row["Compte"]] += cents if direction == "D" else -cents
    return dict(balances), rejected


def expected_statuses() -> dict[str, str]:
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    statuses = {}
    for row in csv.DictReader(io.StringIO(TENANTS_CSV), delimiter=";"):
        exit_text = row["Date de sortie"]
        if not exit_text:
            statuses[row["Compte"]] = "active"
            continue
        exit_day = datetime.strptime(exit_text, "%d/%m/%Y").date()
        statuses[row["Compte"]] = "left" if exit_day < today else "leaving"
    return statuses


def test_signed_ledger_and_tenant_statuses_load_with_every_row_accounted_for(
    hub_home: Path, tmp_path: Path, warehouse_url: str
) -> None:
    inbox = hub_home / "inbox" / LANDLORD
    inbox.mkdir(parents=True)
    (inbox / "grand_livre.csv").write_bytes(LEDGER_CSV.encode("cp1252"))
    (inbox / "locataires.csv").write_bytes(TENANTS_CSV.encode("cp1252"))
    loaded = load_datafix(write_datafix(tmp_path, DATAFIX))
    warehouse = Warehouse(warehouse_url)
    warehouse.migrate()
    try:
        results = {}
        for entity in ("ledger_entries", "tenants"):
            normalised = normalise(loaded, pull(loaded, entity, warehouse=warehouse))
            assert normalised.batch is not None
            results[entity] = (normalised.batch, load(warehouse, loaded, normalised, run_id="r1"))
        balances = warehouse_balances(warehouse.engine.url.render_as_string(False), LANDLORD)
        with warehouse.engine.connect() as conn:
            kinds = dict(conn.execute(sa.text("SELECT entry_ref, kind FROM ledger_entries")).all())
            statuses = dict(conn.execute(sa.text("SELECT tenant_ref, status FROM tenants")).all())
            quarantined = dict(
                conn.execute(
                    sa.text("SELECT source_row, reason FROM quarantine WHERE entity = :entity"),
                    {"entity": "ledger_entries"},
                ).all()
            )
            runs = conn.execute(
                sa.text("SELECT entity, read, loaded, quarantined, skipped FROM load_runs")
            ).all()
    finally:
        warehouse.dispose()

    expected_balances, expected_rejects = expected_ledger()
    assert {tenant: int(cents) for tenant, cents in balances.items()} == expected_balances
    assert expected_balances == {"L01": 0, "L02": 101950, "L03": 67955, "L04": 1}
    assert kinds["P002"] == "payment" and kinds["P004"] == "payment"
    assert kinds["P005"] == "refund_to_tenant" and kinds["P007"] == "housing_aid"
    assert sorted(quarantined.values()) == sorted(expected_rejects.values())
    assert expected_rejects == {"P009": "bad_sign", "P010": "bad_sign", "P011": "unmapped_value"}
    assert statuses == expected_statuses()
    ledger_batch, ledger_load = results["ledger_entries"]
    assert ledger_batch.skipped == 1  # the TOTAL row
    assert ledger_load is not None
    assert ledger_batch.read == ledger_load.loaded + ledger_load.quarantined == 12
    for entity, read, loaded_rows, quarantined_rows, skipped in runs:
        batch, _ = results[entity]
        assert read == loaded_rows + quarantined_rows
        assert read + skipped == batch.rows_in_source
