"""What the hub pushes back out: three outgoing records derived from the canonical tables.

- `commitments`: per works order, the amount committed when it was placed plus its accepted
  additional-works quotes, for the landlord's ERP (the commitment follows the works);
- `invoices`: contractor invoices ready to send to Sage, each carrying its BT number; a proforma
  goes out as a regularisation request;
- `completions`: completion reports (completed_at, tenant absent, rating …) for Salesforce and
  the landlord's ERP;
- `actions`: the arrears-prevention actions of the tenants' profiles (`prevention_actions`,
  computed by insight), for a CRM task, a mailing file or an SQL table: each is sent when it
  opens and once more when it closes.

A landlord's datafix says in its `push:` section which of these go to which sink, how each
target field is filled from the columns below, and what *confirmed* means (which statuses and
flags let a record out). Derivation lives in `pipelines.lib.derive`; this module is the contract
that the datafix validation, the reference page and the derivation share.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.canonical import (
    COMPLETIONS,
    INVOICES,
    WORK_ORDERS,
    ColumnSpec,
    ColumnType,
    EntitySpec,
)

__all__ = ["OUTGOING", "OutgoingSpec"]


@dataclass(frozen=True)
class OutgoingSpec:
    """One kind of outgoing record: its key, the canonical tables it reads and its columns."""

    name: str
    description: str
    key: str
    inputs: tuple[str, ...]  # canonical entities read; their contracts gate the push
    columns: tuple[ColumnSpec, ...]
    # what `confirmed` means when the datafix does not say: column → allowed values
    confirmed_default: dict[str, tuple[str | bool, ...]]
    # extra `confirmed` settings that are not columns (e.g. which quotes raise a commitment)
    confirmed_options: dict[str, str]
    # when a sink keys records on another column (`key:`), the record kept among those sharing
    # a value is the latest by this column (e.g. the last visit of an order)
    latest_by: str
    # assets besides the inputs' loads that the derivation reads (an insight table)
    after: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns a sink's `fields` may read."""
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> ColumnSpec:
        """The spec of column `name`; raises KeyError for an unknown column."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


def _from(spec_column: ColumnSpec, description: str | None = None) -> ColumnSpec:
    """A canonical column carried as it is (its description adapted when given)."""
    if description is None:
        return spec_column
    return ColumnSpec(
        spec_column.name,
        spec_column.type,
        description,
        required=spec_column.required,
        choices=spec_column.choices,
        personal=spec_column.personal,
    )


def _carried(spec: EntitySpec, *names: str) -> tuple[ColumnSpec, ...]:
    """Canonical columns of `spec` carried as they are, in this order."""
    return tuple(spec.column(name) for name in names)


def _column(name: str, type_: ColumnType, description: str, **extra: object) -> ColumnSpec:
    return ColumnSpec(name, type_, description, **extra)  # type: ignore[arg-type]


ORDER_STATUSES = WORK_ORDERS.column("status").choices

COMMITMENTS_OUT = OutgoingSpec(
    name="commitments",
    description="Per works order: the committed amount plus its accepted additional-works"
    " quotes, for the landlord's ERP.",
    key="order_ref",
    inputs=("work_orders", "quotes"),
    columns=(
        *_carried(WORK_ORDERS, "order_ref", "contractor", "dwelling_ref", "category"),
        _from(WORK_ORDERS.column("status"), "The works order's status."),
        WORK_ORDERS.column("ordered_date"),
        _column(
            "base_cents",
            ColumnType.CENTS,
            "Amount committed when the order was placed (work_orders.committed_cents).",
        ),
        _column(
            "additional_cents",
            ColumnType.CENTS,
            "Sum of the order's accepted additional-works quotes.",
        ),
        _column(
            "amount_cents",
            ColumnType.CENTS,
            "The commitment to hold: base_cents + additional_cents.",
            required=True,
        ),
        _column("accepted_quotes", ColumnType.INTEGER, "How many additional-works quotes count."),
        _column("last_accepted_date", ColumnType.DATE, "When the latest of them was accepted."),
    ),
    confirmed_default={"status": ("received", "scheduled", "in_progress", "done", "invoiced")},
    confirmed_options={
        "quote_status": "Quote statuses that raise the commitment (default: [accepted]).",
    },
    latest_by="ordered_date",
)

INVOICES_OUT = OutgoingSpec(
    name="invoices",
    description="Contractor invoices ready to send to Sage, each with its BT number; a proforma"
    " goes out as a regularisation request.",
    key="invoice_ref",
    inputs=("invoices",),
    columns=(
        *_carried(INVOICES, "invoice_ref", "order_ref", "kind"),
        _column(
            "document",
            ColumnType.CHOICE,
            "What the target receives: `invoice` (final) or `regularisation_request` (proforma).",
            choices=("invoice", "regularisation_request"),
        ),
        *_carried(INVOICES, "amount_cents", "vat_cents"),
        _column("total_cents", ColumnType.CENTS, "Amount including VAT: amount + VAT."),
        *_carried(INVOICES, "issued_date", "due_date", "status"),
        _from(WORK_ORDERS.column("contractor"), "Contractor of the order billed (when known)."),
        _from(WORK_ORDERS.column("dwelling_ref"), "Dwelling of the order billed (when known)."),
    ),
    confirmed_default={"status": ("issued",)},
    confirmed_options={},
    latest_by="issued_date",
)

COMPLETIONS_OUT = OutgoingSpec(
    name="completions",
    description="Completion reports of works orders, for Salesforce and the landlord's ERP.",
    key="completion_ref",
    inputs=("completions",),
    columns=(
        *_carried(COMPLETIONS, "completion_ref", "order_ref", "completed_at"),
        _column(
            "completed_date", ColumnType.DATE, "The day the work was completed (Europe/Paris)."
        ),
        *_carried(COMPLETIONS, "technician", "tenant_absent", "tenant_signed", "rating", "photos"),
        _column(
            "order_status",
            ColumnType.CHOICE,
            "Status of the order completed (when the landlord's orders are loaded).",
            choices=ORDER_STATUSES,
        ),
    ),
    confirmed_default={},
    confirmed_options={},
    latest_by="completed_at",
)


def _text_column(name: str, description: str) -> ColumnSpec:
    return ColumnSpec(name, ColumnType.TEXT, description)


ACTIONS_OUT = OutgoingSpec(
    name="actions",
    description="Arrears-prevention actions (reminder, SMS, call, letter, social referral,"
    " notice at departure) of the tenants' profiles, each sent when it opens and when it closes.",
    key="action_key",
    inputs=("ledger_entries", "tenants", "repayment_plans"),
    columns=(
        _text_column("action_key", "Stable key: tenant:profile:step:opened_on."),
        _text_column("tenant_ref", "The tenant the action is for."),
        _text_column("profile", "The tenant's profile that called for it."),
        _text_column("step", "The scenario step."),
        _text_column("action", "reminder, sms, email, call, letter, formal_notice, …"),
        _text_column("channel", "sms, email, letter, phone or visit."),
        _text_column("template", "The template to use."),
        _column("opened_on", ColumnType.DATE, "The day it opened."),
        _column("due_date", ColumnType.DATE, "The day it is due."),
        _column("balance_cents", ColumnType.CENTS, "The tenant's balance when it opened."),
        _column("status", ColumnType.CHOICE, "open or closed.", choices=("open", "closed")),
        _column("closed_on", ColumnType.DATE, "The day it closed."),
        _text_column("closed_reason", "balance_cleared or profile_changed."),
    ),
    confirmed_default={},
    confirmed_options={},
    latest_by="opened_on",
    after=("insight_prevention_actions",),
)

OUTGOING: dict[str, OutgoingSpec] = {
    spec.name: spec for spec in (COMMITMENTS_OUT, INVOICES_OUT, COMPLETIONS_OUT, ACTIONS_OUT)
}
