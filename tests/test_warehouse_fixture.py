"""The database fixtures: each test gets a private, empty database, gone once the test is over."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from pipelines.lib import environment


def database_exists(server_url: sa.URL, name: str) -> bool:
    """Ask the server's catalogue, from a separate connection, whether a database exists."""
    if server_url.get_backend_name() == "postgresql":
        catalogue = server_url.set(database="postgres")
        query = sa.text("SELECT count(*) FROM pg_database WHERE datname = :name")
    else:
        catalogue = server_url.set(database="information_schema")
        query = sa.text("SELECT count(*) FROM schemata WHERE schema_name = :name")
    engine = sa.create_engine(catalogue)
    try:
        with engine.connect() as connection:
            return connection.scalar(query, {"name": name}) == 1
    finally:
        engine.dispose()


@contextmanager
def private_database(factory: Callable[[], Any]) -> Iterator[str]:
    """The URL of a database from `factory`, asserted to exist while used, gone afterwards."""
    with factory() as url:
        server = sa.make_url(url)
        name = server.database
        assert name.startswith("datafix_test_")
        assert database_exists(server, name)
        yield url
    assert not database_exists(server, name)


def test_warehouse_url_is_an_empty_warehouse_the_hub_uses(warehouse_url: str) -> None:
    assert environment.warehouse_url() == warehouse_url
    engine = sa.create_engine(warehouse_url)
    try:
        with engine.begin() as connection:
            assert sa.inspect(connection).get_table_names() == []
            connection.execute(sa.text("CREATE TABLE probe (amount_cents BIGINT NOT NULL)"))
            connection.execute(sa.text("INSERT INTO probe VALUES (123456789012)"))
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT amount_cents FROM probe")) == 123456789012
    finally:
        engine.dispose()


def test_without_a_warehouse_fixture_the_hub_uses_sqlite_in_its_home(hub_home) -> None:
    assert environment.warehouse_url() == f"sqlite:///{hub_home / 'warehouse.db'}"
    assert environment.dagster_home() == hub_home / "dagster"


@pytest.mark.postgres
def test_postgres_database_exists_while_used_and_is_dropped_after(postgres_database) -> None:
    with private_database(postgres_database) as url:
        # Left open on purpose: the drop must end sessions the code under test forgot.
        forgotten = sa.create_engine(url, poolclass=sa.NullPool).connect()
        assert forgotten.scalar(sa.text("SELECT current_database()")) == sa.make_url(url).database
    forgotten.invalidate()


@pytest.mark.mariadb
def test_mariadb_url_reaches_an_empty_database_over_odbc(mariadb_url: str) -> None:
    engine = sa.create_engine(mariadb_url)
    try:
        with engine.connect() as connection:
            current = connection.scalar(sa.text("SELECT DATABASE()"))
            assert current == sa.make_url(mariadb_url).database
            assert sa.inspect(connection).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_mariadb_database_exists_while_used_and_is_dropped_after(mariadb_database) -> None:
    with private_database(mariadb_database):
        pass  # asserted on the way in and out
