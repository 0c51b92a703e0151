"""`make prod-check`: the production deployment in `deploy/` checked offline, without Docker,
Kubernetes or a database.

- `dagster.yaml` is validated by Dagster's own instance schema, and the configuration of each
  class it names (run coordinator, run launcher, compute logs) by that class's schema; then the
  hub's requirements: PostgreSQL storage, a global run limit and one run per landlord (the
  `dagster/partition` tag limit), run monitoring that never resumes a run, tick retention.
- `workspace.yaml` by Dagster's workspace schema: the code location is reached over gRPC.
- `compose.yaml`: the four services, each started with its command, the code location on the
  workspace's port, every `env:` variable of `dagster.yaml` given to the Dagster services.
- `helm/values.yaml` (the official Dagster chart's values, parsed, not rendered): the
  K8sRunLauncher, the hub's code location, the same queue limits and run monitoring as
  `dagster.yaml`, Dagster's storage on an existing PostgreSQL.

Each problem reads `file: what is wrong — how to fix it`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

PARTITION_TAG = "dagster/partition"
CODE_LOCATION_MODULE = "pipelines.definitions"
SERVICES = ("postgres", "code-location", "webserver", "daemon")
DAGSTER_SERVICES = ("code-location", "webserver", "daemon")


def check_deployment(folder: Path) -> list[str]:
    """Every problem found in the deployment files of `folder` (empty when all is well)."""
    problems: list[str] = []
    instance = _check_instance(folder, problems)
    port = _check_workspace(folder, problems)
    _check_compose(folder, instance, port, problems)
    _check_helm(folder, problems)
    return problems


def _read_yaml(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        problems.append(f"{path}: missing — restore it from git")
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        problems.append(f"{path}: not valid YAML ({' '.join(str(error).split())}) — fix the syntax")
        return None


def _check_instance(folder: Path, problems: list[str]) -> dict[str, Any]:
    """Validate `dagster.yaml` with Dagster's schemas; returns its raw content."""
    from dagster._config import validate_config
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import class_from_code_pointer

    path = folder / "dagster.yaml"
    raw = _read_yaml(path, problems)
    if not isinstance(raw, dict):
        if raw is not None:
            problems.append(f"{path}: not a mapping — write the instance's settings as keys")
        return {}
    try:
        dagster_instance_config(str(folder))
    except DagsterInvalidConfigError as error:
        details = "; ".join(e.message for e in error.errors) or str(error)
        problems.append(f"{path}: refused by Dagster's instance schema: {details}")
        return raw
    for key in ("run_coordinator", "run_launcher", "compute_logs"):
        section = raw.get(key)
        if not isinstance(section, dict):
            continue
        try:
            klass: Any = class_from_code_pointer(section["module"], section["class"])
        except (ImportError, AttributeError) as error:
            problems.append(f"{path}: `{key}` names a class that cannot be imported ({error})")
            continue
        checked = validate_config(klass.config_type(), section.get("config") or {})
        if not checked.success:
            details = "; ".join(e.message for e in checked.errors)
            problems.append(f"{path}: `{key}` config refused by {klass.__name__}: {details}")
    problems.extend(f"{path}: {problem}" for problem in _hub_requirements(raw))
    return raw


def _hub_requirements(raw: Mapping[str, Any]) -> Iterator[str]:
    storage = raw.get("storage")
    if not isinstance(storage, dict) or "postgres" not in storage:
        yield "the storage is not PostgreSQL — set `storage: postgres:` (dagster-postgres)"
    else:
        try:
            import dagster_postgres  # noqa: F401 — the storage classes the instance loads
        except ImportError:
            yield "dagster-postgres is not installed — run `make install`"
    coordinator = raw.get("run_coordinator") or {}
    if coordinator.get("class") != "QueuedRunCoordinator":
        yield "runs are not queued — set `run_coordinator` to the QueuedRunCoordinator"
    config = coordinator.get("config") or {}
    if not isinstance(config.get("max_concurrent_runs"), int) or config["max_concurrent_runs"] < 1:
        yield "no global run limit — set `run_coordinator.config.max_concurrent_runs`"
    if not _one_run_per_landlord(config.get("tag_concurrency_limits")):
        yield (
            "no limit of one run per landlord — add a `tag_concurrency_limits` entry with"
            f" `key: {PARTITION_TAG}`, `value: {{applyLimitPerUniqueValue: true}}`, `limit: 1`"
        )
    monitoring = raw.get("run_monitoring") or {}
    if monitoring.get("enabled") is not True:
        yield "run monitoring is off — set `run_monitoring.enabled: true`"
    for key in ("start_timeout_seconds", "cancel_timeout_seconds", "poll_interval_seconds"):
        if not isinstance(monitoring.get(key), int) or monitoring[key] <= 0:
            yield f"`run_monitoring.{key}` is not set — give it a number of seconds"
    if monitoring.get("max_resume_run_attempts") != 0:
        yield (
            "`run_monitoring.max_resume_run_attempts` is not 0 — a landlord's run is never"
            " resumed half-way (it is rerun whole): set it to 0"
        )
    if not (raw.get("retention") or {}).get("sensor"):
        yield "sensor ticks are kept for ever — set `retention.sensor.purge_after_days`"


def _one_run_per_landlord(limits: Any) -> bool:
    for limit in limits or []:
        value = limit.get("value")
        per_value = isinstance(value, dict) and value.get("applyLimitPerUniqueValue") is True
        if limit.get("key") == PARTITION_TAG and per_value and limit.get("limit") == 1:
            return True
    return False


def _check_workspace(folder: Path, problems: list[str]) -> int | None:
    """Validate `workspace.yaml`; returns the code-location server's port."""
    from dagster._core.workspace.config_schema import process_workspace_config

    path = folder / "workspace.yaml"
    raw = _read_yaml(path, problems)
    if raw is None:
        return None
    checked = process_workspace_config(raw) if isinstance(raw, dict) else None
    if checked is None or not checked.success:
        details = "; ".join(e.message for e in checked.errors) if checked else "not a mapping"
        problems.append(f"{path}: refused by Dagster's workspace schema: {details}")
        return None
    servers = [entry["grpc_server"] for entry in raw["load_from"] if "grpc_server" in entry]
    if len(servers) != 1:
        problems.append(
            f"{path}: expected one `grpc_server` entry (the hub's code-location server), found"
            f" {len(servers)} — the webserver and the daemon must not load the code themselves"
        )
        return None
    return servers[0].get("port")


def _command(service: Mapping[str, Any]) -> str:
    command = service.get("command") or ""
    return " ".join(command) if isinstance(command, list) else str(command)


def _check_compose(
    folder: Path, instance: Mapping[str, Any], port: int | None, problems: list[str]
) -> None:
    path = folder / "compose.yaml"
    raw = _read_yaml(path, problems)
    if raw is None:
        return
    services = raw.get("services") if isinstance(raw, dict) else None
    if not isinstance(services, dict):
        problems.append(f"{path}: no `services` — declare {', '.join(SERVICES)}")
        return
    for name in SERVICES:
        if not isinstance(services.get(name), dict):
            problems.append(f"{path}: no `{name}` service — add it")
    expected = {
        "code-location": "dagster api grpc",
        "webserver": "dagster-webserver",
        "daemon": "dagster-daemon run",
    }
    for name, program in expected.items():
        service = services.get(name)
        if isinstance(service, dict) and program not in _command(service):
            problems.append(f"{path}: `{name}` does not run `{program}` — fix its `command`")
    code = services.get("code-location")
    if isinstance(code, dict) and port is not None:
        command = _command(code)
        if f"-p {port}" not in command or CODE_LOCATION_MODULE not in command:
            problems.append(
                f"{path}: `code-location` must serve `-m {CODE_LOCATION_MODULE}` on port {port}"
                " (workspace.yaml's) — fix its `command`"
            )
        build = code.get("build") or {}
        dockerfile = folder / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        if not dockerfile.resolve().is_file():
            problems.append(f"{path}: `code-location` builds from {dockerfile}, which is missing")
    variables = [*sorted(_env_variables(instance)), "DAGSTER_HOME"]
    for name in DAGSTER_SERVICES:
        service = services.get(name)
        if not isinstance(service, dict):
            continue
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        missing = [variable for variable in variables if variable not in environment]
        if missing:
            problems.append(
                f"{path}: `{name}` lacks {', '.join(missing)} (dagster.yaml reads them) — add"
                " them to its `environment`"
            )


def _env_variables(node: Any) -> Iterator[str]:
    """The variables an instance file reads with `env:`."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            yield node["env"]
            return
        for value in node.values():
            yield from _env_variables(value)
    elif isinstance(node, list):
        for value in node:
            yield from _env_variables(value)


def _check_helm(folder: Path, problems: list[str]) -> None:
    path = folder / "helm" / "values.yaml"
    raw = _read_yaml(path, problems)
    if raw is None:
        return
    if not isinstance(raw, dict):
        problems.append(f"{path}: not a mapping of the chart's values")
        return
    if (raw.get("runLauncher") or {}).get("type") != "K8sRunLauncher":
        problems.append(f"{path}: `runLauncher.type` is not K8sRunLauncher — set it")
    daemon = raw.get("dagsterDaemon") or {}
    coordinator = daemon.get("runCoordinator") or {}
    queued = (coordinator.get("config") or {}).get("queuedRunCoordinator") or {}
    if coordinator.get("enabled") is not True or not queued.get("maxConcurrentRuns"):
        problems.append(
            f"{path}: the run queue is off or has no global limit — set"
            " `dagsterDaemon.runCoordinator.enabled: true` and `maxConcurrentRuns`"
        )
    if not _one_run_per_landlord(queued.get("tagConcurrencyLimits")):
        problems.append(
            f"{path}: no limit of one run per landlord — add `tagConcurrencyLimits` with"
            f" `key: {PARTITION_TAG}`, `value: {{applyLimitPerUniqueValue: true}}`, `limit: 1`"
        )
    monitoring = daemon.get("runMonitoring") or {}
    if monitoring.get("enabled") is not True or monitoring.get("maxResumeRunAttempts") != 0:
        problems.append(
            f"{path}: run monitoring must be on and never resume a run — set"
            " `dagsterDaemon.runMonitoring.enabled: true` and `maxResumeRunAttempts: 0`"
        )
    deployments = (raw.get("dagster-user-deployments") or {}).get("deployments") or []
    if not any(d.get("dagsterApiGrpcArgs") == ["-m", CODE_LOCATION_MODULE] for d in deployments):
        problems.append(
            f"{path}: no user deployment serves `-m {CODE_LOCATION_MODULE}` — add one to"
            " `dagster-user-deployments.deployments`"
        )
    if (raw.get("postgresql") or {}).get("enabled") is not False:
        problems.append(
            f"{path}: `postgresql.enabled` is not false — Dagster's storage is an existing"
            " PostgreSQL server, not the chart's"
        )


def main(argv: list[str] | None = None) -> int:
    """Check the deployment folder given (default `deploy`); exit 1 listing the problems."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "deploy")
    problems = check_deployment(folder)
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        sys.stderr.write(f"prod-check: {len(problems)} problem(s) in {folder}/\n")
        return 1
    checked = "dagster.yaml, workspace.yaml, compose.yaml, helm/values.yaml"
    sys.stdout.write(f"prod-check: {folder}/ ({checked}) is valid\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
