"""Sillon Habitat's ERP: the tenant and ledger tables, generated and written to MariaDB.

Sillon Habitat (a fictional OPH) runs an old ERP on MariaDB that the hub reads over ODBC. Its
rent ledger (`CPT_ECRITURE`) is shared by every journal: `LOC` holds the tenants' accounts,
`FRN` the suppliers' (the hub never reads those). Each movement has:

- `MONTANT` DECIMAL(12,2) UNSIGNED, never signed: the direction is in `SENS`;
- `SENS`, what the clerk typed or the batch wrote: `D` / `C`, but also `d`, `Débit`,
  `CREDIT`, ` C`, `D  ` (the entry screen keeps the spaces, so the column is a VARCHAR), and on
  a few rows nothing (NULL or empty) or nonsense (`X`, `*`), which must not be guessed;
- `CODE_MVT`, the movement code: `QUIT` rent call, `PROV` service-charge provision, `REGC`
  charge regularisation (either direction), `APL` housing aid, `RAPL` housing-aid clawback,
  `PRLV` direct debit, `VIR` transfer, `CHQ` cheque (a cheque *received* is a credit, a cheque
  *sent* to a leaving tenant is a debit), `ESP` cash, `REJ` rejected direct debit, `DG` deposit,
  `RDG` deposit returned, `FRA` fees, `HUIS` bailiff costs; and, rarely, codes the hub must not
  guess (`ANNU` manual cancellation, `TRF` transfer between accounts);
- `ANNULE` = `O` on movements cancelled in the ERP (kept for audit, not part of the balance).

The data is generated from a fixed seed, so every run builds the same rows; `generate()` returns
them as plain Python data for the test to compute what the warehouse must hold.

    python tests/landlords/sillon-habitat/build.py "Driver={MariaDB Unicode};Server=…;Database=…"
"""

from __future__ import annotations

import random
import sys
from dataclasses import astuple, dataclass, fields
from datetime import date, timedelta
from decimal import Decimal

SEED = 20_261_206
TENANT_COUNT = 40
MONTHS = range(1, 7)  # January to June 2026
YEAR = 2026

TENANT_TABLE = "LOC_TIERS"
LEDGER_TABLE = "CPT_ECRITURE"

_SURNAMES = (
    "MARTIN BERNARD THOMAS PETIT ROBERT RICHARD DURAND DUBOIS MOREAU LAURENT SIMON MICHEL "
    "LEFÈVRE LEROY ROUX DAVID BERTRAND MOREL FOURNIER GIRARD BONNET DUPONT LAMBERT FONTAINE "
    "ROUSSEAU VINCENT MÜLLER LEFEBVRE FAURE ANDRÉ MERCIER BLANC GUÉRIN BOYER GARNIER "
    "CHEVALIER FRANÇOIS LEGRAND GAUTHIER GARCIA"
)
_FIRST_NAMES = (
    "Camille Léa Manon Chloé Inès Hugo Lucas Théo Nathan Jérôme Zoé Noé Maël Anaïs Loïc "
    "Hélène Gaëlle René Joël Françoise"
)
NAMES, FIRST_NAMES = _SURNAMES.split(), _FIRST_NAMES.split()

# How the clerks and the batches write the direction, with how often (clean values dominate)
DEBIT_SPELLINGS = ["D"] * 14 + ["d", "D  ", " D", "Débit", "DEBIT", "débit ", "Debit"]
CREDIT_SPELLINGS = ["C"] * 14 + ["c", "C ", "  C", "Crédit", "CREDIT", "crédit", "Credit "]
# Payment codes of the ledger by the tenant's usual way of paying
PAYMENT_CODE = {"PRL": "PRLV", "VIR": "VIR", "CHQ": "CHQ", "ESP": "ESP"}
USUAL = "<usual spelling>"  # `_Ledger.add`: spell the direction as the ERP usually does


@dataclass(frozen=True)
class Tenant:
    """One row of `LOC_TIERS`."""

    CODE_TIERS: str
    NUM_BAIL: str
    NOM: str
    PRENOM: str
    CODE_LOGT: str
    DATE_ENTREE: date
    DATE_SORTIE: date | None
    ETAT: str  # A actif, P préavis (leaving), S sorti; R (résilié) is a code nobody mapped
    AIDE: str | None  # APL, AL or NULL
    MODE_REGL: str  # PRL, VIR, CHQ, ESP


@dataclass(frozen=True)
class Entry:
    """One row of `CPT_ECRITURE`."""

    NUM_ECR: int
    JOURNAL: str
    CODE_TIERS: str | None
    DATE_ECR: date
    DATE_ECH: date | None
    CODE_MVT: str
    LIBELLE: str
    MONTANT: Decimal | None
    SENS: str | None
    MODE_REGL: str | None
    MOTIF_REJ: str | None
    ANNULE: str  # O / N


def _euros(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)) / 100


def _tenants(rng: random.Random) -> list[Tenant]:
    tenants = []
    for number in range(1, TENANT_COUNT + 1):
        code = f"SH{number:05d}"
        start = date(rng.randint(2005, 2025), rng.randint(1, 12), 1)
        end, state = None, "A"
        if number % 10 == 3:  # moved out at the end of April
            end, state = date(YEAR, 4, 30), "S"
        elif number % 10 == 7:  # notice given: leaves in the autumn
            end, state = date(YEAR, 10, 31), "P"
        if number in (5, 26):  # moved in during the year: a deposit is called
            start = date(YEAR, 2 if number == 5 else 3, 1)
        if number == 33:
            state = "R"  # a status code the datafix does not know: quarantined
        tenants.append(
            Tenant(
                CODE_TIERS=code,
                NUM_BAIL=f"B{number:05d}-{start.year}",
                NOM=NAMES[number - 1],
                PRENOM=rng.choice(FIRST_NAMES),
                CODE_LOGT=f"LGT-{rng.randint(100, 999)}-{rng.randint(1, 40):02d}",
                DATE_ENTREE=start,
                DATE_SORTIE=end,
                ETAT=state,
                AIDE=rng.choice([None, None, "APL", "APL", "AL"]),
                MODE_REGL=rng.choice(["PRL", "PRL", "PRL", "VIR", "CHQ", "ESP"]),
            )
        )
    return tenants


class _Ledger:
    """Appends movements with consecutive numbers and a spelling of their direction."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.entries: list[Entry] = []

    def add(
        self,
        tenant: str | None,
        day: date,
        code: str,
        label: str,
        amount: Decimal | None,
        debit: bool,
        *,
        due: date | None = None,
        mode: str | None = None,
        reject: str | None = None,
        journal: str = "LOC",
        sens: str | None = USUAL,
        cancelled: bool = False,
    ) -> None:
        if sens == USUAL:  # not forced: one of the ERP's usual spellings
            sens = self.rng.choice(DEBIT_SPELLINGS if debit else CREDIT_SPELLINGS)
        self.entries.append(
            Entry(
                NUM_ECR=len(self.entries) + 1,
                JOURNAL=journal,
                CODE_TIERS=tenant,
                DATE_ECR=day,
                DATE_ECH=due,
                CODE_MVT=code,
                LIBELLE=label,
                MONTANT=amount,
                SENS=sens,
                MODE_REGL=mode,
                MOTIF_REJ=reject,
                ANNULE="O" if cancelled else "N",
            )
        )


def _in_place(tenant: Tenant, month: int) -> bool:
    first = date(YEAR, month, 1)
    moved_in = first >= tenant.DATE_ENTREE
    return moved_in and (tenant.DATE_SORTIE is None or first < tenant.DATE_SORTIE)


def generate() -> tuple[list[Tenant], list[Entry]]:
    """The ERP's tenants and ledger movements (every journal), always the same."""
    rng = random.Random(SEED)
    tenants = _tenants(rng)
    ledger = _Ledger(rng)
    rents = {t.CODE_TIERS: (_euros(rng, 280, 690), _euros(rng, 35, 140)) for t in tenants}
    debtors = {t.CODE_TIERS for t in rng.sample(tenants, 6)}
    for tenant in tenants:
        code = tenant.CODE_TIERS
        rent, charges = rents[code]
        if tenant.DATE_ENTREE.year == YEAR:
            ledger.add(code, tenant.DATE_ENTREE, "DG", "Dépôt de garantie", rent, True)
    for month in MONTHS:
        first = date(YEAR, month, 1)
        for tenant in tenants:
            if not _in_place(tenant, month):
                continue
            code = tenant.CODE_TIERS
            rent, charges = rents[code]
            due = first + timedelta(days=4)
            ledger.add(code, first, "QUIT", f"Loyer {month:02d}/{YEAR}", rent, True, due=due)
            ledger.add(code, first, "PROV", f"Provision charges {month:02d}/{YEAR}", charges, True)
            owed = rent + charges
            if tenant.AIDE:
                aid = _euros(rng, 90, 260)
                ledger.add(code, first + timedelta(days=4), "APL", f"{tenant.AIDE} CAF", aid, False)
                owed -= aid
                if rng.random() < 0.04:
                    ledger.add(
                        code,
                        first + timedelta(days=20),
                        "RAPL",
                        "Rappel d'indu CAF",
                        _euros(rng, 20, 120),
                        True,
                    )
            if month == 4:  # yearly regularisation of 2025's charges, either way
                ledger.add(
                    code,
                    first + timedelta(days=14),
                    "REGC",
                    "Régularisation charges 2025",
                    _euros(rng, 5, 180),
                    rng.random() < 0.55,
                )
            if code in debtors and rng.random() < 0.6:
                continue  # nothing paid this month
            paid = (
                owed if rng.random() < 0.85 else (owed * Decimal("0.5")).quantize(Decimal("0.01"))
            )
            pay_code = PAYMENT_CODE[tenant.MODE_REGL]
            pay_day = first + timedelta(days=rng.randint(5, 20))
            ledger.add(code, pay_day, pay_code, "Règlement", paid, False, mode=tenant.MODE_REGL)
            if pay_code == "PRLV" and rng.random() < 0.07:
                ledger.add(
                    code,
                    pay_day + timedelta(days=3),
                    "REJ",
                    "Rejet prélèvement",
                    paid,
                    True,
                    mode="PRL",
                    reject=rng.choice(["AM04", "MD06", "AC04", "MS03"]),
                )
    for code in sorted(debtors)[:3]:
        ledger.add(
            code, date(YEAR, 5, 12), "HUIS", "Commandement de payer", Decimal("148.37"), True
        )
        ledger.add(code, date(YEAR, 5, 12), "FRA", "Frais de relance", Decimal("12.00"), True)
    for tenant in tenants:  # leavers: the deposit back, and a cheque for what they are owed
        if tenant.ETAT != "S":
            continue
        code = tenant.CODE_TIERS
        ledger.add(
            code, date(YEAR, 5, 20), "RDG", "Restitution dépôt de garantie", rents[code][0], False
        )
        ledger.add(
            code,
            date(YEAR, 5, 28),
            "CHQ",
            "Remboursement solde créditeur",
            _euros(rng, 50, 300),
            True,
            mode="CHQ",
        )
    _dirty_rows(ledger, tenants)
    return tenants, ledger.entries


def _dirty_rows(ledger: _Ledger, tenants: list[Tenant]) -> None:
    """What a real ERP holds besides: other journals, cancelled rows, and rows to fix."""
    rng = ledger.rng
    codes = [t.CODE_TIERS for t in tenants if t.ETAT == "A"]
    day = date(YEAR, 6, 15)
    for number in range(18):  # the suppliers' journal: not the tenants' ledger
        ledger.add(
            f"F{number % 5:04d}",
            day,
            "FACT",
            "Facture fournisseur",
            _euros(rng, 100, 5000),
            False,
            journal="FRN",
        )
    for sens in ("D", "C ", None, "Débit", "X"):  # cancelled in the ERP, whatever their state
        ledger.add(
            rng.choice(codes),
            day,
            "QUIT",
            "Erreur de saisie",
            _euros(rng, 100, 400),
            True,
            sens=sens,
            cancelled=True,
        )
    for sens in (None, None, "", "X", "*", "DC"):  # direction missing or unknown: bad_sign
        ledger.add(
            rng.choice(codes), day, "QUIT", "Loyer complément", _euros(rng, 10, 90), True, sens=sens
        )
    ledger.add(rng.choice(codes), day, "ANNU", "Annulation manuelle", Decimal("45.00"), False)
    ledger.add(rng.choice(codes), day, "ANNU", "Annulation manuelle", Decimal("12.50"), True)
    ledger.add(rng.choice(codes), day, "TRF", "Transfert de compte", Decimal("230.00"), False)
    # a rent call typed as a credit and a direct debit typed as a debit: sign_matches_kind
    ledger.add(rng.choice(codes), day, "QUIT", "Loyer complément", Decimal("25.00"), False)
    ledger.add(rng.choice(codes), day, "PRLV", "Règlement", Decimal("60.00"), True, mode="PRL")
    ledger.add(None, day, "VIR", "Virement non affecté", Decimal("310.00"), False, mode="VIR")
    ledger.add(rng.choice(codes), day, "PROV", "Provision charges", None, True)  # no amount
    ledger.add(
        rng.choice(codes), day, "QUIT", "Quittance à zéro (franchise)", Decimal("0.00"), True
    )


DDL = [
    f"""CREATE TABLE {TENANT_TABLE} (
        CODE_TIERS VARCHAR(10) NOT NULL PRIMARY KEY,
        NUM_BAIL VARCHAR(16) NOT NULL,
        NOM VARCHAR(60) NOT NULL,
        PRENOM VARCHAR(60),
        CODE_LOGT VARCHAR(16),
        DATE_ENTREE DATE NOT NULL,
        DATE_SORTIE DATE,
        ETAT CHAR(1) NOT NULL,
        AIDE CHAR(3),
        MODE_REGL CHAR(3)
    ) CHARACTER SET utf8mb4""",
    f"""CREATE TABLE {LEDGER_TABLE} (
        NUM_ECR INT NOT NULL PRIMARY KEY,
        JOURNAL CHAR(3) NOT NULL,
        CODE_TIERS VARCHAR(10),
        DATE_ECR DATE NOT NULL,
        DATE_ECH DATE,
        CODE_MVT VARCHAR(6) NOT NULL,
        LIBELLE VARCHAR(80),
        MONTANT DECIMAL(12,2) UNSIGNED,
        SENS VARCHAR(8),
        MODE_REGL CHAR(3),
        MOTIF_REJ CHAR(4),
        ANNULE CHAR(1) NOT NULL DEFAULT 'N'
    ) CHARACTER SET utf8mb4""",
]


def _insert(cursor: object, table: str, rows: list[Tenant] | list[Entry], kind: type) -> None:
    names = [field.name for field in fields(kind)]
    statement = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    cursor.executemany(statement, [astuple(row) for row in rows])  # type: ignore[attr-defined]


def load(connection_string: str) -> tuple[list[Tenant], list[Entry]]:
    """Create the ERP's tables in the (empty) database and insert the generated rows; returns
    them."""
    import pyodbc

    tenants, entries = generate()
    connection = pyodbc.connect(connection_string, autocommit=False)
    try:
        connection.setencoding(encoding="utf-8")
        cursor = connection.cursor()
        for statement in DDL:
            cursor.execute(statement)
        _insert(cursor, TENANT_TABLE, tenants, Tenant)
        _insert(cursor, LEDGER_TABLE, entries, Entry)
        connection.commit()
    finally:
        connection.close()
    return tenants, entries


if __name__ == "__main__":
    built_tenants, built_entries = load(sys.argv[1])
    print(f"{len(built_tenants)} tenants, {len(built_entries)} ledger rows written")
