"""Table 3 of `make bench` (`--only derive`): the insight steps that derive figures from the
loaded tables, beside the load of the same data, on SQLite and on PostgreSQL (issue 15:
"derive … wall time and peak RSS, which must stay below the load's own time for the same data;
memory flat in the number of rows").

For each database (a fresh SQLite file under `bench/derive/`, a fresh PostgreSQL database that
the bench creates and drops) and each data set:
- the ledger at two sizes (250,000 and 1,000,000 lines, one tenant per 10 lines: 25,000 and
  100,000 tenants, the issue's size; generate.py's writer, each in its own folder under
  `bench/derive/`, not the 50,000-tenant ledger of Table 1), then the works workbook of 200,000
  orders (generate.py's writer, its own folder);
- one child process loads it as the Dagster assets do (pull → normalise → contract → load into
  that warehouse), timing each stage: `load` is the load's own time, the baseline;
- a second child process derives from it, as the insight assets do (on the warehouse's own
  engine, with its SQLite settings), each step in its own transaction: for the ledger the
  balances, the arrears with their profiles (`compute_arrears`) and the prevention actions
  (`refresh_actions`); for the works `refresh_works`. Its wall time and CPU seconds (its
  own, plus on PostgreSQL the server processes of its connections, read from /proc: the
  machine is shared, wall is noisy) are taken around the steps, after the imports; its peak
  RSS is `ru_maxrss` of the child (spawned through process.py's wrapper, so it is its own).

Targets: each derive's wall time below its load's (MET/MISS), and the derive's peak RSS on the
1M-line ledger at most 1.2x the one on 250,000 lines (memory flat in the rows). Each
measurement runs once (best-of would double a long bench); figures land in bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _path in (str(HERE), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import generate  # noqa: E402  (tests/bench/generate.py, beside this script)
import process as process_bench  # noqa: E402  (tests/bench/process.py: timed children, PG)

LEDGER_SIZES = (250_000, 1_000_000)
LINES_PER_TENANT = 10  # the size: 1M ledger lines over 100,000 tenants
WORKS_ORDERS = 200_000
FLAT_RSS_RATIO = 1.2
AS_OF = date(2024, 12, 31)  # the generated files' export day: their debts are of that time


@dataclass(frozen=True)
class DataSet:
    """One landlord's generated file, the datafix that reads it, and what it derives."""

    name: str
    landlord: str
    entity: str
    rows: int
    datafixes: Path
    derive: str  # "arrears" or "works"
    tenants: int | None = None  # the ledger's tenants, as generated


def ledger_set(rows: int) -> DataSet:
    """The derive's own ledger of `rows` lines over `rows // LINES_PER_TENANT` tenants in
    `bench/derive/ledger-<rows>/` (the 1M-line ledger of Table 1 has 50,000 tenants: not the
    issue's size), with a copy of bench-ledger.yaml naming its landlord and inbox."""
    tenants = max(1, rows // LINES_PER_TENANT)
    ledger = process_bench.generated_ledger(
        f"bench-ledger-{rows}", f"derive/ledger-{rows}", rows, max(1, rows // 5_000),
        generate.SEED, tenants=tenants,
    )  # fmt: skip
    return DataSet(
        f"ledger {rows:,} lines", ledger.landlord, "ledger_entries", ledger.rows,
        ledger.datafixes, "arrears", tenants,
    )  # fmt: skip


def works_set(rows: int) -> DataSet:
    """The works workbook of `rows` orders in `bench/derive/works-<rows>/` (not the 100k file
    of Table 2), with a copy of bench-works.yaml naming its landlord and inbox."""
    folder = f"derive/works-{rows}"
    (generate.bench_home() / folder).mkdir(parents=True, exist_ok=True)
    params = generate.WorksParams(rows=rows)
    made = generate.works_xlsx(params, folder)  # the bench's own generator, beside this file
    landlord = f"bench-works-{rows}"
    text = (HERE / "datafixes" / "bench-works.yaml").read_text()
    replaced = text.replace("  id: bench-works\n", f"  id: {landlord}\n").replace(
        'inbox: "${DATAFIX_HOME}/bench/works"', f'inbox: "${{DATAFIX_HOME}}/bench/{folder}"'
    )
    if landlord not in replaced or f"/bench/{folder}" not in replaced:
        raise RuntimeError("bench-works.yaml changed shape: cannot derive the 200k datafix")
    datafixes = generate.bench_home() / "derive" / "datafixes"
    datafixes.mkdir(parents=True, exist_ok=True)
    (datafixes / f"{landlord}.yaml").write_text(replaced)
    return DataSet(
        f"works {made.data_rows:,} orders", landlord, "work_orders", made.data_rows, datafixes,
        "works",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# The two children


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu_seconds(engine: Any) -> float:
    """CPU seconds so far of the PostgreSQL server processes serving this database (same
    machine: /proc); 0 on SQLite, whose work is done in this process."""
    if engine.dialect.name != "postgresql":
        return 0.0
    import sqlalchemy as sa

    with engine.connect() as connection:
        pids = connection.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class _Clock:
    """Wall and CPU seconds (this process and the database server's) per step."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.steps: dict[str, dict[str, float]] = {}

    def __call__(self, step: str, work: Any) -> Any:
        wall, cpu, server = time.perf_counter(), _cpu_seconds(), _server_cpu_seconds(self.engine)
        result = work()
        self.steps[step] = {
            "seconds": round(time.perf_counter() - wall, 3),
            "cpu_seconds": round(
                _cpu_seconds() - cpu + _server_cpu_seconds(self.engine) - server, 3
            ),
        }
        return result


def _load(landlord: str, entity: str, url: str) -> dict:
    """pull → normalise → contract → load into `url`, each stage timed."""
    from pipelines.lib import quality, stages
    from pipelines.lib.datafixes import datafix_path, load_datafix
    from pipelines.lib.warehouse import Warehouse

    quality.contract_expectations(entity)
    warm = getattr(quality, "_get_engine", None)  # the GX context, before the clock
    if warm is not None:
        warm()
    loaded = load_datafix(datafix_path(landlord))
    warehouse = Warehouse(url)
    warehouse.migrate()
    clock = _Clock(warehouse.engine)
    pulled = clock("pull", lambda: stages.pull(loaded, entity, warehouse=warehouse))
    normalised = clock("normalise", lambda: stages.normalise(loaded, pulled))
    contract = clock("contract", lambda: quality.run_contract(entity, normalised.rows))
    if not contract.passed:
        raise RuntimeError(f"the contract failed: {contract.summary()}")
    outcome = clock(
        "load", lambda: stages.load(warehouse, loaded, normalised, run_id=uuid.uuid4().hex)
    )
    warehouse.dispose()
    return {"steps": clock.steps, "loaded": outcome.loaded if outcome else 0}


def _derive(kind: str, landlord: str, url: str) -> dict:
    """The insight steps of `kind`, each in its own transaction, as the assets run them."""
    from pipelines.lib.arrears import arrears_figures, compute_arrears, refresh_actions
    from pipelines.lib.datafixes import datafix_path, load_datafix
    from pipelines.lib.insight import refresh_tenant_balances
    from pipelines.lib.warehouse import Warehouse
    from pipelines.lib.works import refresh_works, works_summary

    datafix = load_datafix(datafix_path(landlord)).datafix
    # the warehouse's own engine (its SQLite PRAGMAs and BEGIN IMMEDIATE), the one the
    # insight assets run on (`WarehouseResource`): the bench measures what users run
    warehouse = Warehouse(url)
    engine = warehouse.engine
    clock = _Clock(engine)
    run_id = uuid.uuid4().hex
    result: dict[str, Any] = {}

    def step(name: str, work: Any) -> Any:
        def in_transaction() -> Any:
            with engine.begin() as connection:
                return work(connection)

        return clock(name, in_transaction)

    if kind == "arrears":
        step("balances", lambda c: refresh_tenant_balances(c, landlord, AS_OF, run_id))
        step("arrears", lambda c: compute_arrears(c, landlord, AS_OF, run_id, datafix.arrears))
        actions = step(
            "actions", lambda c: refresh_actions(c, landlord, AS_OF, run_id, datafix.arrears)
        )
        with engine.connect() as connection:
            figures = arrears_figures(connection, landlord)
        result |= {"tenants": figures.tenants, "in_debt": figures.tenants_in_debt,
                   "actions": actions.created}  # fmt: skip
    else:
        days = datafix.works.first_time_fix_days
        step(
            "works",
            lambda c: refresh_works(c, landlord, AS_OF, run_id, first_time_fix_days=days),
        )
        with engine.connect() as connection:
            result["orders"] = works_summary(connection, landlord).orders
    warehouse.dispose()
    return result | {"steps": clock.steps}


def _child(args: argparse.Namespace) -> None:
    if args.child == "load":
        result = _load(args.landlord, args.entity, args.url)
    else:
        result = _derive(args.derive, args.landlord, args.url)
    print(json.dumps(result))


# --------------------------------------------------------------------------------------------
# The driver


def _timed_child(arguments: list[str], data: DataSet, log: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAFIX_", "DAGSTER_"))}
    env |= {
        "DATAFIX_HOME": str(generate.bench_home().parent),
        "DATAFIX_DATAFIXES_DIR": str(data.datafixes),
        "DATAFIX_INBOX_ROOTS": str(generate.bench_home()),
        process_bench.SETTLE_VARIABLE: "0",
    }
    command = [sys.executable, str(Path(__file__).resolve()), "--landlord", data.landlord]
    outer = process_bench.timed([*command, *arguments], env, log)
    if "error" in outer:
        return outer
    inner = process_bench._last_json(outer["stdout"])
    return {"peak_rss_mb": outer["peak_rss_mb"], "process_seconds": outer["seconds"]} | inner


def _sqlite_warehouse(data: DataSet) -> Path:
    folder = generate.bench_home() / "derive" / "warehouses"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data.landlord}.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _measure(data: DataSet, database: str, url: str) -> dict:
    logs = generate.bench_home() / "derive" / "logs" / f"{database}-{data.landlord}"
    print(f"  {database}: {data.name}: load…", end=" ", flush=True)
    loaded = _timed_child(
        ["--child", "load", "--entity", data.entity, "--url", url], data, logs / "load"
    )
    if "error" in loaded:
        print("error")
        return {"load": loaded}
    print(f"{loaded['steps']['load']['seconds']:.1f} s; derive…", end=" ", flush=True)
    derived = _timed_child(
        ["--child", "derive", "--derive", data.derive, "--url", url], data, logs / "derive"
    )
    if "error" not in derived:
        steps = derived["steps"]
        derived["seconds"] = sum(s["seconds"] for s in steps.values())
        derived["cpu_seconds"] = sum(s["cpu_seconds"] for s in steps.values())
        print(f"{derived['seconds']:.1f} s", flush=True)
    else:
        print("error", flush=True)
    return {"load": loaded, "derive": derived}


def run_all(ledger_sizes: tuple[int, int] = LEDGER_SIZES, works_orders: int = WORKS_ORDERS) -> dict:
    """Every data set on SQLite, then on PostgreSQL; the report feeds `print_table`."""
    started = time.perf_counter()
    print("Generating the derive bench files (reused when already there)…", flush=True)
    sets = [ledger_set(rows) for rows in ledger_sizes] + [works_set(works_orders)]
    report: dict[str, Any] = {"as_of": AS_OF.isoformat(), "sizes": list(ledger_sizes),
                              "results": []}  # fmt: skip
    for database in ("sqlite", "postgresql"):
        for data in sets:
            entry = {"database": database, "data": data.name, "rows": data.rows,
                     "tenants": data.tenants, "derive_kind": data.derive}  # fmt: skip
            if database == "sqlite":
                entry |= _measure(data, database, f"sqlite:///{_sqlite_warehouse(data)}")
            else:
                try:
                    with process_bench.pg_database("bench_derive") as url:
                        entry |= _measure(data, database, url)
                except Exception as error:  # no server: these rows are errors
                    entry["load"] = {"error": f"{type(error).__name__}: {error}"}
            report["results"].append(entry)
    shutil.rmtree(generate.bench_home() / "derive" / "warehouses", ignore_errors=True)
    report["seconds"] = time.perf_counter() - started
    return report


def _steps_text(derived: dict) -> str:
    return ", ".join(
        f"{name} {s['seconds']:.2f}/{s['cpu_seconds']:.2f}" for name, s in derived["steps"].items()
    )


def verdicts(report: dict) -> list[str]:
    """One MET / MISS line per target."""
    lines = []
    for entry in report["results"]:
        what = f"{entry['database']}: {entry['derive_kind']} on {entry['data']}"
        load, derived = entry.get("load", {}), entry.get("derive", {})
        if "error" in load or "error" in derived:
            lines.append(f"MISS: {what}: error")
            continue
        load_seconds = load["steps"]["load"]["seconds"]
        verdict = "MET" if derived["seconds"] < load_seconds else "MISS"
        lines.append(
            f"{verdict}: {what}: derive {derived['seconds']:.2f} s wall against the load's"
            f" {load_seconds:.2f} s (target: below; CPU {derived['cpu_seconds']:.2f} s against"
            f" {load['steps']['load']['cpu_seconds']:.2f} s)"
        )
    for database in ("sqlite", "postgresql"):
        ledgers = [
            e for e in report["results"]
            if e["database"] == database and e["derive_kind"] == "arrears"
            and "error" not in e.get("derive", {"error": 1})
        ]  # fmt: skip
        sizes = report["sizes"]
        if len(ledgers) == len(sizes):
            small, big = (e["derive"]["peak_rss_mb"] for e in ledgers)
            ratio = big / small
            verdict = "MET" if ratio <= FLAT_RSS_RATIO else "MISS"
            lines.append(
                f"{verdict}: {database}: arrears peak RSS {big:,.0f} MB on {sizes[-1]:,} lines"
                f" against {small:,.0f} MB on {sizes[0]:,}: {ratio:.2f}x"
                f" (target <= {FLAT_RSS_RATIO}x)"
            )
    return lines


def _tenants_text(entry: dict, derived: dict) -> str:
    """A ledger's tenants as generated, and as the derive counted them (in debt after `/`)."""
    if entry.get("tenants") is None:
        return "-"
    if "tenants" not in derived:
        return f"{entry['tenants']:,}"
    return f"{entry['tenants']:,} ({derived['tenants']:,}, {derived['in_debt']:,} owe)"


def print_table(report: dict) -> None:
    header = ("database", "data", "tenants", "load s", "load CPU s", "derive s", "derive CPU s",
              "derive/load", "derive RSS MB", "steps (wall/CPU s)")  # fmt: skip
    rendered = []
    for entry in report["results"]:
        load, derived = entry.get("load", {}), entry.get("derive", {})
        ok = "error" not in load and "error" not in derived and derived
        load_step = load.get("steps", {}).get("load", {})
        rendered.append(
            (
                entry["database"],
                entry["data"],
                _tenants_text(entry, derived if ok else {}),
                f"{load_step['seconds']:.2f}" if load_step else "-",
                f"{load_step['cpu_seconds']:.2f}" if load_step else "-",
                f"{derived['seconds']:.2f}" if ok else "-",
                f"{derived['cpu_seconds']:.2f}" if ok else "-",
                f"{derived['seconds'] / load_step['seconds']:.2f}x" if ok else "-",
                f"{derived['peak_rss_mb']:,.0f}" if ok else "-",
                _steps_text(derived) if ok else (load.get("error") or derived.get("error", "")),
            )
        )
    widths = [max(len(c.splitlines()[0] if c else c) for c in col)
              for col in zip(header, *rendered, strict=True)]  # fmt: skip
    print("Table 3: derive (insight steps) beside the load of the same data, each a fresh process")
    for cells in (header, tuple("-" * w for w in widths), *rendered):
        print("  ".join(c.splitlines()[0].ljust(w) if c else c.ljust(w)
                        for c, w in zip(cells, widths, strict=True)).rstrip())  # fmt: skip
    print(
        f"as_of {report['as_of']}; tenants = the ledger's as generated (in brackets: those"
        " the derive counted, and those who owe); load = the load stage alone (pull,"
        " normalise and contract before it not counted); CPU = the process's user + system"
        " seconds, plus on PostgreSQL its server processes'; derive RSS = ru_maxrss of the"
        " derive process (imports included)."
    )
    for line in verdicts(report):
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("load", "derive"))
    parser.add_argument("--landlord")
    parser.add_argument("--entity")
    parser.add_argument("--derive", choices=("arrears", "works"))
    parser.add_argument("--url")
    parser.add_argument("--ledger-sizes", type=int, nargs=2, default=LEDGER_SIZES)
    parser.add_argument("--works-orders", type=int, default=WORKS_ORDERS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return 0
    report = run_all(tuple(args.ledger_sizes), args.works_orders)
    print()
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
