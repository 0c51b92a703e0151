"""The demo calendar: whole months from the reference day (31/10/2026) onto the demo day's
month, nothing after the demo day. Expected dates worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from connectors.sandbox import soap_erp
from connectors.sandbox.demo_calendar import (
    DemoCalendar,
    DemoDayError,
    add_months,
    demo_day,
)
from connectors.sandbox.salesforce import demo_store


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 10, 31), 1, date(2026, 11, 30)),  # clamped to November's 30 days
        (date(2026, 5, 31), 9, date(2027, 2, 28)),
        (date(2026, 5, 31), 21, date(2028, 2, 29)),  # a leap year
        (date(2026, 3, 5), -3, date(2025, 12, 5)),  # back over a year
        (date(2026, 12, 10), 1, date(2027, 1, 10)),
        (date(2026, 7, 1), 0, date(2026, 7, 1)),
    ],
    ids=["month-end", "to-february", "leap-day", "backwards", "over-new-year", "no-shift"],
)
def test_add_months_keeps_the_day_of_the_month_clamped(
    day: date, months: int, expected: date
) -> None:
    assert add_months(day, months) == expected


def test_the_reference_month_becomes_the_demo_days_month_and_nothing_happens_after_it() -> None:
    calendar = DemoCalendar(date(2026, 12, 7))
    assert calendar.months == 2
    assert calendar.export_month == "2026-12"
    assert calendar.extracted_on == date(2026, 12, 7)
    assert calendar.event(date(2026, 10, 1)) == date(2026, 12, 1)  # October's rent call
    assert calendar.event(date(2026, 10, 5)) == date(2026, 12, 5)
    assert calendar.event(date(2026, 10, 20)) == date(2026, 12, 7)  # a payment: the demo day
    assert calendar.scheduled(date(2026, 10, 10)) == date(2026, 12, 10)  # a due date: moves only
    assert calendar.event(date(2026, 11, 20)) == date(2027, 1, 20)  # future at the reference
    assert calendar.event(None) is None
    assert calendar.moment(datetime(2026, 10, 29, 14, 30, tzinfo=UTC)) == datetime(
        2026, 12, 7, 14, 30, tzinfo=UTC
    )


def test_the_reference_day_moves_nothing() -> None:
    calendar = DemoCalendar(date(2026, 10, 31))
    assert calendar.months == 0
    assert calendar.event(date(2026, 10, 31)) == date(2026, 10, 31)
    assert calendar.label("Avis d'échéance 10/2026") == "Avis d'échéance 10/2026"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Avis d'échéance 10/2026", "Avis d'échéance 03/2027"),
        ("Loyer octobre 2026", "Loyer mars 2027"),
        ("APL CAF 08/2026", "APL CAF 01/2027"),
        ("Régularisation charges 2025", "Régularisation charges 2025"),  # June 2026 → Nov 2026
        (
            "Report solde débiteur au 30/04/2026 (loyers 02 à 04/2026)",
            "Report solde débiteur au 30/09/2026 (loyers 07 à 09/2026)",
        ),
        ("Échéance 2/6 plan PA-2026-102", "Échéance 2/6 plan PA-2026-102"),  # a reference
    ],
)
def test_labels_name_the_moved_months(label: str, expected: str) -> None:
    assert DemoCalendar(date(2027, 3, 14)).label(label) == expected


def test_a_year_on_the_regularised_year_moves_too() -> None:
    assert DemoCalendar(date(2027, 10, 31)).label("Régularisation charges 2025") == (
        "Régularisation charges 2026"
    )


def test_the_demo_day_comes_from_the_environment_or_is_today() -> None:
    assert demo_day({"DATAFIX_DEMO_DAY": "2027-01-14"}) == date(2027, 1, 14)
    assert demo_day({"DATAFIX_DEMO_DAY": " "}) == demo_day({})
    with pytest.raises(DemoDayError, match="write it like"):
        demo_day({"DATAFIX_DEMO_DAY": "14/01/2027"})


def test_the_sandbox_seeds_move_with_the_calendar() -> None:
    calendar = DemoCalendar(date(2027, 1, 14))  # 3 months on
    seed = soap_erp.demo_seed(calendar)
    reference = soap_erp.demo_seed()
    first, moved = reference["ledger_entries"][0], seed["ledger_entries"][0]
    assert first["entryDate"] == date(2026, 3, 2)
    assert moved["entryDate"] == date(2026, 6, 2)
    assert moved["label"] == "Avis d'échéance juin 2026"
    assert moved["modifiedAt"] == datetime.combine(date(2026, 6, 1), time(0, 0), tzinfo=UTC) + (
        first["modifiedAt"] - datetime(2026, 3, 1, tzinfo=UTC)
    )
    store = demo_store(calendar)
    stamps = {
        record["WorkOrderNumber"]: record["SystemModstamp"]
        for record in store.records["WorkOrder"].values()
    }
    # work order 1: 2025-12-01T00:00Z (`field_service_store`), three months on
    assert stamps["00000001"] == datetime(2026, 3, 1, tzinfo=UTC)
