"""Generated documentation: the datafix JSON Schema and the canonical model reference page.

Both files are committed next to this module and regenerated with `datafix schema`; a test
fails when they are stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.arrears import DEFAULT_PROFILES, DEFAULT_SCENARIOS, FACTS, FactKind
from schemas.canonical import (
    ENTITIES,
    LEDGER_ENTRIES,
    LEDGER_KINDS,
    LINEAGE_COLUMNS,
    QUARANTINE_REASONS,
    ColumnType,
)
from schemas.datafix import Datafix
from schemas.outgoing import OUTGOING
from schemas.tables import (
    contract_results,
    feed_cursors,
    insight_states,
    load_runs,
    outbox,
    prevention_actions,
    push_leases,
    quarantine,
    source_state,
    tenant_arrears,
)

HERE = Path(__file__).parent
JSON_SCHEMA_PATH = HERE / "datafix.schema.json"
REFERENCE_PATH = HERE / "REFERENCE.md"

_TYPE_LABELS = {
    ColumnType.TEXT: "text",
    ColumnType.CHOICE: "choice",
    ColumnType.CENTS: "integer cents",
    ColumnType.INTEGER: "integer",
    ColumnType.DATE: "date",
    ColumnType.DATETIME: "timestamp (UTC)",
    ColumnType.BOOLEAN: "yes/no",
}


def json_schema() -> str:
    """The JSON Schema of a datafix file, for editor autocompletion."""
    schema = Datafix.model_json_schema(by_alias=True, mode="validation")
    # `tenant_ref: "N° locataire"` is the short form of `tenant_ref: {from: "N° locataire"}`
    short_or_rule = {
        "anyOf": [
            {"type": "string", "description": "Short form of `{from: <column>}`."},
            {"$ref": "#/$defs/FieldRule"},
        ]
    }
    for owner in ("EntityMapping", "Feed"):  # an entity's own fields, or each feed's
        fields = schema["$defs"][owner]["properties"]["fields"]
        for form in [fields, *fields.get("anyOf", [])]:
            if form.get("additionalProperties") == {"$ref": "#/$defs/FieldRule"}:
                form["additionalProperties"] = short_or_rule
    # and in the `then` rule of a case (or of `else`)
    for name in ("Case", "CaseOutcome"):
        then = schema["$defs"][name]["properties"]["then"]
        then["anyOf"] = [
            {"type": "string", "description": "Short form of `{from: <column>}`."},
            *then["anyOf"],
        ]
    # the same short form in every sink of `push:`: `Status: status` is `{from: status}`
    for definition in schema["$defs"].values():
        sink_fields = definition.get("properties", {}).get("fields", {})
        if sink_fields.get("additionalProperties") == {"$ref": "#/$defs/OutFieldRule"}:
            sink_fields["additionalProperties"] = {
                "anyOf": [
                    {"type": "string", "description": "Short form of `{from: <column>}`."},
                    {"$ref": "#/$defs/OutFieldRule"},
                ]
            }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Datafix Hub datafix file"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _ledger_kinds_table() -> list[str]:
    """The ledger kinds with their allowed sign(s): what `sign_matches_kind` checks."""
    lines = [
        "### Ledger kinds",
        "",
        "Allowed sign of `amount_cents` per `kind` (`+` debit: the tenant owes more; `-` credit:"
        " the tenant owes less). `sign_matches_kind` breaks on a sign the kind does not allow;"
        " a zero amount never breaks it.",
        "",
        "| kind | sign | meaning |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{name}` | {kind.sign_label} | {kind.description} |"
        for name, kind in LEDGER_KINDS.items()
    ]
    return lines


def reference_page() -> str:
    """The canonical model as one Markdown page."""
    lines = [
        "# Canonical model reference",
        "",
        "_Generated from `schemas/canonical.py` by `datafix schema`; do not edit by hand._",
        "",
        "Every table is keyed on `landlord_id` + the landlord's own reference (**bold** below).",
        "Money is integer cents (`*_cents`); `ledger_entries.amount_cents` is signed (debit > 0,",
        "credit < 0), so a tenant's balance is `SUM(amount_cents)`. Columns marked *personal*",
        "hold personal data (GDPR): they are masked in previews and run metadata.",
        "",
    ]
    for spec in ENTITIES.values():
        lines += [f"## `{spec.name}`", "", spec.description, ""]
        lines += ["| column | type | required | allowed values / range | description |"]
        lines += ["|---|---|---|---|---|"]
        for column in spec.columns:
            name = f"**{column.name}**" if column.name == spec.key else f"`{column.name}`"
            allowed = ", ".join(f"`{c}`" for c in column.choices)
            if column.min_value is not None or column.max_value is not None:
                low = "" if column.min_value is None else str(column.min_value)
                high = "" if column.max_value is None else str(column.max_value)
                allowed = f"{low} … {high}"
            note = " *personal*" if column.personal else ""
            lines.append(
                f"| {name} | {_TYPE_LABELS[column.type]} | {'yes' if column.required else ''}"
                f" | {allowed} | {column.description}{note} |"
            )
        if spec.rules:
            lines += [
                "",
                "Row rules across columns (a row breaking one is quarantined with the rule's name,"
                " unless the datafix's `rules:` sets it to `warn` or `block`):",
            ]
            lines += [f"- `{rule.name}`: {rule.description}" for rule in spec.rules]
        if spec is LEDGER_ENTRIES:
            lines += ["", *_ledger_kinds_table()]
        lines.append("")
    lines += ["## Lineage columns (on every canonical table)", ""]
    lines += ["| column | description |", "|---|---|"]
    lines += [f"| `{name}` | {text} |" for name, text in LINEAGE_COLUMNS.items()]
    lines += ["", "## Bookkeeping tables", ""]
    for table in (
        quarantine,
        load_runs,
        source_state,
        feed_cursors,
        contract_results,
        outbox,
        push_leases,
    ):
        columns = ", ".join(f"`{c.name}`" for c in table.columns)
        lines += [f"- `{table.name}`: {table.comment} Columns: {columns}."]
    lines += ["", "## Quarantine reason codes", "", "| reason | meaning |", "|---|---|"]
    lines += [f"| `{code}` | {text} |" for code, text in QUARANTINE_REASONS.items()]
    lines += ["", "## Outgoing records (what `push:` sends)", ""]
    lines += ["Derived from the canonical tables; a sink's `fields` read these columns.", ""]
    for out in OUTGOING.values():
        confirmed = ", ".join(
            f"`{column}` in {', '.join(f'`{v}`' for v in values)}"
            for column, values in out.confirmed_default.items()
        )
        lines += [f"### `{out.name}`", "", out.description, ""]
        lines += [
            f"Read from: {', '.join(f'`{e}`' for e in out.inputs)}; confirmed by default:"
            f" {confirmed or 'every record'}.",
            "",
            "| column | type | description |",
            "|---|---|---|",
        ]
        for column in out.columns:
            name = f"**{column.name}**" if column.name == out.key else f"`{column.name}`"
            lines.append(f"| {name} | {_TYPE_LABELS[column.type]} | {column.description} |")
        lines.append("")
    lines += _arrears_section()
    return "\n".join(lines) + "\n"


def _arrears_section() -> list[str]:
    """The insight tables of arrears prevention, the facts a profile rule tests, and the
    default profiles in the order they are tried, with their rule and scenario."""
    lines = ["## Arrears prevention (insight)", ""]
    for table in (tenant_arrears, prevention_actions, insight_states):
        columns = ", ".join(f"`{c.name}`" for c in table.columns)
        lines += [f"- `{table.name}`: {table.comment} Columns: {columns}."]
    lines += [
        "",
        "### Facts a profile rule tests (`arrears.profiles[].when`)",
        "",
        "| fact | test | meaning |",
        "|---|---|---|",
    ]
    tests = {
        FactKind.NUMBER: "`{at_least: N, at_most: N}`",
        FactKind.DAYS: "`{at_least: N, at_most: N}` days",
        FactKind.CHOICE: "a code or a list",
        FactKind.BOOLEAN: "`true` / `false`",
        FactKind.REASON: "a SEPA code or a list",
    }
    for fact in FACTS.values():
        allowed = f" ({', '.join(f'`{c}`' for c in fact.choices)})" if fact.choices else ""
        lines.append(f"| `{fact.name}` | {tests[fact.kind]}{allowed} | {fact.description} |")
    lines += [
        "",
        "### Default profiles",
        "",
        "Tried in this order; the first rule whose tests all hold places the tenant. The"
        " scenario's steps are created once while the tenant owes: `action` over `channel`"
        " (`preferred`: the tenant's preferred channel, else the fallback), due `+N` days"
        " after it opens, with its template.",
        "",
        "| # | profile | rule | scenario | meaning |",
        "|---|---|---|---|---|",
    ]
    for number, rule in enumerate(DEFAULT_PROFILES, start=1):
        steps = "; ".join(
            f"`{step.action}` {step.channel} +{step.after_days} `{step.template}`"
            for step in DEFAULT_SCENARIOS.get(rule.profile, [])
        )
        lines.append(
            f"| {number} | `{rule.profile}` | {rule.rule_text()} | {steps or '—'}"
            f" | {rule.description} |"
        )
    lines.append("")
    return lines


def write_generated() -> list[Path]:
    """Rewrite both generated files; returns those whose content changed."""
    changed = []
    for path, content in ((JSON_SCHEMA_PATH, json_schema()), (REFERENCE_PATH, reference_page())):
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    return changed
