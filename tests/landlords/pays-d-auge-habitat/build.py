"""Regenerate the works exports of Pays d'Auge Habitat (foreign test landlord, issue 15).

Written from the landlord's description, not with the demo generator. Its maintenance
contractors work in a field-service platform; each night the platform's "Export Excel (CSV)"
drops two files, saved the way French Excel writes "CSV UTF-8 (délimité par des points-virgules)":
UTF-8 with a byte-order mark, CRLF, `;` between fields, a field quoted only when it holds a `;`,
a quote or a line break (technicians' comments run over several lines), date-times
`dd/mm/yyyy hh:mm` in Paris time, no seconds.

- `bons.csv`, one line per works order (bon de travaux): created at, priority (`P1 - Urgence`,
  `P2 - Prioritaire`, `P3 - Normal`, `Programmé`: the contract's GTI/GTR terms hang on it),
  nature of the works, dwelling (or a block's common areas, with no tenant), tenant account,
  contractor, status, closed at.
- `interventions.csv`, one line per visit: the order, when the technician came, the visit's
  outcome (`Intervention réalisée`, or `Locataire absent - avis de passage déposé`), the
  tenant's signature, a comment.

What the orders are made to show: visits the tenant missed (once, twice, before the repair), an
order the contractor closed with no visit report, orders still open (on time and late), orders
cancelled, new orders for the same dwelling and nature soon after a repair (not a first-time
fix), orders across the change to summer time (29 March 2026), one visit typed with a day that
does not exist, and visits after the day the test computes.

Deterministic (seeded `random`): `python build.py [OUT_DIR]` (default: `inbox/` next to this
file) rewrites the committed files byte for byte.
"""

from __future__ import annotations

import csv
import io
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20261207
ORDERS = 90
FIRST_DAY = datetime(2026, 1, 5, 7, 0)
LAST_DAY = datetime(2026, 5, 3, 18, 0)  # the export runs on the night of 3-4 May 2026

PRIORITIES = ["P1 - Urgence", "P2 - Prioritaire", "P3 - Normal", "Programmé"]
NATURES = ["Dépannage plomberie", "Recherche de fuite", "Entretien chaudière", "Électricité"]
CONTRACTORS = ["Auge Multiservices", "Thermi Pays d'Auge", "Lisieux Plomberie"]
DONE = "Intervention réalisée"
ABSENT = "Locataire absent - avis de passage déposé"
COMMENTS = [
    "RAS",
    "Joint remplacé;\nfuite arrêtée",
    'Pièce à commander "vanne 3/4"',
    "Chaudière redémarrée\nContrôle OK",
    "",
]

ORDERS_HEADER = [
    "N° BT", "Créé le", "Priorité", "Nature", "Logement", "Locataire", "Entreprise", "Statut",
    "Clôturé le",
]  # fmt: skip
VISITS_HEADER = ["Réf intervention", "N° BT", "Passage le", "Compte rendu", "Signé", "Commentaire"]


@dataclass
class Order:
    ref: str
    created: datetime
    priority: str
    nature: str
    dwelling: str
    tenant: str
    contractor: str
    status: str = "Nouveau"
    closed: datetime | None = None
    visits: list[tuple[datetime | str, str, str]] = field(default_factory=list)


def stamp(moment: datetime) -> str:
    return moment.strftime("%d/%m/%Y %H:%M")


def working_time(rng: random.Random, day: datetime) -> datetime:
    """A weekday time between 7:30 and 18:30 on or after `day`."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day.replace(hour=7, minute=30) + timedelta(minutes=rng.randrange(0, 11 * 60))


def visit(rng: random.Random, order: Order, at: datetime, outcome: str) -> None:
    """A visit, unless it would come after the export."""
    if at > LAST_DAY:
        return
    signed = "Oui" if outcome == DONE and rng.random() < 0.7 else "Non"
    order.visits.append((at, outcome, signed))


def build_orders(rng: random.Random) -> list[Order]:
    dwellings = [f"LGT-{n:04d}" for n in range(1, 31)] + ["PC-BAT-A", "PC-BAT-B"]
    tenants = {d: f"411{rng.randrange(10_000, 99_999)}" for d in dwellings if d.startswith("LGT")}
    span = (LAST_DAY - FIRST_DAY).days
    orders: list[Order] = []
    for number in range(ORDERS):
        dwelling = rng.choice(dwellings)
        created = working_time(rng, FIRST_DAY + timedelta(days=rng.randrange(0, span)))
        orders.append(
            Order(
                ref=f"BT26{number + 1:05d}",
                created=created,
                priority=rng.choices(PRIORITIES, weights=[2, 4, 4, 1])[0],
                nature=rng.choice(NATURES),
                dwelling=dwelling,
                tenant=tenants.get(dwelling, ""),
                contractor=rng.choice(CONTRACTORS),
            )
        )
    # across the change to summer time (Sunday 29 March 2026, 2:00 → 3:00)
    orders[0].created = datetime(2026, 3, 27, 16, 40)
    orders[0].priority = "P2 - Prioritaire"
    orders[1].created = datetime(2026, 3, 28, 10, 0)
    orders[1].priority = "P1 - Urgence"

    for index, order in enumerate(orders):
        hours = {"P1": (1, 30), "P2": (6, 90), "P3": (24, 300)}.get(order.priority[:2], (48, 500))
        roll = rng.random()
        if index == 1:  # visited on the Monday: 45 real hours after, not 46
            visit(rng, order, datetime(2026, 3, 30, 8, 0), DONE)
        elif index in (2, 3):  # cancelled, once after a missed visit
            order.status = "Annulé"
            if index == 3:
                visit(rng, order, order.created + timedelta(hours=20), ABSENT)
            continue
        elif index == 4:  # closed by the contractor with no visit report
            order.closed = order.created + timedelta(hours=rng.randrange(*hours))
            order.status = "Terminé"
            continue
        elif roll < 0.12:  # not visited yet
            continue
        else:
            at = order.created + timedelta(hours=rng.uniform(*hours))
            missed = 2 if roll > 0.92 else 1 if roll > 0.72 else 0
            for _ in range(missed):
                visit(rng, order, at, ABSENT)
                at += timedelta(hours=rng.uniform(18, 80))
            visit(rng, order, at, DONE)
        restored = [at for at, outcome, _ in order.visits if outcome == DONE]
        if restored:
            order.status, order.closed = "Terminé", restored[0] + timedelta(minutes=45)
        elif order.visits:
            order.status = "Planifié"
    # new orders for the same dwelling and nature, placed after a repair (2 to 25 days after:
    # not a first-time fix; 45 days after: outside the 30-day window)
    repaired = [
        o for o in orders if o.status == "Terminé" and o.visits and o.closed
        and o.closed < LAST_DAY - timedelta(days=50)
    ]  # fmt: skip
    for offset, earlier in zip([2, 6, 11, 25, 45], rng.sample(repaired, 5), strict=True):
        again = Order(
            ref=f"BT26{len(orders) + 1:05d}",
            created=working_time(rng, earlier.closed + timedelta(days=offset)),
            priority=earlier.priority,
            nature=earlier.nature,
            dwelling=earlier.dwelling,
            tenant=earlier.tenant,
            contractor=earlier.contractor,
        )
        visit(rng, again, again.created + timedelta(hours=rng.uniform(2, 40)), DONE)
        again.status, again.closed = "Terminé", again.visits[-1][0] + timedelta(minutes=30)
        orders.append(again)
    # a visit typed by hand with a day that does not exist
    typo = next(o for o in orders[10:] if len(o.visits) == 1 and o.visits[0][1] == DONE)
    typo.visits.insert(0, ("31/04/2026 09:15", ABSENT, "Non"))
    return orders


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """As French Excel saves "CSV UTF-8": BOM, `;`, CRLF, quotes only where needed."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(b"\xef\xbb\xbf" + text.getvalue().encode("utf-8"))


def main(out: Path) -> None:
    rng = random.Random(SEED)
    orders = build_orders(rng)
    out.mkdir(parents=True, exist_ok=True)
    write(
        out / "bons.csv",
        ORDERS_HEADER,
        [
            [
                o.ref, stamp(o.created), o.priority, o.nature, o.dwelling, o.tenant,
                o.contractor, o.status, stamp(o.closed) if o.closed else "",
            ]
            for o in sorted(orders, key=lambda o: o.created)
        ],
    )  # fmt: skip
    visits = sorted(
        (
            (at if isinstance(at, str) else stamp(at), o.ref, outcome, signed)
            for o in orders
            for at, outcome, signed in o.visits
        ),
        key=lambda v: (v[1], v[0]),
    )
    write(
        out / "interventions.csv",
        VISITS_HEADER,
        [
            [f"INT-{n:06d}", ref, at, outcome, signed, rng.choice(COMMENTS)]
            for n, (at, ref, outcome, signed) in enumerate(visits, start=1)
        ],
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "inbox")
