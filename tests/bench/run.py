"""`make bench`: the hub's speed and memory, as a user runs it and stage by stage, beside
baselines measured in the same run. Two tables.

Table 1, the whole process (tests/bench/process.py; `--only process|postgres|flat|many` runs one
group): each figure is one fresh process timed from outside (`os.wait4`: wall, CPU seconds of
the process tree, its peak RSS), with DATAFIX_FILE_SETTLE_SECONDS=0 for every hub run (printed):
- `process`: on the 1M-line ledger, `datafix run bench-ledger --no-push` on a fresh
  DATAFIX_HOME (no warehouse, no Dagster instance), then its unchanged rerun on the same home,
  beside the naive script (tests/bench/naive_load.py: pandas `read_csv` + `to_datetime` +
  `to_sql` through a SQLAlchemy engine into a fresh SQLite file) and dlt (tests/bench/dlt_load.py:
  chunked pandas source → dlt's `sqlalchemy` destination on a fresh SQLite file; dlt installed
  by the bench into its own virtual environment `$DATAFIX_HOME/bench/dlt-venv`, or the row says
  unavailable and why). Targets: first run <= 0.6x naive, <= 0.5x dlt, <= 400 MB; rerun <= 1.5 s.
  In each round too, the rerun with the settling wait at its 2 s default: whether it matters;
- `postgres`: the same first run into a fresh PostgreSQL database beside the naive `to_sql`
  (method=None) into another one on the same server (target <= 0.6x);
- `flat`: the first run on a generated 4M-line ledger against the 1M one: peak RSS ratio
  (target <= 1.2x; run once when a run takes over 3 minutes; `--big-rows`);
- `many`: 300 generated landlords x 10,000 lines (`--landlords`, `--landlord-rows`), one
  `datafix run --no-push` over all of them, once: wall (target <= 5 min), CPU seconds and CPU
  use (CPU / wall, of the machine's cores).
After each hub run the warehouse is queried: rows loaded and quarantined per landlord as the
generator wrote them (1M ledger: 999,800 and 200); a failed run prints its error tail (ERROR).
`--ledger-rows` (default 1,000,000) shrinks the ledger of `process`, `postgres` and `flat` to
try the harness quickly.

Table 3, derive (tests/bench/derive.py, `--only derive`): the arrears (balances, arrears and
profiles, prevention actions) on the ledger at 250,000 and 1,000,000 lines and the works tables
on 200,000 orders, on SQLite and on a PostgreSQL database the bench creates and drops: wall, CPU
and peak RSS of each beside the load stage's own time for the same data, in the same run.

Table 2, in-process stage by stage (this file, `--only ledger|works`), for each file:
- the hub: `stages.pull` → `stages.normalise` → `stages.check_contract` → `stages.load` into a
  fresh SQLite warehouse under `$DATAFIX_HOME/bench/`, with the bench datafixes of
  `tests/bench/datafixes/` (DATAFIX_DATAFIXES_DIR points there), exactly what the Dagster assets
  call (a CSV is streamed: `pull` scans it, `normalise` reads it chunk by chunk);
- the ledger again through `bench-ledger-rules.yaml`: the amount from whichever of Débit / Crédit
  is filled, signed by an indicator rule, the kind from a case rule (target: <= 1.1x the plain
  mapping, the same rows loaded);
- the same hub run again on the unchanged file and warehouse (the source state says unchanged,
  so it is skipped);
- the naive version (pandas reads the file, `to_sql` writes it through a SQLAlchemy engine, no
  mapping at all): the baseline of the ledger targets. The same through a plain sqlite3
  connection (pandas' own executemany path, about twice as fast) is shown beside it, for
  information: it writes a third of the bytes per row (no lineage) and builds no index;
- the push (tests/bench/push.py, `--only push`): records/s per sink kind against the local
  peers through `push_landlord`, beside the raw connector alone, and the unchanged second push
  (0 calls); among them 10,000 commitments to the works-order ERP on node-soap, one call per
  record, beside the batch push of the same commitments to the first SOAP peer;
- the I/O floor: reading the file alone (CSV: pandas `read_csv(dtype=str)`; xlsx: the fastest of
  python-calamine `to_python()`, `pandas.read_excel(engine="calamine")`, openpyxl read-only).

Every measurement runs in a fresh subprocess (this script with `--measure NAME`, spawned by
process.py's small wrapper: a child spawned straight from this process would report at least
this process's peak RSS), so its peak RSS is its own; each runs twice, in two interleaved rounds
(a hub run next to its baseline), and the faster run is kept (the machine is shared: figures
are noisy). Imports, and for the hub building the great-expectations context, happen before the
clock starts: they are paid once per process, not per file; the hub's set-up time is reported
apart. Results of both tables go to `$DATAFIX_HOME/bench.json`. The exit code is 0 even when a
target is missed: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]

import derive as derive_bench  # noqa: E402  (tests/bench/derive.py: Table 3, insight steps)
import generate  # noqa: E402  (tests/bench/generate.py, beside this script)
import odbc_pull  # noqa: E402  (tests/bench/odbc_pull.py: the 1M-row pull over pyodbc)
import process as process_bench  # noqa: E402  (tests/bench/process.py: Table 1, whole process)
import push as push_bench  # noqa: E402  (tests/bench/push.py: push throughput per sink kind)
from text_table import text_table  # noqa: E402  (tests/bench/text_table.py)

DATAFIXES = HERE / "datafixes"
LEDGER_LANDLORD = "bench-ledger"
# the same file through an indicator (sign) rule and case rules: at most 1.1x the plain mapping
LEDGER_RULES_LANDLORD = "bench-ledger-rules"
LEDGER_RULES_VS_PLAIN = 1.1
WORKS_LANDLORD = "bench-works"
ATTEMPTS = 2

# targets (2-core machine)
LEDGER_WALL_SECONDS = 10.0
LEDGER_VS_NAIVE = 0.8
LEDGER_RSS_MB = 1500.0
RERUN_VS_FIRST = 0.25
XLSX_VS_READ = 1.5


# --------------------------------------------------------------------------------------------
# Measurements: each runs inside its own subprocess


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _fresh_sqlite(name: str) -> Path:
    path = generate.bench_home() / name
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _naive_to_sql(frame: Any, db: Path, table: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        frame.to_sql(table, engine, index=False)
    finally:
        engine.dispose()


def _csv_naive(ledger: Path) -> dict:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(ledger, sep=";", encoding="cp1252", decimal=",")
    _naive_to_sql(frame, _fresh_sqlite("naive-ledger.db"), "ledger")
    return {"seconds": time.perf_counter() - started, "rows_read": len(frame)}


def _csv_naive_sqlite3(ledger: Path) -> dict:
    """The same naive load through a plain sqlite3 connection (pandas' own executemany path)."""
    import sqlite3

    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(ledger, sep=";", encoding="cp1252", decimal=",")
    connection = sqlite3.connect(_fresh_sqlite("naive-ledger-sqlite3.db"))
    try:
        frame.to_sql("ledger", connection, index=False)
        connection.commit()
    finally:
        connection.close()
    return {"seconds": time.perf_counter() - started, "rows_read": len(frame)}


def _csv_read(ledger: Path) -> dict:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(ledger, sep=";", encoding="cp1252", dtype=str)
    return {"seconds": time.perf_counter() - started, "rows_read": len(frame)}


def _xlsx_read_calamine(works: Path) -> dict:
    from python_calamine import CalamineWorkbook

    started = time.perf_counter()
    workbook = CalamineWorkbook.from_path(str(works))
    rows = workbook.get_sheet_by_name("Commandes").to_python()
    return {"seconds": time.perf_counter() - started, "rows_read": len(rows)}


def _xlsx_read_pandas(works: Path) -> dict:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_excel(works, sheet_name="Commandes", engine="calamine", header=1)
    return {"seconds": time.perf_counter() - started, "rows_read": len(frame)}


def _xlsx_read_openpyxl(works: Path) -> dict:
    import openpyxl

    started = time.perf_counter()
    workbook = openpyxl.load_workbook(works, read_only=True, data_only=True)
    count = sum(1 for _ in workbook["Commandes"].iter_rows(values_only=True))
    workbook.close()
    return {"seconds": time.perf_counter() - started, "rows_read": count}


def _xlsx_naive(works: Path) -> dict:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_excel(works, sheet_name="Commandes", header=1)
    _naive_to_sql(frame, _fresh_sqlite("naive-works.db"), "work_orders")
    return {"seconds": time.perf_counter() - started, "rows_read": len(frame)}


def _hub(landlord: str, entity: str, *, rerun: bool) -> dict:
    """pull → normalise → contract → load, as the Dagster assets chain them. A CSV source is
    streamed: `pull` scans it (fingerprint, encoding, header) and `normalise` reads its rows
    chunk by chunk while mapping them."""
    from pipelines.lib import quality, stages
    from pipelines.lib.datafixes import datafix_path, load_datafix
    from pipelines.lib.warehouse import Warehouse

    setup_started = time.perf_counter()
    quality.contract_expectations(entity)
    import great_expectations  # noqa: F401  (about 3 s to import: once per process)

    warm = getattr(quality, "_get_engine", None)  # the GX context and suites, once per process
    if warm is not None:
        warm()
    setup = time.perf_counter() - setup_started
    name = f"hub-{landlord}.db"
    db = generate.bench_home() / name if rerun else _fresh_sqlite(name)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    mark = started

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[stage] = round(now - mark, 3)
        mark = now

    loaded = load_datafix(datafix_path(landlord))
    warehouse = Warehouse(f"sqlite:///{db}")
    warehouse.migrate()
    lap("setup_warehouse")
    pulled = stages.pull(loaded, entity, warehouse=warehouse)
    lap("pull")
    normalised = stages.normalise(loaded, pulled)
    lap("normalise")
    result: dict[str, Any] = {"status": pulled.status, "rows_in_source": pulled.rows}
    if normalised.batch is not None:
        # the stages' own contract: chunk by chunk over the spool, table rules across chunks
        contract = stages.check_contract(loaded, normalised)
        lap("contract")
        result["contract_passed"] = contract.passed
        result["contract"] = contract.summary()
        if contract.passed:  # the contract is a blocking check: a failure stops the load
            outcome = stages.load(warehouse, loaded, normalised, run_id=uuid.uuid4().hex)
            lap("load")
            assert outcome is not None
            result |= {
                "loaded": outcome.loaded,
                "inserted": outcome.inserted,
                "quarantined": outcome.quarantined,
                "skipped": normalised.batch.skipped,
                "read": normalised.batch.read,
            }
    seconds = time.perf_counter() - started
    with warehouse.engine.connect() as conn:
        result["warehouse_rows"] = conn.exec_driver_sql(
            f"SELECT count(*) FROM {entity} WHERE landlord_id = ?", (landlord,)
        ).scalar_one()
    warehouse.dispose()
    return result | {"seconds": seconds, "setup_seconds": setup, "stages": timings}


def _ledger_path() -> Path:
    return generate.bench_home() / "ledger" / "quittancement_2024-12.csv"


def _share_with_rules_landlord(ledger: Path) -> None:
    """The same ledger file in bench-ledger-rules' own inbox (a landlord may not read another's
    inbox): a hard link, so no second copy of the file is written."""
    folder = generate.bench_home() / "ledger-rules"
    folder.mkdir(exist_ok=True)
    shared = folder / ledger.name
    if shared.exists() and shared.samefile(ledger):
        return
    shared.unlink(missing_ok=True)
    try:
        os.link(ledger, shared)
    except OSError:  # another file system: a copy, dated as the original
        shutil.copy2(ledger, shared)


def _works_path() -> Path:
    return generate.bench_home() / "works" / "commandes_2024-12.xlsx"


MEASURES: dict[str, Callable[[], dict]] = {
    # in the order of a round: each hub run next to its baseline, its rerun right after it
    "ledger_naive": lambda: _csv_naive(_ledger_path()),
    "ledger_hub": lambda: _hub(LEDGER_LANDLORD, "ledger_entries", rerun=False),
    "ledger_hub_rerun": lambda: _hub(LEDGER_LANDLORD, "ledger_entries", rerun=True),
    "ledger_hub_rules": lambda: _hub(LEDGER_RULES_LANDLORD, "ledger_entries", rerun=False),
    "ledger_naive_sqlite3": lambda: _csv_naive_sqlite3(_ledger_path()),
    "ledger_read": lambda: _csv_read(_ledger_path()),
    "works_read_calamine": lambda: _xlsx_read_calamine(_works_path()),
    "works_hub": lambda: _hub(WORKS_LANDLORD, "work_orders", rerun=False),
    "works_hub_rerun": lambda: _hub(WORKS_LANDLORD, "work_orders", rerun=True),
    "works_read_pandas_calamine": lambda: _xlsx_read_pandas(_works_path()),
    "works_read_openpyxl": lambda: _xlsx_read_openpyxl(_works_path()),
    "works_naive": lambda: _xlsx_naive(_works_path()),
}


def _measure_here(name: str, out: Path) -> None:
    import gc

    import pandas  # noqa: F401  (imported before the clock, like every measurement's libraries)
    import sqlalchemy  # noqa: F401

    gc.collect()
    result = MEASURES[name]()
    result["peak_rss_mb"] = _peak_rss_mb()
    out.write_text(json.dumps(result, default=str))


# --------------------------------------------------------------------------------------------
# The driver: subprocesses, best of two, the table and bench.json


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["DATAFIX_DATAFIXES_DIR"] = str(DATAFIXES)
    env["DATAFIX_HOME"] = str(generate.bench_home().parent)
    # the bench landlords' inboxes are under $DATAFIX_HOME/bench/, a root the operator allows
    env["DATAFIX_INBOX_ROOTS"] = str(generate.bench_home())
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _run_once(name: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--measure", name]
        # through the bench's small wrapper: a child's ru_maxrss starts at its spawner's peak
        completed = subprocess.run(
            process_bench.wrapped([*command, "--out", str(out)], Path(folder) / "rusage.json"),
            env=_environment(),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0 or not out.is_file():
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-15:]
            return {"error": "\n".join(tail) or f"exit code {completed.returncode}"}
        return json.loads(out.read_text())


def _measure_all(names: list[str], attempts: int = ATTEMPTS) -> dict[str, dict]:
    """Every measurement `attempts` times, interleaved (a round runs each name once), keeping
    each one's fastest run: a baseline and the hub it is compared with then share the machine's
    moments of load from other processes instead of one of them taking it all. A `*_rerun`
    runs right after its hub run, on the warehouse that run wrote."""
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for attempt in range(attempts):
        for name in names:
            if runs[name] and "error" in runs[name][-1]:
                continue
            result = _run_once(name)
            runs[name].append(result)
            shown = "error" if "error" in result else f"{result['seconds']:.2f} s"
            print(f"  {name} #{attempt + 1}: {shown}", flush=True)
            if "error" in result:
                print("    " + result["error"].replace("\n", "\n    "), flush=True)
    best: dict[str, dict] = {}
    for name, done in runs.items():
        good = [run for run in done if "error" not in run]
        chosen = min(good, key=lambda run: run["seconds"]) if good else dict(done[-1])
        best[name] = chosen | {"runs": [run.get("seconds") for run in done]}
    return best


@dataclass
class Row:
    measurement: str
    rows: int
    result: dict
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    checks: tuple[tuple[str, bool], ...] = ()

    @property
    def seconds(self) -> float | None:
        return self.result.get("seconds")

    @property
    def status(self) -> str:
        if "error" in self.result:
            return "MISS (error)"
        if not self.checks:
            return ""
        missed = [label for label, ok in self.checks if not ok]
        return "PASS" if not missed else "MISS (" + ", ".join(missed) + ")"


def _rerun_row(what: str, rows: int, rerun: dict, first: dict) -> Row:
    """The unchanged second run beside the first: skipped, and a fraction of its time."""
    ratio = _ratio(rerun.get("seconds"), first.get("seconds"))
    return Row(
        f"{what}: hub second run (unchanged)",
        rows,
        rerun,
        "hub 1st",
        ratio,
        f"<={RERUN_VS_FIRST}x",
        (
            ("ratio", ratio is not None and ratio <= RERUN_VS_FIRST),
            ("skipped", rerun.get("status") == "unchanged"),
        ),
    )


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


def _hub_checks(result: dict, expected_rows: int, expected_bad: int) -> list[tuple[str, bool]]:
    return [
        ("contract", bool(result.get("contract_passed"))),
        (
            "counts",
            result.get("read") == expected_rows
            and result.get("loaded", -1) + result.get("quarantined", -1) == expected_rows
            and result.get("quarantined") == expected_bad
            and result.get("warehouse_rows") == expected_rows - expected_bad,
        ),
    ]


def _table(rows: list[Row]) -> str:
    header = (
        "measurement",
        "rows",
        "wall s",
        "rows/s",
        "peak RSS MB",
        "ratio vs baseline",
        "target",
        "PASS/MISS",
    )
    lines = []
    for row in rows:
        seconds = row.seconds
        rss = row.result.get("peak_rss_mb")
        ratio = f"{row.ratio:.2f}x {row.baseline}" if row.ratio is not None else "-"
        lines.append(
            (
                row.measurement,
                f"{row.rows:,}",
                f"{seconds:.2f}" if seconds is not None else "-",
                f"{row.rows / seconds:,.0f}" if seconds else "-",
                f"{rss:,.0f}" if rss is not None else "-",
                ratio,
                row.target or "-",
                row.status or "-",
            )
        )
    return "\n".join(text_table(header, lines, right={1, 2, 3, 4}))


# the options of Table 1's sizes: a field of `process.Options` each, and what it sets
TABLE_1_SIZES = {
    "ledger_rows": "Table 1: lines of the ledger of process, postgres and flat (another size"
    " generates its own ledger and landlord)",
    "big_rows": "Table 1, flat: lines of the big ledger",
    "landlords": "Table 1, many: generated landlords",
    "landlord_rows": "Table 1, many: ledger lines per landlord",
    "rounds": "Table 1: interleaved rounds of process, postgres and flat, the fastest kept",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        choices=("ledger", "works", "odbc", "push", "derive", *process_bench.GROUPS),
        help="measure one part only: the ledger CSV, the works xlsx, the ODBC pull, the push per"
        " sink kind (Table 2), or one group of Table 1: process (1M ledger: hub first run and"
        " rerun, naive, dlt), postgres, flat (4M vs 1M peak RSS), many (landlords), or Table 3:"
        " derive (arrears and works beside the load of the same data, SQLite and PostgreSQL)",
    )
    defaults = process_bench.Options()
    for field, meaning in TABLE_1_SIZES.items():
        parser.add_argument(
            f"--{field.replace('_', '-')}",
            type=int,
            default=getattr(defaults, field),
            help=f"{meaning} (default %(default)s)",
        )
    args = parser.parse_args()
    os.environ["DATAFIX_INBOX_ROOTS"] = str(generate.bench_home())  # the push bench, in-process
    if args.measure:
        _measure_here(args.measure, args.out)
        return 0

    odbc_report = None
    if args.only in (None, "odbc"):
        print("ODBC: a 1,000,000-row PostgreSQL ledger over pyodbc beside pandas.read_sql…")
        odbc_report = odbc_pull.run_all()
        odbc_pull.print_table(odbc_report)
        if args.only == "odbc":
            return 0

    push_report = None
    if args.only in (None, "push"):
        print(
            "Push: records/s per sink kind against the local peers, beside the raw connector"
            f" ({push_bench.ATTEMPTS} interleaved rounds)…",
            flush=True,
        )
        push_report = push_bench.run_all()
        print()
        push_bench.print_table(push_report)
        print()
        if args.only == "push":
            return 0

    derive_report = None
    if args.only in (None, "derive"):
        print("Table 3, derive: the insight steps beside the load of the same data…", flush=True)
        derive_report = derive_bench.run_all()
        print()
        derive_bench.print_table(derive_report)
        print()
        if args.only == "derive":
            _write_report({"derive": derive_report})
            return 0

    process_report = None
    groups = [g for g in process_bench.GROUPS if args.only in (None, g)]
    if groups:
        print("Table 1, whole process: each run a fresh process timed from outside…", flush=True)
        options = process_bench.Options(**{field: getattr(args, field) for field in TABLE_1_SIZES})
        process_report = process_bench.run_all(groups, options)
        print()
        process_bench.print_table(process_report)
        print(f"(Table 1 took {process_report['seconds'] / 60:.1f} min)")
        print()
        if args.only in process_bench.GROUPS:
            _write_report(
                {
                    "process": process_report,
                    "odbc": odbc_report,
                    "push": push_report,
                    "derive": derive_report,
                }
            )
            return 0

    print("Generating the bench files (reused when already there)…", flush=True)
    ledger = generate.ledger_csv()
    _share_with_rules_landlord(ledger.path)
    works = generate.works_xlsx()
    for generated in (ledger, works):
        state = "reused" if generated.reused else "written"
        print(f"  {generated.path} ({generated.data_rows:,} rows, {state})", flush=True)
    print(f"Measuring, each in a fresh subprocess, {ATTEMPTS} interleaved rounds:", flush=True)
    results: dict[str, dict] = {}
    for group in ("ledger", "works"):
        if args.only in (None, group):
            results |= _measure_all([name for name in MEASURES if name.startswith(group)])

    rows: list[Row] = []
    if "ledger_hub" in results:
        naive = results["ledger_naive"]
        hub = results["ledger_hub"]
        rerun = results["ledger_hub_rerun"]
        n = ledger.data_rows
        rows.append(Row("ledger: naive read_csv + to_sql (engine)", n, naive, target="baseline"))
        rows.append(
            Row(
                "ledger: naive, to_sql on a sqlite3 conn",
                n,
                results["ledger_naive_sqlite3"],
                "naive",
                _ratio(results["ledger_naive_sqlite3"].get("seconds"), naive.get("seconds")),
                "info",
            )
        )
        rows.append(
            Row(
                "ledger: read_csv dtype=str (I/O floor)",
                n,
                results["ledger_read"],
                "naive",
                _ratio(results["ledger_read"].get("seconds"), naive.get("seconds")),
                "info",
            )
        )
        hub_ratio = _ratio(hub.get("seconds"), naive.get("seconds"))
        rows.append(
            Row(
                "ledger: hub pull+normalise+contract+load",
                n,
                hub,
                "naive",
                hub_ratio,
                f"<={LEDGER_WALL_SECONDS:g} s, <={LEDGER_VS_NAIVE}x, <={LEDGER_RSS_MB:g} MB",
                (
                    ("wall", (hub.get("seconds") or 1e9) <= LEDGER_WALL_SECONDS),
                    ("ratio", hub_ratio is not None and hub_ratio <= LEDGER_VS_NAIVE),
                    ("RSS", (hub.get("peak_rss_mb") or 1e9) <= LEDGER_RSS_MB),
                    *_hub_checks(hub, n, ledger.bad_rows),
                ),
            )
        )
        rows.append(_rerun_row("ledger", n, rerun, hub))
        rules = results["ledger_hub_rules"]
        rules_ratio = _ratio(rules.get("seconds"), hub.get("seconds"))
        same = rules.get("warehouse_rows") == hub.get("warehouse_rows")
        rows.append(
            Row(
                "ledger: hub, sign indicator + case rules",
                n,
                rules,
                "hub 1st",
                rules_ratio,
                f"<={LEDGER_RULES_VS_PLAIN}x, same rows",
                (
                    ("ratio", rules_ratio is not None and rules_ratio <= LEDGER_RULES_VS_PLAIN),
                    ("rows", same),
                ),
            )
        )
    if "works_hub" in results:
        n = works.data_rows
        reads = {
            label: results[name]
            for label, name in (
                ("calamine to_python", "works_read_calamine"),
                ("pandas read_excel calamine", "works_read_pandas_calamine"),
                ("openpyxl read_only", "works_read_openpyxl"),
            )
        }
        timed = {label: r["seconds"] for label, r in reads.items() if "seconds" in r}
        fastest = min(timed, key=timed.__getitem__) if timed else None
        floor = timed.get(fastest) if fastest else None
        for label, result in reads.items():
            mark = " (floor)" if label == fastest else ""
            rows.append(
                Row(
                    f"works: {label}{mark}",
                    n,
                    result,
                    "floor",
                    _ratio(result.get("seconds"), floor),
                    "baseline" if mark else "info",
                )
            )
        rows.append(
            Row(
                "works: naive read_excel + to_sql (engine)",
                n,
                results["works_naive"],
                "floor",
                _ratio(results["works_naive"].get("seconds"), floor),
                "info",
            )
        )
        hub = results["works_hub"]
        rerun = results["works_hub_rerun"]
        hub_ratio = _ratio(hub.get("seconds"), floor)
        rows.append(
            Row(
                "works: hub pull+normalise+contract+load",
                n,
                hub,
                "floor",
                hub_ratio,
                f"<={XLSX_VS_READ}x floor",
                (
                    ("ratio", hub_ratio is not None and hub_ratio <= XLSX_VS_READ),
                    *_hub_checks(hub, n, works.bad_rows),
                ),
            )
        )
        rows.append(_rerun_row("works", n, rerun, hub))

    print()
    print("Table 2: in-process, stage by stage")
    print(_table(rows))
    print()
    for name in ("ledger_hub", "ledger_hub_rules", "works_hub"):
        if name in results and "stages" in results[name]:
            hub = results[name]
            stages = ", ".join(f"{stage} {secs:.2f}" for stage, secs in hub["stages"].items())
            print(
                f"{name}: stages (s): {stages}; set-up before the clock (imports, GX context):"
                f" {hub.get('setup_seconds', 0):.2f} s; {hub.get('contract', '')}"
            )
    missed = [row for row in rows if row.status.startswith("MISS")]
    print()
    if missed:
        for row in missed:
            print(f"MISS: {row.measurement}: {row.status} (target {row.target})")
    else:
        print("All targets PASS.")
    print("Figures are noisy: a shared 2-core machine; each is the best of", ATTEMPTS, "runs.")

    report = {
        "files": {
            "ledger": {
                "path": str(ledger.path),
                "rows": ledger.data_rows,
                "bad_rows": ledger.bad_rows,
                "sha256": ledger.sha256,
            },
            "works": {
                "path": str(works.path),
                "rows": works.data_rows,
                "bad_rows": works.bad_rows,
                "sha256": works.sha256,
            },
        },
        "attempts": ATTEMPTS,
        "measurements": results,
        "odbc": odbc_report,
        "push": push_report,
        "process": process_report,
        "derive": derive_report,
        "table": [
            {
                "measurement": row.measurement,
                "rows": row.rows,
                "wall_seconds": row.seconds,
                "rows_per_second": row.rows / row.seconds if row.seconds else None,
                "peak_rss_mb": row.result.get("peak_rss_mb"),
                "ratio": row.ratio,
                "ratio_vs": row.baseline or None,
                "target": row.target,
                "status": row.status or None,
            }
            for row in rows
        ],
    }
    _write_report(report)
    return 0


def _write_report(report: dict) -> None:
    """`$DATAFIX_HOME/bench.json`: the machine, then every figure of this run."""
    machine = {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    report = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine} | report
    out = generate.bench_home().parent / "bench.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"Figures written to {out}")


if __name__ == "__main__":
    sys.exit(main())
