"""The dlt baseline of `make bench` (tests/bench/process.py): the bench ledger CSV through a
chunked pandas source into dlt's `sqlalchemy` destination, on a fresh SQLite file.

Runs with the Python of the bench's own dlt virtual environment (dlt is not a dependency of the
hub): `dlt-venv/bin/python dlt_load.py LEDGER.csv DB.sqlite WORKDIR`. What a person would write
with dlt: read_csv in chunks (the French export's `;`, cp1252, decimal comma and U+00A0
thousands, as pandas can), the totals line dropped, the two date columns through `to_datetime`,
the amounts made numbers (as tests/bench/naive_load.py does), one resource, one `pipeline.run`.
Prints one JSON line: the rows in the table after the load, and dlt's version.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import dlt
import pandas as pd

# the naive script's reading rules (naive_load.py beside this file: the script's directory is on
# the path)
from naive_load import AMOUNT_COLUMNS, DATE_COLUMNS, TEXT_DTYPES, TOTALS, amounts

CHUNK_ROWS = 100_000


def main(ledger: Path, db: Path, workdir: Path) -> int:
    @dlt.resource(name="ledger", write_disposition="append")
    def ledger_rows():  # a dlt resource: a generator of frames
        for chunk in pd.read_csv(
            ledger,
            sep=";",
            encoding="cp1252",
            decimal=",",
            thousands="\u00a0",
            dtype=TEXT_DTYPES,
            chunksize=CHUNK_ROWS,
        ):
            chunk = chunk[chunk["N° écriture"] != TOTALS]
            if chunk.empty:  # the last chunk may hold the totals line alone
                continue
            for column in DATE_COLUMNS:
                chunk[column] = pd.to_datetime(chunk[column], format="%d/%m/%Y")
            for column in AMOUNT_COLUMNS:
                chunk[column] = amounts(chunk[column])
            yield chunk

    pipeline = dlt.pipeline(
        pipeline_name="bench_ledger",
        destination=dlt.destinations.sqlalchemy(credentials=f"sqlite:///{db}"),
        dataset_name="main",
        pipelines_dir=str(workdir),
    )
    info = pipeline.run(ledger_rows())
    info.raise_on_failed_jobs()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
    print(json.dumps({"rows_loaded": rows, "dlt": dlt.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
