"""The first user-facing cause of a failed step, not Dagster's wrapper around it.

A step whose code raised shows, in Dagster's step-failure event, a
`DagsterExecutionStepExecutionError` (or `DagsterResourceFunctionError`,
`DagsterExecutionLoadInputError` …) whose `cause` is what the code raised. `failure_cause`
walks down that chain to the first error that is not Dagster's own: a hub error (`connectors.`,
`pipelines.`, `schemas.`: its message alone, it names the file, row or record and the fix), or an
unexpected one (a bug): its type and message first, its traceback staying in the event log.
"""

from __future__ import annotations

import re
import traceback
from typing import Any

__all__ = ["describe", "failure_cause", "located", "traceback_text"]

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
    return _unexpected(head.rsplit(".", 1)[-1], rest.strip())


def describe(error: BaseException) -> str:
    """What a failed step says about `error`: a hub error's own message (it names the file, row
    or record and the fix), or an unexpected one's type and message, its traceback left to the
    run's logs."""
    text = str(error).strip()
    if type(error).__module__.startswith(tuple(p.rstrip(".") for p in HUB_PACKAGES)):
        return text or type(error).__name__
    return _unexpected(type(error).__name__, text)


def _unexpected(name: str, text: str) -> str:
    return (
        f"{name}: {text} — an unexpected error: its traceback is in the run's event log"
        " (Dagster UI)"
    )


# `file.csv:12`, `datafixes/x.yaml:4:7`, `classeur.xlsx[Feuil1]:9`: where a hub message points
_PLACE = re.compile(
    r"(?P<file>[\w./-]+\.(?:csv|xlsx|xls|yaml|yml|txt))(?:\[[^\]]*\])?:(?P<row>\d+)"
)


def located(message: str) -> dict[str, str]:
    """The first file and row a message names (`file`, `row`), if it names one."""
    found = _PLACE.search(message)
    return {"file": found["file"], "row": found["row"]} if found else {}


def traceback_text(error: BaseException) -> str:
    """The full traceback of `error` (with its causes), for the run's logs."""
    return "".join(traceback.format_exception(error)).rstrip()
