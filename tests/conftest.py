"""Fixtures shared by the whole suite, and the rules that keep CI honest.

- Every test gets its own hub state: `DATAFIX_HOME` points into the test's tmp_path;
  `DAGSTER_HOME`, `DATAFIX_WAREHOUSE_URL` and `DATAFIX_DATAFIXES_DIR` are unset, so the hub derives
  them (`pipelines/lib/environment.py`) and nothing leaks from the developer's shell or `.env`.
- `warehouse_url` runs a test twice, on SQLite and on a fresh PostgreSQL database, and points the
  hub at it. `mariadb_url` gives a fresh MariaDB database, reached over ODBC.
- `sandbox` runs the local peers the demo's web-service landlords read, on ports the system
  picks, and points the hub at them.
- `postgres_database` and `mariadb_database` are factories (context managers) for tests that need
  several databases or want to see one dropped.
- A server that cannot be reached skips the test on a workstation, but fails it when `CI=true`.
- When `CI=true`, any skipped test fails the run, listed with its reason (works under xdist: the
  controller sees every worker's reports).

The servers are the machine's own (`make services` starts them): PostgreSQL on 127.0.0.1:5432 as
`postgres` with trust auth, MariaDB on 127.0.0.1:3306 as `root` with an empty password.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

if TYPE_CHECKING:
    from connectors.sandbox.run import Sandbox

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"
MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306
MARIADB_USER = "root"
# The unixODBC driver name registered by Debian's odbc-mariadb package (`odbcinst -q -d`).
MARIADB_ODBC_DRIVER = "MariaDB Unicode"
# The one registered by Debian's odbc-postgresql package.
POSTGRES_ODBC_DRIVER = "PostgreSQL Unicode"
TEST_DATABASE_PREFIX = "datafix_test_"

DatabaseFactory = Callable[[], AbstractContextManager[str]]


def in_ci() -> bool:
    """True on the CI runner (`.ci/run` exports `CI=true`): nothing may be skipped there."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def service_unavailable(reason: str) -> None:
    """Skip the test on a workstation; fail it loudly in CI, where every service must be up."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: tests needing it must not be skipped)", pytrace=False)
    pytest.skip(reason)


def new_database_name() -> str:
    """A name no other test (or xdist worker) will pick: `datafix_test_<12 hex digits>`."""
    return f"{TEST_DATABASE_PREFIX}{secrets.token_hex(6)}"


# --- Isolation ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def hub_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The hub's home folder for this test; the hub's other locations derive from it."""
    home = tmp_path / "datafix-home"
    home.mkdir()
    monkeypatch.setenv("DATAFIX_HOME", str(home))
    # tests keep landlords' files in their own temporary folders: the operator's inbox root
    monkeypatch.setenv("DATAFIX_INBOX_ROOTS", str(tmp_path))
    for derived in ("DAGSTER_HOME", "DATAFIX_WAREHOUSE_URL", "DATAFIX_DATAFIXES_DIR"):
        monkeypatch.delenv(derived, raising=False)
    return home


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    """Each test starts with no remembered secret values: a datafix another test loaded in this
    worker (its password `secret`, say) must not mask this test's output."""
    from connectors.secrets import forget_all

    forget_all()
    yield
    forget_all()


# --- PostgreSQL -----------------------------------------------------------------------------


def postgres_url(database: str) -> str:
    """SQLAlchemy URL the hub uses for a database on the test server (psycopg 3 driver)."""
    return f"postgresql+psycopg://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"


def run_postgres_admin(statement: str, database: str) -> None:
    """Run CREATE/DROP DATABASE (which refuse transactions) as `postgres`, in autocommit."""
    import psycopg
    from psycopg import sql

    try:
        connection = psycopg.connect(
            host=POSTGRES_HOST,
            port=POSTGRES_PORT,
            user=POSTGRES_USER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.OperationalError as error:
        problem = " ".join(str(error).split())
    else:
        problem = None
    if problem is not None:  # outside the `except`: the report shows no chained traceback
        service_unavailable(
            f"PostgreSQL is not reachable on {POSTGRES_HOST}:{POSTGRES_PORT} as {POSTGRES_USER} "
            f"({problem}); start it with `make services`"
        )
    with connection:
        connection.execute(sql.SQL(statement).format(sql.Identifier(database)))


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for the block; dropped after, even if still in use."""
    database = new_database_name()
    run_postgres_admin("CREATE DATABASE {}", database)
    try:
        yield postgres_url(database)
    finally:
        # FORCE ends sessions the code under test left open (an engine's connection pool).
        run_postgres_admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)


@pytest.fixture
def postgres_database() -> DatabaseFactory:
    """Factory: `with postgres_database() as url:` gives a database dropped when the block ends."""
    return temporary_postgres_database


# --- MariaDB --------------------------------------------------------------------------------
# The hub has no MySQL driver for Python; it reaches MariaDB over ODBC (pyodbc, the driver
# installed by `make system-deps`). Creating and dropping the test database is administration, so
# it goes through the `mariadb` command-line client, which needs no Python driver at all.


def mariadb_url(database: str) -> str:
    """SQLAlchemy URL for a database on the test server, through pyodbc and the MariaDB driver."""
    driver = MARIADB_ODBC_DRIVER.replace(" ", "+")
    return f"mysql+pyodbc://{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/{database}?driver={driver}"


def odbc_connection_string(url: str) -> str:
    """The DSN-less ODBC connection string to the test server's database that a SQLAlchemy
    `url` names (PostgreSQL or MariaDB), through the server's registered ODBC driver."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        driver, host, port, user = POSTGRES_ODBC_DRIVER, POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER
    else:
        driver, host, port, user = MARIADB_ODBC_DRIVER, MARIADB_HOST, MARIADB_PORT, MARIADB_USER
    return f"Driver={{{driver}}};Server={host};Port={port};Database={parsed.database};UID={user}"


def run_mariadb_admin(statement: str) -> None:
    """Run one statement as `root` with the `mariadb` client; skip/fail if the server is away."""
    client = shutil.which("mariadb")
    if client is None:
        service_unavailable("the `mariadb` client is not installed (Debian package mariadb-client)")
    command = [client, f"--host={MARIADB_HOST}", f"--port={MARIADB_PORT}", f"--user={MARIADB_USER}"]
    command += ["--connect-timeout=5", "--batch", f"--execute={statement}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return
    message = result.stderr.strip()
    if "ERROR 2002" in message or "ERROR 2003" in message or "ERROR 2013" in message:
        service_unavailable(
            f"MariaDB is not reachable on {MARIADB_HOST}:{MARIADB_PORT} ({message}); "
            "start it with `make services`"
        )
    raise RuntimeError(f"mariadb --execute={statement!r} failed: {message}")


def require_mariadb_odbc_driver() -> None:
    """pyodbc loads libodbc when imported; the driver must be registered with unixODBC."""
    try:
        import pyodbc
    except ImportError as error:
        problem = str(error)
    else:
        problem = None
    if problem is not None:
        service_unavailable(f"pyodbc cannot load unixODBC ({problem}); run `make system-deps`")
    if MARIADB_ODBC_DRIVER not in pyodbc.drivers():
        service_unavailable(
            f"ODBC driver {MARIADB_ODBC_DRIVER!r} is not registered (found {pyodbc.drivers()}); "
            "run `make system-deps`"
        )


@contextmanager
def temporary_mariadb_database() -> Iterator[str]:
    """A fresh, empty MariaDB database (utf8mb4) for the block; dropped after."""
    require_mariadb_odbc_driver()
    database = new_database_name()
    run_mariadb_admin(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    try:
        yield mariadb_url(database)
    finally:
        run_mariadb_admin(f"DROP DATABASE IF EXISTS `{database}`")


@pytest.fixture
def mariadb_database() -> DatabaseFactory:
    """Factory: `with mariadb_database() as url:` gives a database dropped when the block ends."""
    return temporary_mariadb_database


@pytest.fixture(name="mariadb_url")
def mariadb_url_fixture() -> Iterator[str]:
    """SQLAlchemy URL (`mysql+pyodbc://…?driver=MariaDB+Unicode`) of a fresh MariaDB database."""
    with temporary_mariadb_database() as url:
        yield url


# --- The warehouse --------------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def warehouse_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """An empty warehouse, once on SQLite and once on PostgreSQL; the hub is pointed at it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/warehouse.db"
        monkeypatch.setenv("DATAFIX_WAREHOUSE_URL", url)
        yield url
        return
    with temporary_postgres_database() as url:
        monkeypatch.setenv("DATAFIX_WAREHOUSE_URL", url)
        yield url


# --- The sandbox peers ---------------------------------------------------------------------


@pytest.fixture
def sandbox(hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """The sandbox peers (landlord ERP, Sage X3, Salesforce) on ports the system picks, so
    parallel workers never collide; `DATAFIX_SANDBOX_*` point the demo datafixes (and any
    `datafix` subprocess) at them. Every peer is stopped, its threads joined, after the test."""
    from connectors.sandbox.run import SandboxPorts, running_sandbox

    with running_sandbox(hub_home, ports=SandboxPorts.ephemeral()) as running:
        for name, value in running.variables().items():
            monkeypatch.setenv(name, value)
        yield running


# --- CI: nothing may be skipped -------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    # Registered here while pyproject.toml's marker list does not name it (--strict-markers).
    config.addinivalue_line("markers", "mariadb: needs the machine's MariaDB server")
    # xdist workers forward their reports to the controller, which alone judges the run.
    if in_ci() and not hasattr(config, "workerinput"):
        config.pluginmanager.register(SkipsFailTheRun(), "datafix-skips-fail-the-run")


class SkipsFailTheRun:
    """In CI, a skipped test is a test that did not run: list each one and fail the run."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.record(report)  # a whole module skipped (pytest.importorskip, allow_module_level)

    def record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):  # an expected failure is no skip
            return
        reason = str(report.longrepr)
        if isinstance(report.longrepr, tuple | list) and len(report.longrepr) == 3:
            path, line, message = report.longrepr
            reason = f"{message} ({path}:{line})"
        self.skipped.append((report.nodeid, reason.removeprefix("Skipped: ")))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # pytest returns session.exitstatus once this hook is done; only turn a success red.
        if self.skipped and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skipped:
            return
        terminalreporter.section("CI=true: skipped tests fail the run", red=True, bold=True)
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"SKIPPED {nodeid or '(collection)'} - {reason}", red=True)
        terminalreporter.line(
            f"{len(self.skipped)} skipped. In CI every test must run: start the missing service "
            "(make services), install the missing package (make system-deps), or remove the skip.",
            red=True,
        )
