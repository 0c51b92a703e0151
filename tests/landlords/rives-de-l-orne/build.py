"""Rives de l'Orne's tenant database, built in a PostgreSQL database from the description of
issue 10 (d): tenants whose status comes from dates.

`baux` holds one lease per row with typed DATE columns and no status: `date_entree`,
`date_sortie` (NULL while the lease runs) and `date_preavis` (notice given). `ecritures` is the
rent account: one movement per row, posted to a lease (`bail_id`), a signed NUMERIC(12,2)
amount (debit > 0, credit < 0) and a movement `code`.

Every date is placed relative to `today` (the hub's run date: today in Paris), and no move-out
date lies within `MARGIN - 1` days of it, so a run crossing midnight (or a test started just
before midnight in Paris) cannot flip a status. Deterministic for a given seed and `today`.

A few rows are broken on purpose: a move-out before the move-in (three leases, one of them
with a move-in still to come), movements posted to no lease or to a lease that does not exist,
a movement code the datafix does not know, payments and rent calls with the wrong sign. Kept
well under the hub's default `max_quarantine_percent` (20 %).

`build(url, today)` creates and fills the tables over a real connection and returns the rows as
plain Python data (`date`, `Decimal`, `None`), keyed by table.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa

MARGIN = 3  # a move-out date is at least this many days away from today, either side

# how many leases of each shape (58 leases, 3 of them broken: 5 %)
PROFILES: dict[str, int] = {
    "running": 24,  # no move-out, no notice → active
    "signed_ahead": 2,  # move-in still to come, no move-out → active (nothing forbids it)
    "notice_only": 6,  # notice given, no move-out date yet → leaving
    "moving_out": 8,  # move-out date to come (notice given or not) → leaving
    "moved_out": 14,  # move-out date past → left
    "same_day": 1,  # moved out the day it moved in (a lease cancelled on the spot) → left
    "out_before_in": 2,  # move-out before move-in, both past → quarantined
    "out_before_future_in": 1,  # move-in to come, move-out past → quarantined
}

SURNAMES = (
    "Lefèvre", "Marie", "Leroux", "Hamel", "Lecoq", "Duval", "Guérin", "Lemonnier", "Jouanne",
    "Le Goff", "Vautier", "Osmont", "Lebas", "Hébert", "Mauger", "Quesnel", "Delamare", "Toutain",
    "Benali", "Nguyen", "Diallo", "Da Silva", "Moreau", "Lesage", "Anquetil", "Yildiz",
)  # fmt: skip
GIVEN = ("Camille", "Lucas", "Inès", "Hugo", "Léa", "Yanis", "Chloé", "Mathis", "Aïcha", "Jules")
STREETS = ("HER", "GRA", "CHE", "PLA", "MON", "GUE")  # Hérouville, Grâce de Dieu, Chemin Vert …
METHODS = ("PRLV", "PRLV", "PRLV", "VIR", "CHQ", "ESP", "CB")


def _table_definitions() -> tuple[sa.MetaData, sa.Table, sa.Table]:
    metadata = sa.MetaData()
    baux = sa.Table(
        "baux",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ref_locataire", sa.String(12), nullable=False, unique=True),
        sa.Column("num_bail", sa.String(16), nullable=False),
        sa.Column("nom", sa.Text, nullable=False),
        sa.Column("logement", sa.String(24), nullable=False),
        sa.Column("date_entree", sa.Date, nullable=False),
        sa.Column("date_sortie", sa.Date, nullable=True),
        sa.Column("date_preavis", sa.Date, nullable=True),
    )
    ecritures = sa.Table(
        "ecritures",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("num_piece", sa.String(12), nullable=False, unique=True),
        sa.Column("bail_id", sa.Integer, nullable=True),  # no foreign key: the ERP has none
        sa.Column("date_ecriture", sa.Date, nullable=False),
        sa.Column("date_echeance", sa.Date, nullable=True),
        sa.Column("code", sa.String(8), nullable=False),
        sa.Column("libelle", sa.Text, nullable=True),
        sa.Column("montant", sa.Numeric(12, 2), nullable=False),
        sa.Column("mode_reglement", sa.String(8), nullable=True),
    )
    return metadata, baux, ecritures


def _euros(rng: random.Random, low: int, high: int) -> Decimal:
    """A euro amount with cents, between `low` and `high` euros."""
    return Decimal(rng.randint(low * 100, high * 100)) / 100


def _days(rng: random.Random, low: int, high: int) -> timedelta:
    return timedelta(days=rng.randint(low, high))


def _lease_dates(
    rng: random.Random, profile: str, today: date
) -> tuple[date, date | None, date | None]:
    """(date_entree, date_sortie, date_preavis) of one lease of `profile`."""
    past_in = today - _days(rng, 120, 15 * 365)
    if profile == "running":
        return past_in, None, None
    if profile == "signed_ahead":
        return today + _days(rng, MARGIN + 2, 45), None, None
    if profile == "notice_only":
        return past_in, None, today - _days(rng, MARGIN, 60)
    if profile == "moving_out":
        notice = today - _days(rng, MARGIN, 60) if rng.random() < 0.75 else None
        return past_in, today + _days(rng, MARGIN, 90), notice
    if profile == "moved_out":
        move_out = today - _days(rng, MARGIN, 3 * 365)
        move_in = move_out - _days(rng, 200, 12 * 365)
        notice = move_out - _days(rng, 30, 90) if rng.random() < 0.6 else None
        return move_in, move_out, notice
    if profile == "same_day":
        move_in = today - _days(rng, 30, 400)
        return move_in, move_in, None
    if profile == "out_before_in":  # typed the wrong year, or the two dates swapped
        move_in = today - _days(rng, 60, 3 * 365)
        return move_in, move_in - _days(rng, 10, 400), None
    if profile == "out_before_future_in":
        return today + _days(rng, MARGIN + 2, 40), today - _days(rng, MARGIN, 60), None
    raise ValueError(f"unknown profile {profile!r}")


def _leases(rng: random.Random, today: date) -> list[dict[str, object]]:
    profiles = [name for name, count in PROFILES.items() for _ in range(count)]
    rng.shuffle(profiles)
    numbers = rng.sample(range(1000, 99999), len(profiles))
    rows = []
    for position, (profile, number) in enumerate(zip(profiles, numbers, strict=True), start=1):
        move_in, move_out, notice = _lease_dates(rng, profile, today)
        lease_number = rng.randint(1, 9999)
        name = f"{rng.choice(SURNAMES).upper()} {rng.choice(GIVEN)}"
        dwelling = f"{rng.choice(STREETS)}-{rng.randint(1, 40):02d}-{rng.randint(1, 60):03d}"
        rows.append(
            {
                "id": position * 3 + 100,  # the ERP's ids have gaps
                "ref_locataire": f"ORN{number:05d}",
                "num_bail": f"B{move_in.year}-{lease_number:04d}",
                "nom": name,
                "logement": dwelling,
                "date_entree": move_in,
                "date_sortie": move_out,
                "date_preavis": notice,
            }
        )
    return rows


def _month_starts(start: date, end: date) -> list[date]:
    """First days of the months from `start`'s month to `end`'s, both included."""
    months, cursor = [], start.replace(day=1)
    while cursor <= end:
        months.append(cursor)
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return months


def _movements(rng: random.Random, lease: dict[str, object], today: date) -> list[dict]:
    """The rent account of one lease over the last six months (at most), before ids."""
    move_in: date = lease["date_entree"]  # type: ignore[assignment]
    move_out: date | None = lease["date_sortie"]  # type: ignore[assignment]
    rent = _euros(rng, 280, 690)
    aid = _euros(rng, 90, 260) if rng.random() < 0.45 else None
    method = rng.choice(METHODS)
    debtor = rng.random() < 0.2
    moves: list[dict] = []

    def add(day: date, code: str, amount: Decimal, label: str, **extra: object) -> None:
        moves.append(
            {
                "bail_id": lease["id"],
                "date_ecriture": day,
                "date_echeance": extra.get("due"),
                "code": code,
                "libelle": label,
                "montant": amount,
                "mode_reglement": extra.get("method"),
            }
        )

    signed = min(move_in, today) - _days(rng, 3, 20)
    add(signed if move_in > today else move_in, "DG", rent, "Dépôt de garantie")
    last = min(move_out, today) if move_out else today
    window = max(move_in, today - timedelta(days=180))
    for month in _month_starts(window, last):
        if month < move_in.replace(day=1):
            continue
        add(month, "QUIT", rent, f"Avis d'échéance {month:%m/%Y}", due=month.replace(day=5))
        if aid is not None:
            add(month + timedelta(days=14), "APL", -aid, "APL CAF tiers payant")
        due = rent - (aid or Decimal(0))
        paid = due if not debtor else (due * Decimal(rng.choice((0, 50, 70))) / 100)
        paid = paid.quantize(Decimal("0.01"))
        pay_day = month + timedelta(days=rng.randint(4, 12))
        if paid and pay_day <= today:
            add(pay_day, "REGL", -paid, "Règlement", method=method)
            if method == "PRLV" and rng.random() < 0.08:
                add(pay_day + timedelta(days=3), "REJ", paid, "Rejet prélèvement AM04")
    if debtor and rng.random() < 0.5:
        add(last - timedelta(days=1), "FRP", _euros(rng, 80, 190), "Commandement de payer")
    if rng.random() < 0.25:
        regularisation = _euros(rng, 15, 220) * rng.choice((1, -1))
        add(window + timedelta(days=20), "REGC", regularisation, "Régularisation charges")
    if rng.random() < 0.05:
        add(window + timedelta(days=25), "AVO", -_euros(rng, 20, 80), "Avoir geste commercial")
    if move_out is not None and move_out < today and move_out >= move_in:
        add(move_out, "RDG", -rent, "Restitution dépôt de garantie")
        if not debtor:
            add(move_out + timedelta(days=2), "REMB", _euros(rng, 10, 200), "Remboursement solde")
    return moves


def _broken_movements(leases: list[dict[str, object]], today: date) -> list[dict]:
    """Movements the hub must quarantine, one per reason."""
    first, second, third = leases[0], leases[1], leases[2]
    day = today - timedelta(days=20)
    return [
        {  # posted to the suspense account: no lease
            "bail_id": None, "date_ecriture": day, "date_echeance": None, "code": "REGL",
            "libelle": "Virement non identifié", "montant": Decimal("-120.00"),
            "mode_reglement": "VIR",
        },
        {  # posted to a lease since deleted
            "bail_id": 99999, "date_ecriture": day, "date_echeance": None, "code": "QUIT",
            "libelle": "Avis d'échéance", "montant": Decimal("410.25"), "mode_reglement": None,
        },
        {  # "opération diverse": a code the datafix does not map
            "bail_id": first["id"], "date_ecriture": day, "date_echeance": None, "code": "ODX",
            "libelle": "Opération diverse", "montant": Decimal("35.00"), "mode_reglement": None,
        },
        {  # a payment keyed with a plus sign
            "bail_id": second["id"], "date_ecriture": day, "date_echeance": None,
            "code": "REGL", "libelle": "Règlement", "montant": Decimal("250.00"),
            "mode_reglement": "CHQ",
        },
        {  # a rent call keyed with a minus sign
            "bail_id": third["id"], "date_ecriture": day, "date_echeance": None, "code": "QUIT",
            "libelle": "Avis d'échéance", "montant": Decimal("-512.40"), "mode_reglement": None,
        },
    ]  # fmt: skip


def generate(today: date, *, seed: int = 10) -> dict[str, list[dict[str, object]]]:
    """The rows of `baux` and `ecritures` for a run on `today`, without touching a database."""
    rng = random.Random(f"rives-de-l-orne:{seed}")
    leases = _leases(rng, today)
    movements = [move for lease in leases for move in _movements(rng, lease, today)]
    movements += _broken_movements(leases, today)
    rng.shuffle(movements)
    movements.sort(key=lambda move: move["date_ecriture"])  # stable: same-day order random
    for position, move in enumerate(movements, start=1):
        move["id"] = position + 5000
        move["num_piece"] = f"P{position + 5000:07d}"
    return {"baux": leases, "ecritures": movements}


def build(url: str, today: date, *, seed: int = 10) -> dict[str, list[dict[str, object]]]:
    """Create `baux` and `ecritures` in the (empty) database at `url`, fill them, and return
    their rows: `{"baux": [...], "ecritures": [...]}`, one dict per row, column → value."""
    rows = generate(today, seed=seed)
    metadata, baux, ecritures = _table_definitions()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            metadata.create_all(connection)
            connection.execute(baux.insert(), rows["baux"])
            connection.execute(ecritures.insert(), rows["ecritures"])
    finally:
        engine.dispose()
    return rows
