"""Records for the local landlord ERP (`connectors/sandbox/soap_erp.py`) that the SOAP tests
share: tenants to seed it with, commitments and completion reports to push to it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from connectors.delivery import OutgoingRecord
from tests.connectors.sinks import work_order_records


def erp_tenant(number: int) -> dict[str, object]:
    """Tenant `T<number>`, rent 432.10, modified on the `number`th of March 2026."""
    return {
        "tenantRef": f"T{number}",
        "lastName": "Durand",
        "dwellingRef": "LOG-1",
        "moveInDate": dt.date(2021, 9, 1),
        "monthlyRent": Decimal("432.10"),
        "housingAid": False,
        "modifiedAt": dt.datetime(2026, 3, number, tzinfo=dt.UTC),
    }


def erp_commitments(count: int, version: str = "v1") -> list[OutgoingRecord]:
    """Commitments as SubmitCommitments takes them, amounts growing with the order's number."""
    return work_order_records(
        count,
        version,
        "BT",
        lambda number: {
            "Contractor": "Plomberie du Centre",
            "BudgetLine": "GE-2026-61521",
            "AmountExclTaxCents": 18050 + number,
            "AmountInclTax": 19855 + number,
            "OrderedOn": dt.date(2026, 3, 2),
            "Label": f"Dépannage {version}",
        },
    )


def erp_reports(count: int, version: str = "v1") -> list[OutgoingRecord]:
    """Completion reports as SubmitCompletionReport takes them."""
    return work_order_records(
        count,
        version,
        "PV",
        lambda number: {
            "CompletedAt": dt.datetime(2026, 3, 4, 15, 30, tzinfo=dt.UTC),
            "TenantAbsent": number % 5 == 0,
            "Rating": 1 + number % 5,
            "Technician": "J. Martin",
        },
    )
