"""Bench of the ODBC reader: a full pull of a PostgreSQL ledger table over pyodbc (`read_odbc`)
beside `pandas.read_sql` over SQLAlchemy (psycopg), and the peak-memory ratio 1M rows / 100k rows.

The tables live in the database `datafix_bench` on the machine's PostgreSQL (127.0.0.1:5432,
user postgres): `ledger_1000000` (ten ledger-like columns: ids, piece numbers, accented names,
numeric(12,2) amounts, dates, timestamps, booleans, text with NULLs) and `ledger_<n>` copies of
its first n rows. They are made once and reused while their version mark matches.

Every measurement runs in a fresh subprocess (`python tests/bench/odbc_pull.py measure odbc
1000000` prints one JSON line), so its peak RSS is its own; the libraries every kind needs are
imported before the clock starts. Kinds:
- `odbc`: `connectors.sql.odbc.read_odbc(table=…)`, the text RawTable the hub uses;
- `read_sql`: `connectors.sql.client.read_sql(table=…)`, the same RawTable over SQLAlchemy;
- `pandas`: `pandas.read_sql(SELECT * … ORDER BY id)` over SQLAlchemy + psycopg (typed
  columns, no text conversion, no lineage): the naive baseline.

For tests/bench/run.py: `prepare()`, `measure_odbc(rows)`, `measure_read_sql(rows)`,
`measure_pandas(rows)`, `memory_ratio()` and `run_all()` return plain dicts.
`python tests/bench/odbc_pull.py` runs them all and prints a table and the JSON.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HOST = os.environ.get("DATAFIX_BENCH_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("DATAFIX_BENCH_PG_PORT", "5432"))
USER = os.environ.get("DATAFIX_BENCH_PG_USER", "postgres")
DATABASE = "datafix_bench"
ODBC_DRIVER = "PostgreSQL Unicode"
FULL_ROWS = 1_000_000
SMALL_ROWS = 100_000
VERSION = "datafix odbc bench v1"  # change it when the generator below changes
MEMORY_RATIO_TARGET = 1.3  # peak RSS at 1M rows / peak RSS at 100k rows
KINDS = ("odbc", "odbc_stream", "read_sql", "pandas")

GENERATE = f"""
CREATE TABLE ledger_{FULL_ROWS} (
    id bigint PRIMARY KEY, piece varchar(13) NOT NULL, ligne integer NOT NULL,
    bail varchar(12) NOT NULL, locataire text, montant numeric(12, 2) NOT NULL,
    date_piece date NOT NULL, saisie_le timestamp NOT NULL, lettre boolean, libelle text
);
INSERT INTO ledger_{FULL_ROWS}
SELECT n,
       'FA' || lpad((n / 3)::text, 8, '0'),
       n % 3 + 1,
       'B' || lpad((n % 40000)::text, 6, '0'),
       (ARRAY['Éléonore Dupré', 'Zoé Çelik', 'O''Brien', 'Jean Martin', 'Chloé Lefèvre'])
           [n % 5 + 1] || ' ' || (n % 997),
       ((n::bigint * 7919) % 200000 - 50000) / 100.0,
       DATE '2024-01-01' + (n % 366),
       TIMESTAMP '2024-01-01 08:00:00' + (n % 86400) * INTERVAL '1 second'
           + (n % 366) * INTERVAL '1 day',
       CASE WHEN n % 7 = 0 THEN NULL ELSE n % 2 = 0 END,
       CASE WHEN n % 11 = 0 THEN NULL
            ELSE 'Loyer et charges — échéance ' || to_char(DATE '2024-01-01' + (n % 366), 'MM/YYYY')
       END
FROM generate_series(1, {FULL_ROWS}) AS n;
"""


def table_name(rows: int) -> str:
    return f"ledger_{rows}"


def odbc_connection_string() -> str:
    return f"Driver={{{ODBC_DRIVER}}};Server={HOST};Port={PORT};Database={DATABASE};UID={USER}"


def sqlalchemy_url() -> str:
    return f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{DATABASE}"


# --------------------------------------------------------------------------------------------
# The tables, made once


def _connect(database: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=HOST, port=PORT, user=USER, dbname=database, autocommit=True, connect_timeout=5
    )


def _marked(connection: Any, table: str, rows: int) -> bool:
    found = connection.execute(
        "SELECT obj_description(to_regclass(%s), 'pg_class')", (table,)
    ).fetchone()
    if not found or found[0] != f"{VERSION}, {rows} rows":
        return False
    return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == rows


def prepare(rows: int = FULL_ROWS) -> dict:
    """Create (or reuse) `datafix_bench.ledger_<rows>`; the 1M-row table first."""
    if not 1 <= rows <= FULL_ROWS:
        raise ValueError(f"rows must be between 1 and {FULL_ROWS:,}")
    from psycopg import sql

    started = time.perf_counter()
    with _connect("postgres") as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    made = []
    with _connect(DATABASE) as connection:
        for size in dict.fromkeys((FULL_ROWS, rows)):
            table = table_name(size)
            if _marked(connection, table, size):
                continue
            connection.execute(f"DROP TABLE IF EXISTS {table}")
            if size == FULL_ROWS:
                connection.execute(GENERATE)
            else:
                connection.execute(
                    f"CREATE TABLE {table} AS SELECT * FROM {table_name(FULL_ROWS)}"
                    f" WHERE id <= {size}"
                )
                connection.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
            connection.execute(f"COMMENT ON TABLE {table} IS '{VERSION}, {size} rows'")
            connection.execute(f"VACUUM ANALYZE {table}")
            made.append(table)
    return {
        "database": DATABASE,
        "table": table_name(rows),
        "created": made,
        "seconds": round(time.perf_counter() - started, 2),
    }


# --------------------------------------------------------------------------------------------
# One measurement, in this process


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _frame_mb(frame: Any, *series: Any) -> float:
    size = int(frame.memory_usage(index=False, deep=True).sum())
    size += sum(int(part.memory_usage(index=False, deep=True)) for part in series)
    return size / 2**20


def measure(kind: str, rows: int) -> dict:
    """Pull `ledger_<rows>` once with `kind`, here; the figures as a dict."""
    import gc

    import pandas as pd
    import pyodbc  # noqa: F401  (every kind imports the same libraries before the clock)
    import sqlalchemy as sa

    from connectors.sql.client import read_sql
    from connectors.sql.odbc import iter_odbc, read_odbc

    table = table_name(rows)
    engine = sa.create_engine(sqlalchemy_url()) if kind == "pandas" else None
    gc.collect()
    before = _rss_mb()
    started = time.perf_counter()
    if kind == "odbc":
        raw = read_odbc(odbc_connection_string(), table=table)
        count, result_mb = len(raw), _frame_mb(raw.frame, raw.source_rows)
    elif kind == "odbc_stream":
        # the streaming pull: one 50,000-row text chunk alive at a time
        count, result_mb = 0, 0.0
        for chunk in iter_odbc(odbc_connection_string(), table=table):
            count += len(chunk)
            result_mb = max(result_mb, _frame_mb(chunk.frame, chunk.source_rows))
    elif kind == "read_sql":
        raw = read_sql(sqlalchemy_url(), table=table)
        count, result_mb = len(raw), _frame_mb(raw.frame, raw.source_rows)
    elif kind == "pandas":
        assert engine is not None
        with engine.connect() as connection:
            frame = pd.read_sql(sa.text(f"SELECT * FROM {table} ORDER BY id"), connection)
        count, result_mb = len(frame), _frame_mb(frame)
    else:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    seconds = time.perf_counter() - started
    if engine is not None:
        engine.dispose()
    if count != rows:
        raise RuntimeError(f"{kind} read {count:,} rows from {table}, expected {rows:,}")
    return {
        "kind": kind,
        "rows": count,
        "seconds": round(seconds, 3),
        "rows_per_second": round(count / seconds),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_mb": round(before, 1),  # the process with its libraries, before the pull
        "result_mb": round(result_mb, 1),  # what the returned frame (and lineage) holds
    }


# --------------------------------------------------------------------------------------------
# Measurements in fresh subprocesses, for run.py


def measure_in_subprocess(kind: str, rows: int) -> dict:
    """`measure(kind, rows)` in a fresh interpreter, so the peak RSS is this pull's alone."""
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "measure", kind, str(rows)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-15:]
        return {"kind": kind, "rows": rows, "error": "\n".join(tail)}
    return json.loads(lines[-1])


def measure_odbc(rows: int = FULL_ROWS) -> dict:
    """A full pull of `ledger_<rows>` with `read_odbc`, in a fresh subprocess."""
    prepare(rows)
    return measure_in_subprocess("odbc", rows)


def measure_read_sql(rows: int = FULL_ROWS) -> dict:
    """The same pull with the SQLAlchemy reader `read_sql` (psycopg), in a fresh subprocess."""
    prepare(rows)
    return measure_in_subprocess("read_sql", rows)


def measure_pandas(rows: int = FULL_ROWS) -> dict:
    """The naive baseline `pandas.read_sql` over SQLAlchemy (psycopg), in a fresh subprocess."""
    prepare(rows)
    return measure_in_subprocess("pandas", rows)


def memory_ratio(
    small: int = SMALL_ROWS,
    large: int = FULL_ROWS,
    *,
    measured: dict[int, dict] | None = None,
) -> dict:
    """Peak RSS of the streaming ODBC pull (`iter_odbc`) at `large` rows over its peak at
    `small` rows (target ≤ 1.3)."""
    measured = measured or {}
    small_run = measured.get(small) or measure_in_subprocess("odbc_stream", small)
    large_run = measured.get(large) or measure_in_subprocess("odbc_stream", large)
    if "error" in small_run or "error" in large_run:
        return {"error": small_run.get("error") or large_run.get("error")}
    ratio = large_run["peak_rss_mb"] / small_run["peak_rss_mb"]
    growth_small = small_run["peak_rss_mb"] - small_run["rss_before_mb"]
    growth_large = large_run["peak_rss_mb"] - large_run["rss_before_mb"]
    return {
        "small_rows": small,
        "large_rows": large,
        "small_peak_rss_mb": small_run["peak_rss_mb"],
        "large_peak_rss_mb": large_run["peak_rss_mb"],
        "ratio": round(ratio, 2),
        "target": MEMORY_RATIO_TARGET,
        "passed": ratio <= MEMORY_RATIO_TARGET,
        # what the pull added on top of the loaded libraries, and how much of it is the result
        "small_growth_mb": round(growth_small, 1),
        "large_growth_mb": round(growth_large, 1),
        "large_result_mb": large_run["result_mb"],
        "large_growth_beyond_result_mb": round(growth_large - large_run["result_mb"], 1),
    }


def run_all(attempts: int = 1) -> dict:
    """Every kind at 100k and 1M rows (best of `attempts`), the ratios and the memory check."""
    prepared = [prepare(SMALL_ROWS), prepare(FULL_ROWS)]
    results: dict[str, dict[int, dict]] = {kind: {} for kind in KINDS}
    for rows in (SMALL_ROWS, FULL_ROWS):
        for kind in KINDS:
            runs = [measure_in_subprocess(kind, rows) for _ in range(attempts)]
            good = [run for run in runs if "error" not in run]
            results[kind][rows] = min(good, key=lambda run: run["seconds"]) if good else runs[0]
    odbc, pandas_run = results["odbc"][FULL_ROWS], results["pandas"][FULL_ROWS]
    speed = None
    if "error" not in odbc and "error" not in pandas_run:
        speed = round(odbc["seconds"] / pandas_run["seconds"], 2)
    return {
        "prepared": prepared,
        "results": {kind: list(by_rows.values()) for kind, by_rows in results.items()},
        "odbc_seconds_vs_pandas_at_1m": speed,
        "memory_ratio": memory_ratio(measured=results["odbc_stream"]),
    }


def print_table(report: dict) -> None:
    print(f"{'kind':<10}{'rows':>11}{'seconds':>10}{'rows/s':>11}{'peak MB':>10}{'result MB':>11}")
    for runs in report["results"].values():
        for run in runs:
            if "error" in run:
                print(f"{run['kind']:<10}{run['rows']:>11,}  error: {run['error']}")
                continue
            print(
                f"{run['kind']:<10}{run['rows']:>11,}{run['seconds']:>10.2f}"
                f"{run['rows_per_second']:>11,}{run['peak_rss_mb']:>10.0f}{run['result_mb']:>11.0f}"
            )
    print(f"odbc / pandas seconds at 1M rows: {report['odbc_seconds_vs_pandas_at_1m']}")
    memory = report["memory_ratio"]
    if "ratio" in memory:
        verdict = "PASS" if memory["passed"] else "MISS"
        print(f"odbc peak RSS 1M / 100k: {memory['ratio']} (target ≤ {memory['target']}) {verdict}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["measure"] and len(argv) == 3:
        print(json.dumps(measure(argv[1], int(argv[2]))))
        return 0
    if argv[:1] == ["prepare"]:
        print(json.dumps(prepare(int(argv[1]) if len(argv) > 1 else FULL_ROWS)))
        return 0
    if argv:
        print(__doc__)
        return 2
    report = run_all()
    print_table(report)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
