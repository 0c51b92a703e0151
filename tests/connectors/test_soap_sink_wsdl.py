"""`SoapSink` requests built from the WSDL's types, idempotency on the target's own key,
read-back by reference and results by path (issue 11, points 1-3).

Against the works-order ERP on node-soap (`connectors/sandbox/erp_node/`: wrapped
document/literal, one nested `engagement` element, idempotent on `numeroBon`, faults for unknown
elements, `LireEngagement` by reference), counted at the peer; and, for the styles that peer does
not have (bare document/literal, RPC, attributes, simple content), against a local WSDL whose
requests are only rendered, never sent.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from connectors.delivery import OutgoingRecord
from connectors.errors import ConfigError, PermanentError
from connectors.retry import RetryPolicy
from connectors.sandbox.erp_node import TravauxErpPeer
from connectors.soap.push import ReadBack, Results, SoapSink
from tests.connectors.sinks import deliver

ONCE = RetryPolicy(attempts=1, first_wait=0, max_wait=0, jitter=0)

# commitments → EnregistrerEngagement(engagement {...}): the datafix's target paths
FIELDS = (
    "engagement.numeroBon",
    "engagement.fournisseur.siret",
    "engagement.fournisseur.nom",
    "engagement.dateEngagement",
    "engagement.montant.valeur",
    "engagement.montant.devise",
    "engagement.lignes.ligne.libelle",
    "engagement.lignes.ligne.quantite",
    "engagement.lignes.ligne.prixUnitaire",
)
STATUSES = {"CREE": "sent", "MIS_A_JOUR": "sent", "INCHANGE": "sent", "REFUSE": "dead"}


def sink(travaux_erp: TravauxErpPeer, **options: Any) -> SoapSink:
    settings: dict[str, Any] = {
        "wsdl": travaux_erp.wsdl_url,
        "operation": "EnregistrerEngagement",
        "natural_key": "engagement.numeroBon",
        "idempotency_field": None,
        "targets": FIELDS,
        "results": Results(
            status="statut",
            id="reference",
            message="message",
            reference="reference",
            statuses=STATUSES,
            checked=frozenset({"status", "id", "message"}),
        ),
        "read_back": ReadBack(
            "LireEngagement",
            argument="numeroBon",
            not_found_fault="Client.Introuvable",
            id="reference",
        ),
        "operation_timeout": 10,
        "retry": ONCE,
    }
    settings.update(options)
    return SoapSink("travaux", **settings)


def commitment(number: int, amount: str = "1250.50", version: str = "v1") -> OutgoingRecord:
    return OutgoingRecord(
        key=f"BT-{number:06d}",
        idempotency_key=f"{version}-{number}",
        fields={
            "engagement.numeroBon": f"BT-{number:06d}",
            "engagement.fournisseur.siret": "41234567800019",
            "engagement.fournisseur.nom": "Atlantique Maintenance Services",
            "engagement.dateEngagement": dt.date(2026, 3, 2),
            "engagement.montant.valeur": amount,
            "engagement.montant.devise": "EUR",
            "engagement.lignes.ligne.libelle": "Engagement travaux",
            "engagement.lignes.ligne.quantite": "1",
            "engagement.lignes.ligne.prixUnitaire": amount,
        },
    )


def test_the_request_is_the_nested_engagement_and_nothing_else(travaux_erp: TravauxErpPeer) -> None:
    travaux = sink(travaux_erp)
    assert travaux.request(commitment(1)) == {
        "engagement": {
            "numeroBon": "BT-000001",
            "fournisseur": {"siret": "41234567800019", "nom": "Atlantique Maintenance Services"},
            "dateEngagement": dt.date(2026, 3, 2),
            "montant": {"valeur": "1250.50", "devise": "EUR"},
            "lignes": {
                "ligne": [
                    {"libelle": "Engagement travaux", "quantite": "1", "prixUnitaire": "1250.50"}
                ]
            },
        }
    }
    envelope = travaux.envelope(commitment(1))
    assert "IdempotencyKey" not in envelope and "Reference" not in envelope
    assert travaux_erp.stats()["callsTotal"] == 0  # building a request calls nothing


def test_push_twice_writes_once_and_changes_write_updates(travaux_erp: TravauxErpPeer) -> None:
    travaux = sink(travaux_erp)
    records = [commitment(n) for n in range(1, 21)]
    first = travaux.send(records)
    assert {(d.outcome, d.details["status"]) for d in first} == {("sent", "CREE")}
    assert first[0].peer_id == "ENG-000001"
    again = travaux.send(records)  # the same content: the ERP writes nothing
    assert {(d.outcome, d.details["status"]) for d in again} == {("sent", "INCHANGE")}
    changed = [commitment(n, "99.90", "v2") for n in (3, 7, 11)]
    assert {d.details["status"] for d in travaux.send(changed)} == {"MIS_A_JOUR"}
    stats = travaux_erp.stats()
    assert stats["writes"] == 23 and stats["engagements"] == 20
    assert stats["statuts"] == {"CREE": 20, "MIS_A_JOUR": 3, "INCHANGE": 20}
    assert stats["calls"] == {"EnregistrerEngagement": 43}


def test_lists_make_repeated_lines_zipped_by_position(travaux_erp: TravauxErpPeer) -> None:
    record = commitment(5)
    fields = dict(record.fields)
    fields["engagement.lignes.ligne.libelle"] = ["Main d’œuvre", "Robinet"]
    fields["engagement.lignes.ligne.quantite"] = ["2", "1"]
    fields["engagement.lignes.ligne.prixUnitaire"] = ["45.00", "89.90"]
    fields["engagement.montant.valeur"] = "179.90"
    travaux = sink(travaux_erp)
    [delivered] = travaux.send([OutgoingRecord(record.key, "k", fields)])
    assert delivered.outcome == "sent", delivered.message
    held = travaux.read_back([OutgoingRecord(record.key, "k", fields)])
    assert held == {"BT-000005": "ENG-000001"}


def test_read_back_by_reference_finds_exactly_the_held_versions(
    travaux_erp: TravauxErpPeer,
) -> None:
    travaux = sink(travaux_erp)
    travaux.send([commitment(n) for n in (1, 2, 3)])
    asked = [commitment(1), commitment(2), commitment(3, "10.00", "v2"), commitment(4)]
    assert travaux.read_back(asked) == {"BT-000001": "ENG-000001", "BT-000002": "ENG-000002"}
    assert travaux_erp.stats()["calls"]["LireEngagement"] == 4  # one lookup per record in doubt


def test_records_in_doubt_are_read_back_and_the_rest_resent_without_duplicates(
    travaux_erp: TravauxErpPeer,
) -> None:
    records = [commitment(n) for n in range(1, 61)]
    sink(travaux_erp).send(records[:25])  # the answers are lost in a crash
    delivered = deliver(sink(travaux_erp), records)
    assert {d.outcome for d in delivered.values()} == {"sent"}
    stats = travaux_erp.stats()
    assert stats["engagements"] == 60 and stats["writes"] == 60
    assert set(stats["writesByBon"].values()) == {1}
    assert stats["statuts"]["INCHANGE"] == 0  # the 25 held were read back, not resent


def test_a_misspelt_target_path_is_one_error_with_did_you_mean_before_any_call(
    travaux_erp: TravauxErpPeer,
) -> None:
    targets = [path.replace("montant.valeur", "montant.valuer") for path in FIELDS]
    travaux = sink(travaux_erp, targets=targets)
    with pytest.raises(ConfigError) as caught:
        travaux.check()
    message = str(caught.value)
    assert "`engagement.montant.valuer` is not in the WSDL" in message
    assert "did you mean `engagement.montant.valeur`?" in message
    with pytest.raises(ConfigError):
        travaux.send([commitment(1)])
    assert travaux_erp.stats()["callsTotal"] == 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"idempotency_field": "IdempotencyKey"}, "idempotency_field: `IdempotencyKey` is not"),
        ({"natural_key": "engagement.numeroBons"}, "did you mean `engagement.numeroBon`?"),
        ({"operation": "EnregistrerEngagements"}, "did you mean `EnregistrerEngagement`?"),
        ({"targets": FIELDS[:3]}, "required element(s) left unmapped: `engagement"),
        ({"targets": ("engagement.montant",)}, "holds elements (valeur, devise)"),
        ({"results": Results(status="statu")}, "did you mean `statut`?"),
        (
            {"read_back": ReadBack("LireEngagement", argument="numero", not_found_fault="X")},
            "did you mean `numeroBon`?",
        ),
    ],
    ids=["idempotency", "natural-key", "operation", "required", "group", "status", "argument"],
)
def test_settings_the_wsdl_does_not_have_are_named(
    travaux_erp: TravauxErpPeer, options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        sink(travaux_erp, **options).check()
    assert expected in str(caught.value)
    assert travaux_erp.stats()["callsTotal"] == 0


def test_a_peer_refusing_everything_makes_every_record_dead_when_the_fault_is_mapped(
    travaux_erp: TravauxErpPeer,
) -> None:
    travaux_erp.set_mode(refuse_all=True)
    results = Results(status="statut", id="reference", faults={"Server.Refuse": "dead"})
    delivered = sink(travaux_erp, results=results).send([commitment(n) for n in range(1, 6)])
    assert {d.outcome for d in delivered} == {"dead"}
    assert "refusé" in delivered[0].message and "Server.Refuse" in delivered[0].message
    # unmapped, an unknown Server.* fault stops the push (records stay queued)
    with pytest.raises(PermanentError):
        sink(travaux_erp, results=Results(status="statut", id="reference")).send([commitment(1)])
    assert travaux_erp.stats()["writes"] == 0


def test_statuses_map_to_outcomes() -> None:
    results = Results(statuses={"REFUSE": "dead", "VERROU": "retry", "CREE": "sent"})
    assert [results.outcome(s) for s in ("CREE", "VERROU", "REFUSE", "ACCEPTED", "AUTRE")] == [
        "sent",
        "retry",
        "dead",
        "sent",
        "dead",
    ]


# --- other styles, rendered only ------------------------------------------------------------

# a document/literal binding and an rpc one, offline (its addresses are never called)
STYLES_WSDL = Path(__file__).parents[1] / "cases" / "wsdl" / "styles.wsdl"


@pytest.fixture
def styles() -> str:
    return str(STYLES_WSDL)


def _offline(wsdl: str, operation: str, targets: tuple[str, ...]) -> SoapSink:
    return SoapSink(
        "styles",
        wsdl=wsdl,
        operation=operation,
        mode="per_record",
        idempotency_field=None,
        reference_field=None,
        targets=targets,
        results=Results(status="", checked=frozenset()),
    )


def test_bare_document_literal_with_attributes_simple_content_and_indexed_lines(
    styles: str,
) -> None:
    targets = (
        "numero",
        "@version",
        "total",
        "total.devise",
        "ligne[0].libelle",
        "ligne[0].montant",
        "ligne[0].montant.@devise",
        "ligne[1].libelle",
        "ligne[1].montant",
        "ligne[1].montant.devise",
    )
    sink = _offline(styles, "Deposer", targets)
    values: dict[str, Any] = dict(zip(targets, ["F-1", 3, "150.00", "EUR"], strict=False))
    values.update(
        {
            "ligne[0].libelle": "Main d’œuvre",
            "ligne[0].montant": "100.00",
            "ligne[0].montant.@devise": "EUR",
            "ligne[1].libelle": "Déplacement",
            "ligne[1].montant": "50.00",
            "ligne[1].montant.devise": "EUR",
        }
    )
    envelope = sink.envelope(OutgoingRecord("F-1", "k", values))
    assert 'version="3"' in envelope
    assert '<ns0:total devise="EUR">150.00</ns0:total>' in envelope
    assert envelope.count("<ns0:ligne>") == 2
    assert '<ns0:montant devise="EUR">50.00</ns0:montant>' in envelope
    assert "commentaire" not in envelope  # only what the datafix maps is sent


def test_rpc_parts_are_top_level_paths(styles: str) -> None:
    sink = _offline(styles, "Creer", ("numero", "montant"))
    envelope = sink.envelope(OutgoingRecord("F-1", "k", {"numero": "F-1", "montant": "12.30"}))
    assert "<numero>F-1</numero>" in envelope and "<montant>12.30</montant>" in envelope
    with pytest.raises(ConfigError, match="did you mean `montant`"):
        _offline(styles, "Creer", ("numero", "montnat")).check()


def test_required_elements_of_a_line_are_named(styles: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _offline(styles, "Deposer", ("numero", "total", "total.devise", "ligne.libelle")).check()
    assert "left unmapped: `ligne.montant`" in str(caught.value)


# --- the datafix settings -------------------------------------------------------------------


def _settings(**changes: Any) -> dict[str, Any]:
    return {
        "kind": "soap",
        "sends": "commitments",
        "wsdl": "travaux.wsdl",
        "operation": "EnregistrerEngagement",
        "fields": {"engagement.numeroBon": "order_ref"},
        **changes,
    }


def test_natural_key_replaces_the_idempotency_element_unless_one_is_named() -> None:
    from connectors.soap.kinds import SoapSink as Settings

    natural = Settings(**_settings(natural_key="engagement.numeroBon"))
    assert natural.placed_fields() == ("engagement.numeroBon", None)
    both = Settings(**_settings(natural_key="engagement.numeroBon", idempotency_field="Cle"))
    assert both.placed_fields() == ("engagement.numeroBon", "Cle")
    assert Settings(**_settings(idempotency_field="none")).placed_fields() == ("Reference", None)
    assert Settings(**_settings()).placed_fields() == ("Reference", "IdempotencyKey")


def test_a_lookup_read_back_says_how_not_found_looks() -> None:
    from pydantic import ValidationError

    from connectors.soap.kinds import SoapSink as Settings

    lookup = {"operation": "LireEngagement", "argument": "numeroBon"}
    with pytest.raises(ValidationError, match="needs `not_found`"):
        Settings(**_settings(read_back=lookup))
    with pytest.raises(ValidationError, match="one of them"):
        Settings(**_settings(read_back={**lookup, "not_found": {}}))
    with pytest.raises(ValidationError):
        Settings(**_settings(results={"statuses": {"CREE": "ok"}}))
    settings = Settings(**_settings(read_back={**lookup, "not_found": {"empty": True}}))
    assert settings.read_back is not None and settings.read_back.not_found is not None
