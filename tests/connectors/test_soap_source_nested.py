"""The SOAP source against the node-soap works-order ERP: nested answers (issue 11, point 5).

The peer (`connectors/sandbox/erp_node`) is a different SOAP stack from the first one, with
French names, a nested `page {numero, taille}` request element, a page cap (100) below the
page size asked (500), nested entries (`locataire.reference`, `montant.valeur`) and works orders
with repeated lines (`lignes.ligne*`). Every count is checked against the peer itself, paged
independently with plain zeep.

- read_soap: ≥ 2,000 entries with `page_size: 500` → every entry, nested fields as columns;
  works orders flattened to one row per line, with the order's fields;
- the pipeline (pull → normalise → load on a SQLite warehouse): every entry loaded with its
  nested fields mapped; a peer lying about its total → a failed pull naming both numbers,
  nothing loaded, no watermark; lines of works orders loaded as quotes.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import zeep
from zeep.transports import Transport

from connectors.errors import ConfigError, PermanentError
from connectors.retry import RetryPolicy
from connectors.sandbox.erp_node import WSDL_FILE, TravauxErpPeer
from connectors.soap.client import nest_arguments, read_soap
from connectors.soap.models import SoapPaging
from pipelines.lib.datafixes import load_datafix
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse
from tests.pipelines.lib.helpers import (
    incremental_ledger_datafix,
    migrated_warehouse,
    run_ledger_once,
    write_datafix,
)

FAST = RetryPolicy(attempts=2, first_wait=0.01, max_wait=0.02, jitter=0.01)
SEEDED = 2600  # server.js's ledger entries
PAGING = {
    "kind": "page_number",
    "page_size": 500,  # above the server's cap of 100
    "page_argument": "page.numero",
    "page_size_argument": "page.taille",
    "total_path": "total",
}
CODES = {
    "LOYER": "rent",
    "CHARGES": "service_charges",
    "REGUL": "charge_regularisation",
    "APL": "housing_aid",
    "PAIEMENT": "payment",
    "DEPOT": "deposit",
}


def zeep_pages(travaux_erp: TravauxErpPeer, operation: str, records: str) -> list[Any]:
    """Every record of `operation`, paged by hand with plain zeep (100 a page, the cap), until
    an empty page: the count the hub's pull is compared with."""
    session = requests.Session()
    session.trust_env = False
    service = zeep.Client(
        travaux_erp.wsdl_url, transport=Transport(session=session, timeout=10)
    ).service
    found: list[Any] = []
    numero = 1
    while True:
        answer = getattr(service, operation)(page={"numero": numero, "taille": 100})
        holder = getattr(answer, records)
        page = [] if holder is None else next(iter(holder.__values__.values()))
        if not page:
            return found
        found.extend(page)
        numero += 1


def pull_entries(travaux_erp: TravauxErpPeer, **options: Any):  # type: ignore[no-untyped-def]
    return read_soap(
        travaux_erp.wsdl_url,
        operation="ListerEcritures",
        records_path="ecritures.ecriture",
        paging=SoapPaging(**PAGING),  # type: ignore[arg-type]
        key=["numeroEcriture"],
        retry=FAST,
        **options,
    )


# --- The connector ----------------------------------------------------------------------------


def test_dotted_argument_names_fill_nested_elements() -> None:
    assert nest_arguments({"page.numero": 2, "page.taille": 100, "modifieDepuis": "x"}) == {
        "page": {"numero": 2, "taille": 100},
        "modifieDepuis": "x",
    }
    with pytest.raises(ConfigError, match="has a value and also fields"):
        nest_arguments({"page": 1, "page.numero": 2})


def test_every_entry_arrives_through_the_cap_with_nested_fields(
    travaux_erp: TravauxErpPeer,
) -> None:
    table = pull_entries(travaux_erp)
    expected = zeep_pages(travaux_erp, "ListerEcritures", "ecritures")
    assert len(expected) == SEEDED >= 2000
    assert len(table) == len(expected)
    assert table.frame["numeroEcriture"].tolist() == [e.numeroEcriture for e in expected]
    assert list(table.frame.columns) == [
        "numeroEcriture",
        "locataire.reference",
        "locataire.nom",
        "dateEcriture",
        "code",
        "montant.valeur",
        "montant.devise",
        "modifieLe",
    ]
    assert table.frame["locataire.reference"].tolist() == [e.locataire.reference for e in expected]
    assert [Decimal(text) for text in table.frame["montant.valeur"]] == [
        e.montant.valeur for e in expected
    ]
    assert table.source_rows.iloc[0] == "ListerEcritures:numeroEcriture=EC-000001"
    # 26 pages of 100 for the hub (the cap followed), and the empty page confirming the total
    assert travaux_erp.stats()["calls"]["ListerEcritures"] == 2 * (SEEDED // 100) + 1 + 1


def test_a_peer_lying_about_its_total_fails_the_pull_with_both_numbers(
    travaux_erp: TravauxErpPeer,
) -> None:
    travaux_erp.set_mode(lie_about_total=7)
    with pytest.raises(PermanentError) as failure:
        pull_entries(travaux_erp)
    message = str(failure.value)
    assert f"announced {SEEDED + 7} records but sent {SEEDED}" in message
    assert "nothing of this pull is loaded" in message


def test_works_orders_flattened_to_one_row_per_line(travaux_erp: TravauxErpPeer) -> None:
    table = read_soap(
        travaux_erp.wsdl_url,
        operation="ListerBonsDeTravaux",
        records_path="bons.bon",
        flatten="lignes.ligne",
        paging=SoapPaging(**PAGING),  # type: ignore[arg-type]
        key=["numeroBon"],
        retry=FAST,
    )
    bons = zeep_pages(travaux_erp, "ListerBonsDeTravaux", "bons")
    lines = [(bon, ligne) for bon in bons for ligne in bon.lignes.ligne]
    assert len(bons) == 300 and len(table) == len(lines) > len(bons)
    assert list(table.frame.columns) == [
        "numeroBon",
        "locataire.reference",
        "locataire.nom",
        "objet",
        "etat",
        "dateCreation",
        "lignes.ligne.numeroLigne",
        "lignes.ligne.libelle",
        "lignes.ligne.quantite",
        "lignes.ligne.prixUnitaire",
        "modifieLe",
    ]
    frame = table.frame
    assert frame["numeroBon"].tolist() == [bon.numeroBon for bon, _ in lines]
    assert frame["locataire.reference"].tolist() == [bon.locataire.reference for bon, _ in lines]
    assert frame["lignes.ligne.numeroLigne"].tolist() == [str(li.numeroLigne) for _, li in lines]
    assert [Decimal(text) for text in frame["lignes.ligne.prixUnitaire"]] == [
        li.prixUnitaire for _, li in lines
    ]
    first = bons[0]
    assert len(first.lignes.ligne) >= 1
    assert table.source_rows.tolist()[: len(first.lignes.ligne)] == [
        f"ListerBonsDeTravaux:numeroBon={first.numeroBon}/ligne={n}"
        for n in range(1, len(first.lignes.ligne) + 1)
    ]
    assert len(set(table.source_rows)) == len(table)  # every line named apart


@pytest.mark.parametrize(
    ("flatten", "message"),
    [
        pytest.param(
            "lignes",
            r"flatten `lignes` is not a repeated element .* did you mean `lignes\.ligne`\?",
            id="not-repeated",
        ),
        pytest.param(
            "lignes.ligen", r"`ligen` of flatten `lignes.ligen` is not in lignes", id="misspelt"
        ),
    ],
)
def test_a_wrong_flatten_is_a_config_error_before_any_call(
    travaux_erp: TravauxErpPeer, flatten: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        read_soap(
            str(WSDL_FILE),
            address=travaux_erp.soap_url,
            operation="ListerBonsDeTravaux",
            records_path="bons.bon",
            flatten=flatten,
            paging=SoapPaging(**PAGING),  # type: ignore[arg-type]
        )
    assert travaux_erp.stats()["calls"] == {}


# --- Through the pipeline: pull → normalise → load on a SQLite warehouse ----------------------


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    yield from migrated_warehouse(f"sqlite:///{tmp_path}/warehouse.db")


def ledger_datafix(folder: Path, travaux_erp: TravauxErpPeer) -> Path:
    return incremental_ledger_datafix(
        folder,
        ("travaux-habitat", "Travaux Habitat"),
        {
            "kind": "soap",
            "wsdl": travaux_erp.wsdl_url,
            "operation": "ListerEcritures",
            "records": "ecritures.ecriture",
            "paging": PAGING,
            "key": ["numeroEcriture"],
            "cursor": {"column": "modifieLe", "argument": "modifieDepuis"},
            "timeout": 10,
        },
        entry_ref="numeroEcriture",
        tenant_ref="locataire.reference",
        entry_date="dateEcriture",
        kind={"from": "code", "map": CODES},
        amount="montant.valeur",
    )


def table_rows(warehouse: Warehouse, sql: str) -> list[Any]:
    with warehouse.engine.connect() as conn:
        return list(conn.execute(sa.text(sql)))


def test_the_pipeline_loads_every_entry_with_its_nested_fields(
    tmp_path: Path, travaux_erp: TravauxErpPeer, warehouse: Warehouse
) -> None:
    datafix = ledger_datafix(tmp_path, travaux_erp)
    expected = {
        e.numeroEcriture: e for e in zeep_pages(travaux_erp, "ListerEcritures", "ecritures")
    }
    assert run_ledger_once(datafix, warehouse, "run-1") == len(expected) == SEEDED
    loaded = table_rows(warehouse, "SELECT entry_ref, tenant_ref, amount_cents FROM ledger_entries")
    assert len(loaded) == SEEDED
    for entry_ref, tenant_ref, amount_cents in loaded:
        entry = expected[entry_ref]
        assert tenant_ref == entry.locataire.reference
        assert Decimal(amount_cents) == entry.montant.valeur * 100
    assert warehouse.cursor("travaux-habitat", "ledger_entries", "erp") is not None


def test_the_next_pull_sends_the_watermark_as_the_wsdl_types_it(
    tmp_path: Path, travaux_erp: TravauxErpPeer, warehouse: Warehouse
) -> None:
    """`modifieDepuis` is an xsd:dateTime the peer validates: the watermark kept from the
    first pull (`2025-07-19 16:59:24+00:00`, as the client parsed the column) goes out as
    ISO 8601, and the peer answers only the entries at or after it."""
    datafix = ledger_datafix(tmp_path, travaux_erp)
    assert run_ledger_once(datafix, warehouse, "run-1") == SEEDED
    stamps = sorted(e.modifieLe for e in zeep_pages(travaux_erp, "ListerEcritures", "ecritures"))
    at_latest = sum(stamp == stamps[-1] for stamp in stamps)
    travaux_erp.reset()
    assert run_ledger_once(datafix, warehouse, "run-2") == 0  # nothing changed since
    # one page: the entries at the watermark's exact stamp (already loaded), then done
    assert travaux_erp.stats()["calls"]["ListerEcritures"] == 1 and at_latest >= 1
    assert table_rows(warehouse, "SELECT count(*) FROM ledger_entries") == [(SEEDED,)]


def test_a_watermark_is_typed_by_the_argument_it_fills(travaux_erp: TravauxErpPeer) -> None:
    from connectors.soap.client import make_client, since_value

    client = make_client(travaux_erp.wsdl_url, timeout=10)
    sent = since_value(client, "ListerEcritures", "modifieDepuis", "2025-07-19 16:59:24+00:00")
    assert sent.isoformat() == "2025-07-19T16:59:24+00:00"
    # not a date: sent as it is (the peer's fault then names the value)
    assert since_value(client, "ListerEcritures", "modifieDepuis", "EC-1") == "EC-1"
    # an argument of another type keeps the text
    assert since_value(client, "LireEngagement", "numeroBon", "2025-07-19") == "2025-07-19"


def test_the_pipeline_loads_nothing_when_the_peer_lies_about_its_total(
    tmp_path: Path, travaux_erp: TravauxErpPeer, warehouse: Warehouse
) -> None:
    datafix = ledger_datafix(tmp_path, travaux_erp)
    travaux_erp.set_mode(lie_about_total=3)
    with pytest.raises(PermanentError, match=f"announced {SEEDED + 3} records but sent {SEEDED}"):
        run_ledger_once(datafix, warehouse, "run-1")
    assert table_rows(warehouse, "SELECT count(*) FROM ledger_entries") == [(0,)]
    assert warehouse.cursor("travaux-habitat", "ledger_entries", "erp") is None


def test_the_pipeline_loads_flattened_lines(
    tmp_path: Path, travaux_erp: TravauxErpPeer, warehouse: Warehouse
) -> None:
    document = {
        "version": 1,
        "landlord": {"id": "travaux-lignes", "name": "Travaux Lignes"},
        "sources": {
            "bons": {
                "kind": "soap",
                "wsdl": travaux_erp.wsdl_url,
                "operation": "ListerBonsDeTravaux",
                "records": "bons.bon",
                "flatten": "lignes.ligne",
                "paging": PAGING,
                "key": ["numeroBon", "lignes.ligne.numeroLigne"],
            }
        },
        "entities": {
            "quotes": {
                "source": "bons",
                "fields": {
                    "quote_ref": {"concat": ["numeroBon", "lignes.ligne.numeroLigne"]},
                    "order_ref": "numeroBon",
                    "amount_cents": "lignes.ligne.prixUnitaire",
                    "status": {"const": "sent"},
                    "issued_date": "dateCreation",
                },
            }
        },
    }
    loaded = load_datafix(write_datafix(tmp_path, document))
    pulled = pull(loaded, "quotes", warehouse=warehouse)
    load(warehouse, loaded, normalise(loaded, pulled), run_id="run-1")
    lines = [
        (bon.numeroBon, ligne)
        for bon in zeep_pages(travaux_erp, "ListerBonsDeTravaux", "bons")
        for ligne in bon.lignes.ligne
    ]
    assert pulled.rows == len(lines)
    rows = table_rows(warehouse, "SELECT quote_ref, order_ref, amount_cents FROM quotes")
    assert len(rows) == len(lines)
    expected = {f"{bon} {li.numeroLigne}": (bon, li.prixUnitaire * 100) for bon, li in lines}
    for quote_ref, order_ref, amount_cents in rows:
        assert (order_ref, Decimal(amount_cents)) == expected[quote_ref]
