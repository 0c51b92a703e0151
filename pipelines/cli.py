"""The `datafix` command: check, preview and run landlords' datafixes.

datafix check [FILES...]                  validate datafix files (all of datafixes/ by default)
datafix preview LANDLORD [--entity E]     pull and normalise, write nothing
datafix run [LANDLORD...] [--full-refresh]  run the nightly job in-process (pull through push)
datafix push [LANDLORD...] [--dry-run]    push what changed (dry run: show it, send nothing)
datafix outbox LANDLORD                   the landlord's outbox: states per sink, errors
datafix replay LANDLORD [--sink S]        queue dead letters again after a fix
datafix quarantine LANDLORD [--entity E]  the open quarantine rows, personal cells opened
datafix demo                              make the demo landlords' files and run them
datafix sandbox [--seconds N] [--env]     serve the local peers (SOAP ERP, Sage X3, Salesforce)
datafix schema [--check]                  regenerate the JSON Schema and REFERENCE.md

`demo` and `sandbox` live with the sandbox (`connectors/sandbox/commands.py`): they are
registered here by import string and imported only when used or listed, so no production
module imports the sandbox.
"""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from connectors.errors import ConnectorError
from connectors.secrets import ScrubbingStream, scrub_log_records
from pipelines.lib.environment import configured_workers, datafixes_dir, warehouse_url
from pipelines.lib.personal import private_umask
from schemas.canonical import ENTITIES

if TYPE_CHECKING:
    from pipelines.lib.datafixes import LoadedDatafix

# pandas, the datafix model and the checks are imported by the commands that use them: the
# command's start (`datafix --help`, a mistyped option) pays for none of them


class LazyGroup(click.Group):
    """A group whose `lazy_subcommands` ({name: "module:attribute"}) are imported on demand
    (click's documented lazy-loading pattern)."""

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            return self._lazy_load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _lazy_load(self, cmd_name: str) -> click.Command:
        module_name, attribute = self.lazy_subcommands[cmd_name].split(":", 1)
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise ValueError(f"{self.lazy_subcommands[cmd_name]} is not a click command")
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    lazy_subcommands={
        "demo": "connectors.sandbox.commands:demo",
        "sandbox": "connectors.sandbox.commands:sandbox",
    },
)
def main() -> None:
    """Datafix Hub: pull landlords' data through their datafix files into one model."""
    private_umask()  # whatever the hub writes (warehouse, instance, keys, logs) is its own
    scrub_log_records()  # nor any log line, the Dagster event log's included
    if not isinstance(sys.stdout, ScrubbingStream):  # no secret reaches the terminal
        sys.stdout, sys.stderr = ScrubbingStream(sys.stdout), ScrubbingStream(sys.stderr)


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--no-probe", is_flag=True, help="Do not open the sources (structure only).")
def check(files: tuple[Path, ...], no_probe: bool) -> None:
    """Validate datafix files: structure, keys, variables, sources and mapped columns."""
    from pipelines.lib.checks import check_datafix

    paths = list(files) or sorted(datafixes_dir().glob("*.yaml"))
    if not paths:
        raise click.ClickException(f"no datafix file in {datafixes_dir()}")
    total = 0
    for path in paths:
        if not path.is_file():
            click.echo(f"{path}:1:1: no such file")
            total += 1
            continue
        problems = check_datafix(path, probe_sources=not no_probe)
        for problem in problems:
            click.echo(str(problem))
        total += len(problems)
        if not problems:
            click.echo(f"{path}: ok")
    if total:
        click.echo(f"{total} problem(s) found", err=True)
        sys.exit(1)


@main.command()
@click.argument("landlord")
@click.option("--entity", type=click.Choice(sorted(ENTITIES)), help="Only this entity.")
@click.option("--limit", default=10, show_default=True, help="Rows shown per table.")
def preview(landlord: str, entity: str | None, limit: int) -> None:
    """Pull and normalise one landlord without writing anything; show rows, rejects and what
    the contract would say (rows quarantined by each rule, a table rule that would block)."""
    import pandas as pd

    from pipelines.lib.stages import check_contract, normalise, preview_frame, pull

    loaded = _load_or_exit(landlord)
    entities = [entity] if entity else list(loaded.datafix.entities)
    failed = False
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    for name in entities:
        if name not in loaded.datafix.entities:
            click.echo(f"{name}: not mapped in {loaded.path.name}")
            continue
        try:
            pulled = pull(loaded, name)
            # the first chunk is enough to show rows and rejects: a large source is not read
            # to its end (its counts and the contract below then cover that chunk only)
            normalised = normalise(loaded, pulled, limit=1)
        except ConnectorError as error:
            click.echo(f"{name}: cannot be read — {error}")
            failed = True
            continue
        batch = normalised.batch
        assert batch is not None
        click.secho(
            f"\n== {name}: read {batch.read}, accepted {batch.accepted}, "
            f"quarantined {batch.quarantined}, skipped {batch.skipped} "
            f"(source `{normalised.source_name}`)",
            bold=True,
        )
        if batch.rows_in_source < pulled.rows:
            click.echo(
                f"  (the first {batch.rows_in_source:,} of {pulled.rows:,} rows only: a preview"
                " stops after its first chunk; `datafix run` reads them all)"
            )
        rows = next(normalised.row_frames(), None)
        if rows is not None:
            shown = preview_frame(rows, name, limit).drop(columns=["landlord_id"])
            click.echo(shown.to_string(index=False))
        if batch.quarantined:
            click.secho(f"-- rejected rows ({batch.quarantined}):", fg="yellow")
            reasons = sorted(batch.reasons.items(), key=lambda item: -item[1])
            click.echo("  by reason: " + ", ".join(f"{r} {n}" for r, n in reasons))
            rejects = next(batch.reject_frames())
            for reject in rejects.head(limit).itertuples():
                click.echo(f"  {reject.source_row}  [{reject.reason}]  {reject.message}")
        contract = check_contract(loaded, normalised)
        if contract.passed:
            click.secho(f"-- contract: passes ({contract.summary()})", fg="green")
        else:
            click.secho(f"-- contract: would BLOCK the load ({contract.summary()})", fg="red")
            click.echo(f"  failing keys: {', '.join(contract.failing_keys()[:limit])}")
    click.echo("\nnothing was written (preview)")
    if failed:
        sys.exit(1)


# the arguments and options the running commands share
LANDLORDS = click.argument("landlords", nargs=-1)
FULL_REFRESH = click.option(
    "--full-refresh", is_flag=True, help="Re-read every source even when it did not change."
)
VERBOSE = click.option("--verbose", "-v", is_flag=True, help="Show Dagster's step logs.")


@main.command()
@LANDLORDS
@FULL_REFRESH
@click.option(
    "--no-push", is_flag=True, help="Pull, check and load only (the `pull` job): push nothing."
)
@VERBOSE
def run(landlords: tuple[str, ...], full_refresh: bool, no_push: bool, verbose: bool) -> None:
    """Run the nightly job (pull → normalise → check → load → derive → push) for landlords
    (default: all); with --no-push, everything but the push (as `datafix pull`)."""
    _run_job("pull" if no_push else "nightly", landlords, full_refresh, verbose)


@main.command()
@LANDLORDS
@FULL_REFRESH
@VERBOSE
def pull(landlords: tuple[str, ...], full_refresh: bool, verbose: bool) -> None:
    """Run the `pull` job (pull → normalise → check → load, and the morning figures) for
    landlords (default: all), pushing nothing: for a landlord whose push is not ready."""
    _run_job("pull", landlords, full_refresh, verbose)


def _run_job(job_name: str, landlords: tuple[str, ...], full_refresh: bool, verbose: bool) -> None:
    """Run `job_name` for `landlords` (default: every datafix), print the report, exit with its
    code."""
    pause_collector()
    from pipelines.lib.datafixes import landlord_ids

    code = run_and_report(
        list(landlords) or landlord_ids(),
        full_refresh=full_refresh,
        log_level="INFO" if verbose else "CRITICAL",
        job_name=job_name,
        own_process=True,
    )
    exit_now(code)


@main.command()
@LANDLORDS
@click.option(
    "--dry-run", is_flag=True, help="Show what would be created or updated; send nothing."
)
@VERBOSE
def push(landlords: tuple[str, ...], dry_run: bool, verbose: bool) -> None:
    """Push landlords' confirmed records (commitments, invoices, completions) to their sinks:
    only what changed since the last push, each record once."""
    from pipelines.lib.datafixes import landlord_ids, load_landlord

    names = list(landlords) or [
        landlord for landlord in landlord_ids() if load_landlord(landlord).datafix.push
    ]
    if not names:
        raise click.ClickException("no landlord has a `push:` section in its datafix")
    if dry_run:
        sys.exit(_dry_run(names))
    pause_collector()
    exit_now(run_and_report(names, full_refresh=False, job_name="push", own_process=True,
                            log_level="INFO" if verbose else "CRITICAL"))  # fmt: skip


@main.command()
@click.argument("landlord")
@click.option("--open", "open_it", is_flag=True, help="Open the report in the web browser.")
def report(landlord: str, open_it: bool) -> None:
    """Write the landlord's morning report of today (Paris) from the warehouse as it is: one
    HTML file under $DATAFIX_HOME/reports/LANDLORD/; prints its path."""
    import webbrowser
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from pipelines.defs.resources import WarehouseResource
    from pipelines.lib.report import write_report

    loaded = _load_or_exit(landlord)
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    path = write_report(WarehouseResource().get_client(), loaded, today)
    click.echo(str(path))
    if open_it:
        webbrowser.open(path.as_uri())


@main.command()
@click.argument("landlord")
@click.option("--limit", default=20, show_default=True, help="Problems listed.")
def outbox(landlord: str, limit: int) -> None:
    """Show a landlord's outbox: records per sink and state, and the peers' messages."""
    from pipelines.defs.resources import WarehouseResource
    from pipelines.lib.outbox import Outbox

    _load_or_exit(landlord)
    box = Outbox(WarehouseResource().get_client().engine)
    states = box.states(landlord)
    if not states:
        click.echo(f"{landlord}: the outbox is empty (nothing pushed yet)")
        return
    click.echo(f"  {'sink':<20} {'sends':<12} {'state':<8} {'records':>8}")
    for sink, entity, state, records in states:
        click.echo(f"  {sink:<20} {entity:<12} {state:<8} {records:>8}")
    problems = box.problems(landlord, limit)
    if problems:
        click.echo("dead and failed records (newest first):")
    for problem in problems:
        click.echo(
            f"  {problem['sink']} {problem['record_key']} [{problem['state']}, attempts"
            f" {problem['attempts']}] {problem['last_error']}  (from {problem['source_rows']})"
        )
    if any(problem["state"] == "dead" for problem in problems):
        click.echo(f"after fixing the cause: datafix replay {landlord} [--sink SINK]")


@main.command()
@click.argument("landlord")
@click.option("--sink", default=None, help="Only this sink's dead letters.")
def replay(landlord: str, sink: str | None) -> None:
    """Queue a landlord's dead letters again (after the cause was fixed); the next push sends
    them."""
    from pipelines.defs.resources import WarehouseResource
    from pipelines.lib.outbox import Outbox, replay_dead_letters

    loaded = _load_or_exit(landlord)
    try:
        count = replay_dead_letters(Outbox(WarehouseResource().get_client().engine), loaded, sink)
    except ConnectorError as error:
        raise click.ClickException(str(error)) from None
    where = f" for {sink}" if sink else ""
    click.echo(
        f"{landlord}: {count} dead letter(s) queued again{where}; run `datafix push {landlord}`"
    )


@main.command()
@click.argument("landlord")
@click.option("--entity", type=click.Choice(sorted(ENTITIES)), help="Only this entity.")
@click.option("--reason", default=None, help="Only rows quarantined for this reason code.")
def requeue(landlord: str, entity: str | None, reason: str | None) -> None:
    """Map the quarantined rows again with the datafix as it is now: those that pass load, the
    rest stay with their new reason. Reads no source and never moves a watermark."""
    import uuid

    from pipelines.defs.resources import WarehouseResource
    from pipelines.lib.requeue import requeue as requeue_entity

    loaded = _load_or_exit(landlord)
    entities = [entity] if entity else list(loaded.datafix.entities)
    warehouse = WarehouseResource().get_client()
    run_id = str(uuid.uuid4())
    for name in entities:
        try:
            result = requeue_entity(warehouse, loaded, name, run_id=run_id, reason=reason)
        except ConnectorError as error:
            raise click.ClickException(str(error)) from None
        click.echo(result.summary())


@main.command(name="quarantine")
@click.argument("landlord")
@click.option("--entity", type=click.Choice(sorted(ENTITIES)), help="Only this entity.")
@click.option("--reason", default=None, help="Only rows quarantined for this reason code.")
@click.option("--limit", default=20, show_default=True, help="Rows shown per entity.")
def show_quarantine(landlord: str, entity: str | None, reason: str | None, limit: int) -> None:
    """The open quarantine rows with their raw values, personal cells opened with the
    quarantine key (for the operator fixing the datafix before `datafix requeue`)."""
    from pipelines.defs.resources import WarehouseResource

    loaded = _load_or_exit(landlord)
    warehouse = WarehouseResource().get_client()
    for name in [entity] if entity else list(loaded.datafix.entities):
        try:
            rows = warehouse.open_quarantine(loaded.landlord_id, name, reason)
        except ConnectorError as error:
            raise click.ClickException(str(error)) from None
        click.secho(f"\n== {name}: {len(rows)} row(s) in quarantine", bold=True)
        for row in rows.head(limit).itertuples():
            click.echo(f"  {row.source_row}  [{row.reason}]  {row.message}")
            click.echo(f"    raw: {row.raw}")
        if len(rows) > limit:
            click.echo(f"  … {len(rows) - limit} more (--limit)")


@main.command(name="reset-cursor")
@click.argument("landlord")
@click.argument("source")
@click.option("--to", "to", default=None, help="Resume from this value (inclusive).")
def reset_cursor(landlord: str, source: str, to: str | None) -> None:
    """Forget (or set) the watermark of an incremental source: the next run re-reads from it."""
    from pipelines.defs.resources import WarehouseResource
    from schemas.datafix import did_you_mean

    loaded = _load_or_exit(landlord)
    if source not in loaded.datafix.sources:
        raise click.ClickException(
            f"`{source}` is not a source of {landlord}: "
            + did_you_mean(source, tuple(loaded.datafix.sources))
        )
    if getattr(loaded.datafix.sources[source], "cursor", None) is None:
        raise click.ClickException(f"`{source}` has no `cursor`: it is read in full every run")
    entities = [e for e, m in loaded.datafix.entities.items() if source in m.fed_by]
    feeds = [
        feed.label
        for mapping in loaded.datafix.entities.values()
        for feed in mapping.all_feeds
        if feed.source == source
    ]
    changed = WarehouseResource().get_client().reset_cursor(landlord, entities, to=to, feeds=feeds)
    what = f"set to {to!r} (inclusive)" if to is not None else "cleared (next run reads all)"
    click.echo(f"{landlord}/{source}: {changed} watermark(s) {what} for {', '.join(entities)}")


@main.command()
@click.option("--check", "check_only", is_flag=True, help="Fail if the files are out of date.")
def schema(check_only: bool) -> None:
    """Regenerate schemas/datafix.schema.json and schemas/REFERENCE.md."""
    from schemas.reference import JSON_SCHEMA_PATH, REFERENCE_PATH, json_schema, reference_page

    stale = [
        path
        for path, content in ((JSON_SCHEMA_PATH, json_schema()), (REFERENCE_PATH, reference_page()))
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]
    if check_only:
        for path in stale:
            click.echo(f"{path} is out of date — run `datafix schema`")
        sys.exit(1 if stale else 0)
    from schemas.reference import write_generated

    for path in write_generated():
        click.echo(f"wrote {path}")


def pause_collector() -> None:
    """Pause the garbage collector while a running command imports Dagster, pandas and the
    definitions: a million objects that live as long as the process, which its passes would
    walk again and again for nothing. The runner's set-up freezes them out of its passes and
    starts it again (`LandlordRunner(own_process=True)`)."""
    gc.disable()


def exit_now(code: int) -> NoReturn:
    """End a running command with `code`. Everything it made is frozen out of the garbage
    collector first: the interpreter's last passes would walk every object of the process
    (about 1 s of CPU after an unchanged rerun of the bench landlord) only to free what the
    process's end frees anyway."""
    gc.freeze()
    sys.exit(code)


def _load_or_exit(landlord: str) -> LoadedDatafix:
    from pipelines.lib.datafixes import datafix_path, load_landlord

    try:
        datafix_path(landlord)
        return load_landlord(landlord)
    except ConnectorError as error:
        raise click.ClickException(str(error)) from error


# how the dry run names what it would do with a record (pipelines.lib.outbox.Change.action)
_DRY_ACTIONS = {
    "create": "create",
    "update": "update",
    "resend": "resend (queued by an earlier run, not sent yet)",
    "in doubt": "resend if missing (in flight when a push stopped: read back first)",
    "dead": "dead, not sent (refused earlier; fix the cause, then `datafix replay`)",
}


def _dry_run(landlords: list[str]) -> int:
    """Print every record a push would send (new, changed, queued by an earlier run), field by
    field, and the dead letters waiting for a replay; send and write nothing."""
    from pipelines.defs.resources import WarehouseResource
    from pipelines.lib.push import push_landlord

    warehouse = WarehouseResource().get_client()
    failures = 0
    for landlord in landlords:
        loaded = _load_or_exit(landlord)
        for outcome in push_landlord(warehouse, loaded, _no_sink, dry_run=True):
            waiting = outcome.dead_waiting
            carried = (
                f" ({outcome.queued} new or changed, {outcome.pending} queued by an earlier run)"
                if outcome.pending
                else ""
            )
            click.secho(
                f"{landlord} → {outcome.sink} ({outcome.kind}, {outcome.sends}):"
                f" {outcome.queued + outcome.pending} to send, {outcome.unchanged} unchanged"
                + carried
                + (f", {waiting} dead waiting for a fix and a replay" if waiting else ""),
                bold=True,
            )
            if not outcome.ok:
                failures += 1
                click.echo(f"  {outcome.status}: {outcome.error}")
            elif outcome.kind == "soap":
                failures += _show_envelope(warehouse, loaded, outcome)
            for change in outcome.changes:
                click.echo(f"  {_DRY_ACTIONS.get(change.action, change.action)} {change.key}")
                never_sent = change.action == "create" or (
                    change.action != "update"
                    and all(old is None for old, _ in change.fields.values())
                )
                for name, (old, new) in change.fields.items():
                    shown = f"{new!r}" if never_sent else f"{old!r} → {new!r}"
                    click.echo(f"      {name}: {shown}")
    click.echo("dry run: nothing was sent or written")
    return 1 if failures else 0


def _no_sink(_loaded: LoadedDatafix, name: str) -> Any:
    raise AssertionError(f"a dry run never opens a sink ({name})")


def _show_envelope(warehouse: Any, loaded: LoadedDatafix, outcome: Any) -> int:
    """Print the SOAP envelope the first record to send would go out in, secrets masked: the
    sink loads its WSDL and builds the request, calling no operation. 1 when it cannot (the
    push would fail the same way), else 0."""
    from connectors.soap.push import masked_envelope
    from pipelines.lib.sinks import build_sink

    change = next((c for c in outcome.changes if c.action != "dead"), None)
    if change is None:
        return 0
    try:
        record = _first_record(warehouse, loaded, outcome.sink, change)
        sink = build_sink(loaded, outcome.sink)
        try:
            envelope = sink.envelope(record)  # type: ignore[attr-defined]
        finally:
            sink.close()
        shown = masked_envelope(envelope, loaded.sink(outcome.sink))
    except ConnectorError as error:
        click.echo(f"  the request of {change.key} cannot be built (the push would fail):")
        click.echo("    " + str(error).replace("\n", "\n    "))
        return 1
    click.echo(f"  envelope of {change.key} (the first record; secrets masked):")
    for line in shown.rstrip().splitlines():
        click.echo(f"    {line}")
    return 0


def _first_record(warehouse: Any, loaded: LoadedDatafix, sink: str, change: Any) -> Any:
    """The record `change` would send, as the push hands it to the sink: its whole payload
    (a change lists only the fields that differ) and the idempotency key it would carry."""
    import hashlib
    import json

    from connectors.delivery import OutgoingRecord, payload_json
    from pipelines.lib.outbox import Outbox, idempotency_key
    from pipelines.lib.push import decoder
    from schemas.outgoing import OUTGOING

    config = loaded.datafix.push.sinks[sink]  # type: ignore[union-attr]
    landlord = loaded.landlord_id
    row = Outbox(warehouse.engine).stored(landlord, sink, change.key)
    if row is not None and change.action in ("resend", "in doubt"):  # queued as it is
        text, key = row.payload, row.idempotency_key
    else:  # create or update: the new payload, and the next version's key
        previous = json.loads(row.sent_payload) if row is not None and row.sent_payload else {}
        fields = {name: previous.get(name) for name in config.fields}
        fields.update({name: new for name, (_, new) in change.fields.items()})
        text = payload_json(fields)
        version = 1 if row is None else row.version + 1
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        key = idempotency_key(landlord, sink, change.key, version, digest)
    fields = decoder(config, OUTGOING[config.sends])(text)
    return OutgoingRecord(change.key, key, fields, row.peer_id if row is not None else None)


def run_and_report(
    landlords: list[str],
    *,
    full_refresh: bool,
    log_level: str = "CRITICAL",
    job_name: str = "nightly",
    own_process: bool = False,
) -> int:
    """Run the landlords' job in-process and print the summary per landlord, entity and sink
    (also `datafix demo`'s); 1 if any landlord failed (a failed, held or refused push, dead
    letters beyond a sink's `max_dead_percent`, included), else 0. `own_process`: this process
    runs nothing else (see `pipelines.lib.runner.LandlordRunner`)."""
    from pipelines.lib.push import FAILING
    from pipelines.lib.runner import quarantine_sample, run_landlords

    if not landlords:
        raise click.ClickException(f"no landlord: {datafixes_dir()} has no datafix file")
    try:
        workers = configured_workers()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    outcomes = run_landlords(
        landlords,
        full_refresh=full_refresh,
        log_level=log_level,
        job_name=job_name,
        workers=workers,
        own_process=own_process,
    )
    failures = 0
    header = f"  {'entity':<16} {'status':<15} {'read':>8} {'loaded':>8} {'quarantined':>11}"
    header += f" {'skipped':>7}  contract"
    for outcome in outcomes:
        pushed = all(report.status not in FAILING for report in outcome.pushes)
        state = "ok" if outcome.success and not outcome.errors and pushed else "FAILED"
        failures += state != "ok"
        run = f" (run {outcome.run_id[:8]})" if outcome.run_id else ""
        click.secho(f"\n{outcome.landlord_id}{run}: {state}", bold=True,
                    fg="green" if state == "ok" else "red")  # fmt: skip
        if outcome.entities:
            click.echo(header)
        for entity in outcome.entities.values():
            click.echo(
                f"  {entity.entity:<16} {entity.status:<15} {entity.read:>8} {entity.loaded:>8}"
                f" {entity.quarantined:>11} {entity.skipped:>7}  {entity.contract}"
            )
            if entity.contract == "FAILED" and entity.contract_summary:
                click.echo(f"      contract: {entity.contract_summary}")
            if entity.failing_keys:
                click.echo(f"      failing keys: {', '.join(entity.failing_keys[:10])}")
            if entity.error:
                click.echo("      " + entity.error.replace("\n", "\n      "))
        if outcome.pushes:
            click.echo(
                f"  {'push to':<20} {'sends':<12} {'status':<15} {'sent':>6} {'unchanged':>9}"
                f" {'failed':>6} {'dead':>5}"
            )
        for report in outcome.pushes:
            click.echo(
                f"  {report.sink:<20} {report.sends:<12} {report.status:<15} {report.sent:>6}"
                f" {report.unchanged:>9} {report.failed:>6} {report.dead:>5}"
            )
            if report.error:
                click.echo("      " + report.error.replace("\n", "\n      "))
            if (report.dead or report.failed) and "datafix outbox" not in report.error:
                click.echo(f"      details: datafix outbox {outcome.landlord_id}")
        for error in outcome.errors:
            click.echo("  " + error.replace("\n", "\n  "))
        if outcome.run_id:
            sample = quarantine_sample(warehouse_url(), outcome.landlord_id, outcome.run_id)
            if sample:
                click.echo("  quarantined, for example:")
                for entity, source_row, reason, message in sample:
                    click.echo(f"    {entity} {source_row} [{reason}] {message}")
    click.echo(
        f"\n{len(outcomes) - failures} of {len(outcomes)} landlord(s) ok"
        + (f", {failures} failed" if failures else "")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    main()
