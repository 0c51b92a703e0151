"""`datafix check` of SOAP sources against their WSDL (issue 11, point 6).

The WSDL is the node-soap works-order ERP's (`connectors/sandbox/erp_node/travaux.wsdl`), read
as a file: nothing is called. Each mistake is written into an otherwise good datafix and must
come back as one `file:line:col` problem at the mistake, with a did-you-mean, never as a
traceback. A WSDL URL that does not answer is one problem within the source's `timeout`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sandbox.erp_node import WSDL_FILE
from pipelines.lib.checks import check_datafix
from pipelines.lib.datafixes import Located

GOOD = f"""\
version: 1
landlord:
  id: travaux-check
  name: Travaux Check
sources:
  ecritures:
    kind: soap
    wsdl: "{WSDL_FILE}"
    operation: ListerEcritures
    records: ecritures.ecriture
    paging:
      kind: page_number
      page_size: 500
      page_argument: page.numero
      page_size_argument: page.taille
      total_path: total
    key: [numeroEcriture]
    cursor:
      column: modifieLe
      argument: modifieDepuis
    timeout: 5
  bons:
    kind: soap
    wsdl: "{WSDL_FILE}"
    operation: ListerBonsDeTravaux
    records: bons.bon
    flatten: lignes.ligne
    arguments:
      page.numero: 1
      page.taille: 100
    key: [numeroBon, lignes.ligne.numeroLigne]
entities:
  ledger_entries:
    source: ecritures
    mode: incremental
    fields:
      entry_ref: numeroEcriture
      tenant_ref: locataire.reference
      entry_date: dateEcriture
      kind:
        from: code
        map: {{LOYER: rent, CHARGES: service_charges, REGUL: charge_regularisation,
              APL: housing_aid, PAIEMENT: payment, DEPOT: deposit}}
      amount_cents: montant.valeur
  quotes:
    source: bons
    fields:
      quote_ref:
        concat: [numeroBon, lignes.ligne.numeroLigne]
      order_ref: numeroBon
      amount_cents: lignes.ligne.prixUnitaire
      status: {{const: sent}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "travaux-check.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def at(path: Path, line_containing: str, token: str) -> tuple[int, int]:
    """1-based (line, column) of `token` on the first line holding `line_containing`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line_containing in line:
            return number, line.index(token) + 1
    raise AssertionError(f"{line_containing!r} is not in {path}")


def located(problems: list[Located]) -> list[tuple[int, int, str, str]]:
    return [(p.line, p.column, p.message, p.hint) for p in problems]


def test_the_good_datafix_checks_clean(tmp_path: Path, hub_home: Path) -> None:
    assert check_datafix(write(tmp_path, GOOD)) == []


MISTAKES = {
    "misspelt operation": (
        ("operation: ListerEcritures", "operation: ListerEcriture"),
        ("operation: ListerEcriture", "ListerEcriture"),
        "source `ecritures`: the WSDL has no operation `ListerEcriture`",
        "did you mean `ListerEcritures`?",
    ),
    "misspelt nested field path": (
        ("amount_cents: montant.valeur", "amount_cents: montant.valuer"),
        ("montant.valuer", "montant.valuer"),
        "column `montant.valuer` is not in the header of `ecritures`",
        "did you mean `montant.valeur`?",
    ),
    "wrong records path": (
        ("records: ecritures.ecriture", "records: ecritures.entree"),
        ("records: ecritures.entree", "ecritures.entree"),
        "source `ecritures`: records `ecritures.entree`: `entree` is not in `ecritures`"
        " (there: ecriture)",
        "did you mean `ecritures.ecriture`?",
    ),
    "misspelt paging argument": (
        ("page_argument: page.numero", "page_argument: page.nombre"),
        ("page_argument: page.nombre", "page.nombre"),
        "source `ecritures`: argument `page.nombre`: `nombre` is not in `page` (there: numero,"
        " taille)",
        "did you mean `page.numero`?",
    ),
    "misspelt total path": (
        ("total_path: total", "total_path: totale"),
        ("total_path: totale", "totale"),
        "source `ecritures`: total_path `totale`: `totale` is not in `ListerEcritures's"
        " answer` (there: ecritures, total, pageNumero)",
        "did you mean `total`?",
    ),
    "misspelt cursor argument": (
        ("argument: modifieDepuis", "argument: modifiesDepuis"),
        ("argument: modifiesDepuis", "modifiesDepuis"),
        "source `ecritures`: argument `modifiesDepuis`: `modifiesDepuis` is not in"
        " `ListerEcritures's request` (there: page, modifieDepuis)",
        "did you mean `modifieDepuis`?",
    ),
    "misspelt key": (
        ("key: [numeroEcriture]", "key: [numeroEcritur]"),
        ("key: [numeroEcritur]", "numeroEcritur"),
        "source `ecritures`: key `numeroEcritur` is not a field of the records"
        " `ecritures.ecriture`",
        "did you mean `numeroEcriture`?",
    ),
    "flatten not repeated": (
        ("flatten: lignes.ligne", "flatten: lignes"),
        ("flatten: lignes", "lignes"),
        "source `bons`: flatten `lignes` is not a repeated element",
        "did you mean `lignes.ligne`?",
    ),
    "misspelt flattened field": (
        ("amount_cents: lignes.ligne.prixUnitaire", "amount_cents: lignes.ligne.prixUnitair"),
        ("lignes.ligne.prixUnitair", "lignes.ligne.prixUnitair"),
        "column `lignes.ligne.prixUnitair` is not in the header of `bons`",
        "did you mean `lignes.ligne.prixUnitaire`?",
    ),
    "required element left out": (
        ("      page.taille: 100\n", ""),
        ("operation: ListerBonsDeTravaux", "ListerBonsDeTravaux"),
        "source `bons`: the request of `ListerBonsDeTravaux` leaves out `page.taille`, which the"
        " WSDL requires",
        "set it under `arguments` (a dotted name fills a nested element), or as a paging argument",
    ),
    "unknown fixed argument": (
        ("      page.taille: 100\n", "      page.taille: 100\n      IdempotencyKey: x\n"),
        ("IdempotencyKey: x", "IdempotencyKey"),
        "source `bons`: argument `IdempotencyKey`: `IdempotencyKey` is not in"
        " `ListerBonsDeTravaux's request` (there: page, modifieDepuis)",
        "",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_is_one_located_problem_with_a_did_you_mean(
    tmp_path: Path, hub_home: Path, mistake: str
) -> None:
    (old, new), (line, token), message, hint = MISTAKES[mistake]
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))

    problems = check_datafix(path)

    assert located(problems) == [(*at(path, line, token), message, hint)]
    assert "Traceback" not in message


def test_every_mistake_at_once_is_reported_in_one_pass(tmp_path: Path, hub_home: Path) -> None:
    text = GOOD
    for name in ("misspelt nested field path", "misspelt paging argument", "misspelt key"):
        (old, new), _, _, _ = MISTAKES[name]
        text = text.replace(old, new, 1)
    path = write(tmp_path, text)

    problems = check_datafix(path)

    assert [(p.line, p.column) for p in problems] == [
        at(path, "page_argument: page.nombre", "page.nombre"),
        at(path, "key: [numeroEcritur]", "numeroEcritur"),
        at(path, "montant.valuer", "montant.valuer"),
    ]
    assert [p.hint for p in problems] == [
        "did you mean `page.numero`?",
        "did you mean `numeroEcriture`?",
        "did you mean `montant.valeur`?",
    ]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server accepts the connection and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/wsdl"


def test_a_wsdl_url_that_never_answers_is_one_problem_within_the_timeout(
    tmp_path: Path, hub_home: Path, silent_server: str
) -> None:
    text = GOOD.replace(f'wsdl: "{WSDL_FILE}"', f'wsdl: "{silent_server}"', 1)
    text = text.replace("timeout: 5", "timeout: 0.5")
    path = write(tmp_path, text)

    started = time.monotonic()
    problems = check_datafix(path)

    assert time.monotonic() - started < 5
    [problem] = problems
    assert (problem.line, problem.column) == at(path, silent_server, '"')
    assert problem.message.startswith("cannot open `ecritures`: WSDL ")
    assert "no answer within 0.5 s" in problem.message


def test_a_missing_wsdl_file_is_one_problem_at_wsdl(tmp_path: Path, hub_home: Path) -> None:
    text = GOOD.replace(f'wsdl: "{WSDL_FILE}"', f'wsdl: "{tmp_path}/nowhere.wsdl"', 1)
    path = write(tmp_path, text)

    [problem] = check_datafix(path)

    assert (problem.line, problem.column) == at(path, "nowhere.wsdl", '"')
    assert "WSDL not found" in problem.message
