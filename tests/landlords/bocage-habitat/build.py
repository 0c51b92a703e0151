"""Regenerate Bocage Habitat's workbook: `grand-livre.fods`, then `inbox/grand-livre.xlsx`.

Bocage Habitat keeps its rent accounts in a LibreOffice Calc workbook, exported as .xlsx for the
hub each night. Its accountant's workbook has:

- "Grand livre": a title block (landlord, "Extraction du …", an empty row), a two-row header
  whose upper row is merged ("Pièce" over both rows, "Locataire" over Compte + Nom, "Mouvement"
  over Date + Code + Libellé, "Montant" over Débit + Crédit), one row per movement with the
  amount in Débit or in Crédit, and a "Total" row (SUM formulas, which leave the amounts typed
  as text out, as Calc does). Most dates are date cells and most amounts number or currency
  cells, but some were typed by hand as French text ("05/03/2026", "1 204,50", "12,00 €"), and
  two such cells are wrong ("30/02/2026", "1O4,50").
- "Prélèvements rejetés": the rejected direct debits, one-row header; one rejection was posted
  with the piece number of the debit it cancels, a number the first sheet already has.
- "Locataires": the tenant accounts.

The flat ODF XML is written by hand (seeded `random`: the same file every time), then converted
by LibreOffice (`soffice --headless --convert-to xlsx`, Debian's `libreoffice-calc-nogui`). Both
files are committed; the test reads the committed .xlsx, so CI needs no LibreOffice.

    .venv/bin/python tests/landlords/bocage-habitat/build.py
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import subprocess
import tempfile
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
FODS = HERE / "grand-livre.fods"
INBOX = HERE / "inbox"

LANDLORD = "Bocage Habitat"
EXTRACTED = dt.datetime(2026, 3, 31, 6, 12)
MONTHS = [(2025, 10), (2025, 11), (2025, 12), (2026, 1), (2026, 2), (2026, 3)]
NBSP, NNBSP = "\u00a0", "\u202f"

SURNAMES = [
    "Le Gall", "Morvan", "Guérin", "Renaud", "Lebrun", "Fournier", "Cadiou", "Hervé", "Pichon",
    "Tanguy", "Boucher", "Lemoine", "Gautier", "Perrin", "Riou", "Besnard", "Chevalier", "Marchand",
    "Jouan", "Daniel", "Leroux", "Brient", "Poirier", "Collet", "Guillou", "Texier", "Huet",
    "Barbier", "Charpentier", "Roussel",
]  # fmt: skip
FIRST_NAMES = [
    "Annick", "Yannick", "Sophie", "Karim", "Maëlle", "Jean-Yves", "Nadia", "Loïc", "Claire",
    "Mehdi", "Gwenaëlle", "Thierry", "Inès", "Pascal", "Solène",
]  # fmt: skip
COMMUNES = ["Vire", "Flers", "Condé", "Tinchebray", "Domfront"]
REJECT_REASONS = ["AM04", "AM04", "MD06", "AC04", "MS02", "AM04", "MS03"]


def euros(cents: int) -> Decimal:
    return Decimal(cents) / 100


def french(cents: int, thousands: str = " ") -> str:
    """`120450` → `1 204,50` (thousands separated by `thousands`)."""
    whole, rest = divmod(cents, 100)
    return f"{whole:,}".replace(",", thousands) + f",{rest:02d}"


# ---------------------------------------------------------------------------------------------
# The accounting data


def tenants(rng: random.Random) -> list[dict]:
    people = []
    for number in range(30):
        move_in = dt.date(2012, 1, 1) + dt.timedelta(days=rng.randrange(0, 4500))
        people.append(
            {
                "account": f"4110{412 + number * 7:04d}",
                "name": f"{rng.choice(SURNAMES).upper()} {rng.choice(FIRST_NAMES)}",
                "dwelling": f"{rng.choice(COMMUNES)[:3].upper()}-{rng.randrange(1, 60):03d}",
                "move_in": move_in,
                "move_out": None,
                "rent": rng.randrange(28000, 61000, 5),  # cents: rent + charges called
                "aid": rng.randrange(9000, 26000, 5) if rng.random() < 0.35 else 0,
                "method": rng.choice(["PRL", "PRL", "PRL", "VIR", "CHQ"]),
            }
        )
    # two tenants left during the period: their account stops after their last month
    people[11]["move_out"] = dt.date(2025, 12, 31)
    people[23]["move_out"] = dt.date(2026, 1, 31)
    return people


def movements(rng: random.Random, people: list[dict]) -> list[dict]:
    """Every movement of the period (no piece number yet): date, account, code, label, cents
    (positive debit, negative credit)."""
    rows: list[dict] = []
    for year, month in MONTHS:
        first = dt.date(year, month, 1)
        label_month = first.strftime("%m/%Y")
        for person in people:
            if person["move_out"] and person["move_out"] < first:
                continue
            account, rent = person["account"], person["rent"]
            rows.append(
                dict(
                    date=first,
                    account=account,
                    code="QUI",
                    label=f"Quittance {label_month}",
                    cents=rent,
                )
            )
            if person["aid"]:
                rows.append(
                    dict(
                        date=first.replace(day=5),
                        account=account,
                        code="APL",
                        label=f"APL CAF {label_month}",
                        cents=-person["aid"],
                    )
                )
            due = rent - person["aid"]
            if rng.random() < 0.86:  # the month's payment (a few tenants pay late or not at all)
                method = person["method"]
                paid = due if due < 10000 or rng.random() < 0.8 else rng.randrange(5000, due, 5)
                day = 10 if method == "PRL" else rng.randrange(3, 28)
                label = {"PRL": "Prélèvement", "VIR": "Virement reçu", "CHQ": "Chèque n°"}[method]
                if method == "CHQ":
                    label += f" {rng.randrange(1000000, 9999999)}"
                rows.append(
                    dict(
                        date=first.replace(day=day),
                        account=account,
                        code=method,
                        label=label,
                        cents=-paid,
                    )
                )
            if rng.random() < 0.025:
                rows.append(
                    dict(
                        date=first.replace(day=rng.randrange(12, 28)),
                        account=account,
                        code="FRA",
                        label="Frais de relance",
                        cents=rng.choice([1200, 1500]),
                    )
                )
        if (year, month) == (2026, 3):  # yearly charge regularisation, either way
            for person in rng.sample(people[:11] + people[12:23] + people[24:], 8):
                cents = rng.randrange(-18000, 26000, 5) or 500
                rows.append(
                    dict(
                        date=dt.date(2026, 3, 20),
                        account=person["account"],
                        code="RGC",
                        label="Régularisation charges 2025",
                        cents=cents,
                    )
                )
    # piece numbers follow the posting order (date, then account)
    rows.sort(key=lambda row: (row["date"], row["account"], row["code"]))
    for number, row in enumerate(rows, start=1):
        row["piece"] = f"P26-{number:05d}"
    return rows


def rejections(rng: random.Random, ledger: list[dict]) -> list[dict]:
    """15 rejected direct debits, each cancelling one `PRL` payment of the ledger."""
    debits = [row for row in ledger if row["code"] == "PRL"]
    chosen = sorted(rng.sample(debits, 15), key=lambda row: (row["date"], row["account"]))
    rows = []
    for number, debit in enumerate(chosen, start=1):
        rows.append(
            {
                "piece": f"RJ-{number:04d}",
                "account": debit["account"],
                "date": debit["date"] + dt.timedelta(days=rng.randrange(3, 9)),
                "cents": -debit["cents"],
                "reason": rng.choice(REJECT_REASONS),
                "label": f"Rejet prélèvement {debit['piece']}",
            }
        )
    # posted by hand with the number of the debit it cancels: the same key in both sheets
    rows[6]["piece"] = chosen[6]["piece"]
    return rows


# ---------------------------------------------------------------------------------------------
# Flat ODF


def text_cell(value: str, style: str | None = None, extra: str = "") -> str:
    styled = f' table:style-name="{style}"' if style else ""
    return (
        f'<table:table-cell{styled}{extra} office:value-type="string" calcext:value-type="string">'
        f"<text:p>{escape(value)}</text:p></table:table-cell>"
    )


def date_cell(value: dt.date) -> str:
    return (
        f'<table:table-cell table:style-name="ceDate" office:value-type="date"'
        f' office:date-value="{value.isoformat()}" calcext:value-type="date">'
        f"<text:p>{value.strftime('%d/%m/%Y')}</text:p></table:table-cell>"
    )


def amount_cell(cents: int, currency: bool, formula: str | None = None) -> str:
    value = euros(cents)
    formula_attr = f' table:formula="{escape(formula)}"' if formula else ""
    if currency:
        return (
            f'<table:table-cell table:style-name="ceEuro"{formula_attr}'
            f' office:value-type="currency" office:currency="EUR" office:value="{value}"'
            f' calcext:value-type="currency"><text:p>{french(cents)} €</text:p>'
            "</table:table-cell>"
        )
    return (
        f'<table:table-cell table:style-name="ceNum"{formula_attr} office:value-type="float"'
        f' office:value="{value}" calcext:value-type="float"><text:p>{french(cents)}</text:p>'
        "</table:table-cell>"
    )


EMPTY = "<table:table-cell/>"
COVERED = "<table:covered-table-cell/>"


def row(*cells: str) -> str:
    return "<table:table-row>" + "".join(cells) + "</table:table-row>"


def typed_date(rng: random.Random, value: dt.date) -> str:
    """A date cell, or now and then the date typed by hand as text."""
    if rng.random() < 0.07:
        fmt = "%d/%m/%Y" if rng.random() < 0.75 else "%d/%m/%y"
        return text_cell(value.strftime(fmt))
    return date_cell(value)


def typed_amount(rng: random.Random, cents: int) -> str:
    """A number or currency cell, or now and then the amount typed by hand as French text."""
    draw = rng.random()
    if draw < 0.025:
        return text_cell(french(cents, rng.choice([" ", NBSP, NNBSP])))  # "1 204,50"
    if draw < 0.05:
        return text_cell(f"{french(cents, ' ')} €")  # "12,00 €"
    return amount_cell(cents, currency=draw < 0.3)


def grand_livre(rng: random.Random, ledger: list[dict]) -> str:
    entries = sorted(ledger, key=lambda r: (r["account"], r["date"], r["piece"]))
    names = {row["account"]: row["name"] for row in PEOPLE}
    rows = [
        row(
            text_cell(
                f"{LANDLORD} — Grand livre des comptes locataires",
                "ceTitle",
                ' table:number-columns-spanned="8" table:number-rows-spanned="1"',
            ),
            *[COVERED] * 7,
        ),
        row(text_cell(f"Extraction du {EXTRACTED:%d/%m/%Y} à {EXTRACTED:%H:%M}")),
        row(EMPTY),
        row(
            text_cell(
                "Pièce", "ceHead", ' table:number-columns-spanned="1" table:number-rows-spanned="2"'
            ),
            text_cell(
                "Locataire",
                "ceHead",
                ' table:number-columns-spanned="2" table:number-rows-spanned="1"',
            ),
            COVERED,
            text_cell(
                "Mouvement",
                "ceHead",
                ' table:number-columns-spanned="3" table:number-rows-spanned="1"',
            ),
            COVERED,
            COVERED,
            text_cell(
                "Montant",
                "ceHead",
                ' table:number-columns-spanned="2" table:number-rows-spanned="1"',
            ),
            COVERED,
        ),
        row(
            COVERED,
            *[
                text_cell(label, "ceHead")
                for label in ("Compte", "Nom", "Date", "Code", "Libellé", "Débit", "Crédit")
            ],
        ),
    ]
    first_line = len(rows) + 1
    totals = {"debit": 0, "credit": 0}  # what Calc's SUM adds up: number cells, never text
    for entry in entries:
        cents = entry["cents"]
        amount = typed_amount(rng, abs(cents))
        debit, credit = (amount, EMPTY) if cents > 0 else (EMPTY, amount)
        date = typed_date(rng, entry["date"])
        if entry["piece"] == BAD_DATE_PIECE:
            date = text_cell("30/02/2026")  # typed by hand: a day that does not exist
        if entry["piece"] == BAD_AMOUNT_PIECE:
            credit = text_cell("1O4,50")  # a letter O for a zero
        for side, cell in (("debit", debit), ("credit", credit)):
            if cell != EMPTY and 'office:value-type="string"' not in cell:
                totals[side] += abs(cents)
        rows.append(
            row(
                text_cell(entry["piece"]),
                text_cell(entry["account"]),
                text_cell(names[entry["account"]]),
                date,
                text_cell(entry["code"]),
                text_cell(entry["label"]),
                debit,
                credit,
            )
        )
    last_line = len(rows)
    debits, credits = totals["debit"], totals["credit"]
    rows.append(
        row(
            text_cell("Total", "ceHead"),
            EMPTY,
            EMPTY,
            EMPTY,
            EMPTY,
            EMPTY,
            amount_cell(debits, currency=True, formula=f"of:=SUM([.G{first_line}:.G{last_line}])"),
            amount_cell(credits, currency=True, formula=f"of:=SUM([.H{first_line}:.H{last_line}])"),
        )
    )
    return table("Grand livre", 8, rows)


def rejets(rng: random.Random, rejected: list[dict]) -> str:
    labels = ("N° pièce", "Compte", "Date du rejet", "Montant", "Motif", "Libellé")
    rows = [row(*[text_cell(label, "ceHead") for label in labels])]
    for number, entry in enumerate(rejected):
        date = (
            text_cell(entry["date"].strftime("%d/%m/%Y"))
            if number == 3
            else date_cell(entry["date"])
        )
        amount = (
            text_cell(f"{french(entry['cents'])} €")
            if number == 9
            else amount_cell(entry["cents"], currency=True)
        )
        rows.append(
            row(
                text_cell(entry["piece"]),
                text_cell(entry["account"]),
                date,
                amount,
                text_cell(entry["reason"]),
                text_cell(entry["label"]),
            )
        )
    return table("Prélèvements rejetés", 6, rows)


def locataires(people: list[dict]) -> str:
    labels = ("Compte", "Nom", "Logement", "Entrée", "Sortie")
    rows = [row(*[text_cell(label, "ceHead") for label in labels])]
    for person in people:
        rows.append(
            row(
                text_cell(person["account"]),
                text_cell(person["name"]),
                text_cell(person["dwelling"]),
                date_cell(person["move_in"]),
                date_cell(person["move_out"]) if person["move_out"] else EMPTY,
            )
        )
    return table("Locataires", 5, rows)


def table(name: str, width: int, rows: list[str]) -> str:
    return (
        f'<table:table table:name="{escape(name)}">'
        f'<table:table-column table:number-columns-repeated="{width}"/>'
        + "\n".join(rows)
        + "</table:table>"
    )


HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:number="urn:oasis:names:tc:opendocument:xmlns:datastyle:1.0"
 xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"
 xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2"
 xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"
 office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.spreadsheet">
<office:automatic-styles>
 <number:date-style style:name="NDate">
  <number:day number:style="long"/><number:text>/</number:text>
  <number:month number:style="long"/><number:text>/</number:text>
  <number:year number:style="long"/>
 </number:date-style>
 <number:number-style style:name="NNum">
  <number:number number:decimal-places="2" number:min-decimal-places="2"
   number:min-integer-digits="1" number:grouping="true"/>
 </number:number-style>
 <number:currency-style style:name="NEuro">
  <number:number number:decimal-places="2" number:min-decimal-places="2"
   number:min-integer-digits="1" number:grouping="true"/>
  <number:text> </number:text>
  <number:currency-symbol number:language="fr" number:country="FR">€</number:currency-symbol>
 </number:currency-style>
 <style:style style:name="ceDate" style:family="table-cell" style:data-style-name="NDate"/>
 <style:style style:name="ceNum" style:family="table-cell" style:data-style-name="NNum"/>
 <style:style style:name="ceEuro" style:family="table-cell" style:data-style-name="NEuro"/>
 <style:style style:name="ceHead" style:family="table-cell">
  <style:text-properties fo:font-weight="bold"/>
 </style:style>
 <style:style style:name="ceTitle" style:family="table-cell">
  <style:text-properties fo:font-size="14pt" fo:font-weight="bold"/>
 </style:style>
</office:automatic-styles>
<office:body>
<office:spreadsheet>
"""
TAIL = "</office:spreadsheet>\n</office:body>\n</office:document>\n"

RNG = random.Random(20260331)
PEOPLE = tenants(RNG)
LEDGER = movements(RNG, PEOPLE)
REJECTED = rejections(RNG, LEDGER)
# two cells typed wrong by hand, on rows that have nothing else wrong
BAD_DATE_PIECE = next(r["piece"] for r in LEDGER if r["code"] == "VIR" and r["date"].month == 2)
BAD_AMOUNT_PIECE = next(r["piece"] for r in LEDGER if r["code"] == "CHQ" and r["date"].month == 3)


def fods() -> str:
    rng = random.Random(7)
    return HEAD + grand_livre(rng, LEDGER) + rejets(rng, REJECTED) + locataires(PEOPLE) + TAIL


def convert(source: Path, outdir: Path) -> Path:
    """`source` converted to .xlsx by LibreOffice, with a throwaway user profile."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        raise SystemExit("LibreOffice is needed: apt-get install libreoffice-calc-nogui")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                soffice,
                f"-env:UserInstallation=file://{profile}",
                "--headless",
                "--convert-to",
                "xlsx:Calc MS Excel 2007 XML",
                "--outdir",
                str(outdir),
                str(source),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    produced = outdir / f"{source.stem}.xlsx"
    if not produced.is_file():
        raise SystemExit(f"LibreOffice did not write {produced}")
    return produced


def main() -> None:
    FODS.write_text(fods(), encoding="utf-8")
    INBOX.mkdir(exist_ok=True)
    print(convert(FODS, INBOX))


if __name__ == "__main__":
    main()
