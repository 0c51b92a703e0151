"""The canonical model: the eight tables every landlord's data is normalised into.

This module is the single source of truth for the shared model. The warehouse tables
(`schemas.tables`), the great-expectations contracts (`pipelines.lib.quality`), the datafix
validation (`schemas.datafix`) and the generated reference page (`schemas/REFERENCE.md`) are
all derived from the specs below, so a column is added in exactly one place.

Conventions:
- every table's natural key is `landlord_id` + the landlord's own reference (`key`);
- money is integer cents in columns named `*_cents`; `ledger_entries.amount_cents` is signed
  (debit > 0, credit < 0) so a tenant's balance is a plain sum; the sign(s) each ledger `kind`
  allows are in `LEDGER_KINDS`, which the `kind` choices and `sign_matches_kind` read;
- lineage columns (`LINEAGE_COLUMNS`) are added to every table by the hub, never mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ColumnType(StrEnum):
    """The value types a canonical column can hold; each drives one parser in the transforms."""

    TEXT = "text"
    INTEGER = "integer"
    CENTS = "cents"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    CHOICE = "choice"


# the pandas dtype a column of each type has once normalised (nullable: a blank stays a blank)
PANDAS_DTYPES: dict[ColumnType, str] = {
    ColumnType.TEXT: "str", ColumnType.CHOICE: "str", ColumnType.BOOLEAN: "boolean",
    ColumnType.CENTS: "Int64", ColumnType.INTEGER: "Int64", ColumnType.DATE: "datetime64[ns]",
    ColumnType.DATETIME: "datetime64[ns, UTC]",
}  # fmt: skip


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column: its type, whether a row needs it, and its allowed values."""

    name: str
    type: ColumnType
    description: str
    required: bool = False
    choices: tuple[str, ...] = ()
    min_value: int | None = None
    max_value: int | None = None
    # personal data (GDPR): masked in previews, logs and UI metadata, sealed in quarantine.raw
    personal: bool = False


@dataclass(frozen=True)
class RowRule:
    """A contract rule across columns of one row (checked on canonical data, never in config)."""

    name: str
    description: str
    kind: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class EntitySpec:
    """One canonical table: its natural key, its columns and its cross-column rules."""

    name: str
    description: str
    key: str
    columns: tuple[ColumnSpec, ...]
    rules: tuple[RowRule, ...] = field(default_factory=tuple)

    def column(self, name: str) -> ColumnSpec:
        """Return the spec of column `name`; raises KeyError for an unknown column."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The mapped columns, in table order (lineage columns excluded)."""
        return tuple(column.name for column in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns a row cannot be loaded without."""
        return tuple(column.name for column in self.columns if column.required)


def _text(
    name: str, description: str, *, required: bool = False, personal: bool = False
) -> ColumnSpec:
    return ColumnSpec(name, ColumnType.TEXT, description, required=required, personal=personal)


def _cents(
    name: str, description: str, *, required: bool = False, signed: bool = False
) -> ColumnSpec:
    return ColumnSpec(
        name, ColumnType.CENTS, description, required=required, min_value=None if signed else 0
    )


def _date(name: str, description: str, *, required: bool = False) -> ColumnSpec:
    return ColumnSpec(name, ColumnType.DATE, description, required=required)


def _choice(
    name: str, description: str, choices: tuple[str, ...], *, required: bool = False
) -> ColumnSpec:
    return ColumnSpec(name, ColumnType.CHOICE, description, required=required, choices=choices)


def _bool(name: str, description: str) -> ColumnSpec:
    return ColumnSpec(name, ColumnType.BOOLEAN, description)


def _int(
    name: str, description: str, *, min_value: int | None = 0, max_value: int | None = None
) -> ColumnSpec:
    return ColumnSpec(
        name, ColumnType.INTEGER, description, min_value=min_value, max_value=max_value
    )


SEPA_REJECT_REASONS: tuple[str, ...] = (
    "AC01", "AC04", "AC06", "AG01", "AG02", "AM04", "AM05", "BE05", "FF01", "MD01", "MD02",
    "MD06", "MD07", "MS02", "MS03", "RC01", "RR01", "RR02", "RR03", "RR04", "SL01",
)  # fmt: skip

PAYMENT_METHODS: tuple[str, ...] = ("sepa_debit", "transfer", "cheque", "cash", "card")


@dataclass(frozen=True)
class LedgerKind:
    """One kind of rent-account movement: what it is and the sign(s) its amount may take.

    `signs` holds `+` (a debit: the tenant owes more) and/or `-` (a credit: the tenant owes
    less). A zero amount never breaks the sign rule.
    """

    description: str
    signs: frozenset[str]

    @property
    def sign_label(self) -> str:
        """`+`, `-` or `+ or -`, as the reference page shows it."""
        return " or ".join(sign for sign in ("+", "-") if sign in self.signs)


_DEBIT, _CREDIT, _EITHER = frozenset("+"), frozenset("-"), frozenset("+-")

# The ledger kinds, in the order the reference lists them; `sign_matches_kind` reads `signs`.
LEDGER_KINDS: dict[str, LedgerKind] = {
    "rent_call": LedgerKind(
        "Monthly rent call (avis d'échéance, quittancement): rent and charges called together.",
        _DEBIT,
    ),
    "rent": LedgerKind("Rent alone (loyer principal), when called apart from the charges.", _DEBIT),
    "service_charges": LedgerKind(
        "Service-charge provision (provision sur charges récupérables), called monthly.", _DEBIT
    ),
    "charge_regularisation": LedgerKind(
        "Yearly charge regularisation (régularisation des charges): + when the provisions"
        " collected fell short, - when the landlord refunds over-collected charges.",
        _EITHER,
    ),
    "sls": LedgerKind(
        "Supplément de loyer de solidarité (SLS), the surcharge on households above the income"
        " ceilings.",
        _DEBIT,
    ),
    "deposit": LedgerKind("Security deposit called at move-in (dépôt de garantie).", _DEBIT),
    "fee": LedgerKind("Other fees charged to the tenant (frais divers).", _DEBIT),
    "legal_costs": LedgerKind(
        "Legal and procedure costs recharged to the tenant (frais de procédure, commissaire de"
        " justice, commandement de payer).",
        _DEBIT,
    ),
    "rejected_debit": LedgerKind(
        "A direct debit (or cheque) rejected by the bank, cancelling the payment it carried;"
        " SEPA reason in `reject_reason`.",
        _DEBIT,
    ),
    "housing_aid_clawback": LedgerKind(
        "Housing aid taken back by the CAF/MSA (rappel d'indu APL/AL): the tenant owes it again.",
        _DEBIT,
    ),
    "plan_instalment": LedgerKind(
        "Instalment called under a repayment plan (échéance de plan d'apurement); what the"
        " tenant pays against it is a `payment`.",
        _DEBIT,
    ),
    "refund_to_tenant": LedgerKind(
        "Money paid out to the tenant (remboursement du solde créditeur by transfer or cheque):"
        " it uses up a credit balance, so it is a debit.",
        _DEBIT,
    ),
    "payment": LedgerKind(
        "Payment by the tenant (règlement, encaissement); how, in `payment_method`.", _CREDIT
    ),
    "housing_aid": LedgerKind(
        "Housing aid (APL/AL) paid by the CAF/MSA straight to the landlord (tiers payant).",
        _CREDIT,
    ),
    "deposit_refund": LedgerKind(
        "Security deposit credited back to the account at move-out (restitution du dépôt de"
        " garantie), before any balance is paid out with `refund_to_tenant`.",
        _CREDIT,
    ),
    "refund": LedgerKind(
        "A sum credited back to the tenant's account (remboursement, restitution): the landlord"
        " owes it. Money actually paid out to the tenant is `refund_to_tenant`.",
        _CREDIT,
    ),
    "credit_note": LedgerKind("Credit note (avoir), e.g. a goodwill gesture.", _CREDIT),
    "write_off": LedgerKind(
        "Debt written off as irrecoverable (admission en non-valeur, effacement de dette after"
        " a personal recovery procedure).",
        _CREDIT,
    ),
}

# Kinds whose amount can only be positive (debits) or only negative (credits).
DEBIT_KINDS: tuple[str, ...] = tuple(k for k, v in LEDGER_KINDS.items() if v.signs == _DEBIT)
CREDIT_KINDS: tuple[str, ...] = tuple(k for k, v in LEDGER_KINDS.items() if v.signs == _CREDIT)

TENANTS = EntitySpec(
    name="tenants",
    description="Tenants and their lease, with the attributes used to profile them.",
    key="tenant_ref",
    columns=(
        _text("tenant_ref", "The landlord's tenant (account) reference.", required=True),
        _text("lease_ref", "The landlord's lease (bail) reference."),
        _text("full_name", "Tenant's name as the landlord writes it.", personal=True),
        _text("dwelling_ref", "Reference of the dwelling (logement) let."),
        _date("move_in_date", "Lease start (date d'entrée)."),
        _date("move_out_date", "Lease end (date de sortie); empty while the lease runs."),
        _choice("status", "Lease status.", ("active", "leaving", "left"), required=True),
        _choice("income_band", "Household income band.", ("very_low", "low", "middle", "high")),
        _choice("age_band", "Age band of the lease holder.", ("under_30", "30_59", "60_plus")),
        _int("household_size", "People in the household.", min_value=1, max_value=20),
        _choice(
            "housing_aid",
            "Housing aid paid to the landlord (tiers payant).",
            ("none", "apl", "al"),
        ),
        _bool("fsl_aid", "The household receives FSL aid."),
        _choice(
            "payment_method",
            "How rent is paid.",
            PAYMENT_METHODS,
        ),
        _choice("preferred_channel", "Channel for reminders.", ("sms", "email", "letter")),
        _int("formal_demands", "Earlier formal demands to pay (commandements de payer)."),
    ),
    rules=(
        RowRule(
            "move_out_after_move_in",
            "A lease cannot end before it starts.",
            "a_not_before_b",
            ("move_out_date", "move_in_date"),
        ),
    ),
)

LEDGER_ENTRIES = EntitySpec(
    name="ledger_entries",
    description=(
        "Rent-account movements. amount_cents is signed: debits (rent calls, charges, fees,"
        " rejected direct debits, refunds paid out to the tenant) > 0, credits (payments,"
        " housing aid, refunds credited to the account, write-offs) < 0; each kind's sign(s)"
        " in the ledger kinds table."
    ),
    key="entry_ref",
    columns=(
        _text("entry_ref", "The landlord's reference of the movement.", required=True),
        _text("tenant_ref", "Tenant account the movement is posted to.", required=True),
        _date("entry_date", "Posting date.", required=True),
        _choice("kind", "What the movement is.", tuple(LEDGER_KINDS), required=True),
        _cents("amount_cents", "Signed amount in cents (debit > 0).", required=True, signed=True),
        _text(
            "label",
            "Label as printed on the tenant's statement (free text: often the payer's name).",
            personal=True,
        ),
        _date("due_date", "Due date for debits."),
        _choice(
            "reject_reason", "SEPA reason code of a rejected direct debit.", SEPA_REJECT_REASONS
        ),
        _choice(
            "payment_method",
            "How a payment (or the payment a rejected debit cancels) was made.",
            PAYMENT_METHODS,
        ),
    ),
    rules=(
        RowRule(
            "sign_matches_kind",
            "The amount has a sign its kind allows (ledger kinds table): a debit kind is not"
            " negative, a credit kind not positive, a kind allowing both never breaks it.",
            "sign_matches_kind",
            ("kind", "amount_cents"),
        ),
    ),
)

REPAYMENT_PLANS = EntitySpec(
    name="repayment_plans",
    description="Repayment plans (plans d'apurement): a debt spread over monthly instalments.",
    key="plan_ref",
    columns=(
        _text("plan_ref", "The landlord's plan reference.", required=True),
        _text("tenant_ref", "Tenant account the plan belongs to.", required=True),
        _date("start_date", "First instalment date.", required=True),
        _cents("total_cents", "Debt covered by the plan.", required=True),
        _cents("instalment_cents", "Monthly instalment.", required=True),
        _int("instalments", "Number of instalments.", min_value=1, max_value=240),
        _choice("status", "Plan status.", ("active", "completed", "broken"), required=True),
    ),
    rules=(
        RowRule(
            "instalment_within_total",
            "An instalment cannot exceed the plan's total.",
            "a_not_above_b",
            ("instalment_cents", "total_cents"),
        ),
    ),
)

WORK_ORDERS = EntitySpec(
    name="work_orders",
    description="Works orders (bons de travaux, BT) from landlord to contractor.",
    key="order_ref",
    columns=(
        _text("order_ref", "The landlord's order number, e.g. BT345678.", required=True),
        _text("contractor", "Contractor the order is placed with."),
        _text("dwelling_ref", "Dwelling or site of the works."),
        _choice(
            "category",
            "Kind of works.",
            ("repair", "leak_search", "planned_works", "maintenance", "other"),
            required=True,
        ),
        _cents("committed_cents", "Amount committed when the order was placed (excl. VAT)."),
        _choice(
            "status",
            "Where the order stands, like a parcel.",
            ("received", "scheduled", "in_progress", "done", "invoiced", "cancelled"),
            required=True,
        ),
        _date("ordered_date", "Date the order was placed.", required=True),
        _date("planned_date", "Planned intervention date."),
        _date("done_date", "Actual completion date."),
        _int("gti_hours", "Guaranteed time to intervene (GTI), hours."),
        _int("gtr_hours", "Guaranteed time to restore (GTR), hours."),
        ColumnSpec(
            "ordered_at",
            ColumnType.DATETIME,
            "When the order was placed, with its time (Europe/Paris, stored in UTC): GTI and GTR"
            " count from it; without it, from the start of `ordered_date` in Paris.",
        ),
        _text(
            "tenant_ref",
            "The tenant the works are for (missed appointments are counted per tenant; without"
            " it, per dwelling).",
        ),
    ),
    rules=(
        RowRule(
            "done_after_ordered",
            "Works cannot be done before they are ordered.",
            "a_not_before_b",
            ("done_date", "ordered_date"),
        ),
    ),
)

QUOTES = EntitySpec(
    name="quotes",
    description="Quotes (devis), including quotes for additional works on an existing order.",
    key="quote_ref",
    columns=(
        _text("quote_ref", "The quote's reference.", required=True),
        _text("order_ref", "The works order it belongs to.", required=True),
        _bool("additional_works", "The quote is for additional works on the order."),
        _cents("amount_cents", "Quoted amount (excl. VAT).", required=True),
        _choice("status", "Quote status.", ("draft", "sent", "accepted", "refused"), required=True),
        _date("issued_date", "Date the quote was issued."),
        _date("accepted_date", "Date the landlord accepted it."),
    ),
)

COMMITMENTS = EntitySpec(
    name="commitments",
    description="Commitments (engagements): budget reserved in the landlord's ERP for an order.",
    key="commitment_ref",
    columns=(
        _text("commitment_ref", "The ERP's commitment reference.", required=True),
        _text("order_ref", "The works order it funds.", required=True),
        _cents("amount_cents", "Committed amount (excl. VAT).", required=True),
        _date("committed_date", "Date of the commitment.", required=True),
        _text("budget_line", "Budget line (ligne budgétaire)."),
        _choice("status", "Commitment status.", ("draft", "confirmed", "cancelled"), required=True),
    ),
)

COMPLETIONS = EntitySpec(
    name="completions",
    description="Completion reports (quitus / rapport d'intervention).",
    key="completion_ref",
    columns=(
        _text("completion_ref", "The report's reference.", required=True),
        _text("order_ref", "The works order completed.", required=True),
        ColumnSpec(
            "completed_at",
            ColumnType.DATETIME,
            "When the work was completed (Europe/Paris, stored in UTC).",
            required=True,
        ),
        _text("technician", "Technician who did the work.", personal=True),
        _bool(
            "tenant_absent",
            "The tenant was absent (missed appointment, not the contractor's fault).",
        ),
        _bool("tenant_signed", "The tenant signed the report."),
        _int("rating", "Tenant's rating in hearts, 1 to 5.", min_value=1, max_value=5),
        _text("tenant_comment", "Tenant's comment.", personal=True),
        _int("photos", "Number of before/after photos attached."),
    ),
)

INVOICES = EntitySpec(
    name="invoices",
    description="Contractor invoices; each must carry the BT number of the order it bills.",
    key="invoice_ref",
    columns=(
        _text("invoice_ref", "The invoice number.", required=True),
        _text(
            "order_ref", "The BT number billed (landlords refuse unordered work).", required=True
        ),
        _choice(
            "kind",
            "Proforma (regularisation) or final invoice.",
            ("proforma", "final"),
            required=True,
        ),
        _cents("amount_cents", "Amount excluding VAT.", required=True),
        _cents("vat_cents", "VAT amount."),
        _date("issued_date", "Invoice date.", required=True),
        _date("due_date", "Payment due date."),
        _choice(
            "status", "Invoice status.", ("draft", "issued", "paid", "cancelled"), required=True
        ),
        _date("paid_date", "Date the landlord paid it (the `paid` step of the order's timeline)."),
    ),
)

ENTITIES: dict[str, EntitySpec] = {
    spec.name: spec
    for spec in (
        TENANTS,
        LEDGER_ENTRIES,
        REPAYMENT_PLANS,
        WORK_ORDERS,
        QUOTES,
        COMMITMENTS,
        COMPLETIONS,
        INVOICES,
    )
}

LINEAGE_COLUMNS: dict[str, str] = {
    "landlord_id": "The landlord (datafix id) the row belongs to; first half of the natural key.",
    "source_name": "The datafix source the row was read from.",
    "source_row": "Where the row came from: file:sheet:line, or the source's key.",
    "datafix_sha": "SHA-256 of the datafix file's content when the row was loaded.",
    "run_id": "The run that last changed the row.",
    "loaded_at": "When the row was last changed (UTC).",
    "row_hash": "Hash of the mapped values; an unchanged row is never rewritten.",
    "deleted_at": "Set when the row vanished from a full-snapshot source (soft delete).",
}

QUARANTINE_REASONS: dict[str, str] = {
    "missing_value": "A required value is blank.",
    "bad_amount": "An amount is not a valid euro amount.",
    "bad_date": "A date does not match the declared formats.",
    "bad_integer": "A whole number was expected.",
    "bad_boolean": "A yes/no value was expected.",
    "unmapped_value": "A source code has no entry in the datafix's value map.",
    "out_of_range": "A number lies outside the column's allowed range.",
    "duplicate_key": "Another row of the same batch has the same natural key.",
    "key_in_two_sources": "Two feeds of the entity hold the same natural key: neither row loads.",
    "bad_sign": "The sign indicator of an amount (`Sens` D/C) is blank or not a declared value.",
    "no_case": "No case of a conditional field rule holds for the row, and the rule has no `else`.",
    "truncated_row": "The file's last line is cut (no line end and fewer fields than the header,"
    " or a quote never closed): the file was still being written or copied.",
    "short_row": "A line has fewer fields than the header: the hub does not pad it with blanks.",
}
