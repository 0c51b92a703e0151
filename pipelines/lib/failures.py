"""The first user-facing cause of a failed step, not Dagster's wrapper around it.

A step whose code raised shows, in Dagster's step-failure event, a
`DagsterExecutionStepExecutionError` (or `DagsterResourceFunctionError`,
`DagsterExecutionLoadInputError` …) whose `cause` is what the code raised. `failure_cause`
walks down that chain to the first error that is not Dagster's own: a hub error (`connectors.`,
`pipelines.`, `schemas.`: its message alone, it names the file, row or record and the fix), or an
unexpected one (a bug): its type and message first, its traceback staying in the event log.
"""

from __future__ import annotations

from typing import Any

__all__ = ["failure_cause"]

# the hub's own packages: their errors are written for the person running the hub
HUB_PACKAGES = ("connectors.", "pipelines.", "schemas.")


def _wrapper(error: Any) -> bool:
    """Dagster's own errors and failures wrapping the code's exception."""
    return (error.cls_name or "").startswith("Dagster") and error.cause is not None


def failure_cause(error: Any) -> str:
    """The message to show for a step failure's `SerializableErrorInfo`."""
    seen = error
    while _wrapper(seen):
        seen = seen.cause
    text = (seen.message or "").strip()
    head, separator, rest = text.partition(": ")
    if not separator or " " in head:  # not `module.Class: message`
        return text or seen.cls_name or "failed without a message"
    if head.startswith(HUB_PACKAGES) or head.endswith(".Failure"):  # dg.Failure: its text
        return rest.strip()
    return (
        f"{head.rsplit('.', 1)[-1]}: {rest.strip()} — an unexpected error: its traceback is in"
        " the run's event log (Dagster UI)"
    )
