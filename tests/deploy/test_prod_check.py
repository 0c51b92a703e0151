"""`make prod-check` (pipelines/lib/production.py): the committed deployment passes; copies of
it, each broken in one way an operator could break it, fail with that problem named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pipelines.lib.environment import REPO_ROOT
from pipelines.lib.production import check_deployment

DEPLOY = REPO_ROOT / "deploy"


def test_the_committed_deployment_passes_the_check_run_as_make_runs_it() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pipelines.lib.production", "deploy"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "is valid" in completed.stdout


def test_the_makefile_runs_prod_check_in_make_test() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "prod-check" in test_rule.split("##")[0]


def _edit(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _drop_tag_limit(data: dict) -> None:
    data["run_coordinator"]["config"]["tag_concurrency_limits"] = []


def _resume_runs(data: dict) -> None:
    data["run_monitoring"]["max_resume_run_attempts"] = 2


def _unknown_key(data: dict) -> None:
    data["run_monitoring"]["start_timeout"] = 180  # misspelt: Dagster's schema refuses it


def _bad_coordinator_config(data: dict) -> None:
    data["run_coordinator"]["config"]["max_concurrent_runs"] = "eight"


def _sqlite_storage(data: dict) -> None:
    data["storage"] = {"sqlite": {"base_dir": "/tmp"}}


def _no_daemon(data: dict) -> None:
    del data["services"]["daemon"]


def _webserver_without_password(data: dict) -> None:
    del data["services"]["webserver"]["environment"]["DAGSTER_PG_PASSWORD"]


def _wrong_grpc_port(data: dict) -> None:
    data["services"]["code-location"]["command"][-3] = "4001"


def _helm_resumes(data: dict) -> None:
    data["dagsterDaemon"]["runMonitoring"]["maxResumeRunAttempts"] = 3


def _helm_default_launcher(data: dict) -> None:
    data["runLauncher"]["type"] = "CeleryK8sRunLauncher"


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        ("dagster.yaml", _drop_tag_limit, "no limit of one run per landlord"),
        ("dagster.yaml", _resume_runs, "max_resume_run_attempts` is not 0"),
        ("dagster.yaml", _unknown_key, "refused by Dagster's instance schema"),
        ("dagster.yaml", _bad_coordinator_config, "config refused by QueuedRunCoordinator"),
        ("dagster.yaml", _sqlite_storage, "the storage is not PostgreSQL"),
        ("compose.yaml", _no_daemon, "no `daemon` service"),
        ("compose.yaml", _webserver_without_password, "`webserver` lacks DAGSTER_PG_PASSWORD"),
        ("compose.yaml", _wrong_grpc_port, "must serve `-m pipelines.definitions` on port 4000"),
        ("helm/values.yaml", _helm_resumes, "never resume a run"),
        ("helm/values.yaml", _helm_default_launcher, "is not K8sRunLauncher"),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else None,
)
def test_a_broken_deployment_is_refused_with_the_problem_named(
    tmp_path: Path, file: str, change: Callable[[dict], None], expected: str
) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    # compose builds from `..`: in the copy, tmp_path, where deploy/Dockerfile was copied
    assert check_deployment(copy) == []  # the copy alone passes
    _edit(copy / file, change)
    problems = check_deployment(copy)
    assert problems, f"{file}: the change went unnoticed"
    assert all(problem.startswith(f"{copy / file}:") for problem in problems), problems
    assert any(expected in problem for problem in problems), problems
