"""Deterministic source files for `make bench`: a French rent ledger (CSV) and a works-orders
workbook (xlsx), written once into `$DATAFIX_HOME/bench/` and reused while their parameters and
this generator's code are unchanged (a `.meta.json` beside each file records both, with the
file's SHA-256, which is checked before reuse).

Both files look like what a French landlord's software exports: the ledger is cp1252 with `;`,
a decimal comma, U+00A0 as thousands separator, dd/mm/yyyy dates, separate Débit / Crédit
columns, a movement code, a blank line and a totals line; the workbook has a title row above the
header, real date cells, numbers as numbers and a totals row. A few rows are deliberately bad
(an unknown movement code, an amount with three decimals) so the quarantine path is measured too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20_240_601

LEDGER_HEADER = (
    "N° écriture", "N° locataire", "Date", "Échéance", "Code mvt", "Libellé", "Débit", "Crédit",
    "Motif rejet",
)  # fmt: skip
# code, share of the movements, debit side?, amount range in cents, label (month/year appended)
LEDGER_CODES = (
    ("QUI", 0.30, True, None, "Avis d'échéance"),
    ("REG", 0.28, False, None, "Règlement"),
    ("APL", 0.12, False, (8_000, 42_000), "APL CAF"),
    ("AL", 0.03, False, (5_000, 30_000), "AL CAF"),
    ("CHG", 0.06, True, (2_500, 15_000), "Provision de charges"),
    ("LOY", 0.05, True, None, "Loyer"),
    ("RGC", 0.03, True, (2_000, 260_000), "Régularisation des charges"),
    ("FRA", 0.04, True, (1_000, 6_500), "Frais de relance"),
    ("REJ", 0.02, True, None, "Rejet de prélèvement"),
    ("RBT", 0.01, False, (30_000, 180_000), "Restitution dépôt de garantie"),
    ("AVO", 0.06, False, (500, 25_000), "Avoir"),
)
SEPA_CODES = ("AM04", "AC04", "MS02", "MD06", "AC06", "MS03")
TENANTS = 50_000

WORKS_HEADER = (
    "N° BT", "Prestataire", "Logement", "Catégorie", "Montant engagé HT", "Statut",
    "Date commande", "Date prévue", "Date réalisation", "GTI (h)", "GTR (h)",
)  # fmt: skip
WORKS_CATEGORIES = ("DEP", "RDF", "TXP", "ENT", "DIV")
WORKS_STATUSES = ("Reçu", "Planifié", "En cours", "Terminé", "Facturé", "Annulé")
CONTRACTORS = tuple(
    f"{name} {suffix}"
    for name in ("Dupont", "Martin", "Leroy", "Moreau", "Fournier", "Girard", "Bonnet", "Roux")
    for suffix in ("Plomberie", "Électricité", "Menuiserie", "Peinture", "Multiservices")
)


@dataclass(frozen=True)
class Generated:
    """One generated file and what it holds."""

    path: Path
    data_rows: int  # rows a person would count as data (totals and blank lines excluded)
    bad_rows: int  # rows the hub must send to quarantine
    sha256: str
    reused: bool


def bench_home() -> Path:
    """`$DATAFIX_HOME/bench` (DATAFIX_HOME defaults to ./.datafix), created if missing."""
    home = Path(os.environ.get("DATAFIX_HOME") or ".datafix").expanduser().resolve()
    folder = home / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _code_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _generated(
    folder: str, name: str, params: Any, write: Callable[[Path, Any], None]
) -> Generated:
    """`folder/name` under `bench_home()`, written by `write(path, params)` unless the file there
    was generated for the same key (`params`, which hold `rows` and `bad_rows`, and this module's
    code)."""
    path = bench_home() / folder / name
    path.parent.mkdir(exist_ok=True)
    key = {**asdict(params), "code": _code_hash()}
    cached = _cached(path, key)
    if cached is not None:
        return cached
    write(path, params)
    return _record(path, key, params.rows, params.bad_rows)


def _cached(path: Path, params: dict) -> Generated | None:
    meta = path.with_name(path.name + ".meta.json")
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        recorded = json.loads(meta.read_text())
    except ValueError:
        return None
    if recorded.get("params") != params or recorded.get("sha256") != _sha256(path):
        return None
    return Generated(path, recorded["data_rows"], recorded["bad_rows"], recorded["sha256"], True)


def _record(path: Path, params: dict, data_rows: int, bad_rows: int) -> Generated:
    sha = _sha256(path)
    meta = path.with_name(path.name + ".meta.json")
    meta.write_text(
        json.dumps(
            {"params": params, "sha256": sha, "data_rows": data_rows, "bad_rows": bad_rows},
            indent=2,
        )
    )
    return Generated(path, data_rows, bad_rows, sha, False)


def french_amount(cents: int) -> str:
    """`123456` → `1 234,56` with U+00A0 between thousands (what French Excel writes)."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    return f"{sign}{euros:,}".replace(",", "\u00a0") + f",{rest:02d}"


@dataclass(frozen=True)
class LedgerParams:
    rows: int = 1_000_000
    bad_rows: int = 200
    seed: int = SEED
    tenants: int = TENANTS  # each line's tenant drawn uniformly among them


def ledger_csv(params: LedgerParams = LedgerParams()) -> Generated:
    """`bench/ledger/quittancement_2024-12.csv`, generated unless an identical one exists."""
    return _generated("ledger", "quittancement_2024-12.csv", params, _write_ledger)


def _write_ledger(path: Path, params: LedgerParams) -> None:
    rng = np.random.default_rng(params.seed)
    n = params.rows
    shares = np.array([share for _, share, *_ in LEDGER_CODES])
    code_index = rng.choice(len(LEDGER_CODES), size=n, p=shares / shares.sum())
    tenant = rng.integers(0, params.tenants, size=n)
    rent = rng.integers(32_000, 98_000, size=params.tenants)  # each tenant's rent, in cents
    first = dt.date(2020, 1, 1).toordinal()
    day = np.sort(rng.integers(first, dt.date(2024, 12, 31).toordinal() + 1, size=n))
    free = rng.random(n)
    bad = set(rng.choice(n, size=params.bad_rows, replace=False).tolist())
    dates = {
        ordinal: dt.date.fromordinal(int(ordinal)).strftime("%d/%m/%Y")
        for ordinal in np.unique(np.concatenate([day, day + 5]))
    }
    lines = [";".join(LEDGER_HEADER)]
    total_debit = total_credit = 0
    for row in range(n):
        code, _, debit_side, bounds, label = LEDGER_CODES[code_index[row]]
        if bounds is None:
            cents = int(rent[tenant[row]])
        else:
            cents = bounds[0] + int(free[row] * (bounds[1] - bounds[0]))
        ordinal = int(day[row])
        when = dates[ordinal]
        month = when[3:]
        reason = SEPA_CODES[row % len(SEPA_CODES)] if code == "REJ" else ""
        amount = french_amount(cents)
        if row in bad:
            if row % 2:
                code = "ZZZ"  # unknown movement code: unmapped_value
            else:
                amount = amount + "5"  # three decimals: bad_amount
        elif debit_side:
            total_debit += cents
        else:
            total_credit += cents
        lines.append(
            f"Q{10_000_001 + row};T{100_000 + int(tenant[row])};{when};"
            f"{dates[ordinal + 5] if debit_side else ''};{code};{label} {month};"
            f"{amount if debit_side else ''};{'' if debit_side else amount};{reason}"
        )
    lines.append("")
    lines.append(f"Total;;;;;;{french_amount(total_debit)};{french_amount(total_credit)};")
    with path.open("w", encoding="cp1252", newline="") as stream:
        stream.write("\r\n".join(lines) + "\r\n")


@dataclass(frozen=True)
class WorksParams:
    rows: int = 100_000
    bad_rows: int = 20
    seed: int = SEED + 1


def works_xlsx(params: WorksParams = WorksParams(), folder: str = "works") -> Generated:
    """`bench/<folder>/commandes_2024-12.xlsx` (openpyxl write-only) unless an identical one
    exists."""
    return _generated(folder, "commandes_2024-12.xlsx", params, _write_works)


def _write_works(path: Path, params: WorksParams) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    rng = np.random.default_rng(params.seed)
    n = params.rows
    category = rng.integers(0, len(WORKS_CATEGORIES), size=n)
    status = rng.choice(len(WORKS_STATUSES), size=n, p=[0.1, 0.15, 0.15, 0.3, 0.25, 0.05])
    contractor = rng.integers(0, len(CONTRACTORS), size=n)
    dwelling = rng.integers(0, 20_000, size=n)
    amount = rng.integers(5_000, 1_500_000, size=n)  # cents
    first = dt.date(2021, 1, 1).toordinal()
    ordered = rng.integers(first, dt.date(2024, 12, 15).toordinal(), size=n)
    planned_after = rng.integers(1, 30, size=n)
    done_after = rng.integers(0, 60, size=n)
    gti = rng.choice([4, 24, 48, 72], size=n)
    bad = set(rng.choice(n, size=params.bad_rows, replace=False).tolist())
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Commandes")
    title = WriteOnlyCell(sheet, value="Bons de travaux — export du 31/12/2024")
    title.font = Font(bold=True)
    sheet.append([title])
    sheet.append(list(WORKS_HEADER))
    total = 0
    for row in range(n):
        state = WORKS_STATUSES[status[row]]
        ordered_on = dt.date.fromordinal(int(ordered[row]))
        planned = (
            dt.date.fromordinal(int(ordered[row] + planned_after[row])) if status[row] else None
        )
        done = (
            dt.date.fromordinal(int(ordered[row] + planned_after[row] + done_after[row]))
            if state in ("Terminé", "Facturé")
            else None
        )
        code = WORKS_CATEGORIES[category[row]]
        if row in bad:
            code = "XXX"  # unknown category: unmapped_value
        else:
            total += int(amount[row])
        sheet.append(
            [
                f"BT{300_000 + row}",
                CONTRACTORS[contractor[row]],
                f"LGT-{dwelling[row]:05d}",
                code,
                int(amount[row]) / 100,
                state,
                ordered_on,
                planned,
                done,
                int(gti[row]),
                int(gti[row]) * 2,
            ]
        )
    sheet.append(["Total", None, None, None, total / 100])
    workbook.save(path)


if __name__ == "__main__":
    for generated in (ledger_csv(), works_xlsx()):
        state = "reused" if generated.reused else "written"
        print(f"{generated.path} ({generated.data_rows:,} rows, {state})")
