"""The naive baseline of `make bench` (tests/bench/process.py): what a person would write to
load the bench ledger CSV into a database with pandas, run as its own process.

`python naive_load.py LEDGER.csv SQLALCHEMY_URL [--method multi]`: pandas `read_csv` (the French
export's `;`, cp1252, decimal comma and U+00A0 thousands, as pandas can), the totals line
dropped, `to_datetime` of the two date columns, the amounts made numbers (`1 234,56`: pandas'
C reader leaves them text), `to_sql` through a SQLAlchemy engine into a table `ledger` of a fresh
database. No mapping, no lineage, no quarantine, no index. Prints one JSON line: the rows read.
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd
import sqlalchemy as sa

DATE_COLUMNS = ("Date", "Échéance")
AMOUNT_COLUMNS = ("Débit", "Crédit")
# a column empty in a whole chunk would be read as float, then clash with the text of the others
TEXT_DTYPES = dict.fromkeys(
    ("N° écriture", "N° locataire", "Code mvt", "Libellé", "Motif rejet"), "string"
)
TOTALS = "Total"  # the export's last line: column sums, not a movement


def amounts(column: pd.Series) -> pd.Series:
    """`1 234,56` as a number: pandas' C reader takes decimal=",", not U+00A0 as thousands
    separator (one byte only, and cp1252's A0 is two in UTF-8), so such a column stays text."""
    if pd.api.types.is_numeric_dtype(column):
        return column
    return pd.to_numeric(column.str.replace("\u00a0", "").str.replace(",", "."))


MULTI_CHUNK_ROWS = 5_000  # 9 columns: 45,000 parameters per INSERT, under PostgreSQL's 65,535


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ledger")
    parser.add_argument("url")
    parser.add_argument("--method", choices=("none", "multi"), default="none")
    args = parser.parse_args()
    frame = pd.read_csv(
        args.ledger,
        sep=";",
        encoding="cp1252",
        decimal=",",
        thousands="\u00a0",
        dtype=TEXT_DTYPES,
    )
    frame = frame[frame["N° écriture"] != TOTALS]
    for column in DATE_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], format="%d/%m/%Y")
    for column in AMOUNT_COLUMNS:
        frame[column] = amounts(frame[column])
    engine = sa.create_engine(args.url)
    try:
        if args.method == "multi":
            frame.to_sql("ledger", engine, index=False, method="multi", chunksize=MULTI_CHUNK_ROWS)
        else:
            frame.to_sql("ledger", engine, index=False)
    finally:
        engine.dispose()
    print(json.dumps({"rows_read": len(frame)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
