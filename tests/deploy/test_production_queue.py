"""Issue 14: the production instance (`deploy/dagster.yaml`) run for real against PostgreSQL.

A code-location server (`dagster api grpc`), `dagster-daemon run` and `dagster-webserver` are
started on 127.0.0.1 with `$DAGSTER_HOME/dagster.yaml` a verbatim copy of `deploy/dagster.yaml`;
its PostgreSQL settings come from the `DAGSTER_PG_*` variables it reads with `env:`, pointed at a
database this test creates and drops. Runs are submitted through the webserver's GraphQL API
(queued by the QueuedRunCoordinator) and timed from run storage:

- two runs of one landlord execute one after the other (the file's `dagster/partition` limit),
  a run of another landlord in parallel with them;
- a run whose worker process is killed (`kill -9`) is marked failed and the next run of its
  landlord starts.

The code location is a stand-in job (`queue_location.py`: it records its pid and waits), so
the figures are about the queue, not the hub's pipeline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from pipelines.lib.environment import REPO_ROOT
from tests.conftest import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_USER,
    new_database_name,
    run_postgres_admin,
)
from tests.deploy.services import BIN, free_port, graphql

# both tests share one deployment: on one xdist worker
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("production_queue")]

LOCATION = Path(__file__).with_name("queue_location.py")
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], seconds: float, logs: Path) -> T:
    """Poll `probe` until it returns a value; fail naming `what` (with the services' log tails)
    after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.25)
    tails = "\n".join(
        f"--- {log.name} (last lines)\n"
        + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        for log in sorted(logs.glob("*.log"))
    )
    pytest.fail(f"gave up after {seconds:g} s waiting for {what}\n{tails}", pytrace=False)


@dataclass
class Deployment:
    home: Path
    pids: Path
    logs: Path
    instance: dg.DagsterInstance
    client: DagsterGraphQLClient
    services: Services

    def pid_of(self, run_id: str) -> int:
        """The pid of `run_id`'s worker, once its op has started."""
        path = self.pids / run_id
        return wait_for(
            f"run {run_id}'s worker to start",
            lambda: int(path.read_text()) if path.exists() and path.read_text() else None,
            60,
            self.logs,
        )

    def submit(self, landlord: str, seconds: float) -> str:
        return self.client.submit_job_execution(
            "hold_landlord",
            run_config={"ops": {"hold": {"config": {"seconds": seconds}}}},
            tags={"dagster/partition": landlord},
        )

    def record(self, run_id: str) -> dg.RunRecord:
        record = self.instance.get_run_record_by_id(run_id)
        assert record is not None, run_id
        return record

    def finished(self, run_id: str, seconds: float) -> dg.RunRecord:
        def done() -> dg.RunRecord | None:
            record = self.record(run_id)
            return record if record.dagster_run.is_finished else None

        return wait_for(f"run {run_id} to finish", done, seconds, self.logs)


@dataclass
class Services:
    """The three services' processes, each started again by `start`."""

    commands: dict[str, list[str]]
    cwd: Path
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                self.commands[name],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: its run workers included
            )

    def kill(self, name: str) -> None:
        """SIGKILL the service and every process it started."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The three services on one fresh PostgreSQL database, shared by this module's tests."""
    tmp_path = tmp_path_factory.mktemp("deployment")
    database = new_database_name()
    run_postgres_admin("CREATE DATABASE {}", database)
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    grpc_port, web_port = free_port(), free_port()
    (home / "workspace.yaml").write_text(
        "load_from:\n  - grpc_server:\n"
        f"      host: 127.0.0.1\n      port: {grpc_port}\n      location_name: queue_test\n",
        encoding="utf-8",
    )
    pids, logs = tmp_path / "pids", tmp_path / "logs"
    pids.mkdir()
    logs.mkdir()
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": POSTGRES_HOST,
        "DAGSTER_PG_PORT": str(POSTGRES_PORT),
        "DAGSTER_PG_USER": POSTGRES_USER,
        "DAGSTER_PG_PASSWORD": "",  # the test server trusts local connections
        "DAGSTER_PG_DB": database,
        "DEPLOY_TEST_PIDS": str(pids),
    }
    commands = {
        "code-location": [
            BIN / "dagster", "api", "grpc", "-f", str(LOCATION),
            "-h", "127.0.0.1", "-p", str(grpc_port),
        ],
        "daemon": [BIN / "dagster-daemon", "run", "-w", str(home / "workspace.yaml")],
        "webserver": [
            BIN / "dagster-webserver", "-w", str(home / "workspace.yaml"),
            "-h", "127.0.0.1", "-p", str(web_port),
        ],
    }  # fmt: skip
    services = Services(
        {name: [str(part) for part in command] for name, command in commands.items()},
        tmp_path,
        env,
        logs,
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in env:
            if name.startswith("DAGSTER_PG_"):  # read by this process's instance too
                monkeypatch.setenv(name, env[name])
        try:
            # this process creates the storage's tables first: the three services then find them
            instance = dg.DagsterInstance.from_config(str(home))
            for name in commands:
                services.start(name)
            client = wait_for(
                "the webserver to serve the code location",
                lambda: _client(web_port),
                90,
                logs,
            )
            yield Deployment(home, pids, logs, instance, client, services)
        finally:
            services.stop_all()
            run_postgres_admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)


def _client(port: int) -> DagsterGraphQLClient | None:
    """A GraphQL client once the webserver answers and has loaded the code location."""
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries {"
        " locationOrLoadError { __typename } } } } }"
    )
    answer = graphql(port, query, timeout=5)
    if answer is None:
        return None
    entries = answer["data"]["workspaceOrError"]["locationEntries"]
    if not any(e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries):
        return None
    return DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=30)


def test_one_run_per_landlord_at_a_time_landlords_in_parallel(deployment: Deployment) -> None:
    first = deployment.submit("north-habitat", 8)
    other = deployment.submit("south-habitat", 8)
    second = deployment.submit("north-habitat", 8)
    runs = {run_id: deployment.finished(run_id, 90) for run_id in (first, second, other)}
    for run_id, record in runs.items():
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, run_id
        assert record.start_time is not None and record.end_time is not None
    a, b, c = runs[first], runs[second], runs[other]
    # one landlord: the second started after the first had ended
    assert b.start_time >= a.end_time, (a.start_time, a.end_time, b.start_time)
    # the other landlord ran beside the first (the queue's global limit is 8)
    assert c.start_time < a.end_time and a.start_time < c.end_time, (a, c)


def test_a_killed_run_worker_is_failed_and_the_queue_moves_on(deployment: Deployment) -> None:
    doomed = deployment.submit("north-habitat", 120)
    following = deployment.submit("north-habitat", 1)
    pid = deployment.pid_of(doomed)
    assert deployment.record(following).dagster_run.status == dg.DagsterRunStatus.QUEUED
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    failed = deployment.finished(doomed, 60)
    assert failed.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert failed.end_time is not None and failed.end_time - killed_at < 30
    nxt = deployment.finished(following, 60)
    assert nxt.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert nxt.start_time is not None and nxt.start_time >= failed.end_time
    messages = [
        event.message or ""
        for event in deployment.instance.all_logs(doomed)
        if event.is_dagster_event
    ]
    # the code-location server saw its worker die (with the DefaultRunLauncher, the daemon's run
    # monitoring cannot look into the worker: it fails runs that never start or never stop)
    assert any("was terminated by signal 9 (SIGKILL)" in m for m in messages), messages


def test_a_run_whose_code_location_server_died_is_failed_by_run_monitoring(
    deployment: Deployment,
) -> None:
    """The code-location server killed with its run worker (a container restart): nothing is
    left to notice the run died but the daemon's run monitoring, through the launcher of
    deploy/dagster.yaml (pipelines/lib/launcher.py)."""
    doomed = deployment.submit("south-habitat", 120)
    following = deployment.submit("south-habitat", 1)
    worker = deployment.pid_of(doomed)
    deployment.services.kill("code-location")
    assert not Path(f"/proc/{worker}").exists() or _zombie(worker)
    deployment.services.start("code-location")  # back, without the run
    failed = deployment.finished(doomed, 90)  # run monitoring polls every 20 s
    assert failed.dagster_run.status == dg.DagsterRunStatus.FAILURE
    messages = [e.message or "" for e in deployment.instance.all_logs(doomed)]
    assert any("no longer runs it" in m for m in messages), messages
    nxt = deployment.finished(following, 90)
    assert nxt.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert nxt.start_time is not None and failed.end_time is not None
    assert nxt.start_time >= failed.end_time


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
