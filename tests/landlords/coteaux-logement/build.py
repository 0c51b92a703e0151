"""Regenerate the nightly exports of Coteaux Logement (foreign test landlord, issue 10 (c)).

Written from the landlord's description, not with the demo generator: an old accounting package
exports, every night, the tenants' ledger (`grand-livre.csv`, 12,000 lines) and the tenant
accounts (`comptes-locataires.csv`), the Windows way:

- cp1252, CRLF line ends, `;` between fields, every field quoted;
- amounts with a decimal comma, a space or a no-break space between thousands, and a trailing
  minus for negatives (`1 204,50-`); dates dd/mm/yyyy;
- a two-line title block above the header and a final totals line.

About 0.3 % of the ledger's rows legitimately break the ledger contract's `sign_matches_kind`:
credit notes booked as a rent call with a negative amount (`QUI`, `-`), and payments cancelled
by booking the payment code with a positive amount (`REG`, `+`). A few rows have other problems
the hub quarantines: a date that does not exist, the package's `00/00/0000`, a movement code
missing from the datafix's map, a mistyped amount, an entry number booked twice.

Deterministic (seeded `random`): `python build.py [OUT_DIR]` (default: `inbox/` next to this
file) rewrites the committed files byte for byte.
"""

from __future__ import annotations

import csv
import random
import sys
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

SEED = 20261205
TENANTS = 400
LEDGER_ROWS = 12_000
NEGATIVE_RENT_CALLS = 30  # credit notes booked as rent calls
POSITIVE_PAYMENTS = 6  # cancelled payments booked as payments
EXPORTED = "05/12/2026 à 23:41"
PERIOD = "du 01/01/2026 au 30/11/2026"

LEDGER_HEADER = [
    "N° pièce",
    "Compte",
    "Date pièce",
    "Date échéance",
    "Code mvt",
    "Libellé",
    "Montant",
    "Mode règl.",
    "Motif rejet",
]
TENANTS_HEADER = [
    "Compte",
    "Nom",
    "N° bail",
    "Logement",
    "Date entrée",
    "Date sortie",
    "Situation",
    "Mode règl.",
]

SURNAMES = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèbvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefèvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
]
FIRST_NAMES = [
    "Jean",
    "Marie",
    "Michel",
    "Nathalie",
    "Pierre",
    "Isabelle",
    "Philippe",
    "Sylvie",
    "Alain",
    "Catherine",
    "Nicolas",
    "Françoise",
    "Christophe",
    "Sandrine",
    "Stéphane",
    "Valérie",
    "Éric",
    "Céline",
    "Frédéric",
    "Hélène",
    "Laurent",
    "Aurélie",
    "Sébastien",
    "Chloé",
    "Karim",
    "Fatima",
    "Mohamed",
    "Yasmine",
    "Théo",
    "Léa",
    "Noël",
    "Zoé",
]
PAYMENT_MODES = ("PRLV", "PRLV", "PRLV", "VIR", "CHQ", "ESP", "CB")
RESIDENCES = ("BEL", "VIG", "PRE", "SOL")  # Belvédère, Vignes, Prés, Soleil
REJECT_REASONS = ("AM04", "AM04", "AC04", "MS02", "MD06")


@dataclass(frozen=True)
class Tenant:
    ref: str
    name: str
    lease: str
    dwelling: str
    move_in: date
    move_out: date | None
    status: str
    mode: str
    rent_cents: int
    aid_cents: int


@dataclass(frozen=True)
class Entry:
    ref: str
    account: str
    day: str  # as written: dd/mm/yyyy, or a broken date
    due: str
    code: str
    label: str
    amount: str  # as written
    mode: str
    reject: str


def euros(cents: int, rng: random.Random) -> str:
    """`1 204,50` / `1 204,50-`: decimal comma, a space or a no-break space between thousands,
    a trailing minus for negatives."""
    whole, part = divmod(abs(cents), 100)
    digits = f"{whole:,}".replace(",", rng.choice((" ", "\u00a0")))
    return f"{digits},{part:02d}" + ("-" if cents < 0 else "")


def ddmmyyyy(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def make_tenants(rng: random.Random) -> list[Tenant]:
    tenants = []
    for number in range(TENANTS):
        move_in = date(2008, 1, 1) + timedelta(days=rng.randrange(18 * 365))
        situation = rng.choices(("EC", "PR", "SO"), weights=(90, 4, 6))[0]
        move_out = None
        if situation == "PR":
            move_out = date(2026, 12, 31) + timedelta(days=rng.randrange(60))
        elif situation == "SO":
            move_out = date(2026, 1, 31) + timedelta(days=rng.randrange(300))
        if move_out is not None and move_out <= move_in:
            move_in = move_out - timedelta(days=400)
        rent = rng.randrange(28_000, 76_000, 5)
        aid = rng.choice((0, 0, 0, rng.randrange(9_000, 26_000, 5)))
        tenants.append(
            Tenant(
                ref=f"411C{10_001 + number * 7}",
                name=f"{rng.choice(SURNAMES).upper()} {rng.choice(FIRST_NAMES)}",
                lease=f"B{move_in.year}-{number + 1:04d}",
                dwelling=f"COT-{rng.choice(RESIDENCES)}-{rng.randrange(1, 240):03d}",
                move_in=move_in,
                move_out=move_out,
                status=situation,
                mode=rng.choice(PAYMENT_MODES),
                rent_cents=rent,
                aid_cents=aid,
            )
        )
    return tenants


def movement(tenant: Tenant, rng: random.Random) -> tuple[date, str, str, int, str, str, str]:
    """One random movement of `tenant`: day, code, label, signed cents, due date, mode, reason."""
    month = rng.randrange(1, 12)
    day = date(2026, month, rng.randrange(1, 29))
    period = f"{month:02d}/2026"
    code = rng.choices(
        ("QUI", "REG", "APL", "REJ", "FRA", "SLS", "RGC", "DG", "RDG", "AVO", "RBT"),
        weights=(40, 36, 12, 2, 2, 2, 2, 1, 1, 1, 1),
    )[0]
    if code == "QUI":
        due = ddmmyyyy(date(2026, month, 5))
        return date(2026, month, 1), code, f"QUITTANCE {period}", tenant.rent_cents, due, "", ""
    if code == "REG":
        months = rng.choices((1, 2, 3), weights=(85, 10, 5))[0]
        cents = -(tenant.rent_cents - tenant.aid_cents) * months + rng.choice((0, 0, 0, 2_000))
        return day, code, f"REGLEMENT {tenant.mode}", min(cents, -100), "", tenant.mode, ""
    if code == "APL":
        cents = -(tenant.aid_cents or rng.randrange(9_000, 26_000, 5))
        return day, code, f"APL CAF {period}", cents, "", "", ""
    if code == "REJ":
        cents = tenant.rent_cents - tenant.aid_cents
        return day, code, "REJET PRELEVEMENT", cents, "", "PRLV", rng.choice(REJECT_REASONS)
    if code == "FRA":
        return day, code, "FRAIS DE RELANCE", rng.choice((1_500, 2_500, 4_000)), "", "", ""
    if code == "SLS":
        return day, code, f"SLS {period}", rng.randrange(2_000, 30_000, 5), "", "", ""
    if code == "RGC":
        cents = rng.randrange(-45_000, 150_000, 5) or 1_000
        return day, code, "REGULARISATION CHARGES 2025", cents, "", "", ""
    if code == "DG":
        return day, code, "DEPOT DE GARANTIE", tenant.rent_cents * 2, "", "", ""
    if code == "RDG":
        return day, code, "RESTITUTION DEPOT", -tenant.rent_cents * 2, "", "", ""
    if code == "AVO":
        return day, code, "AVOIR GESTE COMMERCIAL", -rng.randrange(1_000, 12_000, 5), "", "", ""
    return day, code, "REMBOURSEMENT SOLDE CREDITEUR", rng.randrange(5_000, 60_000, 5), "", "", ""


def make_ledger(tenants: list[Tenant], rng: random.Random) -> tuple[list[Entry], int]:
    """The ledger's rows (sorted by account, then date, numbered as the package does) and the
    total the export prints on its last line."""
    drafts = []
    for _ in range(LEDGER_ROWS):
        tenant = rng.choice(tenants)
        drafts.append((tenant.ref, *movement(tenant, rng)))
    drafts.sort(key=lambda draft: (draft[0], draft[1]))
    cents_of = [draft[4] for draft in drafts]
    entries = [
        Entry(
            ref=f"P{2_600_000 + 3 * index}",
            account=account,
            day=ddmmyyyy(day),
            due=due,
            code=code,
            label=label,
            amount=euros(cents, rng),
            mode=mode,
            reject=reason,
        )
        for index, (account, day, code, label, cents, due, mode, reason) in enumerate(drafts)
    ]
    # rows breaking `sign_matches_kind`, legitimately (the accountants book them that way)
    rent_calls = [i for i, entry in enumerate(entries) if entry.code == "QUI"]
    payments = [i for i, entry in enumerate(entries) if entry.code == "REG"]
    credit_notes = rng.sample(rent_calls, NEGATIVE_RENT_CALLS)
    cancelled = rng.sample(payments, POSITIVE_PAYMENTS)
    for index in credit_notes:
        cents_of[index] = -rng.randrange(2_000, 25_000, 5)
        entries[index] = replace(
            entries[index],
            label="AVOIR SUR " + entries[index].label,
            amount=euros(cents_of[index], rng),
        )
    for index in cancelled:
        cents_of[index] = -cents_of[index]
        entries[index] = replace(
            entries[index],
            label="ANNUL. " + entries[index].label,
            amount=euros(cents_of[index], rng),
        )
    # rows with other problems, one each
    taken = set(credit_notes) | set(cancelled)
    others = rng.sample([i for i in range(1, len(entries)) if i not in taken], 6)
    wrong_day, no_day, odr_one, odr_two, typo, twice = others
    entries[wrong_day] = replace(entries[wrong_day], day="31/04/2026")
    entries[no_day] = replace(entries[no_day], day="00/00/0000")
    for index in (odr_one, odr_two):  # "opération diverse": a code the datafix does not map
        entries[index] = replace(entries[index], code="ODR", label="OPERATION DIVERSE")
    amount = entries[typo].amount  # the last cent typed as a letter O: `412,5O`
    last = len(amount.rstrip("-")) - 1
    entries[typo] = replace(entries[typo], amount=amount[:last] + "O" + amount[last + 1 :])
    cents_of[typo] = 0
    taken |= set(others)
    first = rng.choice([i for i in range(twice) if i not in taken])  # booked earlier
    entries[twice] = replace(entries[twice], ref=entries[first].ref)
    return entries, sum(cents_of)


def write(path: Path, title: list[str], header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="cp1252", newline="") as stream:
        writer = csv.writer(
            stream, delimiter=";", quotechar='"', quoting=csv.QUOTE_ALL, lineterminator="\r\n"
        )
        for line in title:
            writer.writerow([line])
        writer.writerow(header)
        writer.writerows(rows)


def build(out: Path) -> None:
    rng = random.Random(SEED)
    tenants = make_tenants(rng)
    entries, total = make_ledger(tenants, rng)
    out.mkdir(parents=True, exist_ok=True)
    write(
        out / "comptes-locataires.csv",
        ["COTEAUX LOGEMENT - COMPTES LOCATAIRES", f"Édité le {EXPORTED}"],
        TENANTS_HEADER,
        [
            [
                t.ref,
                t.name,
                t.lease,
                t.dwelling,
                ddmmyyyy(t.move_in),
                ddmmyyyy(t.move_out) if t.move_out else "",
                t.status,
                t.mode,
            ]
            for t in tenants
        ]
        + [[f"Nombre de comptes : {len(tenants)}", "", "", "", "", "", "", ""]],
    )
    write(
        out / "grand-livre.csv",
        [
            "COTEAUX LOGEMENT - GRAND LIVRE DES COMPTES LOCATAIRES",
            f"Période {PERIOD} - édité le {EXPORTED}",
        ],
        LEDGER_HEADER,
        [
            [e.ref, e.account, e.day, e.due, e.code, e.label, e.amount, e.mode, e.reject]
            for e in entries
        ]
        + [["", "", "", "", "", "TOTAL GENERAL", euros(total, rng), "", ""]],
    )


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "inbox")
