"""The run launcher of the one-machine production instance (`deploy/dagster.yaml`).

Dagster's DefaultRunLauncher asks the code-location server to start each run in a process of
its own, but cannot tell the daemon's run monitoring whether that process still lives: a run
whose code-location server died with it (the container restarted, killed, out of memory) would
stay STARTED, holding its landlord's place in the queue, until the maximum run time. This
launcher answers run monitoring by asking the server that started the run (the run's
`dagster/grpc_info` tag) whether it still runs it; a server that answers "no" (it was
restarted: its runs died with it) makes the daemon fail the run. A server that does not answer
is given the benefit of the doubt (a network blip must not fail a healthy run): such a run is
failed by the maximum run time. A worker that dies under a living server is failed by that
server at once (Dagster's own orphan check).
"""

from __future__ import annotations

import dagster as dg
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import deserialize_value

HEALTH_TIMEOUT_SECONDS = 10


class CodeServerRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run workers the daemon's run monitoring can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, "no code-location server recorded: left to the max runtime"
            )
        try:
            answer = deserialize_value(
                client.can_cancel_execution(
                    CanCancelExecutionRequest(run_id=run.run_id), timeout=HEALTH_TIMEOUT_SECONDS
                ),
                CanCancelExecutionResult,
            )
        except DagsterUserCodeUnreachableError as error:
            return CheckRunHealthResult(
                WorkerStatus.RUNNING,
                f"the code-location server did not answer ({error}): checked again next poll",
                transient=True,
            )
        if answer.can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the code-location server at {client.host}:{client.port} no longer runs it: the"
            " server was restarted or its run worker died",
        )
