"""Issue 12, *Why* "secrets leak" and *Done when* "a secrets test": 20 hostile passwords in SQL,
ODBC and SOAP settings never come out of the hub.

Each password sits in the environment of a real `datafix check` and `datafix run` (the datafix
file names the variable only), in a PostgreSQL URL's user info and query (`?password=`), an ODBC
`PWD=` and a SOAP WSDL address (user info and `?password=`) plus a SOAP sink's `password:`.
The peers are real and refuse: PostgreSQL has no such role (the connection fails), the SOAP
peer on loopback answers 401 to everything. Afterwards no password may appear, raw or encoded,
in stdout, stderr, any file under `DATAFIX_HOME` (logs, Dagster storage, warehouse) or any event
of the Dagster event log (read back through the instance's event log storage).

`scrub` itself is tested below on the same passwords, wherever a password can sit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, quote_plus

import dagster as dg
import pytest

from connectors.secrets import forget_all, remember, scrub

HOSTILE_PASSWORDS = [
    "p@ss:w/rd?x=1#frag",
    "hunter2@127.0.0.1",
    "a:b@c/d?e#f%g",
    "100%pure%20secret",
    "\"double\"quoted'single'",
    "br{ace}}s;PWD=x",
    "open sesame 42 times",
    "ünïcødé-mötdepässe",
    "пароль-секрет-42",
    "密码🔑secret-key",
    "?password=leak&token=x",
    "#hash#tag#bang",
    "//slashes//and:colons",
    "back\\slash\\Nend",
    "semi;colon;Pwd=oops",
    "<xml>&amp;</xml>",
    "$dollar$sign$",
    "%40%3A%2F%3Fenc",
    "'; DROP TABLE x;--",
    "==equals==&&and@@",
]
assert len(set(HOSTILE_PASSWORDS)) == 20

ROLE = "hostile_nobody"  # no such role on the test server: every connection fails for real


def forms(password: str) -> set[str]:
    """How a leaked password could be written: as is, URL-encoded, JSON-escaped."""
    return {
        password,
        quote(password, safe=""),
        quote_plus(password),
        json.dumps(password)[1:-1],
    }


def leaks(text: str) -> list[str]:
    return [p for p in HOSTILE_PASSWORDS if any(form in text for form in forms(p))]


class _Refusing(BaseHTTPRequestHandler):
    """A SOAP peer that wants credentials it never accepts."""

    def _refuse(self) -> None:
        body = b"authentication required"
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="ERP"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *_args: object) -> None:  # keep the test's output quiet
        pass


@pytest.fixture
def refusing_peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def write_datafix(folder: Path, number: int, peer: str) -> tuple[str, str]:
    """A landlord whose every source and sink carries `${DATAFIX_HOSTILE_<n>}`."""
    landlord = f"hostile-{number:02d}"
    variable = f"DATAFIX_HOSTILE_{number:02d}"
    ref = "${" + variable + "}"
    database = "postgresql+psycopg://{user}@127.0.0.1:5432/test"
    text = f"""\
landlord: {{id: {landlord}, name: Hostile {number}}}
sources:
  erp_userinfo:
    kind: sql
    url: "postgresql+psycopg://{ROLE}:{ref}@127.0.0.1:5432/test"
    table: locataires
  erp_query:
    kind: sql
    url: "{database.format(user=ROLE)}?password={ref}"
    table: ecritures
  erp_odbc:
    kind: odbc
    connection: "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=5432;Database=test;\
UID={ROLE};PWD={ref}"
    table: plans
  erp_soap:
    kind: soap
    wsdl: "http://hub:{ref}@{peer}/erp?wsdl&password={ref}"
    operation: ListWorkOrders
    records: orders.order
entities:
  tenants:
    source: erp_userinfo
    fields: {{tenant_ref: id, status: {{const: active}}}}
  ledger_entries:
    source: erp_query
    fields:
      {{entry_ref: id, tenant_ref: t, entry_date: d, kind: {{const: rent_call}}, amount_cents: a}}
  repayment_plans:
    source: erp_odbc
    fields:
      plan_ref: id
      tenant_ref: t
      start_date: d
      total_cents: total
      instalment_cents: each
      status: {{const: active}}
  work_orders:
    source: erp_soap
    fields: {{order_ref: id, category: cat, status: {{const: scheduled}}, ordered_date: day}}
push:
  sinks:
    erp_orders:
      kind: soap
      sends: commitments
      wsdl: "http://{peer}/erp?wsdl"
      operation: SubmitCommitments
      username: hub
      password: "{ref}"
      fields: {{Reference: order_ref}}
"""
    (folder / f"{landlord}.yaml").write_text(text, encoding="utf-8")
    return landlord, variable


def test_twenty_hostile_passwords_never_leave_the_hub(
    tmp_path: Path, hub_home: Path, refusing_peer: str
) -> None:
    datafixes = tmp_path / "datafixes"
    datafixes.mkdir()
    environment = {**os.environ, "DATAFIX_DATAFIXES_DIR": str(datafixes), "PYTHONUNBUFFERED": "1"}
    landlords = []
    for number, password in enumerate(HOSTILE_PASSWORDS, start=1):
        landlord, variable = write_datafix(datafixes, number, refusing_peer)
        environment[variable] = password
        landlords.append(landlord)
    datafix = [str(Path(sys.executable).with_name("datafix"))]

    checked = subprocess.run(
        [*datafix, "check"], env=environment, capture_output=True, text=True, timeout=600
    )
    ran = subprocess.run(
        [*datafix, "run", *landlords, "--verbose"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )

    # the peers were really reached and refused (not a datafix refused before connecting)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert ran.returncode != 0, ran.stdout + ran.stderr
    assert f'role "{ROLE}" does not exist' in checked.stdout + ran.stdout + ran.stderr
    assert "401" in checked.stdout + ran.stdout + ran.stderr

    found = {
        "check stdout": leaks(checked.stdout),
        "check stderr": leaks(checked.stderr),
        "run stdout": leaks(ran.stdout),
        "run stderr": leaks(ran.stderr),
    }
    for path in sorted(hub_home.rglob("*")):
        if path.is_file():
            found[str(path.relative_to(hub_home))] = leaks(
                path.read_bytes().decode("utf-8", errors="replace")
            )
    found["event log"] = event_log_leaks(hub_home)
    assert {where: which for where, which in found.items() if which} == {}


def event_log_leaks(hub_home: Path) -> list[str]:
    """Passwords in any event of any run, read through the instance's event log storage."""
    import dagster as dg
    from dagster._serdes import serialize_value

    dagster_home = hub_home / "dagster"
    assert (dagster_home / "dagster.yaml").exists() or any(dagster_home.iterdir())
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert runs, "the run left no Dagster run to read"
            texts = [
                serialize_value(entry) + str(entry)
                for run in runs
                for entry in instance.all_logs(run.run_id)
            ]
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    return leaks("\n".join(texts))


# --- scrub, on the same passwords, wherever a password can sit ----------------------------


def placements(password: str) -> dict[str, str]:
    encoded = quote(password, safe="")
    braced = "{" + password.replace("}", "}}") + "}"
    return {
        "url user info, raw": f"postgresql+psycopg://hub:{password}@db.example:5432/erp failed",
        "url user info, encoded": f"connecting to postgresql://hub:{encoded}@10.0.0.1/erp",
        "url query": f"https://erp.example/ws?wsdl&password={encoded}&lang=fr",
        "url query, pwd": f"mssql+pyodbc://hub@erp/ERP?driver=X&pwd={encoded}",
        "odbc braced": f"Driver={{ODBC 18}};Server=erp;UID=hub;PWD={braced};Encrypt=yes",
        "odbc Password=": f"Driver={{PG}};Server=erp;UID=hub;Password={braced}",
    }


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS, ids=range(1, 21))
def test_scrub_masks_a_password_wherever_it_sits(password: str) -> None:
    for where, text in placements(password).items():
        cleaned = scrub(text)
        assert not leaks(cleaned), f"{where}: {cleaned}"
        assert "***" in cleaned, where


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS, ids=range(1, 21))
def test_scrub_masks_a_remembered_secret_in_free_text(password: str) -> None:
    remember([password])
    try:
        message = (
            f"login refused for {password!r}; sent {quote(password, safe='')} and"
            f" {json.dumps(password)}"
        )
        assert not leaks(scrub(message)), scrub(message)
    finally:
        forget_all()


def test_scrub_leaves_ordinary_text_alone() -> None:
    text = "postgresql+psycopg://hub@db:5432/erp?sslmode=require — 3 rows, a@b.example"
    assert scrub(text) == text


def test_a_secret_logged_by_an_asset_never_reaches_the_event_log() -> None:
    """What an asset (or a library under it) logs becomes event-log entries and console lines:
    the code location scrubs every log record as it is made."""
    import pipelines.definitions  # noqa: F401 — loading the code location, as Dagster does

    password = HOSTILE_PASSWORDS[0]
    remember([password])
    try:

        @dg.asset
        def chatty(context) -> None:  # type: ignore[no-untyped-def]
            context.log.warning(
                "retrying postgresql+psycopg://hub:%s@erp:5432/erp", quote(password, safe="")
            )
            context.log.info("the peer said: bad password %r", password)

        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([chatty], instance=instance)
            assert result.success
            messages = [
                entry.user_message
                for entry in instance.all_logs(result.run_id)
                if entry.user_message
            ]
        assert any("retrying postgresql+psycopg://hub:***@erp" in text for text in messages)
        assert any("the peer said: bad password" in text for text in messages)
        assert not any(leaks(text) for text in messages), messages
    finally:
        forget_all()
