"""Loading and checking datafix files (`pipelines.lib.datafixes`).

The fixture files are in tests/cases/datafixes/: `good/` holds a valid datafix, `bad/` one file
per kind of mistake, each named after its landlord id (except `wrong-id.yaml`, whose mistake is
exactly that). Expected line and column numbers are computed from the YAML text itself, so a
test fails if a problem is reported anywhere but where the mistake is written. The sources'
CSV exports are generated into the test's own inbox (`$DATAFIX_HOME/inbox/<id>/`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.errors import ConfigError
from pipelines.lib.checks import check_datafix
from pipelines.lib.datafixes import (
    DatafixError,
    Located,
    load_datafix,
    resolve_env,
)
from tests.casedata import parametrize

CASES = Path(__file__).resolve().parents[2] / "cases" / "datafixes"
GOOD = CASES / "good" / "acme-habitat.yaml"
BAD = CASES / "bad"

TENANTS_CSV = (
    "N° locataire;Statut;Date d'entrée;Nom;Prénom;Aide;Occupants;FSL\r\n"
    "T1;ACT;01/01/2020;Dupont;Jean;APL;2;O\r\n"
)
LEDGER_CSV = "N° écriture;N° locataire;Date;Code;Débit;Crédit\r\nE1;T1;01/03/2026;QUIT;512,30;\r\n"


def position(path: Path, line_containing: str, token: str | None = None) -> tuple[int, int]:
    """1-based (line, column) of `token` on the first line of `path` holding `line_containing`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line_containing in line:
            return number, line.index(token or line_containing) + 1
    raise AssertionError(f"{line_containing!r} is not in {path}")


def drop_export(hub_home: Path, landlord_id: str, name: str, content: str) -> Path:
    """Write a cp1252 export into the landlord's default inbox, as French Excel saves it."""
    inbox = hub_home / "inbox" / landlord_id
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(content.encode("cp1252"))
    return path


def where(problems: list[Located]) -> list[tuple[int, int]]:
    return [(problem.line, problem.column) for problem in problems]


# --- a good file ----------------------------------------------------------------------------


def test_good_datafix_loads_with_the_sha256_of_its_bytes() -> None:
    loaded = load_datafix(GOOD)

    assert loaded.landlord_id == "acme-habitat"
    assert loaded.sha == hashlib.sha256(GOOD.read_bytes()).hexdigest()
    assert loaded.path == GOOD
    assert set(loaded.datafix.entities) == {"tenants", "ledger_entries"}


def test_good_datafix_inbox_defaults_to_the_hub_home(hub_home: Path) -> None:
    assert load_datafix(GOOD).inbox() == hub_home / "inbox" / "acme-habitat"


def test_good_datafix_checks_clean_when_its_exports_are_in_the_inbox(hub_home: Path) -> None:
    drop_export(hub_home, "acme-habitat", "locataires_2026-03.csv", TENANTS_CSV)
    drop_export(hub_home, "acme-habitat", "quittancement_2026-03.csv", LEDGER_CSV)

    assert check_datafix(GOOD) == []


def test_load_datafix_refuses_a_bad_file_listing_its_problems() -> None:
    path = BAD / "bad-choice.yaml"

    with pytest.raises(DatafixError) as raised:
        load_datafix(path)

    line, column = position(path, "map: {ACT: actif", "actif")
    assert where(raised.value.problems) == [(line, column)]
    assert str(raised.value).startswith(f"{path}:{line}:{column}: `actif` is not an allowed value")


# --- the three mistakes landlord IT makes, each located -------------------------------------


@dataclass(frozen=True)
class Mistake:
    line_containing: str
    token: str
    message: str
    hint: str


SEPARATOR_TYPO = Mistake(
    "sepparator:", "sepparator", "unknown key `sepparator`", "did you mean `separator`?"
)
FIELD_TYPO = Mistake(
    "tenant_reff:",
    "tenant_reff",
    "`tenant_reff` is not a column of tenants",
    "did you mean `tenant_ref`?",
)
HEADER_TYPO = Mistake(
    'from: "Date d\'entre"',
    '"Date d\'entre"',
    "column `Date d'entre` is not in the header of `locataires`",
    "did you mean `Date d'entrée`?",
)
THREE_MISTAKES = (SEPARATOR_TYPO, FIELD_TYPO, HEADER_TYPO)


def three_mistakes_file(tmp_path: Path, keep: tuple[Mistake, ...]) -> Path:
    """three-mistakes.yaml with the mistakes not in `keep` corrected."""
    text = (BAD / "three-mistakes.yaml").read_text(encoding="utf-8")
    fixes = {
        SEPARATOR_TYPO: ("sepparator:", "separator:"),
        FIELD_TYPO: ('      tenant_reff: "N° locataire"\n', ""),
        HEADER_TYPO: ('"Date d\'entre"', '"Date d\'entrée"'),
    }
    for mistake, (wrong, right) in fixes.items():
        if mistake not in keep:
            text = text.replace(wrong, right)
    path = tmp_path / "three-mistakes.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "mistake",
    [
        pytest.param(SEPARATOR_TYPO, id="unknown-csv-option"),
        pytest.param(FIELD_TYPO, id="field-not-canonical"),
        pytest.param(HEADER_TYPO, id="column-not-in-header"),
    ],
)
def test_each_mistake_alone_is_located_with_a_did_you_mean(
    mistake: Mistake, tmp_path: Path, hub_home: Path
) -> None:
    drop_export(hub_home, "three-mistakes", "locataires_2026-03.csv", TENANTS_CSV)
    path = three_mistakes_file(tmp_path, keep=(mistake,))

    problems = check_datafix(path)

    assert where(problems) == [position(path, mistake.line_containing, mistake.token)]
    assert problems[0].message == mistake.message
    assert problems[0].hint == mistake.hint


def test_check_reports_all_three_mistakes_in_one_pass(hub_home: Path) -> None:
    """Landlord IT fixes a file in one pass: every problem is reported at once."""
    path = BAD / "three-mistakes.yaml"
    drop_export(hub_home, "three-mistakes", "locataires_2026-03.csv", TENANTS_CSV)

    problems = check_datafix(path)

    assert where(problems) == [position(path, m.line_containing, m.token) for m in THREE_MISTAKES]
    assert [p.message for p in problems] == [m.message for m in THREE_MISTAKES]
    assert all("did you mean" in problem.hint for problem in problems)


# --- one file per other mistake -------------------------------------------------------------


def test_unset_variable_is_reported_at_its_line(
    hub_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATAFIX_TEST_UNSET_PASSWORD", raising=False)
    path = BAD / "unset-variable.yaml"

    problems = check_datafix(path)

    at = position(path, "url:", '"postgresql')
    assert problems, "an unset variable must be reported"
    assert set(where(problems)) == {at}
    assert "environment variable `DATAFIX_TEST_UNSET_PASSWORD` is not set" in [
        problem.message for problem in problems
    ]
    assert all("DATAFIX_TEST_UNSET_PASSWORD" in problem.message for problem in problems)


def test_a_set_variable_is_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAFIX_TEST_UNSET_PASSWORD", "secret")

    problems = check_datafix(BAD / "unset-variable.yaml", probe_sources=False)

    assert problems == []


def test_glob_matching_no_file_is_reported_at_path(hub_home: Path) -> None:
    path = BAD / "no-matching-file.yaml"
    drop_export(hub_home, "no-matching-file", "tenants.csv", TENANTS_CSV)

    problems = check_datafix(path)

    assert where(problems) == [position(path, "path:", '"locataires_*.csv"')]
    assert "no file matches `locataires_*.csv`" in problems[0].message
    assert "tenants.csv" in problems[0].message  # what is there instead


def test_invalid_yaml_is_reported_with_its_line() -> None:
    path = BAD / "invalid-yaml.yaml"

    problems = check_datafix(path)

    # the parser stops at the second `: ` of the unquoted value
    assert where(problems) == [position(path, "name: Invalid YAML:", ": Habitat")]
    assert problems[0].message.startswith("not valid YAML")
    assert "quote values" in problems[0].hint


def test_duplicate_key_is_reported_at_the_second_one() -> None:
    path = BAD / "duplicate-key.yaml"
    first_line, _ = position(path, 'tenant_ref: "N° locataire"')

    problems = check_datafix(path, probe_sources=False)

    assert where(problems) == [position(path, 'tenant_ref: "N° bail"', "tenant_ref")]
    assert problems[0].message == (
        "`tenant_ref` appears twice here; the second one would silently win"
    )
    assert f"line {first_line}" in problems[0].hint


def test_landlord_id_differing_from_the_file_name_is_reported() -> None:
    path = BAD / "wrong-id.yaml"

    problems = check_datafix(path, probe_sources=False)

    assert where(problems) == [position(path, "id: acme-habitat", "acme-habitat")]
    assert problems[0].message == "landlord id `acme-habitat` differs from the file name"
    assert "wrong-id" in problems[0].hint


def test_missing_required_canonical_field_is_reported() -> None:
    path = BAD / "missing-required.yaml"

    problems = check_datafix(path, probe_sources=False)

    assert where(problems) == [position(path, "fields:")]
    assert problems[0].message == "tenants needs `status` but the mapping has no rule for it"


def test_map_value_outside_the_canonical_choices_gets_a_did_you_mean() -> None:
    path = BAD / "bad-choice.yaml"

    problems = check_datafix(path, probe_sources=False)

    assert where(problems) == [position(path, "map: {ACT: actif", "actif")]
    assert problems[0].message == "`actif` is not an allowed value of status"
    assert problems[0].hint == "did you mean `active`?"


# --- how a problem prints -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("located", "printed"),
    [
        pytest.param(
            Located(Path("datafixes/acme.yaml"), 12, 7, "unknown key `sepparator`", "did you mean"),
            "datafixes/acme.yaml:12:7: unknown key `sepparator`\n    hint: did you mean",
            id="with-hint",
        ),
        pytest.param(
            Located(Path("datafixes/acme.yaml"), 1, 1, "not UTF-8 text"),
            "datafixes/acme.yaml:1:1: not UTF-8 text",
            id="without-hint",
        ),
    ],
)
def test_located_prints_path_line_column_message_and_hint(located: Located, printed: str) -> None:
    assert str(located) == printed


# --- ${VARIABLE} references -----------------------------------------------------------------


def test_resolve_env_substitutes_set_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_DB_USER", "reader")
    monkeypatch.setenv("ACME_DB_PASSWORD", "s3cret")

    resolved = resolve_env(
        "postgresql://${ACME_DB_USER}:${ACME_DB_PASSWORD}@db/erp",
        ("ACME_DB_USER", "ACME_DB_PASSWORD"),
    )

    assert resolved == "postgresql://reader:s3cret@db/erp"


def test_resolve_env_leaves_text_without_references_alone() -> None:
    assert resolve_env("sqlite:///erp.db $HOME {X}") == "sqlite:///erp.db $HOME {X}"


def test_resolve_env_names_the_unset_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_DB_USER", "reader")
    monkeypatch.delenv("ACME_DB_PASSWORD", raising=False)

    with pytest.raises(ConfigError, match=r"`ACME_DB_PASSWORD` is not set"):
        resolve_env(
            "postgresql://${ACME_DB_USER}:${ACME_DB_PASSWORD}@db/erp",
            ("ACME_DB_USER", "ACME_DB_PASSWORD"),
        )


def test_resolve_env_always_knows_datafix_home(hub_home: Path) -> None:
    assert resolve_env("${DATAFIX_HOME}/drop") == f"{hub_home.resolve()}/drop"


def test_an_unknown_entity_is_one_message_when_the_source_is_probed(
    hub_home: Path, tmp_path: Path
) -> None:
    """Probing the sources skips an entity that is not canonical: `check` says so once, with
    a did-you-mean, instead of failing on the mapping it cannot build."""
    path = tmp_path / "unknown-entity.yaml"
    path.write_text(
        "landlord: {id: unknown-entity, name: Unknown entity}\n"
        "sources:\n  export: {kind: csv, path: tenants.csv}\n"
        "entities:\n  tenant:\n    source: export\n    fields: {tenant_ref: Ref}\n",
        encoding="utf-8",
    )
    drop_export(hub_home, "unknown-entity", "tenants.csv", TENANTS_CSV)

    problems = check_datafix(path)

    assert [(p.line, p.column, p.message, p.hint) for p in problems] == [
        (5, 3, "`tenant` is not a canonical entity", "did you mean `tenants`?")
    ]


def test_a_header_split_over_two_rows_gets_the_header_rows_hint(
    hub_home: Path, tmp_path: Path
) -> None:
    """`Montant` over `HT` / `TTC`, mapped as `Montant HT` without `header_rows: 2`: the hint
    says what is wrong, not a did-you-mean on the upper row's labels."""
    path = tmp_path / "split-header.yaml"
    path.write_text(
        "landlord: {id: split-header, name: Split header}\n"
        "sources:\n  export: {kind: csv, path: factures.csv}\n"
        "entities:\n"
        "  invoices:\n"
        "    source: export\n"
        "    fields:\n"
        "      invoice_ref: Facture\n"
        "      order_ref: BT\n"
        "      kind: {const: final}\n"
        "      amount_cents: Montant HT\n"
        "      issued_date: Date\n"
        "      status: {const: issued}\n",
        encoding="utf-8",
    )
    export = "Facture;BT;Date;Montant;\n;;;HT;TTC\nF-1;BT-1;2026-11-02;10,00;12,00\n"
    drop_export(hub_home, "split-header", "factures.csv", export)

    problems = check_datafix(path)

    assert [p.message for p in problems] == ["column `Montant HT` is not in the header of `export`"]
    assert "set `header_rows: 2`" in problems[0].hint


# --- sign and cases ---------------------------------------------------------------------------

STATUS_FROM_DATES = (
    "landlord: {id: cases-check, name: Cases check}\n"
    "sources:\n  export: {kind: csv, path: locataires.csv}\n"
    "entities:\n"
    "  tenants:\n"
    "    source: export\n"
    "    fields:\n"
    "      tenant_ref: Ref\n"
    "      status:\n"
    "        cases:\n"
    "          - when: {column: Date de sortei, before: today}\n"
    "            value: left\n"
    "          - when: [{column: Ref, blank: false}, {column: Date de sortie, after: today}]\n"
    "            value: leaving\n"
    "        else: {value: active}\n"
)


def test_a_case_on_a_missing_column_is_one_message_with_a_did_you_mean(
    hub_home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "cases-check.yaml"
    path.write_text(STATUS_FROM_DATES, encoding="utf-8")
    drop_export(hub_home, "cases-check", "locataires.csv", "Ref;Date de sortie\r\nT1;\r\n")

    problems = check_datafix(path)

    assert [(p.line, p.column, p.message, p.hint) for p in problems] == [
        (
            *position(path, "Date de sortei", "Date de sortei"),
            "column `Date de sortei` is not in the header of `export`",
            "did you mean `Date de sortie`?",
        )
    ]


def test_a_sign_indicator_missing_from_the_header_is_one_message(
    hub_home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "sign-check.yaml"
    path.write_text(
        "landlord: {id: sign-check, name: Sign check}\n"
        "sources:\n  export: {kind: csv, path: ecritures.csv}\n"
        "entities:\n"
        "  ledger_entries:\n"
        "    source: export\n"
        "    fields:\n"
        "      entry_ref: N° écriture\n"
        "      tenant_ref: N° locataire\n"
        "      entry_date: Date\n"
        "      kind: {const: rent_call}\n"
        "      amount_cents: {from: Débit, sign: {column: Sns, positive: D, negative: C}}\n",
        encoding="utf-8",
    )
    drop_export(
        hub_home, "sign-check", "ecritures.csv", "N° écriture;N° locataire;Date;Débit;Sens\r\n"
    )

    problems = check_datafix(path)

    assert [(p.line, p.column, p.message, p.hint) for p in problems] == [
        (
            *position(path, "Sns", "Sns"),
            "column `Sns` is not in the header of `export`",
            "did you mean `Sens`?",
        )
    ]


def cases_file(tmp_path: Path, status_rule: str) -> Path:
    """A tenants datafix whose `status` rule is `status_rule` (indented under `status:`)."""
    path = tmp_path / "cases-check.yaml"
    path.write_text(
        "landlord: {id: cases-check, name: Cases check}\n"
        "sources:\n  export: {kind: csv, path: locataires.csv}\n"
        "entities:\n  tenants:\n    source: export\n    fields:\n      tenant_ref: Ref\n"
        "      status:\n" + status_rule,
        encoding="utf-8",
    )
    return path


def test_a_case_value_not_allowed_for_a_choice_field_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = cases_file(
        tmp_path,
        "        cases:\n"
        "          - {when: {column: Sortie, blank: false}, value: leavng}\n"
        "        else: {then: {from: Statut, map: {ACT: actif}}}\n",
    )

    problems = check_datafix(path, probe_sources=False)

    assert [(p.line, p.column, p.message, p.hint) for p in problems] == [
        (
            *position(path, "leavng", "leavng"),
            "`leavng` is not an allowed value of status",
            "did you mean `leaving`?",
        ),
        (
            *position(path, "actif", "actif"),
            "`actif` is not an allowed value of status",
            "did you mean `active`?",
        ),
    ]


def test_a_case_after_one_without_condition_is_reported_as_impossible(tmp_path: Path) -> None:
    path = cases_file(
        tmp_path,
        "        cases:\n"
        "          - {value: active}\n"
        "          - {when: {column: Sortie, blank: false}, value: left}\n",
    )

    problems = check_datafix(path, probe_sources=False)

    assert [(p.line, p.message, p.hint) for p in problems] == [
        (
            position(path, "value: left")[0],
            "case 2 of status can never apply: case 1 has no `when` and takes every row left",
            "remove case 2, or give case 1 a `when`",
        )
    ]


@parametrize("field_rules", "wrong-type-in-a-case", "rule, token, message")
def test_a_wrong_type_in_a_case_is_one_clear_message(
    tmp_path: Path, rule: str, token: str, message: str
) -> None:
    path = cases_file(tmp_path, rule)

    problems = check_datafix(path, probe_sources=False)

    assert [(p.line, p.column, p.message) for p in problems] == [
        (*position(path, token, token), message)
    ]
