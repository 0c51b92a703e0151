"""The datafix file model (`schemas.datafix`): what a landlord's YAML may say.

Structural rules are pydantic validators (one origin per field rule, read-only single-statement
SQL, the landlord id pattern, no unknown key); cross-references are `semantic_issues`, each with
the YAML path it concerns. Every demo datafix in datafixes/ must pass both.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from connectors.files.kinds import CsvSource
from connectors.sql.kinds import SqlSource
from schemas.datafix import (
    Condition,
    Datafix,
    EntityMapping,
    FieldRule,
    Landlord,
    RowFilter,
    did_you_mean,
    env_references,
    semantic_issues,
)
from schemas.reference import HERE
from tests.casedata import cases, parametrize

DEMO_DATAFIXES = sorted((HERE.parent / "datafixes").glob("*.yaml"))


def error_text(error: pytest.ExceptionInfo[ValidationError]) -> str:
    return " | ".join(str(detail["msg"]) for detail in error.value.errors())


# --- the demo datafixes ---------------------------------------------------------------------


def test_there_are_demo_datafixes() -> None:
    assert len(DEMO_DATAFIXES) >= 3


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in DEMO_DATAFIXES])
def test_demo_datafix_is_valid_with_no_semantic_issue(path: Path) -> None:
    datafix = Datafix.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))

    assert datafix.landlord.id == path.stem
    assert semantic_issues(datafix, file_stem=path.stem) == []


# --- field rules: exactly one origin --------------------------------------------------------


@parametrize("field_rules", "refused", "rule, expected")
def test_field_rule_refuses(rule: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as error:
        FieldRule.model_validate(rule)

    assert expected in error_text(error)


@parametrize("field_rules", "one-origin", "rule, columns")
def test_field_rule_accepts_one_origin(rule: Any, columns: list[str]) -> None:
    assert FieldRule.model_validate(rule).source_columns == columns


# --- sources --------------------------------------------------------------------------------


@parametrize("sql_queries", "refused", "query, expected")
def test_sql_source_refuses_what_is_not_one_select(query: str, expected: str) -> None:
    with pytest.raises(ValidationError) as error:
        SqlSource.model_validate({"kind": "sql", "url": "sqlite:///erp.db", "query": query})

    assert expected in error_text(error)


@parametrize("sql_queries", "accepted", "query")
def test_sql_source_accepts_one_read_only_query(query: str) -> None:
    source = SqlSource.model_validate({"kind": "sql", "url": "sqlite:///erp.db", "query": query})

    assert source.query == query


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="neither"),
        pytest.param({"table": "locataires", "query": "SELECT 1"}, id="both"),
    ],
)
def test_sql_source_needs_exactly_one_of_table_or_query(options: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as error:
        SqlSource.model_validate({"kind": "sql", "url": "sqlite:///erp.db", **options})

    assert "exactly one of `table` or `query`" in error_text(error)


def test_sql_source_schema_alias() -> None:
    source = SqlSource.model_validate(
        {"kind": "sql", "url": "sqlite:///erp.db", "table": "t", "schema": "erp"}
    )

    assert source.db_schema == "erp"


@pytest.mark.parametrize(
    ("separator", "stored"),
    [
        pytest.param(";", ";", id="semicolon"),
        pytest.param("\\t", "\t", id="escaped-tab"),
        pytest.param("auto", "auto", id="auto"),
    ],
)
def test_csv_separator(separator: str, stored: str) -> None:
    source = CsvSource.model_validate({"kind": "csv", "path": "x.csv", "separator": separator})

    assert source.separator == stored


def test_csv_separator_of_two_characters_is_refused() -> None:
    with pytest.raises(ValidationError) as error:
        CsvSource.model_validate({"kind": "csv", "path": "x.csv", "separator": ";;"})

    assert "one character" in error_text(error)


def test_header_row_counts_from_one() -> None:
    with pytest.raises(ValidationError) as error:
        CsvSource.model_validate({"kind": "csv", "path": "x.csv", "header_row": 0})

    assert "counts from 1" in error_text(error)


# --- landlord ids and row filters -----------------------------------------------------------


@pytest.mark.parametrize(
    "landlord_id",
    [
        *cases("landlord_ids", "accepted", "landlord_id"),
        pytest.param("a" * 63, id="63-characters"),
    ],
)
def test_landlord_id_accepted(landlord_id: str) -> None:
    assert Landlord(id=landlord_id, name="X").id == landlord_id


@pytest.mark.parametrize(
    "landlord_id",
    [
        *cases("landlord_ids", "refused", "landlord_id"),
        pytest.param("a" * 64, id="64-characters"),
    ],
)
def test_landlord_id_refused(landlord_id: str) -> None:
    with pytest.raises(ValidationError) as error:
        Landlord(id=landlord_id, name="X")

    assert "should match pattern" in error_text(error)


@pytest.mark.parametrize(
    ("row_filter", "expected"),
    [
        pytest.param({"column": "Ref"}, "exactly one of matches, equals or blank", id="no-test"),
        pytest.param(
            {"column": "Ref", "matches": "^total", "equals": "Total"},
            "exactly one of matches, equals or blank",
            id="two-tests",
        ),
        pytest.param({"column": "Ref", "matches": "(total"}, "not a valid regular", id="bad-regex"),
    ],
)
def test_row_filter_refuses(row_filter: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as error:
        RowFilter.model_validate(row_filter)

    assert expected in error_text(error)


# --- semantic issues ------------------------------------------------------------------------


def datafix_with(entity: str, mapping: dict[str, Any], **sources: dict[str, Any]) -> Datafix:
    return Datafix.model_validate(
        {
            "landlord": {"id": "acme", "name": "Acme"},
            "sources": sources or {"export": {"kind": "csv", "path": "x.csv"}},
            "entities": {entity: {"source": "export", **mapping}},
        }
    )


TENANT_KEYS = {"tenant_ref": "Ref", "status": {"const": "active"}}


@parametrize("semantic_issues", "mapping-mistakes", "entity, mapping, path, message, hint")
def test_semantic_issue(
    entity: str, mapping: dict[str, Any], path: list[str], message: str, hint: str
) -> None:
    issues = semantic_issues(datafix_with(entity, mapping))

    found = [(issue.path, issue.message, issue.hint) for issue in issues]
    assert found == [(tuple(path), message, hint)]


def test_landlord_id_must_equal_the_file_name() -> None:
    issues = semantic_issues(datafix_with("tenants", {"fields": TENANT_KEYS}), file_stem="acme-2")

    assert [(issue.path, issue.message) for issue in issues] == [
        (("landlord", "id"), "landlord id `acme` differs from the file name")
    ]


def test_unknown_key_anywhere_is_refused() -> None:
    with pytest.raises(ValidationError) as error:
        EntityMapping.model_validate({"source": "x", "feilds": {}, "fields": {}})

    assert [detail["loc"] for detail in error.value.errors()] == [("feilds",)]


# --- helpers for messages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        pytest.param("sepparator", "did you mean `separator`?", id="close"),
        pytest.param("zzz", "allowed: encoding, separator", id="nothing-close"),
    ],
)
def test_did_you_mean(word: str, hint: str) -> None:
    assert did_you_mean(word, ["separator", "encoding"]) == hint


def test_env_references_are_found_with_their_yaml_path() -> None:
    document = {
        "sources": {"erp": {"url": "postgresql://${ERP_USER}:${ERP_PASSWORD}@db/erp"}},
        "inbox": "${DATAFIX_HOME}/drop",
        "list": ["plain", "${IN_A_LIST}"],
        "not_a_reference": "$HOME and {X}",
    }

    assert env_references(document) == [
        (("sources", "erp", "url"), "ERP_USER"),
        (("sources", "erp", "url"), "ERP_PASSWORD"),
        (("inbox",), "DATAFIX_HOME"),
        (("list", 1), "IN_A_LIST"),
    ]


# --- secrets, YAML number pitfalls, per-entity header settings -------------------------------


def sql_datafix(url: str) -> Datafix:
    return Datafix.model_validate(
        {
            "landlord": {"id": "acme-habitat", "name": "Acme"},
            "sources": {"erp": {"kind": "sql", "url": url, "table": "tiers"}},
            "entities": {
                "tenants": {"source": "erp", "fields": {"tenant_ref": "ref", "status": "st"}}
            },
        }
    )


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        pytest.param("postgresql://hub:s3cret@db/erp", True, id="password-in-clear"),
        pytest.param("mssql+pyodbc://hub:pw@erp-dsn", True, id="odbc-password-in-clear"),
        pytest.param("postgresql://hub:${ERP_PASSWORD}@db/erp", False, id="password-variable"),
        pytest.param("${ERP_URL}", False, id="whole-url-variable"),
        pytest.param("postgresql://hub@db/erp", False, id="no-password"),
        pytest.param("sqlite:///${DATAFIX_HOME}/erp.db", False, id="sqlite-file"),
    ],
)
def test_sql_url_with_a_password_in_clear_is_refused(url: str, refused: bool) -> None:
    issues = semantic_issues(sql_datafix(url), file_stem="acme-habitat")
    secrets = [i for i in issues if i.path == ("sources", "erp", "url")]
    assert bool(secrets) is refused
    if refused:
        assert "password in clear" in secrets[0].message
        assert "${" in secrets[0].hint


def test_numeric_map_keys_are_read_as_codes() -> None:
    rule = FieldRule.model_validate({"from": "Tranche", "map": {1: "very_low", 2: "low"}})
    assert rule.map == {"1": "very_low", "2": "low"}


def test_a_choice_value_yaml_read_as_a_number_gets_a_quote_hint() -> None:
    document = yaml.safe_load(
        "landlord: {id: acme-habitat, name: Acme}\n"
        "sources: {f: {kind: csv, path: a.csv}}\n"
        "entities:\n"
        "  tenants:\n"
        "    source: f\n"
        "    fields:\n"
        "      tenant_ref: Ref\n"
        "      status: {const: active}\n"
        "      age_band: {from: Age, map: {A: 30_59}}\n"
    )
    issues = semantic_issues(Datafix.model_validate(document), file_stem="acme-habitat")
    (issue,) = issues
    assert issue.path == ("entities", "tenants", "fields", "age_band", "map", "A")
    assert "`3059`" in issue.message  # what YAML made of 30_59
    assert "quotes" in issue.hint


def test_entity_header_settings_override_the_source() -> None:
    mapping = EntityMapping.model_validate(
        {
            "source": "book",
            "sheet": "Commandes",
            "header_rows": 2,
            "header_row": 5,
            "fields": {"order_ref": "N° BT"},
        }
    )
    assert (mapping.sheet, mapping.header_row, mapping.header_rows) == ("Commandes", 5, 2)
    with pytest.raises(ValidationError):
        EntityMapping.model_validate({"source": "book", "header_rows": 4, "fields": {}})


# --- sign and cases -------------------------------------------------------------------------


def test_sign_reads_its_indicator_column_and_takes_one_code_or_a_list() -> None:
    rule = FieldRule.model_validate(
        {"from": "Montant", "sign": {"column": "Sens", "positive": "D", "negative": ["C", 2]}}
    )

    assert rule.sign is not None
    assert (rule.sign.positive, rule.sign.negative) == (["D"], ["C", "2"])
    assert rule.source_columns == ["Montant"]
    assert rule.read_columns == ["Montant", "Sens"]


def test_cases_read_every_condition_and_then_column_once() -> None:
    rule = FieldRule.model_validate(
        {
            "cases": [
                {"when": {"column": "Sortie", "before": "today"}, "value": "left"},
                {
                    "when": [{"column": "Code", "in": "REG"}, {"column": "Sortie", "blank": False}],
                    "then": {
                        "from": "Montant",
                        "sign": {"column": "Sens", "positive": "D", "negative": "C"},
                    },
                },
            ],
            "else": {"then": "Statut"},
        }
    )

    assert rule.read_columns == ["Sortie", "Code", "Montant", "Sens", "Statut"]
    assert rule.cases is not None and rule.else_ is not None
    assert rule.cases[0].when is not None and rule.cases[0].when[0].before == "today"
    assert rule.cases[1].when is not None and rule.cases[1].when[0].in_ == ["REG"]
    assert rule.else_.then is not None and rule.else_.then.from_ == "Statut"


def test_a_date_bound_is_today_or_a_date_yaml_may_have_read_already() -> None:
    document = yaml.safe_load("{column: Sortie, on_or_after: 2026-01-31, before: '2026-03-01'}")
    condition = Condition.model_validate(document)

    assert (condition.on_or_after, condition.before) == (date(2026, 1, 31), date(2026, 3, 1))


@parametrize("field_rules", "sign-and-cases-refused", "rule, expected")
def test_sign_and_cases_refuse(rule: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as error:
        FieldRule.model_validate(rule)

    assert expected in error_text(error)
    assert len(error.value.errors()) == 1


@parametrize("field_rules", "sign-and-cases-issues", "field, rule, path, message")
def test_sign_and_cases_semantic_issue(
    field: str, rule: dict[str, Any], path: list[Any], message: str
) -> None:
    issues = semantic_issues(datafix_with("tenants", {"fields": {**TENANT_KEYS, field: rule}}))

    assert [(issue.path, issue.message) for issue in issues] == [
        (("entities", "tenants", "fields", field, *path), message)
    ]


def test_a_case_amount_value_must_be_an_amount() -> None:
    ledger = {
        "entry_ref": "N",
        "tenant_ref": "T",
        "entry_date": "D",
        "kind": {"const": "payment"},
        "amount_cents": {
            "cases": [{"when": {"column": "A", "blank": True}, "value": "zéro"}],
            "else": {"value": "-12,50"},
        },
    }

    issues = semantic_issues(datafix_with("ledger_entries", {"fields": ledger}))

    assert [(issue.path[-3:], issue.message) for issue in issues] == [
        (("cases", 0, "value"), "`zéro` is not an amount for amount_cents")
    ]
