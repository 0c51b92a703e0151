"""The demo landlords: the source files of three, generated deterministically into a hub home,
and the figures of all five.

- `loire-habitat` (Loire Habitat Social): two CSV exports as French Excel writes them: cp1252,
  `;`, CRLF, decimal comma, thousands separated by a no-break or a plain space, `€` suffixes,
  negatives as `-12,50`, `12,50-` and `(12,50)`, `dd/mm/yyyy` and `dd/mm/yy` dates, accented
  headers, a blank row then a totals row at the bottom.
- `opale-logement` (Opale Logement): one works-tracking workbook: a merged title block above the
  header, a two-row header with a merged `Montant engagé` cell over `HT` / `TTC`, dates as date
  cells, as text and as bare serial numbers, amounts typed as text with narrow no-break spaces,
  `Total` rows and trailing empty rows.
- `cite-jardins` (Cité des Jardins): an ERP's SQLite database: amounts as exact decimal text,
  ISO dates as text, the ERP's own codes.

Two more read web services, served by the sandbox peers (`connectors/sandbox/run.py`), so
nothing is written for them here (`DEMO_SANDBOX_LANDLORDS`):

- `val-de-seine` (Val de Seine Habitat): tenants and ledger entries from the landlord ERP's SOAP
  service (`soap_erp.demo_seed()`), paged, pulled incrementally on `modifiedAt`.
- `residences-estuaire` (Résidences de l'Estuaire): work orders and completions from its
  contractor's Salesforce Field Service org (`salesforce.demo_store()`, `WorkOrder` and completed
  `ServiceAppointment`s of the landlord's account), pulled incrementally on `SystemModstamp`.

Every landlord carries deliberately bad rows so the demo shows quarantine at work: `DEMO_ROWS`
is the number of data rows written (or served by the peer) per entity (header, title, blank and
totals rows excluded) and `DEMO_BAD_ROWS` how many of them the hub must quarantine, so that a run
can assert `read == loaded + quarantined` exactly.

The data is generated for the reference day `EXTRACTED_ON` (31/10/2026) and written dated for
the demo day (`connectors.sandbox.demo_calendar`: today in Paris unless `DATAFIX_DEMO_DAY` or
`day` says otherwise), moved by whole months so that October 2026 becomes the demo day's month,
nothing dated after the demo day; the monthly exports are named after that month. No row moves
in or out: `DEMO_ROWS` hold on every day. For a given demo day the output is identical to the
byte from one run to the next (fixed seeds, fixed dates, fixed workbook properties and zip
timestamps, SQLite written by `VACUUM INTO`), and a file whose content did not change is not
rewritten: the hub's inbox sensor keys runs on path + mtime.
All people and companies are invented. No dagster import: this is a plain connector helper.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import random
import re
import sqlite3
import sys
import tempfile
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from connectors.sandbox.demo_calendar import REFERENCE_DAY, DemoCalendar, parse_demo_day

LOIRE_HABITAT = "loire-habitat"
OPALE_LOGEMENT = "opale-logement"
CITE_JARDINS = "cite-jardins"
VAL_DE_SEINE = "val-de-seine"
RESIDENCES_ESTUAIRE = "residences-estuaire"

DEMO_LANDLORDS: dict[str, str] = {
    LOIRE_HABITAT: "Loire Habitat Social",
    OPALE_LOGEMENT: "Opale Logement",
    CITE_JARDINS: "Cité des Jardins",
    VAL_DE_SEINE: "Val de Seine Habitat",
    RESIDENCES_ESTUAIRE: "Résidences de l'Estuaire",
}
# Landlords whose data the sandbox peers serve: `write_demo_sources` writes nothing for them.
DEMO_SANDBOX_LANDLORDS: frozenset[str] = frozenset({VAL_DE_SEINE, RESIDENCES_ESTUAIRE})

# Data rows written per landlord and entity (header, title, blank and totals rows excluded).
DEMO_ROWS: dict[str, dict[str, int]] = {
    LOIRE_HABITAT: {"tenants": 121, "ledger_entries": 1959},
    # completions: + 20 repeat visits (`_repeat_visits`)
    OPALE_LOGEMENT: {"work_orders": 301, "quotes": 108, "completions": 293, "invoices": 200},
    # + the 4 hand-written accounts (`_CITE_ACCOUNTS`): 4 tenants, 60 entries, 3 plans
    CITE_JARDINS: {
        "tenants": 145,
        "ledger_entries": 2369,
        "repayment_plans": 30,
        "commitments": 200,
    },
    # soap_erp.demo_seed(): 12 tenants, 36 ledger entries
    VAL_DE_SEINE: {"tenants": 12, "ledger_entries": 36},
    # erp_node/server.js (its default seed): 2,600 ledger entries, served 100 a page;
    # salesforce.demo_store(), the account's records: 23 work orders, 4 completed appointments
    RESIDENCES_ESTUAIRE: {"ledger_entries": 2600, "work_orders": 23, "completions": 4},
}
# Of those, the rows the hub must quarantine (each carries exactly one seeded defect).
DEMO_BAD_ROWS: dict[str, dict[str, int]] = {
    LOIRE_HABITAT: {"tenants": 4, "ledger_entries": 4},
    OPALE_LOGEMENT: {"work_orders": 4, "quotes": 3, "completions": 3, "invoices": 3},
    CITE_JARDINS: {"tenants": 3, "ledger_entries": 4, "repayment_plans": 1, "commitments": 3},
    # channel `fax`; a blank tenantRef, the movement code `PEN`
    VAL_DE_SEINE: {"tenants": 1, "ledger_entries": 2},
    # the works ERP's entries are clean; 2 `Cannot Complete` and 1 without BT number;
    # 1 completed visit without end time
    RESIDENCES_ESTUAIRE: {"ledger_entries": 0, "work_orders": 3, "completions": 1},
}

# The reference day the data is generated for; `DemoCalendar` dates it to the demo day.
EXTRACTED_ON = REFERENCE_DAY
LEDGER_MONTHS: dict[int, str] = {
    5: "mai",
    6: "juin",
    7: "juillet",
    8: "août",
    9: "septembre",
    10: "octobre",
}
_SEED = "datafix-hub-demo-2026"
# Written into every zip entry and the workbook's properties instead of "now".
_FROZEN_TIME = datetime(2026, 10, 31, 22, 0, 0)

NBSP = "\u00a0"  # no-break space: French Excel's thousands separator in cp1252 exports
NNBSP = "\u202f"  # narrow no-break space: recent Windows; not in cp1252, so only in the workbook

# The defects seeded into the data, one per bad row; each writer turns them into its own form.
UNKNOWN_CODE = "unknown_code"  # a status / movement / type code the value map does not know
BAD_DATE = "bad_date"  # a date that does not exist (31/02/2026, 15/13/2026, 2026-09-31)
BLANK_REF = "blank_ref"  # the row's key or a required reference left blank
DUPLICATE = "duplicate"  # the same natural key exported twice (the later row is refused)
BAD_AMOUNT = "bad_amount"  # `12,5O` (letter O), or more than two decimals
OUT_OF_RANGE = "out_of_range"  # a rating of 6 hearts

FIRST_NAMES = (
    "Amandine", "Bastien", "Capucine", "Damien", "Éloïse", "Fabrice", "Gaëlle", "Hugo", "Inès",
    "Jérôme", "Karima", "Loïc", "Maëlys", "Nadir", "Océane", "Pascal", "Quentin", "Rosalie",
    "Sébastien", "Thaïs", "Ulysse", "Valérie", "Wassim", "Yasmine", "Zoé", "Anaïs", "Benoît",
    "Céline", "Mehdi", "Noémie", "Françoise", "Hervé", "Solène", "Grégoire", "Ludivine",
    "Aurélien",
)  # fmt: skip
SURNAMES = (
    "Ablain", "Bercourt", "Castagnet", "Delorme", "Estrebeau", "Fromentin", "Guérandel",
    "Hautecœur", "Illiers", "Jacquemard", "Kerbrat", "Lavergnac", "Marcheval", "Noiraud",
    "Ourselin", "Pradeloup", "Quesnard", "Rivolet", "Saint-Aubrec", "Trémoulet", "Vaucanel",
    "Wendling", "Yvernaud", "Zimmerlin", "Beaufrène", "Chardonnet", "Dufresnay", "Lécuyer",
    "Montagnac", "Péronnet",
)  # fmt: skip

T = TypeVar("T")


# --- Shared: tenancy and rent ledger, in canonical terms -------------------------------------


@dataclass(frozen=True)
class _Tenant:
    ref: str
    lease_ref: str
    last_name: str
    first_name: str
    dwelling_ref: str
    move_in: date
    move_out: date | None
    status: str
    income_band: str
    age_band: str
    household_size: int
    housing_aid: str
    fsl_aid: bool
    payment_method: str
    preferred_channel: str
    formal_demands: int
    rent_cents: int
    charges_cents: int
    aid_cents: int
    split_rent: bool  # rent and charges called as two lines instead of one rent call
    in_arrears: bool
    defect: str | None = None


@dataclass(frozen=True)
class _Entry:
    tenant_ref: str
    entry_date: date
    kind: str
    amount_cents: int  # signed like the canonical model: debits > 0, credits < 0
    label: str
    due_date: date | None = None
    reject_reason: str | None = None
    detail: str = ""  # apl / al for housing aid
    defect: str | None = None


def _tenant_contact(tenant: _Tenant) -> tuple[str, str, str]:
    """The tenant's e-mail, mobile phone and IBAN, as a tenancy export carries them: derived
    from the name and reference without drawing from the generator, so every other value of
    the demo stays as it was. The IBAN is a well-formed French one (mod-97 check digits)."""
    folded = unicodedata.normalize("NFKD", f"{tenant.first_name}.{tenant.last_name}")
    local = re.sub(r"[^a-z.]", "", folded.encode("ascii", "ignore").decode().lower())
    number = int(re.sub(r"\D", "", tenant.ref) or 0)
    digits = f"{(number * 7_919 + 1_234_567) % 100_000_000:08d}"
    phone = "06 " + " ".join(digits[i : i + 2] for i in range(0, 8, 2))
    bban = f"3000401234{number:011d}{number % 97:02d}"
    check = 98 - int(bban + "152700") % 97  # FR00 moved to the end, letters as numbers
    iban = f"FR{check:02d}{bban}"
    return (
        f"{local}{number % 1000:03d}@example.org",
        phone,
        " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)),
    )


def _rng(landlord_id: str) -> random.Random:
    # a str seed is hashed with SHA-512: stable across runs, unlike hash()
    return random.Random(f"{_SEED}:{landlord_id}")


def _day_between(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randint(0, (last - first).days))


def _month_end(day: date) -> date:
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following - timedelta(days=1)


def _pick(rng: random.Random, weighted: dict[str, int]) -> str:
    return rng.choices(tuple(weighted), weights=tuple(weighted.values()))[0]


def _tenant(rng: random.Random, ref: str, lease_prefix: str, dwelling_ref: str) -> _Tenant:
    status = _pick(rng, {"active": 80, "leaving": 8, "left": 12})
    if status == "active":
        move_in = _day_between(rng, date(2005, 1, 1), date(2026, 9, 30))
        move_out = None
    elif status == "leaving":
        move_in = _day_between(rng, date(2006, 1, 1), date(2025, 6, 30))
        move_out = _day_between(rng, date(2026, 11, 1), date(2026, 12, 31))
    else:
        move_in = _day_between(rng, date(2007, 1, 1), date(2024, 12, 31))
        move_out = _day_between(rng, date(2026, 5, 10), date(2026, 10, 20))
    income_band = _pick(rng, {"very_low": 35, "low": 35, "middle": 22, "high": 8})
    age_band = _pick(rng, {"under_30": 15, "30_59": 60, "60_plus": 25})
    modest = income_band in ("very_low", "low")
    housing_aid = _pick(
        rng, {"none": 30, "apl": 55, "al": 15} if modest else {"none": 90, "al": 10}
    )
    rent_cents = rng.randint(28_000, 72_000)
    aid_cents = rng.randint(9_000, min(32_000, rent_cents - 5_000)) if housing_aid != "none" else 0
    in_arrears = rng.random() < 0.15
    senior = age_band == "60_plus"
    channels = (
        {"sms": 20, "email": 15, "letter": 65} if senior else {"sms": 55, "email": 35, "letter": 10}
    )
    return _Tenant(
        ref=ref,
        lease_ref=f"{lease_prefix}{move_in.year}-{ref[-4:]}",
        last_name=rng.choice(SURNAMES),
        first_name=rng.choice(FIRST_NAMES),
        dwelling_ref=dwelling_ref,
        move_in=move_in,
        move_out=move_out,
        status=status,
        income_band=income_band,
        age_band=age_band,
        household_size=rng.choices(range(1, 7), weights=(30, 25, 18, 14, 8, 5))[0],
        housing_aid=housing_aid,
        fsl_aid=modest and rng.random() < 0.12,
        payment_method=_pick(
            rng, {"sepa_debit": 55, "transfer": 20, "cheque": 10, "cash": 5, "card": 10}
        ),
        preferred_channel=_pick(rng, channels),
        formal_demands=rng.choice((1, 1, 2, 3)) if in_arrears and rng.random() < 0.5 else 0,
        rent_cents=rent_cents,
        charges_cents=rng.randint(4_500, 16_000),
        aid_cents=aid_cents,
        split_rent=rng.random() < 0.2,
        in_arrears=in_arrears,
    )


_PAYMENT_DAYS = {
    "sepa_debit": (5, 5), "transfer": (1, 8), "cheque": (3, 15), "cash": (2, 20), "card": (1, 10),
}  # fmt: skip
_REJECT_REASONS = {"AM04": 55, "AC04": 12, "MS02": 10, "MD01": 8, "MD06": 10, "MD07": 5}


def _payment_label(rng: random.Random, method: str, tenant: _Tenant) -> str:
    if method == "cheque":
        return f"Chèque n° {rng.randint(1_000_000, 9_999_999)}"
    if method == "transfer":  # the bank's label names the payer: personal data in a label
        return f"Virement reçu de {tenant.last_name.upper()} {tenant.first_name}"
    return {
        "sepa_debit": "Prélèvement SEPA",
        "transfer": "Virement reçu",
        "cash": "Espèces (guichet)",
        "card": "Paiement carte bancaire",
    }[method]


def _ledger(rng: random.Random, tenant: _Tenant) -> list[_Entry]:
    """Six months (May to October 2026) of one tenant's rent account."""
    entries: list[_Entry] = []

    def post(day: date, kind: str, cents: int, label: str, **extra: object) -> None:
        entries.append(_Entry(tenant.ref, day, kind, cents, label, **extra))

    for month, month_name in LEDGER_MONTHS.items():
        first = date(2026, month, 1)
        last = _month_end(first)
        if tenant.move_in > last or (tenant.move_out is not None and tenant.move_out < first):
            continue
        called_on = max(first, tenant.move_in)
        due = max(date(2026, month, 5), called_on)
        if tenant.split_rent:
            post(called_on, "rent", tenant.rent_cents, f"Loyer {month_name} 2026", due_date=due)
            post(
                called_on,
                "service_charges",
                tenant.charges_cents,
                f"Provision charges {month_name} 2026",
                due_date=due,
            )
        else:
            called = tenant.rent_cents + tenant.charges_cents
            post(called_on, "rent_call", called, f"Avis d'échéance {month:02d}/2026", due_date=due)
        if month == 6 and tenant.move_in <= date(2026, 6, 15) and rng.random() < 0.7:
            big = rng.random() < 0.15
            regularisation = rng.randint(100_000, 160_000) if big else rng.randint(1_500, 42_000)
            post(
                date(2026, 6, 15),
                "charge_regularisation",
                regularisation,
                "Régularisation charges 2025",
                due_date=date(2026, 7, 5),
            )
        if tenant.housing_aid != "none":
            post(
                max(date(2026, month, 25), called_on),
                "housing_aid",
                -tenant.aid_cents,
                f"{tenant.housing_aid.upper()} CAF {month:02d}/2026",
                detail=tenant.housing_aid,
            )
        to_pay = tenant.rent_cents + tenant.charges_cents - tenant.aid_cents
        if tenant.in_arrears and rng.random() < 0.35:
            to_pay = 0
        elif tenant.in_arrears and rng.random() < 0.3:
            to_pay = to_pay * rng.randint(30, 80) // 100
        if to_pay:
            method = tenant.payment_method
            paid_on = max(date(2026, month, rng.randint(*_PAYMENT_DAYS[method])), due)
            post(paid_on, "payment", -to_pay, _payment_label(rng, method, tenant))
            if method == "sepa_debit" and rng.random() < 0.05:
                reason = _pick(rng, _REJECT_REASONS)
                post(
                    paid_on + timedelta(days=6),
                    "rejected_debit",
                    to_pay,
                    f"Rejet prélèvement {reason}",
                    reject_reason=reason,
                )
        if tenant.formal_demands and month == 7:
            post(date(2026, 7, 8), "fee", 14_532, "Frais de commandement de payer")
        elif tenant.in_arrears and rng.random() < 0.2:
            post(date(2026, month, 12), "fee", 1_250, "Frais de relance")
        if tenant.in_arrears and month == 9 and rng.random() < 0.5:
            catch_up = rng.randint(100_000, 250_000)
            post(date(2026, 9, 18), "payment", -catch_up, "Règlement arriéré (virement)")
        if rng.random() < 0.012:
            gesture = rng.randint(2_000, 8_000)
            post(date(2026, month, 20), "credit_note", -gesture, "Avoir geste commercial")
        if tenant.move_out is not None and first <= tenant.move_out <= last:
            refunded_on = min(tenant.move_out + timedelta(days=15), EXTRACTED_ON)
            post(refunded_on, "refund", -tenant.rent_cents, "Restitution dépôt de garantie")
    return entries


def _ledgers(
    rng: random.Random, tenants: Sequence[_Tenant], extra: Iterable[_Entry]
) -> list[_Entry]:
    entries = [entry for tenant in tenants for entry in _ledger(rng, tenant)]
    # sorted() is stable: entries of one day keep their generation order
    return sorted([*entries, *extra], key=lambda entry: entry.entry_date)


def _with_defects(records: Sequence[T], defects: dict[int, str]) -> list[T]:
    return [
        replace(record, defect=defects[index]) if index in defects else record
        for index, record in enumerate(records)
    ]


def _with_duplicate(records: Sequence[T], copy_of: int, insert_at: int) -> list[T]:
    rows = list(records)
    rows.insert(insert_at, replace(rows[copy_of], defect=DUPLICATE))
    return rows


# Bad ledger rows added to a landlord's ledger: (tenant index or None, date, kind, cents, label,
# defect). None is a payment nobody could attribute to a tenant (blank tenant reference).
_StrayEntry = tuple[int | None, date, str, int, str, str]
_LOIRE_STRAY_ENTRIES: tuple[_StrayEntry, ...] = (
    (5, date(2026, 7, 12), "fee", 1_250, "Frais de relance", BAD_AMOUNT),
    (9, date(2026, 8, 3), "payment", -45_000, "Virement reçu", BAD_DATE),
    (None, date(2026, 9, 8), "payment", -38_250, "Virement non identifié", BLANK_REF),
    (14, date(2026, 10, 2), "payment", -10_000, "Transfert de solde", UNKNOWN_CODE),
)
_CITE_STRAY_ENTRIES: tuple[_StrayEntry, ...] = (
    (3, date(2026, 6, 12), "fee", 1_250, "Frais de relance", BAD_AMOUNT),
    (8, date(2026, 9, 30), "payment", -31_000, "Virement reçu", BAD_DATE),
    (None, date(2026, 8, 21), "payment", -52_840, "Virement non identifié", BLANK_REF),
    (12, date(2026, 10, 6), "payment", -7_500, "Opération diverse", UNKNOWN_CODE),
)


def _stray_entries(tenants: Sequence[_Tenant], strays: Iterable[_StrayEntry]) -> list[_Entry]:
    return [
        _Entry("" if index is None else tenants[index].ref, day, kind, cents, label, defect=defect)
        for index, day, kind, cents, label, defect in strays
    ]


def _index_where(records: Sequence[T], predicate: Callable[[T], bool], start: int) -> int:
    return next(i for i in range(start, len(records)) if predicate(records[i]))


# --- Writing without touching unchanged files --------------------------------------------------


def _write_if_changed(path: Path, content: bytes) -> Path:
    """Write `content` atomically, or leave the file (and its mtime) alone when it is equal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == content:
        return path
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _csv_bytes(rows: Iterable[Sequence[str]], encoding: str) -> bytes:
    """Rows as French Excel saves "CSV (séparateur : point-virgule)"."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode(encoding)


def _french_amount(
    cents: int, *, thousands: str = NBSP, euro: bool = False, negative: str = "minus"
) -> str:
    """`1 234,56`, with `-x`, `x-` or `(x)` for negatives and an optional ` €` suffix."""
    euros, rest = divmod(abs(cents), 100)
    text = f"{euros:,}".replace(",", thousands) + f",{rest:02d}"
    if cents < 0:
        text = {"minus": f"-{text}", "trailing": f"{text}-", "parens": f"({text})"}[negative]
    return f"{text}{NBSP}€" if euro else text


def _decimal_text(cents: int) -> str:
    """Exact decimal text as an ERP stores DECIMAL(12,2): `-245.30`."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    return f"{sign}{euros}.{rest:02d}"


# --- Loire Habitat Social: CSV exports from French Excel ---------------------------------------

_LOIRE_TENANT_HEADER = (
    "N° locataire", "N° bail", "Nom  du locataire", "Logement", "Date d'entrée",
    "Date de sortie", "Statut", "Tranche Revenus", "Tranche d'âge", "Nb occupants",
    "Aide au logement", "FSL", "Mode de paiement", "Canal préféré", "Nb commandements",
    "Courriel", "Téléphone", "IBAN",
)  # fmt: skip
_LOIRE_LEDGER_HEADER = (
    "N° écriture", "N° locataire", "Date", "Échéance", "Code mvt", "Libellé", "Débit", "Crédit",
    "Motif rejet",
)  # fmt: skip
_LOIRE_STATUS = {"active": "ACT", "leaving": "PRE", "left": "SOR"}
_LOIRE_INCOME = {"very_low": "R1", "low": "R2", "middle": "R3", "high": "R4"}
_LOIRE_AGE = {"under_30": "-30", "30_59": "30-59", "60_plus": "60+"}
_LOIRE_AID = {"none": "", "apl": "APL", "al": "AL"}
_LOIRE_PAYMENT = {
    "sepa_debit": "PRLV", "transfer": "VIR", "cheque": "CHQ", "cash": "ESP", "card": "CB",
}  # fmt: skip
_LOIRE_CHANNEL = {"sms": "SMS", "email": "Mail", "letter": "Courrier"}
_LOIRE_MOVEMENT = {
    "rent_call": "QUI", "rent": "LOY", "service_charges": "CHG",
    "charge_regularisation": "RGC", "fee": "FRA", "rejected_debit": "REJ", "payment": "REG",
    "refund": "RBT", "credit_note": "AVO",
}  # fmt: skip


def _loire_date(rng: random.Random, day: date | None) -> str:
    if day is None:
        return ""
    # two-digit years only for this century: a `yy` pivot must never have to guess
    return day.strftime("%d/%m/%y" if rng.random() < 0.1 else "%d/%m/%Y")


def _write_loire_habitat(inbox: Path, calendar: DemoCalendar) -> list[Path]:
    rng = _rng(LOIRE_HABITAT)
    tenants = []
    for number in range(120):
        town = rng.choice(("ANG", "SAU", "TRS", "BLO"))
        dwelling = f"{town}-{rng.randint(1, 40):03d}-{rng.randint(1, 60):03d}"
        tenants.append(_tenant(rng, f"{45_012 + 17 * number:07d}", "BL-", dwelling))
    entries = _ledgers(rng, tenants, _stray_entries(tenants, _LOIRE_STRAY_ENTRIES))
    tenants = _with_defects(tenants, {23: UNKNOWN_CODE, 57: BAD_DATE, 88: BLANK_REF})
    tenants = _with_duplicate(tenants, copy_of=40, insert_at=101)

    tenant_rows = [_LOIRE_TENANT_HEADER]
    for tenant in tenants:
        tenant_rows.append(
            (
                "" if tenant.defect == BLANK_REF else tenant.ref,
                tenant.lease_ref,
                f"{tenant.last_name.upper()} {tenant.first_name}",
                tenant.dwelling_ref,
                "31/02/2026"
                if tenant.defect == BAD_DATE
                else _loire_date(rng, calendar.event(tenant.move_in)),
                _loire_date(rng, calendar.event(tenant.move_out)),
                "SUS" if tenant.defect == UNKNOWN_CODE else _LOIRE_STATUS[tenant.status],
                _LOIRE_INCOME[tenant.income_band],
                _LOIRE_AGE[tenant.age_band],
                str(tenant.household_size),
                _LOIRE_AID[tenant.housing_aid],
                "O" if tenant.fsl_aid else "N",
                _LOIRE_PAYMENT[tenant.payment_method],
                _LOIRE_CHANNEL[tenant.preferred_channel],
                str(tenant.formal_demands),
                *_tenant_contact(tenant),
            )
        )
    blank = ("",) * len(_LOIRE_TENANT_HEADER)
    people = sum(tenant.household_size for tenant in tenants)
    totals = ("Total", f"{len(tenants)} locataires", *("",) * 7, str(people), *("",) * 8)
    tenant_rows += [blank, totals]

    negatives = itertools.cycle(("minus", "trailing", "parens"))

    def amount(cents: int) -> str:
        return _french_amount(
            cents,
            thousands=rng.choice((NBSP, " ")),
            euro=rng.random() < 0.15,
            negative=next(negatives),
        )

    ledger_rows = [_LOIRE_LEDGER_HEADER]
    debit_total = credit_total = 0
    for number, entry in enumerate(entries, start=1):
        debit = credit = ""
        cents = entry.amount_cents
        # debits go to Débit and credits to Crédit, except that this ledger posts credit notes
        # as negative debits, and every other rejected direct debit as a negative credit
        as_negative = entry.kind == "credit_note" or (entry.kind == "rejected_debit" and number % 2)
        if entry.defect == BAD_AMOUNT:
            debit = "12,5O"
        elif (cents > 0) != as_negative:
            debit, debit_total = amount(cents), debit_total + cents
        else:
            credit, credit_total = amount(-cents), credit_total - cents
        if entry.defect == UNKNOWN_CODE:
            code = "TRF"
        elif entry.kind == "housing_aid":
            code = entry.detail.upper()
        else:
            code = _LOIRE_MOVEMENT[entry.kind]
        ledger_rows.append(
            (
                str(2_026_100_000 + number),
                entry.tenant_ref,
                "15/13/2026"
                if entry.defect == BAD_DATE
                else _loire_date(rng, calendar.event(entry.entry_date)),
                _loire_date(rng, calendar.scheduled(entry.due_date)),
                code,
                calendar.label(entry.label),
                debit,
                credit,
                entry.reject_reason or "",
            )
        )
    ledger_rows.append(("",) * len(_LOIRE_LEDGER_HEADER))
    ledger_rows.append(
        (
            "Total",
            *("",) * 4,
            f"{len(entries)} écritures",
            _french_amount(debit_total, euro=True),
            _french_amount(credit_total, euro=True),
            "",
        )
    )
    folder = inbox / LOIRE_HABITAT
    return [
        _write_if_changed(
            folder / f"locataires_{calendar.export_month}.csv", _csv_bytes(tenant_rows, "cp1252")
        ),
        _write_if_changed(
            folder / f"quittancement_{calendar.export_month}.csv",
            _csv_bytes(ledger_rows, "cp1252"),
        ),
    ]


# --- Opale Logement: a works-tracking workbook -------------------------------------------------


@dataclass(frozen=True)
class _WorkOrder:
    ref: str
    contractor: str
    dwelling_ref: str
    category: str
    committed_cents: int
    vat_percent: int
    status: str
    ordered: date
    planned: date | None
    done: date | None
    gti_hours: int | None
    gtr_hours: int | None
    defect: str | None = None


@dataclass(frozen=True)
class _Quote:
    ref: str
    order_ref: str
    additional_works: bool
    amount_cents: int
    status: str
    issued: date
    accepted: date | None
    defect: str | None = None


@dataclass(frozen=True)
class _Completion:
    ref: str
    order_ref: str
    completed_at: datetime
    technician: str
    tenant_absent: bool
    tenant_signed: bool
    rating: int | None
    comment: str
    photos: int
    defect: str | None = None


@dataclass(frozen=True)
class _Invoice:
    ref: str
    order_ref: str
    kind: str
    amount_cents: int
    vat_cents: int
    issued: date
    due: date
    status: str
    amount_as_text: bool
    defect: str | None = None


CONTRACTORS = (
    "Dépann'Eau Côte d'Opale", "Thermi-Nord Services", "Ateliers du Boulonnais",
    "Élec'Marquise", "Plomberie des Dunes", "Menuiseries Vent d'Ouest",
)  # fmt: skip
# category: (min and max amount in cents, days from order to intervention, GTI/GTR hours)
_WORKS: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[tuple[int, int] | None, ...]]] = {
    "repair": ((15_000, 90_000), (0, 2), ((4, 24), (24, 72))),
    "leak_search": ((25_000, 120_000), (1, 7), ((24, 72),)),
    "planned_works": ((150_000, 1_800_000), (7, 45), (None,)),
    "maintenance": ((20_000, 250_000), (3, 20), ((48, 120),)),
    "other": ((10_000, 150_000), (3, 20), (None,)),
}
_TENANT_COMMENTS = (
    "Intervention rapide, merci.", "Technicien ponctuel et soigneux.",
    "Fuite réparée, rien à signaler.", "Retard d'une heure sans prévenir.", "Travail propre.",
    "Il faudra repasser pour la peinture.", "Très satisfaite de l'intervention.",
    "Bruit de la chaudière toujours présent.",
)  # fmt: skip


def _working_day(rng: random.Random, first: date, last: date) -> date:
    day = _day_between(rng, first, last)
    return day - timedelta(days=max(0, day.weekday() - 4))  # a weekend order is dated Friday


def _work_orders(rng: random.Random, count: int) -> list[_WorkOrder]:
    ordered_days = sorted(
        _working_day(rng, date(2026, 1, 5), date(2026, 10, 30)) for _ in range(count)
    )
    orders = []
    number = 345_000
    for ordered in ordered_days:
        number += rng.randint(1, 37)
        category = _pick(
            rng,
            {"repair": 45, "leak_search": 15, "planned_works": 20, "maintenance": 15, "other": 5},
        )
        (low, high), delay, terms = _WORKS[category]
        age = (EXTRACTED_ON - ordered).days
        if rng.random() < 0.04:
            status = "cancelled"
        elif age > 60:
            status = _pick(rng, {"invoiced": 75, "done": 25})
        elif age > 20:
            status = _pick(rng, {"done": 40, "invoiced": 25, "in_progress": 25, "scheduled": 10})
        else:
            status = _pick(rng, {"received": 35, "scheduled": 40, "in_progress": 15, "done": 10})
        planned = None if status == "received" else ordered + timedelta(days=rng.randint(*delay))
        done = None
        if planned is not None and status in ("in_progress", "done", "invoiced"):
            planned = min(planned, EXTRACTED_ON)
        if planned is not None and status in ("done", "invoiced"):
            done = min(planned + timedelta(days=rng.randint(0, 2)), EXTRACTED_ON)
        sla = rng.choice(terms)
        orders.append(
            _WorkOrder(
                ref=f"BT{number}",
                contractor=rng.choice(CONTRACTORS),
                dwelling_ref=(
                    f"OPL-{rng.choice(('BOU', 'CAL', 'DUN', 'ETA', 'BER'))}"
                    f"-{rng.randint(1, 60):03d}-{rng.randint(1, 80):03d}"
                ),
                category=category,
                committed_cents=rng.randint(low, high),
                vat_percent=20 if category == "other" else 10,
                status=status,
                ordered=ordered,
                planned=planned,
                done=done,
                gti_hours=sla[0] if sla else None,
                gtr_hours=sla[1] if sla else None,
            )
        )
    return orders


def _quotes(rng: random.Random, orders: Sequence[_WorkOrder]) -> list[_Quote]:
    quotes: list[tuple[date, str, bool, int, str, date | None]] = []
    for order in orders:
        share = {"planned_works": 1.0, "leak_search": 0.4, "repair": 0.1}.get(order.category, 0.0)
        if rng.random() < share:
            issued = order.ordered - timedelta(days=rng.randint(3, 20))
            if order.status == "cancelled":
                status, accepted = "refused", None
            elif order.status == "received":
                status, accepted = _pick(rng, {"sent": 70, "draft": 30}), None
            else:
                status = "accepted"
                accepted = min(issued + timedelta(days=rng.randint(1, 10)), order.ordered)
            quotes.append((issued, order.ref, False, order.committed_cents, status, accepted))
        started = order.status in ("in_progress", "done", "invoiced")
        if started and order.category != "maintenance" and rng.random() < 0.12:
            issued = min(
                (order.planned or order.ordered) + timedelta(days=rng.randint(1, 5)), EXTRACTED_ON
            )
            status = _pick(rng, {"accepted": 70, "sent": 20, "refused": 10})
            accepted = None
            if status == "accepted":
                accepted = min(issued + timedelta(days=rng.randint(1, 7)), EXTRACTED_ON)
            extra = order.committed_cents * rng.randint(10, 40) // 100
            quotes.append((issued, order.ref, True, extra, status, accepted))
    quotes.sort(key=lambda quote: quote[0])
    return [
        _Quote(f"DV-26-{number:04d}", order_ref, additional, amount, status, issued, accepted)
        for number, (issued, order_ref, additional, amount, status, accepted) in enumerate(
            quotes, start=1
        )
    ]


def _completions(rng: random.Random, orders: Sequence[_WorkOrder]) -> list[_Completion]:
    technicians = [f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}" for _ in range(12)]
    visits: list[tuple[datetime, str, bool]] = []

    def at(day: date) -> datetime:
        return datetime.combine(day, time(rng.randint(8, 17), rng.choice((0, 15, 30, 45))))

    for order in orders:
        if order.done is not None:
            missed_on = order.done - timedelta(days=rng.randint(2, 6))
            if rng.random() < 0.08 and missed_on >= order.ordered:
                visits.append((at(missed_on), order.ref, True))
            visits.append((at(order.done), order.ref, False))
        elif order.status == "in_progress" and order.planned and rng.random() < 0.1:
            visits.append((at(order.planned), order.ref, True))
    visits.sort(key=lambda visit: visit[0])
    completions = []
    for number, (completed_at, order_ref, absent) in enumerate(visits, start=1):
        rated = not absent and rng.random() < 0.9
        completions.append(
            _Completion(
                ref=f"RI-26-{number:05d}",
                order_ref=order_ref,
                completed_at=completed_at,
                technician=rng.choice(technicians),
                tenant_absent=absent,
                tenant_signed=not absent and rng.random() < 0.9,
                rating=rng.choices((5, 4, 3, 2, 1), weights=(45, 30, 12, 8, 5))[0]
                if rated
                else None,
                comment=rng.choice(_TENANT_COMMENTS) if rated and rng.random() < 0.5 else "",
                photos=rng.randint(0, 1) if absent else rng.randint(2, 6),
            )
        )
    return completions


def _invoices(
    rng: random.Random, orders: Sequence[_WorkOrder], quotes: Sequence[_Quote]
) -> list[_Invoice]:
    extras: dict[str, int] = {}
    for quote in quotes:
        if quote.additional_works and quote.status == "accepted":
            extras[quote.order_ref] = extras.get(quote.order_ref, 0) + quote.amount_cents
    drafts: list[tuple[date, str, str, int, int, str]] = []
    for order in orders:
        if order.status in ("invoiced", "done") and order.done is not None:
            if order.status == "done" and rng.random() > 0.15:
                continue
            amount = order.committed_cents + extras.get(order.ref, 0)
            issued = min(order.done + timedelta(days=rng.randint(1, 15)), EXTRACTED_ON)
            if order.status == "done":
                status = "draft"
            elif rng.random() < 0.02:
                status = "cancelled"
            elif issued < date(2026, 9, 15) and rng.random() < 0.9:
                status = "paid"
            else:
                status = "issued"
            drafts.append((issued, order.ref, "final", amount, order.vat_percent, status))
        elif (
            order.status == "in_progress"
            and order.category == "planned_works"
            and order.planned is not None
            and rng.random() < 0.4
        ):
            amount = order.committed_cents * rng.randint(30, 50) // 100
            issued = min(order.planned + timedelta(days=3), EXTRACTED_ON)
            drafts.append((issued, order.ref, "proforma", amount, order.vat_percent, "issued"))
    drafts.sort(key=lambda draft: draft[0])
    return [
        _Invoice(
            ref=f"F26-{number:05d}",
            order_ref=order_ref,
            kind=kind,
            amount_cents=amount,
            vat_cents=(amount * vat_percent + 50) // 100,
            issued=issued,
            due=issued + timedelta(days=30),
            status=status,
            amount_as_text=rng.random() < 0.08,
        )
        for number, (issued, order_ref, kind, amount, vat_percent, status) in enumerate(
            drafts, start=1
        )
    ]


@dataclass(frozen=True)
class _Cell:
    value: object
    number_format: str = "General"


_DATE_FORMAT = "dd/mm/yyyy"
_DATETIME_FORMAT = "dd/mm/yyyy hh:mm"
_EURO_FORMAT = '#,##0.00 "€"'
_EXCEL_EPOCH = date(1899, 12, 30)
_THIN = Side(style="thin", color="A6A6A6")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
_OPALE_TITLE = "Suivi des bons de travaux — Opale Logement"

# Sheet headers, one tuple per column; Commandes has a two-row header (group, sub-header).
_OPALE_ORDER_HEADERS = (
    ("N° BT", ""), ("Prestataire", ""), ("Logement", ""), ("Catégorie", ""),
    ("Montant engagé", "HT"), ("Montant engagé", "TTC"), ("Statut", ""), ("Date commande", ""),
    ("Date prévue", ""), ("Date réalisation", ""), ("GTI (h)", ""), ("GTR (h)", ""),
)  # fmt: skip
_OPALE_QUOTE_HEADERS = (
    ("N° devis",), ("N° BT",), ("Travaux supplémentaires",), ("Montant HT",), ("Statut",),
    ("Date devis",), ("Date acceptation",),
)  # fmt: skip
_OPALE_COMPLETION_HEADERS = (
    ("N° rapport",), ("N° BT",), ("Réalisé le",), ("Technicien",), ("Locataire absent",),
    ("Signé par le locataire",), ("Note (cœurs)",), ("Commentaire locataire",), ("Photos",),
)  # fmt: skip
_OPALE_INVOICE_HEADERS = (
    ("N° facture",), ("N° BT",), ("Type",), ("Montant HT",), ("TVA",), ("Date facture",),
    ("Échéance",), ("Statut",), ("Date paiement",),
)  # fmt: skip
_OPALE_CATEGORY = {
    "repair": "DEP", "leak_search": "RDF", "planned_works": "TXP", "maintenance": "ENT",
    "other": "DIV",
}  # fmt: skip
_OPALE_ORDER_STATUS = {
    "received": "Reçu", "scheduled": "Planifié", "in_progress": "En cours", "done": "Terminé",
    "invoiced": "Facturé", "cancelled": "Annulé",
}  # fmt: skip
_OPALE_QUOTE_STATUS = {
    "draft": "Brouillon", "sent": "Envoyé", "accepted": "Accepté", "refused": "Refusé",
}  # fmt: skip
_OPALE_INVOICE_KIND = {"proforma": "Proforma", "final": "Définitive"}
_OPALE_INVOICE_STATUS = {
    "draft": "Brouillon", "issued": "Émise", "paid": "Payée", "cancelled": "Annulée",
}  # fmt: skip


def _date_cell(rng: random.Random, day: date | None) -> _Cell:
    """Mostly a real date cell; sometimes typed as text, sometimes a bare serial number."""
    if day is None:
        return _Cell(None)
    roll = rng.random()
    if roll < 0.08:
        return _Cell(day.strftime("%d/%m/%Y"), "@")
    if roll < 0.15:
        return _Cell((day - _EXCEL_EPOCH).days)
    return _Cell(datetime.combine(day, time()), _DATE_FORMAT)


def _dated_cell(rng: random.Random, defect: str | None, impossible: str, day: date | None) -> _Cell:
    """`_date_cell`, or for a `BAD_DATE` row an impossible date typed as text (`31/02/2026`)."""
    return _Cell(impossible, "@") if defect == BAD_DATE else _date_cell(rng, day)


def _code_cell(defect: str | None, unknown: str, code: str) -> _Cell:
    """The export's code, or for an `UNKNOWN_CODE` row one the mapping does not know."""
    return _Cell(unknown if defect == UNKNOWN_CODE else code)


def _money_cell(cents: int) -> _Cell:
    # cents / 100 is the double nearest to the exact amount; its repr is that amount
    return _Cell(cents / 100, _EURO_FORMAT)


def _yes_no(flag: bool) -> str:
    return "Oui" if flag else "Non"


def _fill_sheet(
    sheet: Worksheet,
    headers: Sequence[tuple[str, ...]],
    rows: Sequence[Sequence[_Cell]],
    money_columns: Sequence[int] = (),
    *,
    extracted_on: date = EXTRACTED_ON,
) -> None:
    """Title block, header (one or two rows, merged), data, `Total` row, trailing empty rows.

    `headers` gives one tuple per column: (label,) or, for a two-row header, (group, sub) with
    sub "" for a single-level column (merged vertically) and equal groups merged across.
    """
    sheet["A1"] = _OPALE_TITLE
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.merge_cells("A1:H1")
    sheet["A2"] = f"Extrait le {extracted_on:%d/%m/%Y}"
    sheet["A2"].font = Font(italic=True)
    header_row, depth = 4, len(headers[0])
    for column, labels in enumerate(headers, start=1):
        for offset in range(depth):
            cell = sheet.cell(header_row + offset, column)
            cell.font, cell.fill, cell.border = Font(bold=True), _HEADER_FILL, _BOX
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        sheet.column_dimensions[get_column_letter(column)].width = max(12, len(labels[0]) + 4)
        if depth == 1:
            sheet.cell(header_row, column, labels[0])
            continue
        group, sub = labels
        if not sub:
            sheet.cell(header_row, column, group)
            sheet.merge_cells(
                start_row=header_row, start_column=column, end_row=header_row + 1, end_column=column
            )
            continue
        sheet.cell(header_row + 1, column, sub)
        if column == 1 or headers[column - 2][0] != group:
            span = 1
            while column + span <= len(headers) and headers[column + span - 1][0] == group:
                span += 1
            sheet.cell(header_row, column, group)
            sheet.merge_cells(
                start_row=header_row,
                start_column=column,
                end_row=header_row,
                end_column=column + span - 1,
            )
    first_data_row = header_row + depth
    sheet.freeze_panes = f"A{first_data_row}"
    for row_number, row in enumerate(rows, start=first_data_row):
        for column, cell_spec in enumerate(row, start=1):
            cell = sheet.cell(row_number, column, cell_spec.value)
            cell.number_format = cell_spec.number_format
            cell.border = _BOX
    last_row = first_data_row + len(rows) - 1
    if money_columns:
        last_row += 1
        sheet.cell(last_row, 1, "Total").font = Font(bold=True)
        for column in money_columns:
            total = sum(
                round(row[column - 1].value * 100)
                for row in rows
                if isinstance(row[column - 1].value, float)
            )
            cell = sheet.cell(last_row, column, total / 100)
            cell.number_format, cell.font = _EURO_FORMAT, Font(bold=True)
    # formatted but empty rows below the table, as a user's workbook always has
    for row_number in range(last_row + 1, last_row + 5):
        for column in range(1, len(headers) + 1):
            sheet.cell(row_number, column).border = _BOX


def _workbook_bytes(workbook: Workbook, frozen_time: datetime = _FROZEN_TIME) -> bytes:
    """Save, then freeze what openpyxl stamps with "now": core properties and zip times."""
    workbook.properties.creator = "Opale Logement — export GMAO"
    workbook.properties.lastModifiedBy = "Opale Logement — export GMAO"
    workbook.properties.created = frozen_time
    saved = io.BytesIO()
    workbook.save(saved)
    frozen = frozen_time.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    stable = io.BytesIO()
    with (
        zipfile.ZipFile(saved) as source,
        zipfile.ZipFile(stable, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + frozen, content)
            entry = zipfile.ZipInfo(info.filename, date_time=frozen_time.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            target.writestr(entry, content)
    return stable.getvalue()


def _paid_cell(invoice: _Invoice, calendar: DemoCalendar) -> _Cell:
    """The day a paid invoice was paid, 12 to 56 days after it was issued (so about half are
    paid after their 30-day due date), never after the extraction; derived from its number,
    not drawn, so every other cell of the workbook stays as it was."""
    if invoice.status != "paid":
        return _Cell(None)
    days = 12 + int(invoice.ref.removeprefix("F26-")) * 17 % 45
    paid = calendar.event(min(invoice.issued + timedelta(days=days), EXTRACTED_ON))
    return _Cell(datetime.combine(paid, time()), _DATE_FORMAT)


def _repeat_visits(
    orders: Sequence[_WorkOrder], completions: Sequence[_Completion]
) -> list[_Completion]:
    """Second visits with the tenant present, six days after the first, for one repair in six
    restored at one visit (in order date): the leak came back, so those orders are not a
    first-time fix. Appended after the generated reports (their numbers follow)."""
    visits = Counter(completion.order_ref for completion in completions)
    refused = {completion.order_ref for completion in completions if completion.defect}
    candidates = [
        order
        for order in orders
        if order.category == "repair"
        and order.status in ("done", "invoiced")
        and order.done is not None
        and order.done <= EXTRACTED_ON - timedelta(days=6)
        and order.defect is None
        and visits[order.ref] == 1
        and order.ref not in refused
    ]
    repeats = []
    for order in candidates[::6]:
        assert order.done is not None
        repeats.append(
            _Completion(
                ref=f"RI-26-{len(completions) + len(repeats) + 1:05d}",
                order_ref=order.ref,
                completed_at=datetime.combine(order.done + timedelta(days=6), time(10, 30)),
                technician="Hugo Kerbrat",
                tenant_absent=False,
                tenant_signed=True,
                rating=2,
                comment="La fuite est revenue, deuxième passage.",
                photos=3,
            )
        )
    return repeats


def _write_opale_logement(inbox: Path, calendar: DemoCalendar) -> list[Path]:
    rng = _rng(OPALE_LOGEMENT)
    orders = _work_orders(rng, 300)
    quotes = _quotes(rng, orders)
    completions = _completions(rng, orders)
    invoices = _invoices(rng, orders, quotes)
    orders = _with_defects(orders, {40: UNKNOWN_CODE, 120: BAD_DATE, 200: BLANK_REF})
    orders = _with_duplicate(orders, copy_of=150, insert_at=261)
    quotes = _with_defects(quotes, {5: UNKNOWN_CODE, 30: BAD_DATE, 60: BLANK_REF})
    rated = _index_where(completions, lambda completion: completion.rating is not None, 25)
    completions = _with_defects(completions, {rated: OUT_OF_RANGE, 80: BLANK_REF, 140: BAD_DATE})
    # odd cents: 5.5 % of the amount then has five decimals, which no reading can take for an
    # amount (three decimals, `6.545`, would look like a thousands separator)
    odd_cents = _index_where(invoices, lambda invoice: invoice.amount_cents % 2 == 1, 90)
    invoices = _with_defects(invoices, {12: BLANK_REF, 47: UNKNOWN_CODE, odd_cents: BAD_AMOUNT})

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Commandes"
    _fill_sheet(
        sheet,
        _OPALE_ORDER_HEADERS,
        [
            [
                _Cell(None if order.defect == BLANK_REF else order.ref),
                _Cell(order.contractor),
                _Cell(order.dwelling_ref),
                _Cell(_OPALE_CATEGORY[order.category]),
                _money_cell(order.committed_cents),
                _money_cell(order.committed_cents * (100 + order.vat_percent) // 100),
                _code_cell(order.defect, "Suspendu", _OPALE_ORDER_STATUS[order.status]),
                _dated_cell(rng, order.defect, "31/02/2026", calendar.event(order.ordered)),
                _date_cell(rng, calendar.event(order.planned)),
                _date_cell(rng, calendar.event(order.done)),
                _Cell(order.gti_hours),
                _Cell(order.gtr_hours),
            ]
            for order in orders
        ],
        money_columns=(5, 6),
        extracted_on=calendar.extracted_on,
    )
    _fill_sheet(
        workbook.create_sheet("Devis"),
        _OPALE_QUOTE_HEADERS,
        [
            [
                _Cell(quote.ref),
                _Cell(None if quote.defect == BLANK_REF else quote.order_ref),
                _Cell(_yes_no(quote.additional_works)),
                _money_cell(quote.amount_cents),
                _code_cell(quote.defect, "En attente", _OPALE_QUOTE_STATUS[quote.status]),
                _dated_cell(rng, quote.defect, "15/13/2026", calendar.event(quote.issued)),
                _date_cell(rng, calendar.event(quote.accepted)),
            ]
            for quote in quotes
        ],
        money_columns=(4,),
        extracted_on=calendar.extracted_on,
    )
    completion_rows = []
    for completion in completions:
        visited = calendar.moment(completion.completed_at)
        if completion.defect == BAD_DATE:
            completed_at = _Cell("31/09/2026 14:00", "@")
        elif rng.random() < 0.15:
            completed_at = _Cell(visited.strftime("%d/%m/%Y %H:%M"), "@")
        else:
            completed_at = _Cell(visited, _DATETIME_FORMAT)
        completion_rows.append(
            [
                _Cell(completion.ref),
                _Cell(None if completion.defect == BLANK_REF else completion.order_ref),
                completed_at,
                _Cell(completion.technician),
                _Cell(_yes_no(completion.tenant_absent)),
                _Cell(_yes_no(completion.tenant_signed)),
                _Cell(6 if completion.defect == OUT_OF_RANGE else completion.rating),
                _Cell(completion.comment or None),
                _Cell(completion.photos),
            ]
        )
    for repeat in _repeat_visits(orders, completions):  # plain date cells: no draw
        completion_rows.append(
            [
                _Cell(repeat.ref),
                _Cell(repeat.order_ref),
                _Cell(calendar.moment(repeat.completed_at), _DATETIME_FORMAT),
                _Cell(repeat.technician),
                _Cell(_yes_no(repeat.tenant_absent)),
                _Cell(_yes_no(repeat.tenant_signed)),
                _Cell(repeat.rating),
                _Cell(repeat.comment),
                _Cell(repeat.photos),
            ]
        )
    _fill_sheet(
        workbook.create_sheet("Quitus"),
        _OPALE_COMPLETION_HEADERS,
        completion_rows,
        extracted_on=calendar.extracted_on,
    )
    invoice_rows = []
    for invoice in invoices:
        if invoice.amount_as_text:
            amount = _Cell(_french_amount(invoice.amount_cents, thousands=NNBSP, euro=True), "@")
        else:
            amount = _money_cell(invoice.amount_cents)
        # an unrounded formula result pasted as a value: 5.5 % VAT with five decimals
        vat = (
            _Cell(invoice.amount_cents * 55 / 100_000, _EURO_FORMAT)
            if invoice.defect == BAD_AMOUNT
            else _money_cell(invoice.vat_cents)
        )
        invoice_rows.append(
            [
                _Cell(invoice.ref),
                _Cell(None if invoice.defect == BLANK_REF else invoice.order_ref),
                _code_cell(invoice.defect, "Avoir", _OPALE_INVOICE_KIND[invoice.kind]),
                amount,
                vat,
                _date_cell(rng, calendar.event(invoice.issued)),
                _date_cell(rng, calendar.scheduled(invoice.due)),
                _Cell(_OPALE_INVOICE_STATUS[invoice.status]),
                _paid_cell(invoice, calendar),
            ]
        )
    _fill_sheet(
        workbook.create_sheet("Factures"),
        _OPALE_INVOICE_HEADERS,
        invoice_rows,
        money_columns=(4, 5),
        extracted_on=calendar.extracted_on,
    )
    path = inbox / OPALE_LOGEMENT / f"travaux_{calendar.export_month}.xlsx"
    return [_write_if_changed(path, _workbook_bytes(workbook, calendar.moment(_FROZEN_TIME)))]


# --- Cité des Jardins: an ERP's SQLite database --------------------------------------------------

_CITE_SCHEMA = """
CREATE TABLE tiers (
    id INTEGER PRIMARY KEY,
    code_tiers TEXT,             -- compte 411: the tenant's account reference
    nom TEXT NOT NULL,
    prenom TEXT,
    code_bail TEXT,
    code_logement TEXT,
    date_entree TEXT,            -- ISO yyyy-mm-dd
    date_sortie TEXT,
    statut TEXT NOT NULL,        -- ACTIF, PREAVIS, SORTI
    tranche_revenus INTEGER,     -- 1 (très modestes) .. 4
    tranche_age TEXT,            -- J (< 30), A (30-59), S (60+)
    nb_occupants INTEGER,
    aide_logement TEXT,          -- APL, AL or NULL
    fsl INTEGER NOT NULL DEFAULT 0,
    mode_reglement TEXT,
    canal TEXT,
    nb_commandements INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE ecritures (
    id INTEGER PRIMARY KEY,
    num_piece TEXT NOT NULL,
    tiers_id INTEGER REFERENCES tiers (id),
    date_ecriture TEXT NOT NULL,
    date_echeance TEXT,
    type_mvt TEXT NOT NULL,
    libelle TEXT,
    montant TEXT NOT NULL,       -- DECIMAL(12,2) kept as text: exact; debit > 0, credit < 0
    motif_rejet TEXT             -- SEPA reason code of a rejected direct debit
);
CREATE TABLE plans_apurement (
    id INTEGER PRIMARY KEY,
    ref_plan TEXT NOT NULL,
    code_tiers TEXT NOT NULL,
    date_debut TEXT NOT NULL,
    montant_total TEXT NOT NULL,
    montant_echeance TEXT NOT NULL,
    nb_echeances INTEGER NOT NULL,
    statut TEXT NOT NULL         -- EC (en cours), SOLDE, ROMPU
);
CREATE TABLE engagements (
    id INTEGER PRIMARY KEY,
    num_engagement TEXT NOT NULL,
    num_bt TEXT,
    montant_ht TEXT NOT NULL,
    date_engagement TEXT NOT NULL,
    ligne_budgetaire TEXT,
    statut TEXT NOT NULL         -- PRE (pré-engagé), ENG (engagé), ANN (annulé)
);
"""
_CITE_STATUS = {"active": "ACTIF", "leaving": "PREAVIS", "left": "SORTI"}
_CITE_INCOME = {"very_low": 1, "low": 2, "middle": 3, "high": 4}
_CITE_AGE = {"under_30": "J", "30_59": "A", "60_plus": "S"}
_CITE_AID = {"none": None, "apl": "APL", "al": "AL"}
_CITE_PAYMENT = {
    "sepa_debit": "PRELEVEMENT", "transfer": "VIREMENT", "cheque": "CHEQUE", "cash": "ESPECES",
    "card": "CB",
}  # fmt: skip
_CITE_CHANNEL = {"sms": "SMS", "email": "EMAIL", "letter": "COURRIER"}
_CITE_MOVEMENT = {
    "rent_call": "APPEL", "rent": "LOYER", "service_charges": "CHARGES",
    "charge_regularisation": "REGUL", "fee": "FRAIS", "rejected_debit": "REJET",
    "payment": "ENCAIS", "housing_aid": "CAF", "refund": "REMB", "credit_note": "AVOIR",
    "plan_instalment": "ECHPA",
}  # fmt: skip
_BUDGET_LINES = (
    "615210 Entretien courant", "615220 Gros entretien", "615230 Remise en état logements",
    "231500 Travaux d'amélioration",
)  # fmt: skip


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _cite_movement(entry: _Entry) -> str:
    if entry.defect == UNKNOWN_CODE:
        return "ODIV"
    if entry.kind == "credit_note" and entry.label.startswith("Transfert au plan"):
        return "TRPA"
    return _CITE_MOVEMENT[entry.kind]


def _cite_tenants(rng: random.Random) -> list[_Tenant]:
    tenants = []
    for number in range(140):
        dwelling = f"JAR-{rng.choice('ABCDEFGH')}{rng.randint(1, 12):02d}-{rng.randint(1, 40):03d}"
        tenants.append(_tenant(rng, f"411{1_200 + 7 * number:06d}", "CJ-", dwelling))
    return tenants


def _plans(rng: random.Random, tenants: Sequence[_Tenant]) -> list[tuple[object, ...]]:
    plans = []
    for tenant in tenants:
        if not (tenant.in_arrears or rng.random() < 0.08):
            continue
        start = date(rng.randint(2024, 2026), rng.randint(1, 10), 5)
        total = rng.randint(50_000, 400_000)
        instalments = rng.choice((6, 10, 12, 18, 24, 36))
        months_run = (EXTRACTED_ON.year - start.year) * 12 + EXTRACTED_ON.month - start.month
        if months_run >= instalments:
            status = _pick(rng, {"SOLDE": 70, "ROMPU": 30})
        else:
            status = _pick(rng, {"EC": 75, "ROMPU": 25})
        plans.append(
            (
                f"PA-{start.year}-{len(plans) + 1:03d}",
                tenant.ref,
                start.isoformat(),
                _decimal_text(total),
                _decimal_text(-(-total // instalments)),
                instalments,
                status,
            )
        )
    return plans


# Four Cité des Jardins accounts written by hand, appended after the generated rows (so no
# generated row, reference or random draw moves): what the arrears computation must show and the
# random tenants do not reliably give. A plan moves the tenant's debt out of the account
# (`TRPA`, a credit) and calls it back in monthly instalments due on the 10th (`ECHPA`), which
# credits pay oldest first (FIFO) like any debit:
# - on track: every instalment paid;
# - late: October's instalment unpaid (one missed);
# - broken: the September direct debit rejected (AM04), nothing paid since: September's and
#   October's instalments unpaid (two missed breaks a plan by default);
# - departed with debt: left at the end of April, owing the rent of February to April carried
#   over from the previous system (due since February's), then an end-of-tenancy repair and a
#   bailiff's fee.
# As of the extraction day (31/10/2026) their debts fall into every ageing bucket.
_CITE_RENT_CALL = 52_000
_CITE_PLAN_INSTALMENT = 20_000
_CiteAccount = tuple[str, str, date | None, str | None, tuple[str, ...]]
_CITE_ACCOUNTS: tuple[_CiteAccount, ...] = (
    # ref, status, move-out date, plan, months whose rent is paid (by direct debit)
    ("411009001", "active", None, "PA-2026-101", ("05", "06", "07", "08", "09", "10")),
    ("411009002", "active", None, "PA-2026-102", ("05", "06", "07", "08", "09", "10")),
    ("411009003", "active", None, "PA-2026-103", ("05", "06", "07", "08", "09")),
    ("411009004", "left", date(2026, 4, 30), None, ()),
)
# the instalment months each plan's tenant paid (instalments are called August to October)
_CITE_PLAN_PAID = {"PA-2026-101": (8, 9, 10), "PA-2026-102": (8, 9), "PA-2026-103": (8,)}


def _cite_accounts() -> tuple[list[_Tenant], list[_Entry], list[tuple[object, ...]]]:
    """The hand-written accounts: their tenants, ledger entries and plans (`_CITE_ACCOUNTS`)."""
    rng = _rng(f"{CITE_JARDINS}:accounts")  # names and attributes only: its own draws
    tenants, entries, plans = [], [], []

    def post(ref: str, day: date, kind: str, cents: int, label: str, **extra: object) -> None:
        entries.append(_Entry(ref, day, kind, cents, label, **extra))

    for ref, status, move_out, plan_ref, paid_months in _CITE_ACCOUNTS:
        drawn = _tenant(rng, ref, "CJ-", f"JAR-K{len(tenants) + 1:02d}-001")
        tenants.append(
            replace(
                drawn,
                move_in=date(2018, 3, 1),
                move_out=move_out,
                status=status,
                housing_aid="none",
                aid_cents=0,
                payment_method="sepa_debit",
                rent_cents=_CITE_RENT_CALL - 8_000,
                charges_cents=8_000,
                split_rent=False,
                in_arrears=plan_ref != "PA-2026-101",
            )
        )
        if move_out is not None:
            # due since February's rent, the oldest of the three: over 180 days old on every
            # demo day (`DemoCalendar` puts the extraction on any day of a month)
            post(ref, date(2026, 5, 1), "rent_call", 3 * _CITE_RENT_CALL,
                 "Report solde débiteur au 30/04/2026 (loyers 02 à 04/2026)",
                 due_date=date(2026, 2, 5))  # fmt: skip
            post(ref, date(2026, 5, 15), "fee", 68_000, "Frais de remise en état (état des lieux)")
            post(ref, date(2026, 8, 20), "fee", 21_480, "Frais d'huissier (signification)")
            continue
        for month in LEDGER_MONTHS:
            due = date(2026, month, 5)
            post(ref, date(2026, month, 1), "rent_call", _CITE_RENT_CALL,
                 f"Avis d'échéance {month:02d}/2026", due_date=due)  # fmt: skip
            if f"{month:02d}" in paid_months:
                post(ref, due, "payment", -_CITE_RENT_CALL, "Prélèvement SEPA")
        assert plan_ref is not None
        total = 3 * _CITE_PLAN_INSTALMENT * 2
        post(ref, date(2026, 6, 15), "charge_regularisation", total,
             "Régularisation charges 2025", due_date=date(2026, 7, 5))  # fmt: skip
        post(ref, date(2026, 7, 10), "credit_note", -total, f"Transfert au plan {plan_ref}")
        for number, month in enumerate((8, 9, 10), start=1):
            called = date(2026, month, 10)
            post(ref, date(2026, month, 1), "plan_instalment", _CITE_PLAN_INSTALMENT,
                 f"Échéance {number}/6 plan {plan_ref}", due_date=called)  # fmt: skip
            if month in _CITE_PLAN_PAID[plan_ref]:
                post(ref, called, "payment", -_CITE_PLAN_INSTALMENT, "Prélèvement échéance plan")
        if plan_ref == "PA-2026-103":  # September's rent debit comes back rejected
            post(ref, date(2026, 9, 11), "rejected_debit", _CITE_RENT_CALL,
                 "Rejet prélèvement AM04", reject_reason="AM04")  # fmt: skip
        plans.append(
            (plan_ref, ref, "2026-07-10", _decimal_text(total),
             _decimal_text(_CITE_PLAN_INSTALMENT), 6, "EC")
        )  # fmt: skip
    return tenants, entries, plans


def _engagements(rng: random.Random, count: int) -> list[tuple[object, ...]]:
    engagements: list[tuple[object, ...]] = []
    bt_number = 512_000
    for number in range(1, count + 1):
        if engagements and rng.random() < 0.15:
            order_ref = str(rng.choice(engagements)[1])  # a further commitment for extra works
        else:
            bt_number += rng.randint(1, 50)
            order_ref = f"BT{bt_number}"
        engagements.append(
            (
                f"ENG-2026-{number:05d}",
                order_ref,
                _decimal_text(rng.randint(15_000, 1_500_000)),
                _working_day(rng, date(2026, 1, 5), date(2026, 10, 30)).isoformat(),
                rng.choice(_BUDGET_LINES),
                _pick(rng, {"PRE": 15, "ENG": 75, "ANN": 10}),
            )
        )
    return engagements


def _sqlite_bytes(schema: str, tables: dict[str, list[tuple[object, ...]]]) -> bytes:
    """Build the database in memory and return the bytes `VACUUM INTO` writes: deterministic."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "erp.db"
        connection = sqlite3.connect(":memory:")
        try:
            connection.executescript(schema)
            for table, rows in tables.items():
                marks = ", ".join("?" for _ in rows[0])
                connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            connection.commit()
            connection.execute("VACUUM INTO ?", (str(target),))
        finally:
            connection.close()
        return target.read_bytes()


def _write_cite_jardins(inbox: Path, calendar: DemoCalendar) -> list[Path]:
    rng = _rng(CITE_JARDINS)
    tenants = _cite_tenants(rng)
    entries = _ledgers(rng, tenants, _stray_entries(tenants, _CITE_STRAY_ENTRIES))
    plans = _plans(rng, tenants)
    engagements = _engagements(rng, 200)
    # a lease signed for November: its account has no reference yet, and no movements
    newcomer = _tenant(rng, "", "CJ-", "JAR-C04-017")
    tenants.append(
        replace(
            newcomer,
            lease_ref="CJ-2026-0999",
            move_in=date(2026, 11, 1),
            move_out=None,
            status="active",
            formal_demands=0,
        )
    )
    tenants = _with_defects(tenants, {31: UNKNOWN_CODE, 77: BAD_DATE, 140: BLANK_REF})
    by_hand, hand_entries, hand_plans = _cite_accounts()
    tenants += by_hand
    entries += hand_entries

    tiers_id = {tenant.ref: number for number, tenant in enumerate(tenants, start=1) if tenant.ref}
    tiers = [
        (
            number,
            None if tenant.defect == BLANK_REF else tenant.ref,
            tenant.last_name.upper(),
            tenant.first_name,
            tenant.lease_ref,
            tenant.dwelling_ref,
            "2026-02-31" if tenant.defect == BAD_DATE else _iso(calendar.event(tenant.move_in)),
            _iso(calendar.event(tenant.move_out)),
            "SUSPENDU" if tenant.defect == UNKNOWN_CODE else _CITE_STATUS[tenant.status],
            _CITE_INCOME[tenant.income_band],
            _CITE_AGE[tenant.age_band],
            tenant.household_size,
            _CITE_AID[tenant.housing_aid],
            int(tenant.fsl_aid),
            _CITE_PAYMENT[tenant.payment_method],
            _CITE_CHANNEL[tenant.preferred_channel],
            tenant.formal_demands,
        )
        for number, tenant in enumerate(tenants, start=1)
    ]
    ecritures = [
        (
            number,
            f"EC26-{number:06d}",
            tiers_id.get(entry.tenant_ref),
            "2026-09-31" if entry.defect == BAD_DATE else _iso(calendar.event(entry.entry_date)),
            _iso(calendar.scheduled(entry.due_date)),
            _cite_movement(entry),
            calendar.label(entry.label),
            "12,5O" if entry.defect == BAD_AMOUNT else _decimal_text(entry.amount_cents),
            entry.reject_reason,
        )
        for number, entry in enumerate(entries, start=1)
    ]
    plans[len(plans) // 2] = (*plans[len(plans) // 2][:-1], "CTX")  # contentieux: not mapped
    plans += hand_plans
    plans = [
        (ref, tenant, _iso(calendar.event(date.fromisoformat(start))), *rest)
        for ref, tenant, start, *rest in plans
    ]
    engagement_defects = {20: UNKNOWN_CODE, 95: BAD_DATE, 150: BLANK_REF}
    for index, defect in engagement_defects.items():
        ref, order_ref, amount, committed, budget, status = engagements[index]
        if defect == UNKNOWN_CODE:
            status = "SLD"  # soldé: a status the hub's model does not have
        elif defect == BAD_DATE:
            committed = "2026-02-30"
        else:
            order_ref = None
        engagements[index] = (ref, order_ref, amount, committed, budget, status)
    engagements = [
        (ref, order_ref, amount, _iso(calendar.event(date.fromisoformat(day))), *rest)
        if day != "2026-02-30"
        else (ref, order_ref, amount, day, *rest)
        for ref, order_ref, amount, day, *rest in engagements
    ]

    content = _sqlite_bytes(
        _CITE_SCHEMA,
        {
            "tiers": tiers,
            "ecritures": ecritures,
            # id None: SQLite numbers the rows 1, 2, 3 … in insertion order
            "plans_apurement": [(None, *plan) for plan in plans],
            "engagements": [(None, *engagement) for engagement in engagements],
        },
    )
    return [_write_if_changed(inbox / CITE_JARDINS / "erp.db", content)]


# --- Entry points ---------------------------------------------------------------------------


OPALE_ERP_TABLE = """
CREATE TABLE IF NOT EXISTS engagements_hub (
    bt TEXT PRIMARY KEY,
    prestataire TEXT,
    montant_cts INTEGER NOT NULL,
    montant_eur TEXT NOT NULL,
    devis_acceptes INTEGER NOT NULL,
    date_commande DATE NOT NULL,
    hub_idem TEXT NOT NULL
)"""


def write_demo_targets(home: Path) -> dict[str, Path]:
    """Where the demo landlords' pushes land besides the sandbox peers: Opale Logement's ERP
    table of commitments (a SQLite file with its `engagements_hub` table) and the drop folder
    its contractor's Sage 100 imports from. Existing content is kept (it is what was pushed)."""
    sandbox = Path(home) / "sandbox"
    sandbox.mkdir(parents=True, exist_ok=True)
    erp = sandbox / "opale-erp.db"
    with sqlite3.connect(erp) as conn:
        conn.execute(OPALE_ERP_TABLE)
    conn.close()
    drop = Path(home) / "sage100" / "import"
    drop.mkdir(parents=True, exist_ok=True)
    return {"opale_erp": erp, "sage100_drop": drop}


def write_demo_sources(home: Path, day: date | None = None) -> dict[str, list[Path]]:
    """Write the file landlords' sources into `home/inbox/<landlord>/`; return them by landlord
    (`DEMO_SANDBOX_LANDLORDS` read web services: nothing is written for them).

    The files are dated relative to the demo day `day` (default: `DATAFIX_DEMO_DAY`, else
    today in Paris; see `connectors.sandbox.demo_calendar`): same day, same bytes.

    Files whose content is already on disk are left untouched (same bytes, same mtime).
    """
    inbox = Path(home) / "inbox"
    calendar = DemoCalendar.from_environment() if day is None else DemoCalendar(day)
    return {
        LOIRE_HABITAT: _write_loire_habitat(inbox, calendar),
        OPALE_LOGEMENT: _write_opale_logement(inbox, calendar),
        CITE_JARDINS: _write_cite_jardins(inbox, calendar),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m connectors.sandbox.demo_files HOME`: write the demo inboxes under HOME."""
    parser = argparse.ArgumentParser(
        prog="python -m connectors.sandbox.demo_files",
        description="Write the demo landlords' source files into HOME/inbox/<landlord>/.",
    )
    parser.add_argument("home", type=Path, help="the hub's home folder (DATAFIX_HOME)")
    parser.add_argument(
        "--day",
        type=parse_demo_day,
        default=None,
        help="the demo day, YYYY-MM-DD (default: DATAFIX_DEMO_DAY, else today in Paris)",
    )
    arguments = parser.parse_args(argv)
    for landlord, paths in write_demo_sources(arguments.home, arguments.day).items():
        for path in paths:
            sys.stdout.write(f"{landlord}: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
