"""What every stage's assets share: one landlord partition each, grouped by stage, tagged with
their role (`datafix/stage`, `datafix/entity` or `datafix/sends`) so the runner and the UI read
what an asset is from data, never from its name."""

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg

from connectors.errors import ConnectorError, RetriableError
from connectors.secrets import scrub, scrub_exception, scrubbed
from pipelines.defs.partitions import landlord_partitions
from pipelines.lib.failures import describe, located, traceback_text
from pipelines.lib.metadata import AssetRole
from pipelines.lib.outbox import PushBusyError
from pipelines.lib.warehouse import VanishGuardError

# stage → (prefix of its assets' names, what they compute with, shown as kinds in the UI)
STAGES: dict[str, tuple[str, set[str]]] = {
    "pull": ("raw", {"pandas"}),
    "normalise": ("canonical", {"pandas"}),
    "load": ("warehouse", {"sql"}),
    "derive": ("outgoing", {"pandas"}),
    "push": ("push", {"python"}),
    "insight": ("insight", {"sql"}),
}


def asset_name(role: AssetRole) -> str:
    """`<prefix>_<entity or record kind>`: `raw_tenants`, `push_invoices`, …"""
    return f"{STAGES[role.stage][0]}_{role.entity or role.sends}"


def landlord_asset(
    role: AssetRole,
    *,
    description: str,
    name: str = "",
    ins: dict[str, dg.AssetIn] | None = None,
    deps: Sequence[str] | None = None,
    check_specs: Sequence[dg.AssetCheckSpec] | None = None,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` for one stage's asset, named after its role (unless `name` says otherwise):
    partitioned by landlord, in its stage's group. Secrets never leave it: its metadata and
    any exception it raises (with their causes) are scrubbed (`connectors.secrets.scrub`)."""
    decorate = dg.asset(
        name=name or asset_name(role),
        partitions_def=landlord_partitions,
        group_name=role.stage,
        kinds=STAGES[role.stage][1],
        tags=role.entries(),
        ins=ins,
        deps=deps,
        check_specs=check_specs,
        description=description,
    )
    return lambda compute: decorate(without_secrets(hub_failures(compute)))


def hub_failures(compute: Callable[..., Any]) -> Callable[..., Any]:
    """`compute` failing with a cause, not a trace: any error it raises becomes a `dg.Failure`
    whose description is what the UI shows as the step's failure. A hub error (bad datafix,
    unreachable source, refused snapshot, busy push: not retried) gives its own message, which
    names the file and row (also set as `file` / `row` metadata), its traceback only on the
    step's DEBUG log line. An unexpected error (a bug) gives its type and message, its traceback
    kept in the failure's cause for the developer (the run's event log)."""

    if inspect.isgeneratorfunction(compute):  # a check yielding its results

        @functools.wraps(compute)
        def yielding_clearly(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from compute(*args, **kwargs)
            except Exception as error:
                failure = as_failure(error, _context(args, kwargs))
                raise failure from (None if _hub_error(error) else error)

        return yielding_clearly

    @functools.wraps(compute)
    def failing_clearly(*args: Any, **kwargs: Any) -> Any:
        try:
            return compute(*args, **kwargs)
        except Exception as error:
            failure = as_failure(error, _context(args, kwargs))
            raise failure from (None if _hub_error(error) else error)

    return failing_clearly


def _hub_error(error: Exception) -> bool:
    """The hub's own errors (and failures made of them): their message is the whole story."""
    return isinstance(error, (dg.Failure, ConnectorError, VanishGuardError, PushBusyError))


def as_failure(error: Exception, context: Any = None) -> dg.Failure:
    """`error` as the step's failure (see `hub_failures`); a `dg.Failure` stays as it is."""
    if isinstance(error, dg.Failure):
        return error
    description = describe(error)
    own = _hub_error(error)
    log = getattr(context, "log", None)
    if own and log is not None:  # its trace is of no use to the operator: kept for support
        log.debug(f"{description}\n{traceback_text(error)}")
    return dg.Failure(
        description=scrub(description),
        metadata=failure_metadata(error, description),
        allow_retries=not own,
    )


def failure_metadata(error: Exception, description: str) -> dict[str, Any]:
    """What a failure says beside its description: the error's type, whether it is transient
    (a retriable fault: an unreachable peer, a full disk), and the file and row it names."""
    return {
        "error": type(error).__name__,
        "transient": isinstance(error, RetriableError),
        **located(description),
    }


def _context(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """The step's context among a compute function's arguments (its first, or `context=`)."""
    return kwargs.get("context", args[0] if args else None)


def without_secrets(compute: Callable[..., Any]) -> Callable[..., Any]:
    """`compute` whose returned metadata and raised exceptions (with their causes) are
    scrubbed of secrets before Dagster records them in the event log or the UI."""

    @functools.wraps(compute)
    def scrubbing(*args: Any, **kwargs: Any) -> Any:
        try:
            result = compute(*args, **kwargs)
        except BaseException as error:
            scrub_exception(error)
            if isinstance(error, dg.Failure) and error.metadata:
                error.metadata = safe_metadata(error.metadata)
            raise
        if isinstance(result, dg.Output):
            return dg.Output(
                result.value,
                output_name=result.output_name,
                metadata=safe_metadata(result.metadata),
                data_version=result.data_version,
                tags=result.tags,
            )
        if isinstance(result, dg.MaterializeResult) and result.metadata:
            return result._replace(metadata=safe_metadata(result.metadata))
        return result

    return scrubbing


def safe_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata with every text (plain, Markdown, JSON) scrubbed of secrets."""
    safe: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dg.MarkdownMetadataValue):
            value = dg.MetadataValue.md(scrub(value.md_str or ""))
        elif isinstance(value, dg.TextMetadataValue):
            value = dg.MetadataValue.text(scrub(value.text or ""))
        elif isinstance(value, dg.JsonMetadataValue):
            value = dg.MetadataValue.json(scrubbed(value.data))
        elif isinstance(value, dg.TableMetadataValue):  # quarantine messages, peers' answers
            records = [dg.TableRecord(scrubbed(dict(r.data))) for r in value.records]
            value = dg.MetadataValue.table(records, value.schema)
        else:
            value = scrubbed(value)
        safe[key] = value
    return safe


def refused(error: Exception) -> dg.Failure:
    """A failure that retrying cannot fix (bad datafix, unreachable source, refused snapshot)."""
    description = scrub(str(error))
    return dg.Failure(
        description=description,
        metadata=failure_metadata(error, description),
        allow_retries=False,
    )
