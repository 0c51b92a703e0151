"""The sandbox's second SOAP peer: the works-order ERP on Node.js (node-soap), tested as a peer.

It is shaped like an ERP the hub was never tuned to (issue 11): French names, wrapped
document/literal with nested types, a page cap below the page size a datafix asks for,
idempotent on the works-order number, a read by reference, no idempotency element, faults for
unknown elements. These tests talk to it with zeep (the hub's SOAP library) and plain HTTP;
they check the peer, not the hub's SOAP connector.
"""

from __future__ import annotations

import calendar
import datetime as dt
import errno
import os
import socket
from decimal import Decimal
from typing import Any

import pytest
import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.transports import Transport

from connectors.sandbox import erp_node
from connectors.sandbox.erp_node import NodePeerError, TravauxErpPeer
from connectors.sandbox.run import Sandbox

SEEDED = 2600  # server.js's default number of ledger entries


def client(wsdl_url: str) -> zeep.Client:
    session = requests.Session()
    session.trust_env = False  # loopback: no proxy
    return zeep.Client(wsdl_url, transport=Transport(session=session, timeout=10))


def engagement(numero_bon: str = "BT-000042", **changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "numeroBon": numero_bon,
        "fournisseur": {"siret": "12345678901234", "nom": "Plomberie Dupont"},
        "dateEngagement": "2025-03-01",
        "montant": {"valeur": Decimal("1234.50"), "devise": "EUR"},
        "lignes": {
            "ligne": [
                {"libelle": "Main d’œuvre", "quantite": Decimal(2), "prixUnitaire": Decimal(45)},
                {"libelle": "Robinet", "quantite": Decimal(1), "prixUnitaire": Decimal("89.9")},
            ]
        },
    }
    return {**value, **changes}


ENGAGEMENT_XML = (
    "<t:numeroBon>BT-000007</t:numeroBon>"
    "<t:fournisseur><t:siret>12345678901234</t:siret><t:nom>Élec Ouest</t:nom></t:fournisseur>"
    "<t:dateEngagement>2025-01-15</t:dateEngagement>"
    "<t:montant><t:valeur>150.00</t:valeur><t:devise>EUR</t:devise></t:montant>"
)


def post_raw(travaux_erp: TravauxErpPeer, operation: str, body: str) -> tuple[int, str, str]:
    """POST a hand-written envelope; the HTTP status and the fault's code and message."""
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:t="urn:patrimoine-travaux"><soap:Body>'
        f"{body}</soap:Body></soap:Envelope>"
    )
    response = requests.post(
        travaux_erp.soap_url,
        data=envelope.encode("utf-8"),
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"urn:patrimoine-travaux#{operation}"',
        },
        timeout=10,
    )
    document = etree.fromstring(response.content)
    return (
        response.status_code,
        document.findtext(".//faultcode") or "",
        document.findtext(".//faultstring") or "",
    )


def every_entry(travaux_erp: TravauxErpPeer, taille: int) -> tuple[list[Any], int]:
    """Every page of ListerEcritures until the announced total is read (or an empty page)."""
    service = client(travaux_erp.wsdl_url).service
    entries: list[Any] = []
    numero, total = 1, None
    while total is None or len(entries) < total:
        answer = service.ListerEcritures(page={"numero": numero, "taille": taille})
        assert answer.pageNumero == numero
        total = answer.total
        page = answer.ecritures.ecriture if answer.ecritures is not None else []
        if not page:
            break
        entries.extend(page)
        numero += 1
    assert total is not None
    return entries, total


def element_paths(complex_type: Any, prefix: str = "") -> list[str]:
    """Every element under a zeep complex type, as dotted paths, in schema order."""
    paths = []
    for name, element in complex_type.elements:
        path = f"{prefix}{name}"
        paths.append(path)
        if hasattr(element.type, "elements"):
            paths += element_paths(element.type, f"{path}.")
    return paths


# --- The WSDL ---------------------------------------------------------------------------------


def test_the_wsdl_is_wrapped_document_literal_with_french_operations(
    travaux_erp: TravauxErpPeer,
) -> None:
    soap = client(travaux_erp.wsdl_url)
    port = soap.wsdl.services["PatrimoineTravaux"].ports["PatrimoineTravauxPort"]
    assert port.binding_options["address"] == travaux_erp.soap_url  # rewritten to the peer's port
    operations = port.binding._operations
    assert set(operations) == {
        "ListerEcritures",
        "ListerBonsDeTravaux",
        "EnregistrerEngagement",
        "LireEngagement",
    }
    assert {operation.style for operation in operations.values()} == {"document"}
    # wrapped: one element named after the operation, holding ONE nested `engagement`
    body = operations["EnregistrerEngagement"].input.body
    assert body.qname == etree.QName("urn:patrimoine-travaux", "EnregistrerEngagement")
    assert [name for name, _ in body.type.elements] == ["engagement"]
    assert element_paths(body.type) == [
        "engagement",
        "engagement.numeroBon",
        "engagement.fournisseur",
        "engagement.fournisseur.siret",
        "engagement.fournisseur.nom",
        "engagement.dateEngagement",
        "engagement.montant",
        "engagement.montant.valeur",
        "engagement.montant.devise",
        "engagement.lignes",
        "engagement.lignes.ligne",
        "engagement.lignes.ligne.libelle",
        "engagement.lignes.ligne.quantite",
        "engagement.lignes.ligne.prixUnitaire",
    ]  # no idempotency element: the ERP is idempotent on its own key, numeroBon
    lister = operations["ListerEcritures"].output.body.type
    assert "ecritures.ecriture.montant.valeur" in element_paths(lister)
    assert "ecritures.ecriture.locataire.reference" in element_paths(lister)
    # the same WSDL through node-soap's own route
    assert "urn:patrimoine-travaux" in requests.get(f"{travaux_erp.soap_url}?wsdl", timeout=10).text


# --- Reading: the page cap, paging, nested fields ---------------------------------------------


def test_the_server_caps_the_page_size_and_announces_the_total(travaux_erp: TravauxErpPeer) -> None:
    answer = client(travaux_erp.wsdl_url).service.ListerEcritures(page={"numero": 1, "taille": 500})
    assert len(answer.ecritures.ecriture) == 100  # asked 500, the cap is 100
    assert answer.total == SEEDED
    assert answer.pageNumero == 1
    travaux_erp.set_mode(cap=40)
    answer = client(travaux_erp.wsdl_url).service.ListerEcritures(page={"numero": 2, "taille": 500})
    assert len(answer.ecritures.ecriture) == 40
    assert answer.ecritures.ecriture[0].numeroEcriture == "EC-000041"


def test_paging_reads_every_entry_once(travaux_erp: TravauxErpPeer) -> None:
    entries, total = every_entry(travaux_erp, taille=500)
    numbers = [entry.numeroEcriture for entry in entries]
    assert total == len(entries) == len(set(numbers)) == SEEDED >= 2000
    assert numbers == sorted(numbers)  # the seed's order, stable across pages
    assert travaux_erp.stats()["calls"]["ListerEcritures"] == SEEDED // 100


def test_entries_carry_nested_fields(travaux_erp: TravauxErpPeer) -> None:
    entry = client(travaux_erp.wsdl_url).service.ListerEcritures(page={"numero": 3, "taille": 5})
    first = entry.ecritures.ecriture[0]
    assert first.numeroEcriture == "EC-000011"
    assert first.locataire.reference.startswith("LOC-") and first.locataire.nom
    assert isinstance(first.montant.valeur, Decimal) and first.montant.devise == "EUR"
    assert first.code in {"LOYER", "CHARGES", "REGUL", "APL", "PAIEMENT", "DEPOT"}
    assert first.dateEcriture.year in (2024, 2025) and first.modifieLe.tzinfo is not None


def test_work_orders_carry_repeated_lines(travaux_erp: TravauxErpPeer) -> None:
    service = client(travaux_erp.wsdl_url).service
    answer = service.ListerBonsDeTravaux(page={"numero": 1, "taille": 250})
    assert len(answer.bons.bon) == 100 and answer.total == 300
    lines = [len(bon.lignes.ligne) for bon in answer.bons.bon]
    assert min(lines) >= 1 and max(lines) > 1
    first = answer.bons.bon[0]
    assert [ligne.numeroLigne for ligne in first.lignes.ligne] == list(
        range(1, len(first.lignes.ligne) + 1)
    )
    assert isinstance(first.lignes.ligne[0].prixUnitaire, Decimal)


def test_modifie_depuis_keeps_the_records_modified_since(travaux_erp: TravauxErpPeer) -> None:
    service = client(travaux_erp.wsdl_url).service
    since = "2025-01-01T00:00:00Z"
    answer = service.ListerEcritures(page={"numero": 1, "taille": 100}, modifieDepuis=since)
    assert 0 < answer.total < SEEDED
    assert all(entry.modifieLe.year >= 2025 for entry in answer.ecritures.ecriture)


def test_a_wrong_page_is_a_client_fault(travaux_erp: TravauxErpPeer) -> None:
    with pytest.raises(Fault) as fault:
        client(travaux_erp.wsdl_url).service.ListerEcritures(page={"numero": 0, "taille": 10})
    assert fault.value.code == "soap:Client.ValeurInvalide"
    assert "page.numero" in fault.value.message


# --- Writing: idempotent on numeroBon, faults for what the schema does not declare ------------


def test_the_same_engagement_twice_is_written_once(travaux_erp: TravauxErpPeer) -> None:
    service = client(travaux_erp.wsdl_url).service
    first = service.EnregistrerEngagement(engagement=engagement())
    again = service.EnregistrerEngagement(engagement=engagement())
    assert (first.statut, again.statut) == ("CREE", "INCHANGE")
    assert first.reference == again.reference and first.reference.startswith("ENG-")
    # the same amount written differently is the same content
    same = engagement(montant={"valeur": Decimal("1234.5000"), "devise": "EUR"})
    assert service.EnregistrerEngagement(engagement=same).statut == "INCHANGE"
    stats = travaux_erp.stats()
    assert stats["writes"] == 1
    assert stats["writesByBon"] == {"BT-000042": 1}
    assert stats["statuts"] == {"CREE": 1, "MIS_A_JOUR": 0, "INCHANGE": 2}
    assert stats["calls"]["EnregistrerEngagement"] == 3


def test_a_changed_engagement_is_updated_in_place(travaux_erp: TravauxErpPeer) -> None:
    service = client(travaux_erp.wsdl_url).service
    created = service.EnregistrerEngagement(engagement=engagement())
    changed = engagement(montant={"valeur": Decimal("1300.00"), "devise": "EUR"})
    updated = service.EnregistrerEngagement(engagement=changed)
    assert (updated.statut, updated.reference) == ("MIS_A_JOUR", created.reference)
    fewer_lines = engagement(lignes={"ligne": [engagement()["lignes"]["ligne"][0]]})
    assert service.EnregistrerEngagement(engagement=fewer_lines).statut == "MIS_A_JOUR"
    other = service.EnregistrerEngagement(engagement=engagement("BT-000043"))
    assert other.statut == "CREE" and other.reference != created.reference
    stats = travaux_erp.stats()
    assert stats["writes"] == 4
    assert stats["writesByBon"] == {"BT-000042": 3, "BT-000043": 1}


@pytest.mark.parametrize(
    ("body", "unknown", "where"),
    [
        pytest.param(
            f"<t:engagement>{ENGAGEMENT_XML}<t:IdempotencyKey>k-1</t:IdempotencyKey></t:engagement>",
            "IdempotencyKey",
            "EnregistrerEngagement.engagement",
            id="in-engagement",
        ),
        pytest.param(
            f"<t:engagement>{ENGAGEMENT_XML}</t:engagement><t:IdempotencyKey>k-1</t:IdempotencyKey>",
            "IdempotencyKey",
            "EnregistrerEngagement",
            id="beside-engagement",
        ),
        pytest.param(
            "<t:engagement>"
            + ENGAGEMENT_XML.replace("<t:devise>", "<t:taux>20</t:taux><t:devise>")
            + "</t:engagement>",
            "taux",
            "EnregistrerEngagement.engagement.montant",
            id="nested",
        ),
        pytest.param(
            f"<t:engagement>{ENGAGEMENT_XML}<t:lignes><t:ligne><t:libelle>a</t:libelle>"
            "<t:quantite>1</t:quantite><t:prixUnitaire>2</t:prixUnitaire><t:remise>1</t:remise>"
            "</t:ligne></t:lignes></t:engagement>",
            "remise",
            "EnregistrerEngagement.engagement.lignes.ligne",
            id="in-a-line",
        ),
    ],
)
def test_an_unknown_element_is_a_fault_naming_it(
    travaux_erp: TravauxErpPeer, body: str, unknown: str, where: str
) -> None:
    status, code, message = post_raw(
        travaux_erp,
        "EnregistrerEngagement",
        f"<t:EnregistrerEngagement>{body}</t:EnregistrerEngagement>",
    )
    assert (status, code) == (500, "soap:Client.ElementInconnu")
    assert f"« {unknown} »" in message and f"« {where} »" in message
    assert travaux_erp.stats()["writes"] == 0


def test_a_missing_or_wrong_element_is_a_fault(travaux_erp: TravauxErpPeer) -> None:
    without_date = ENGAGEMENT_XML.replace("<t:dateEngagement>2025-01-15</t:dateEngagement>", "")
    _, code, message = post_raw(
        travaux_erp,
        "EnregistrerEngagement",
        f"<t:EnregistrerEngagement><t:engagement>{without_date}</t:engagement>"
        "</t:EnregistrerEngagement>",
    )
    assert code == "soap:Client.ElementManquant"
    assert "EnregistrerEngagement.engagement.dateEngagement" in message
    with pytest.raises(Fault) as fault:
        client(travaux_erp.wsdl_url).service.EnregistrerEngagement(
            engagement=engagement(fournisseur={"siret": "123", "nom": "Trop court"})
        )
    assert fault.value.code == "soap:Client.ValeurInvalide"
    assert "fournisseur.siret" in fault.value.message
    assert travaux_erp.stats()["writes"] == 0


def test_the_raw_envelope_without_lines_is_accepted(travaux_erp: TravauxErpPeer) -> None:
    status, code, _ = post_raw(
        travaux_erp,
        "EnregistrerEngagement",
        f"<t:EnregistrerEngagement><t:engagement>{ENGAGEMENT_XML}</t:engagement>"
        "</t:EnregistrerEngagement>",
    )
    assert (status, code) == (200, "")
    assert travaux_erp.stats()["writesByBon"] == {"BT-000007": 1}


# --- Reading one engagement back by reference -------------------------------------------------


def test_lire_engagement_answers_what_the_erp_holds(travaux_erp: TravauxErpPeer) -> None:
    service = client(travaux_erp.wsdl_url).service
    created = service.EnregistrerEngagement(engagement=engagement())
    service.EnregistrerEngagement(
        engagement=engagement(montant={"valeur": Decimal("99.90"), "devise": "EUR"})
    )
    held = service.LireEngagement(numeroBon="BT-000042")
    assert held.reference == created.reference and held.version == 2
    assert held.engagement.numeroBon == "BT-000042"
    assert held.engagement.fournisseur.siret == "12345678901234"
    assert held.engagement.montant.valeur == Decimal("99.90")
    assert [ligne.libelle for ligne in held.engagement.lignes.ligne] == ["Main d’œuvre", "Robinet"]
    assert held.enregistreLe.tzinfo is not None
    assert travaux_erp.stats()["calls"]["LireEngagement"] == 1


def test_lire_engagement_of_an_unknown_order_is_introuvable(travaux_erp: TravauxErpPeer) -> None:
    with pytest.raises(Fault) as fault:
        client(travaux_erp.wsdl_url).service.LireEngagement(numeroBon="BT-999999")
    assert fault.value.code == "soap:Client.Introuvable"
    assert "BT-999999" in fault.value.message


# --- Test controls: the stats and the behaviour switches --------------------------------------


def test_lie_about_total_announces_more_than_it_serves(travaux_erp: TravauxErpPeer) -> None:
    assert travaux_erp.set_mode(lie_about_total=7)["lieAboutTotal"] == 7
    entries, total = every_entry(travaux_erp, taille=500)
    assert total == SEEDED + 7 and len(entries) == SEEDED  # a client must notice the gap


def test_refuse_all_faults_every_write_and_writes_nothing(travaux_erp: TravauxErpPeer) -> None:
    travaux_erp.set_mode(refuse_all=True)
    service = client(travaux_erp.wsdl_url).service
    for numero in ("BT-000001", "BT-000002"):
        with pytest.raises(Fault) as fault:
            service.EnregistrerEngagement(engagement=engagement(numero))
        assert fault.value.code == "soap:Server.Refuse"
        assert numero in fault.value.message
    assert travaux_erp.stats()["writes"] == 0
    assert travaux_erp.stats()["calls"]["EnregistrerEngagement"] == 2
    travaux_erp.set_mode(refuse_all=False)
    assert service.EnregistrerEngagement(engagement=engagement()).statut == "CREE"


def test_the_mode_endpoint_refuses_unknown_switches(travaux_erp: TravauxErpPeer) -> None:
    response = requests.post(f"{travaux_erp.url}/_peer/mode", json={"lentement": True}, timeout=10)
    assert response.status_code == 400 and "lentement" in response.json()["error"]
    assert requests.get(f"{travaux_erp.url}/_peer/mode", timeout=10).json() == {
        "cap": 100,
        "lieAboutTotal": 0,
        "refuseAll": False,
    }


def test_reset_forgets_engagements_counters_and_mode(travaux_erp: TravauxErpPeer) -> None:
    service = client(travaux_erp.wsdl_url).service
    service.EnregistrerEngagement(engagement=engagement())
    travaux_erp.set_mode(cap=10, refuse_all=True)
    stats = travaux_erp.reset()
    assert stats["writes"] == 0 and stats["engagements"] == 0 and stats["calls"] == {}
    assert stats["mode"] == {"cap": 100, "lieAboutTotal": 0, "refuseAll": False}
    assert requests.get(travaux_erp.stats_url, timeout=10).json()["writesByBon"] == {}
    with pytest.raises(Fault, match="BT-000042"):
        service.LireEngagement(numeroBon="BT-000042")


# --- The launcher -----------------------------------------------------------------------------


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_start_up_switches_and_a_clean_stop() -> None:
    with TravauxErpPeer(cap=20, lie_about_total=3, refuse_all=True, ecritures=50) as small:
        port = small.port
        assert port is not None
        answer = client(small.wsdl_url).service.ListerEcritures(page={"numero": 3, "taille": 500})
        assert len(answer.ecritures.ecriture) == 10 and answer.total == 53
        assert small.stats()["mode"] == {"cap": 20, "lieAboutTotal": 3, "refuseAll": True}
    assert not small.running
    assert refused(port)


def test_a_taken_port_is_address_in_use(travaux_peer: TravauxErpPeer) -> None:
    assert travaux_peer.port is not None
    with pytest.raises(OSError) as error:
        TravauxErpPeer(port=travaux_peer.port).start()
    assert error.value.errno == errno.EADDRINUSE


def test_without_node_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(erp_node.shutil, "which", lambda name: None)
    with pytest.raises(NodePeerError, match=r"`node` is not on PATH.*Node\.js 20"):
        TravauxErpPeer().start()


def test_the_sandbox_serves_it_and_exports_its_wsdl(sandbox: Sandbox) -> None:
    wsdl = os.environ["DATAFIX_SANDBOX_TRAVAUX_WSDL"]
    assert wsdl == sandbox.travaux.wsdl_url and sandbox.travaux.started
    answer = client(wsdl).service.ListerEcritures(page={"numero": 1, "taille": 1})
    assert answer.total == SEEDED


def test_months_moves_every_date_of_the_seed_by_whole_months() -> None:
    """`--months` (the demo calendar's shift): the same seed, each date moved by whole months
    with its day of the month (clamped) and its time of day; the amounts do not move."""
    with (
        TravauxErpPeer(ecritures=30, bons=5) as reference,
        TravauxErpPeer(ecritures=30, bons=5, months=14) as moved,
    ):
        page = {"numero": 1, "taille": 30}
        before = client(reference.wsdl_url).service.ListerEcritures(page=page).ecritures.ecriture
        after = client(moved.wsdl_url).service.ListerEcritures(page=page).ecritures.ecriture
    assert len(before) == len(after) == 30
    for old, new in zip(before, after, strict=True):
        assert (new.numeroEcriture, new.montant.valeur) == (old.numeroEcriture, old.montant.valeur)
        # 14 months on: the next year and two months later, the day clamped to that month
        index = old.dateEcriture.month - 1 + 14
        year, month = old.dateEcriture.year + index // 12, index % 12 + 1
        last = calendar.monthrange(year, month)[1]
        assert new.dateEcriture == dt.date(year, month, min(old.dateEcriture.day, last))
        assert new.modifieLe.time() == old.modifieLe.time()
