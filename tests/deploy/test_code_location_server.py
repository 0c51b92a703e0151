"""Issue 14: the hub's code served as `deploy/compose.yaml` serves it, `dagster api grpc -m
pipelines.definitions`, healthy by its healthcheck's command, and read over gRPC by a
`dagster-webserver` given a workspace shaped as `deploy/workspace.yaml`: the jobs, the nightly
schedule (Paris time) and the sensors the daemon will run are there."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.lib.environment import REPO_ROOT
from tests.deploy.services import BIN, free_port, graphql

QUERY = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name
  location { name } jobs { name } schedules { name executionTimezone }
  sensors { name } } } } }"""


def _repository(port: int) -> dict[str, Any] | None:
    answer = graphql(port, QUERY, timeout=10)
    if answer is None:
        return None
    nodes = (answer.get("data") or {}).get("repositoriesOrError", {}).get("nodes")
    return nodes[0] if nodes else None


def test_the_compose_code_location_serves_the_hub_to_the_webserver(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    workspace = yaml.safe_load((REPO_ROOT / "deploy" / "workspace.yaml").read_text("utf-8"))
    server = workspace["load_from"][0]["grpc_server"]
    port, web_port = free_port(), free_port()
    command = [str(part) for part in compose["services"]["code-location"]["command"]]
    command[command.index(str(server["port"]))] = str(port)  # this test's port
    command[command.index("0.0.0.0")] = "127.0.0.1"
    command[0] = str(BIN / command[0])
    local = {**server, "host": "127.0.0.1", "port": port}
    (tmp_path / "workspace.yaml").write_text(
        yaml.safe_dump({"load_from": [{"grpc_server": local}]}), encoding="utf-8"
    )
    env = os.environ | {"DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = []
    try:
        with (logs / "code-location.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)]
        deadline = time.monotonic() + 120
        while subprocess.run(health, env=env, capture_output=True, check=False).returncode:
            if time.monotonic() > deadline or processes[0].poll() is not None:
                tail = (logs / "code-location.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the code-location server never became healthy:\n{tail}")
            time.sleep(1)
        with (logs / "webserver.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        str(BIN / "dagster-webserver"), "-w", str(tmp_path / "workspace.yaml"),
                        "-h", "127.0.0.1", "-p", str(web_port),
                    ],
                    cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while (repository := _repository(web_port)) is None:
            if time.monotonic() > deadline:
                tail = (logs / "webserver.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the webserver never listed the hub's code:\n{tail}")
            time.sleep(1)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
    assert repository["location"]["name"] == "datafix_hub"
    assert {"nightly", "pull", "push"} <= {job["name"] for job in repository["jobs"]}
    assert {"name": "nightly_schedule", "executionTimezone": "Europe/Paris"} in repository[
        "schedules"
    ]
    assert {"inbox_sensor", "dead_runs_sensor"} <= {s["name"] for s in repository["sensors"]}
