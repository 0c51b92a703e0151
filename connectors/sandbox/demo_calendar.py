"""The demo's calendar: the demo data is generated as of a fixed reference day (31/10/2026, the
extraction day of its files) and then dated relative to the *demo day* (today in Paris unless
`DATAFIX_DEMO_DAY=YYYY-MM-DD` says otherwise), so the insight steps, which age to today, find
the same story whatever day the demo runs.

**The shift is in whole months**, so the data keeps its calendar: rent called on the 1st and
due on the 5th, direct debits on the 5th, housing aid on the 25th, plan instalments on the
10th. The reference month (October 2026) becomes the demo day's month: a date moves by
`months` (the months from October 2026 to the demo day's month) with its day of the month
(clamped to the month's length: 31/05 → 30/06). A shift that put the extraction on the last
month-end *before* the demo day would leave the data up to 30 days stale (the 0–30 days bucket
then empties, as it did when the data stayed at 31/10/2026); ending the data in the demo day's
month keeps what was recent at the reference recent on the demo day.

**Nothing happens after the demo day**: an event of the reference (a posting, a payment, an
order, a visit, an invoice) that the shift puts after the demo day is dated the demo day itself
(`event`): the export is taken that day, so the current month's movements not yet due by then
are dated as received that day. No row is added or dropped: the row counts of every day are
those of the reference. Dates that were already in the future at the reference (a due date, a
notice's move-out day, a lease signed for next month) and due dates in general only shift
(`scheduled`): a due date after the demo day is what a real export shows.

On the reference day itself nothing moves: the output is the reference's to the byte. No
dagster import: a plain connector helper, shared by the demo files and the sandbox peers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, overload
from zoneinfo import ZoneInfo

DEMO_DAY_VARIABLE = "DATAFIX_DEMO_DAY"
# The day the demo data is generated for; the extraction day of its files.
REFERENCE_DAY = date(2026, 10, 31)
PARIS = ZoneInfo("Europe/Paris")

FRENCH_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
    "octobre", "novembre", "décembre",
)  # fmt: skip


class DemoDayError(ValueError):
    """`DATAFIX_DEMO_DAY` (or `--day`) is not a day."""


def parse_demo_day(text: str) -> date:
    """`YYYY-MM-DD` as a date, or a DemoDayError that says how to write it."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DemoDayError(
            f"{DEMO_DAY_VARIABLE}={text!r} is not a day — write it like 2026-12-07"
        ) from None


def demo_day(environ: Mapping[str, str] | None = None) -> date:
    """`DATAFIX_DEMO_DAY` when it is set (not blank), else today in Paris."""
    environ = os.environ if environ is None else environ
    text = (environ.get(DEMO_DAY_VARIABLE) or "").strip()
    return parse_demo_day(text) if text else datetime.now(PARIS).date()


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, its day of the month clamped to the target month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    following = date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    last = (following - date(year, month + 1, 1)).days
    return date(year, month + 1, min(day.day, last))


@dataclass(frozen=True)
class DemoCalendar:
    """Dates of the reference moved to the demo day `day` (see the module docstring)."""

    day: date = REFERENCE_DAY

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> DemoCalendar:
        """The calendar of `demo_day()`: `DATAFIX_DEMO_DAY`, else today in Paris."""
        return cls(demo_day(environ))

    @property
    def months(self) -> int:
        """Whole months from the reference month to the demo day's month."""
        return (self.day.year - REFERENCE_DAY.year) * 12 + self.day.month - REFERENCE_DAY.month

    @property
    def extracted_on(self) -> date:
        """The day the shifted files were exported: the demo day."""
        return self.event(REFERENCE_DAY)

    @property
    def export_month(self) -> str:
        """`yyyy-mm` of the demo day's month, as the monthly exports are named."""
        return f"{self.day:%Y-%m}"

    @overload
    def scheduled(self, day: None) -> None: ...
    @overload
    def scheduled(self, day: date) -> date: ...
    def scheduled(self, day: date | None) -> date | None:
        """A day moved by whole months (a due date, a planned day: it may be after the demo
        day)."""
        return None if day is None else add_months(day, self.months)

    @overload
    def event(self, day: None) -> None: ...
    @overload
    def event(self, day: date) -> date: ...
    def event(self, day: date | None) -> date | None:
        """A day something happened: moved by whole months, and no later than the demo day when
        it was no later than the reference extraction day."""
        if day is None:
            return None
        moved = add_months(day, self.months)
        return min(moved, self.day) if day <= REFERENCE_DAY else moved

    @overload
    def moment(self, at: None) -> None: ...
    @overload
    def moment(self, at: datetime) -> datetime: ...
    def moment(self, at: datetime | None) -> datetime | None:
        """`event` for a date and time: the day moves, the time of day (and zone) stays."""
        if at is None:
            return None
        return datetime.combine(self.event(at.date()), at.timetz())

    def value(self, value: Any) -> Any:
        """Every date and datetime inside `value` (dicts, lists, tuples) moved as an event;
        anything else as it is. For the sandbox peers' seeds."""
        if isinstance(value, datetime):
            return self.moment(value)
        if isinstance(value, date):
            return self.event(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(item) for item in value)
        return value

    def label(self, text: str) -> str:
        """The dates a label names moved with the calendar: `30/04/2026`, `10/2026`, `octobre
        2026`, `loyers 02 à 04/2026` and the year of `charges 2025` (regularised in June of
        the following year)."""
        if not self.months:
            return text

        def month_of(year: int, month: int) -> date:
            return add_months(date(year, month, 1), self.months)

        def replace(match: re.Match[str]) -> str:
            groups = match.groupdict()
            if groups["d"]:
                moved = add_months(
                    date(int(groups["dy"]), int(groups["dm"]), int(groups["d"])), self.months
                )
                return f"{moved:%d/%m/%Y}"
            if groups["my"]:
                return f"{month_of(int(groups['my']), int(groups['mm'])):%m/%Y}"
            if groups["name"]:
                moved = month_of(int(groups["ny"]), FRENCH_MONTHS.index(groups["name"]) + 1)
                return f"{FRENCH_MONTHS[moved.month - 1]} {moved.year}"
            if groups["from"]:
                moved = month_of(REFERENCE_DAY.year, int(groups["from"]))
                return f"loyers {moved:%m} à"
            regularised = month_of(int(groups["cy"]) + 1, 6)
            return f"charges {regularised.year - 1}"

        names = "|".join(FRENCH_MONTHS)
        pattern = (
            r"\b(?P<d>\d{2})/(?P<dm>\d{2})/(?P<dy>\d{4})\b"
            r"|\b(?P<mm>\d{2})/(?P<my>\d{4})\b"
            rf"|\b(?P<name>{names}) (?P<ny>\d{{4}})\b"
            r"|\bloyers (?P<from>\d{2}) à"
            r"|\bcharges (?P<cy>\d{4})\b"
        )
        return re.sub(pattern, replace, text)


REFERENCE_CALENDAR = DemoCalendar(REFERENCE_DAY)
