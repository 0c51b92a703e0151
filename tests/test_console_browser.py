"""The Dagster UI as the operators' console, in a real browser (Debian's chromium driven by
Selenium through chromedriver; nothing is downloaded).

Set up once for the module: the 5 demo landlords run by `datafix demo` into a home of their own
(Loire Habitat's datafix tightened so that its tenants contract fails: 4 of 121 rows quarantined
is more than the 1 % it allows), then Cité Jardins run again unchanged; `dagster-webserver`
serves that instance on a free port of 127.0.0.1. Each test loads the page an operator reads,
waits for what it must show and saves a screenshot into `test-artifacts/console-browser/` (or
`$DATAFIX_TEST_ARTIFACTS/console-browser/`; the folder is printed, `-s` shows it); the
figures it expects are the demo's seeded counts (`DEMO_ROWS`, `DEMO_BAD_ROWS`) or read from the
warehouse with plain SQL. The landlords expected unhealthy are the failing one and those whose
insight alerts reach an error threshold, judged by `pipelines.lib.health` (its rules are proven
in `tests/pipelines/test_health.py`). Statuses the page renders as icons are also read through
the webserver's GraphQL API, the one the page itself calls.
"""

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from connectors.sandbox.demo_files import DEMO_BAD_ROWS, DEMO_ROWS
from pipelines.lib.datafixes import load_datafix
from pipelines.lib.environment import REPO_ROOT
from pipelines.lib.health import alert_problems, insight_alerts

pytestmark = pytest.mark.slow

BIN = REPO_ROOT / ".venv" / "bin"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FAILING = "loire-habitat"  # its tenants contract fails (max_quarantine_percent: 1)
RERUN = "cite-jardins"  # run a second time, its sources unchanged
WAIT = 120  # seconds a page may take to show what it must (a loaded 2-core machine)


@dataclass
class Console:
    base: str
    driver: WebDriver
    shots: Path
    home: Path
    first_runs: dict[str, str]  # landlord → the demo's run id (8 characters)
    unhealthy: set[str]  # the failing landlord and those with an insight alert at error level

    def open(self, path: str, *expected: str) -> str:
        """Load `path`, wait until the page's text holds every `expected` text, close the
        welcome dialog, and return the page's text."""
        self.driver.get(self.base + path)
        try:
            WebDriverWait(self.driver, WAIT).until(
                lambda d: all(text in d.find_element(By.TAG_NAME, "body").text for text in expected)
            )
        except TimeoutException:
            self.shot("timeout")
            body = self.driver.find_element(By.TAG_NAME, "body").text
            raise AssertionError(f"{path}: never showed {expected}; it shows:\n{body}") from None
        for skip in self.driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
            if skip.is_displayed():
                skip.click()
        return self.driver.find_element(By.TAG_NAME, "body").text

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            self.base + "/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            document = json.load(answer)
        assert "errors" not in document, document
        return document["data"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_webserver(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"dagster-webserver exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/server_info", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise AssertionError(f"dagster-webserver never answered:\n{log.read_text()[-3000:]}")


def alarmed(home: Path, datafixes: Path) -> set[str]:
    """The demo landlords with an insight alert at its error threshold in the warehouse (their
    health fails too), judged as the alerts' own checks judge them."""
    engine = sa.create_engine(f"sqlite:///{home}/warehouse.db")
    try:
        with engine.connect() as connection:
            return {
                landlord
                for landlord in DEMO_ROWS
                if alert_problems(
                    insight_alerts(connection, load_datafix(datafixes / f"{landlord}.yaml"))
                )
            }
    finally:
        engine.dispose()


def run_ids(report: str) -> dict[str, str]:
    return dict(re.findall(r"^([a-z-]+) \(run ([0-9a-f]{8})\)", report, re.MULTILINE))


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console")
    home = root / "datafix-home"
    home.mkdir(mode=0o700)
    datafixes = root / "datafixes"
    shutil.copytree(REPO_ROOT / "datafixes", datafixes)
    tightened = datafixes / f"{FAILING}.yaml"
    text = tightened.read_text(encoding="utf-8")
    mapping = "  tenants:\n    source: locataires\n"
    assert mapping in text
    tightened.write_text(
        text.replace(mapping, mapping + "    max_quarantine_percent: 1\n", 1), encoding="utf-8"
    )
    # kept after the run (pytest's temporary folders are pruned by later runs): the artefacts
    shots = Path(os.environ.get("DATAFIX_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
    shots = shots / "console-browser"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    print(f"\nconsole browser test: screenshots in {shots}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATAFIX_", "DAGSTER_"))},
        "DATAFIX_HOME": str(home),
        "DATAFIX_DATAFIXES_DIR": str(datafixes),
        "DATAFIX_SANDBOX_PORT": "0",
        "DAGSTER_HOME": str(home / "dagster"),
    }
    demo = subprocess.run(
        [str(BIN / "datafix"), "demo"], env=env, capture_output=True, text=True, check=False
    )
    assert demo.returncode == 1, demo.stdout + demo.stderr  # the tightened landlord fails
    assert "4 of 5 landlord(s) ok, 1 failed" in demo.stdout, demo.stdout + demo.stderr
    rerun = subprocess.run(
        [str(BIN / "datafix"), "run", RERUN], env=env, capture_output=True, text=True, check=False
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert re.search(r"\n  tenants\s+unchanged", rerun.stdout), rerun.stdout
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = root / "webserver.log"
    workspace = str(REPO_ROOT / "workspace.yaml")
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace]
    with log.open("w") as output:
        server = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    driver = None
    try:
        wait_for_webserver(base, server, log)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        options.add_argument("--window-size=1600,1400")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        unhealthy = {FAILING} | alarmed(home, datafixes)
        yield Console(base, driver, shots, home, run_ids(demo.stdout), unhealthy)
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def health_row(page: str, entity: str) -> list[str]:
    """The cells of `entity`'s row in the health's entities table, as the page shows them."""
    for line in page.splitlines():
        cells = line.split()
        if cells and cells[0] == entity and len(cells) >= 7:
            return cells
    raise AssertionError(f"no row for {entity} in:\n{page}")


def test_the_health_asset_lists_every_demo_landlord_with_its_counts(console: Console) -> None:
    for landlord, entities in DEMO_ROWS.items():
        page = console.open(
            f"/assets/landlord_health?view=partitions&partition={landlord}",
            landlord,
            "rows_read",
            "not_configured",
        )
        console.shot(f"health-{landlord}")
        healthy = "false" if landlord in console.unhealthy else "true"
        assert re.search(rf"^healthy\n{healthy}$", page, re.MULTILINE), page
        for entity, read in entities.items():
            bad = DEMO_BAD_ROWS[landlord][entity]
            blocked = landlord == FAILING and entity == "tenants"
            status, loaded = ("blocked", 0) if blocked else ("loaded", read - bad)
            contract = "FAILED" if blocked else "passed"
            # entity, status, read, loaded, quarantined, skipped, contract
            cells = health_row(page, entity)
            assert cells[1:5] == [status, str(read), str(loaded), str(bad)], cells
            assert cells[6] == contract, cells


def test_a_landlord_with_a_failing_contract_shows_as_failing(console: Console) -> None:
    page = console.open("/assets/landlord_health?view=checks", "healthy", "Failed")
    console.shot("health-check-failed")
    assert "Fails when any part of the landlord is unhealthy" in page
    page = console.open(f"/assets/landlord_health?view=partitions&partition={FAILING}", "UNHEALTHY")
    assert "tenants: contract FAILED" in page
    executions = console.graphql(
        '{ assetCheckExecutions(assetKey: {path: ["landlord_health"]}, checkName: "healthy",'
        " limit: 50) { partition status } }"
    )["assetCheckExecutions"]
    latest: dict[str, str] = {}
    for execution in executions:  # newest first
        latest.setdefault(execution["partition"], execution["status"])
    assert latest == {
        landlord: "FAILED" if landlord in console.unhealthy else "SUCCEEDED"
        for landlord in DEMO_ROWS
    }


def test_an_unchanged_rerun_keeps_the_last_verdict_and_counts_and_skips_the_check(
    console: Console,
) -> None:
    first = console.first_runs[RERUN]
    page = console.open(
        f"/assets/warehouse_tenants?view=partitions&partition={RERUN}",
        f"skipped, unchanged since run {first}",
        "last_contract",
    )
    console.shot("unchanged-warehouse-tenants")
    lines = page.splitlines()
    shown = {name: lines[lines.index(name) + 1] for name in ("last_load/rows_read", "status")}
    assert shown == {"last_load/rows_read": str(DEMO_ROWS[RERUN]["tenants"]), "status": "unchanged"}
    assert f"passed (run {first})" in page
    console.open("/assets/canonical_tenants?view=checks", "Latest execution", "Skipped")
    console.shot("unchanged-contract-skipped")
    executions = console.graphql(
        '{ assetCheckExecutions(assetKey: {path: ["canonical_tenants"]}, checkName: "contract",'
        " limit: 50) { partition status runId } }"
    )["assetCheckExecutions"]
    ours = [e for e in executions if e["partition"] == RERUN]
    # newest first: the rerun skipped it, the demo's run had passed it; never a second Passed
    assert [e["status"] for e in ours[:2]] == ["SKIPPED", "SUCCEEDED"]
    assert ours[1]["runId"].startswith(first)


def test_the_quarantine_table_of_an_entity_shows_its_reasons(console: Console) -> None:
    landlord, entity = "opale-logement", "work_orders"
    with sqlite3.connect(console.home / "warehouse.db") as connection:
        reasons = connection.execute(
            "SELECT reason, count(*) FROM quarantine WHERE landlord_id = ? AND entity = ?"
            " AND resolved_at IS NULL GROUP BY reason",
            (landlord, entity),
        ).fetchall()
    assert sum(count for _, count in reasons) == DEMO_BAD_ROWS[landlord][entity]
    page = console.open(
        f"/assets/warehouse_{entity}?view=partitions&partition={landlord}",
        "quarantine_reasons",
        "quarantine_rows",
    )
    console.shot("quarantine-work-orders")
    for reason, count in reasons:
        assert re.search(rf"^{reason} {count}$", page, re.MULTILINE), (reason, count, page)
    assert "•••" in page  # the sealed cells of the first rows, masked


def test_the_requeue_job_is_launched_from_the_launchpad(console: Console) -> None:
    landlord = "opale-logement"
    console.open("/locations/datafix_hub/jobs/requeue/playground", "Launch Run", "Partition")
    driver = console.driver
    partition = driver.find_element(By.CSS_SELECTOR, "input[placeholder='Partition']")
    partition.click()
    partition.send_keys(landlord)
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_elements(By.XPATH, f"//*[normalize-space()='{landlord}']")
    )
    partition.send_keys(Keys.ENTER)
    console.shot("launchpad-requeue")
    launch = driver.find_element(By.XPATH, "//button[normalize-space()='Launch Run']")
    WebDriverWait(driver, WAIT).until(lambda d: launch.is_enabled())
    launch.click()
    WebDriverWait(driver, WAIT).until(lambda d: "/runs/" in d.current_url)
    console.shot("launched-requeue")
    runs = console.graphql(
        '{ runsOrError(filter: {pipelineName: "requeue"}) { ... on Runs { results {'
        " runId status tags { key value } } } } }"
    )["runsOrError"]["results"]
    assert len(runs) == 1
    tags = {tag["key"]: tag["value"] for tag in runs[0]["tags"]}
    assert tags["dagster/partition"] == landlord
    assert runs[0]["runId"] in driver.current_url
