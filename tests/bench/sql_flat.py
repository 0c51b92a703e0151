"""Flat memory of a SQL source, whole process: `datafix run` on a landlord whose ledger is a
PostgreSQL table, at 1M rows and at 250k rows (issue 13: peak RSS at 1M ≤ 1.2× that at 250k).

The tables are the bench ledger (tests/bench/generate.py's writer, the file the `process` group
reads) copied into PostgreSQL as text columns named like the file's header (`N° écriture`,
`Débit` …), in the database `datafix_bench_sql` on the machine's server (127.0.0.1:5432, user
postgres): `ledger_1000000` and `ledger_250000`, made once and reused while their version mark
matches. The datafix is bench-ledger.yaml with its source turned into `kind: sql` on that
table, so the mapping, the contract and the load are those of the file ledger.

Each run is `datafix run <landlord> --no-push` in a fresh DATAFIX_HOME (SQLite warehouse),
timed from outside by `process.timed` (peak RSS of the process tree's largest process). With
`--tree DIR`, the command runs the hub's code found in DIR (a checkout of another commit) on
this virtual environment: the figure before a change, measured the same way.

`python tests/bench/sql_flat.py [--tree DIR]` prints one JSON line; `measure()` gives the dict
the `flat` group of process.py shows.

Measured on the 2-core machine (issue 13), peak RSS 250k → 1M rows: before the sql source
streamed (commit 83ca66d, read whole), 544 → 702 MB (1.29x); streamed, 524 → 558 MB (1.07x);
CPU seconds unchanged (14.7 / 33.4 s before, 14.2 / 33.8 s after).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for folder in (REPO, HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import generate  # noqa: E402
import process  # noqa: E402

HOST, PORT, USER = process.PG_HOST, process.PG_PORT, process.PG_USER
DATABASE = "datafix_bench_sql"
BIG_ROWS = 1_000_000
SMALL_ROWS = 250_000
FLAT_TARGET = 1.2  # peak RSS at BIG_ROWS / peak RSS at SMALL_ROWS
VERSION = "datafix sql flat bench v1"  # change it when the tables below change


def _url(database: str = DATABASE) -> str:
    return f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{database}"


def _connect(database: str) -> Any:
    import psycopg

    return psycopg.connect(host=HOST, port=PORT, user=USER, dbname=database, autocommit=True)


def prepare_table(rows: int) -> process.Ledger:
    """The ledger of `rows` lines (generated as a CSV, then copied) as table `ledger_<rows>`,
    and the landlord whose datafix reads it; the table is reused while its mark matches."""
    params = generate.LedgerParams(rows=rows, seed=generate.SEED + rows)
    made = generate._generated("sqlflat", f"ledger_{rows}.csv", params, generate._write_ledger)
    table = f"ledger_{rows}"
    from psycopg import sql

    mark = f"{VERSION} {made.sha256}"
    with _connect("postgres") as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if found.fetchone() is None:
            admin.execute(f"CREATE DATABASE {DATABASE}")
    with _connect(DATABASE) as connection:
        described = connection.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')", (table,)
        ).fetchone()
        if described is None or described[0] != mark:
            _copy(connection, table, made.path)
            comment = sql.SQL("COMMENT ON TABLE {} IS {}").format(
                sql.Identifier(table), sql.Literal(mark)
            )
            connection.execute(comment)
    landlord = f"bench-sql-{rows}"
    datafixes = generate.bench_home() / "sqlflat" / f"datafixes-{rows}"
    _write_datafix(datafixes, landlord, table)
    return process.Ledger(landlord, made.path, made.data_rows, made.bad_rows, datafixes, "sqlflat")


def _copy(connection: Any, table: str, path: Path) -> None:
    """The CSV's data lines (not the blank and `Total` lines) into `table`, every column text."""
    import csv

    with path.open(encoding="cp1252", newline="") as stream:
        reader = csv.reader(stream, delimiter=";")
        header = next(reader)
        columns = ", ".join(f'"{name}" text' for name in header)
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(f'CREATE TABLE {table} ({columns}, PRIMARY KEY ("{header[0]}"))')
        names = ", ".join(f'"{name}"' for name in header)
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
        ):
            for row in reader:
                if len(row) == len(header) and row[0] and row[0] != "Total":
                    copy.write_row(row)
        connection.execute(f"ANALYZE {table}")


def _write_datafix(folder: Path, landlord: str, table: str) -> None:
    text = (HERE / "datafixes" / "bench-ledger.yaml").read_text()
    source = (
        "  quittancement:\n"
        "    kind: csv\n"
        '    path: "quittancement_*.csv"\n'
        "    encoding: cp1252\n"
        '    separator: ";"\n'
    )
    sql = (
        "  quittancement:\n"
        "    kind: sql\n"
        f'    url: "{_url()}"\n'
        f"    table: {table}\n"
        '    key: ["N° écriture"]\n'
    )
    replaced = text.replace("  id: bench-ledger\n", f"  id: {landlord}\n").replace(source, sql)
    if "kind: sql" not in replaced or landlord not in replaced:
        raise RuntimeError("bench-ledger.yaml changed shape: cannot derive the SQL datafix")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{landlord}.yaml"
    if not target.is_file() or target.read_text() != replaced:
        target.write_text(replaced)


def run_once(ledger: process.Ledger, tree: Path | None = None) -> dict:
    """`datafix run <landlord> --no-push` in a fresh home (the code of `tree` when given)."""
    name = f"sql-{ledger.landlord}" + ("-before" if tree else "")
    home = process.fresh_home(name, [])
    env = process.hub_env(home, ledger.datafixes)
    command = [process.DATAFIX_COMMAND, "run", ledger.landlord, "--no-push"]
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
        # -P: not the working directory (this checkout) before PYTHONPATH on sys.path
        command = [sys.executable, "-P", "-c", "from pipelines.cli import main; main()"]
        command += ["run", ledger.landlord, "--no-push"]
    result = process.timed(command, env, home / "logs" / "first")
    # no quarantine expected from the file's bad lines only: the SQL rows are the same lines
    return process._count_checks(result, process._sqlite_url(home), [ledger])


def measure(tree: Path | None = None) -> dict:
    """Peak RSS of the first run at BIG_ROWS and at SMALL_ROWS, and their ratio."""
    results = {}
    for rows in (SMALL_ROWS, BIG_ROWS):
        ledger = prepare_table(rows)
        results[rows] = run_once(ledger, tree)
        process._show(f"sql_{rows}", 1, results[rows])
    small, big = results[SMALL_ROWS], results[BIG_ROWS]
    ratio = None
    if "error" not in small and "error" not in big:
        ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
    return {"small": small, "big": big, "ratio": ratio, "target": FLAT_TARGET}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, help="the hub's code to run (another checkout)")
    options = parser.parse_args()
    report = measure(options.tree)
    trimmed = {
        key: {k: v for k, v in value.items() if k != "stdout"} if isinstance(value, dict) else value
        for key, value in report.items()
    }
    print(json.dumps(trimmed, default=str))


if __name__ == "__main__":
    main()
