"""Runs the nightly Dagster job in-process for the command line, and reads back what happened.

`datafix run` goes through the very job the schedule launches, on the same Dagster instance as
the UI (`$DATAFIX_HOME/dagster`), so every command-line run is visible in the UI afterwards.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import multiprocessing.connection
import pickle
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg
import sqlalchemy as sa

from connectors import registry, secrets
from connectors.errors import ConnectorError
from pipelines.lib.datafixes import LoadedDatafix, load_landlord
from pipelines.lib.environment import configured_workers
from pipelines.lib.failures import failure_cause
from pipelines.lib.instance import ensure_instance, process_tags
from pipelines.lib.metadata import RUN_TAG_FULL_REFRESH, AssetRole
from pipelines.lib.push import sinks_sending
from pipelines.lib.runlock import LandlordBusyError, landlord_locks
from pipelines.lib.upfront import insight_current, record_insight_stamp
from schemas.canonical import ENTITIES
from schemas.outgoing import OUTGOING
from schemas.tables import quarantine

if TYPE_CHECKING:
    from pipelines.lib.warehouse import Warehouse


@dataclass
class EntityOutcome:
    """What one run did to one entity of one landlord."""

    entity: str
    status: str = "-"
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    skipped: int = 0
    contract: str = "-"
    contract_summary: str = ""
    failing_keys: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class SinkReport:
    """What one run pushed to one sink of one landlord (from the push asset's metadata)."""

    sink: str
    kind: str
    sends: str
    status: str
    queued: int = 0
    pending: int = 0
    sent: int = 0
    unchanged: int = 0
    recovered: int = 0
    failed: int = 0
    dead: int = 0
    dead_waiting: int = 0
    calls: int = 0
    error: str = ""


@dataclass
class LandlordOutcome:
    """What one run did for one landlord."""

    landlord_id: str
    run_id: str = ""
    success: bool = False
    errors: list[str] = field(default_factory=list)
    entities: dict[str, EntityOutcome] = field(default_factory=dict)
    pushes: list[SinkReport] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        """read = loaded + quarantined for every loaded entity."""
        return all(
            e.read == e.loaded + e.quarantined
            for e in self.entities.values()
            if e.status == "loaded"
        )


def run_landlords(
    landlords: list[str],
    *,
    full_refresh: bool = False,
    log_level: str = "CRITICAL",
    job_name: str = "nightly",
    workers: int | None = None,
    own_process: bool = False,
) -> list[LandlordOutcome]:
    """Run a job (`nightly`; `pull` without the push; `push` alone) for each landlord, one
    Dagster run each; one failure never stops the others. The outcomes come in the order of
    `landlords`. With more than one worker (`DATAFIX_WORKERS`, default: the machine's cores)
    and more than one landlord, the landlords are shared out among this process and spawned
    worker processes (`run_in_workers`), each set up once (imports, definitions, instance,
    great-expectations) and running landlord after landlord. `own_process`: this process runs
    nothing else (the `datafix` command): see `LandlordRunner`."""
    count = min(configured_workers() if workers is None else workers, len(landlords))
    if count > 1 and _shareable(plugged_kinds()):
        return run_in_workers(
            landlords,
            count,
            job_name=job_name,
            full_refresh=full_refresh,
            log_level=log_level,
            own_process=own_process,
        )
    runner = LandlordRunner(job_name, own_process=own_process)
    return [
        runner.run(landlord, full_refresh=full_refresh, log_level=log_level)
        for landlord in landlords
    ]


class LandlordRunner:
    """One process's set-up for running landlords: the instance, the definitions and the job,
    made once; then `run` per landlord.

    With `own_process` (the `datafix` command, a worker process: a process that exists to run
    landlords), what the set-up leaves in memory (the imported modules, the definitions, about
    a million objects that live as long as the process) is frozen out of the garbage
    collector's passes (`gc.freeze`), and the collector, which the command may have paused for
    its imports (`pause_collector`), runs again: each full pass of a run no longer walks them.
    An unchanged rerun of the bench landlord spent some 0.3 s of CPU in those passes."""

    def __init__(self, job_name: str, *, own_process: bool = False) -> None:
        try:
            self.instance = ensure_instance()
            # imported late: loading the definitions reads datafixes/
            from pipelines.definitions import run_definitions

            definitions = run_definitions()
            self.job = definitions.resolve_job_def(job_name)
            # the landlord's health, refreshed by its own run after a run that did not refresh it
            self.health = (
                definitions.resolve_job_def(HEALTH_JOB) if job_name != HEALTH_JOB else None
            )
        finally:
            if own_process:
                gc.freeze()
                gc.enable()
        partitions = self.job.partitions_def
        self.known = set(partitions.get_partition_keys()) if partitions else set()
        self._warehouse: Warehouse | None = None

    @property
    def warehouse(self) -> Warehouse:
        """The warehouse, opened (and migrated) at the first landlord's run: a warehouse that
        cannot be reached is then that landlord's error, reported as such, not a traceback."""
        if self._warehouse is None:
            from pipelines.defs.resources import WarehouseResource

            self._warehouse = WarehouseResource().get_client()
        return self._warehouse

    def run(self, landlord: str, *, full_refresh: bool, log_level: str) -> LandlordOutcome:
        """Run the job for one landlord; what went wrong is in the outcome, never raised."""
        outcome = LandlordOutcome(landlord)
        if landlord not in self.known:
            outcome.errors.append(
                f"`{landlord}` is not a landlord of this hub"
                f" (known: {', '.join(sorted(self.known))})"
            )
            return outcome
        try:
            loaded = load_landlord(landlord)
        except ConnectorError as error:
            outcome.errors.append(f"datafix refused, nothing was run:\n{error}")
            return outcome
        mapped = set(loaded.datafix.entities)
        # the insight steps, left out when they would change nothing (pipelines/lib/upfront.py);
        # judged only where the run pushes nothing: a push changes what they read, mid-run
        stamped = not self._pushes(loaded)
        insight = full_refresh or not stamped or not self._insight_current(loaded)
        selection = self._selection_for(loaded, insight=insight)
        # the landlord's lock is taken before the Dagster run starts (a run that cannot have it
        # is not started), for the run id the run will have: its `run_lock` resource finds it held
        run_id = str(uuid.uuid4())
        try:
            with landlord_locks(self.warehouse, [landlord], run_id, notice=_notice):
                result = self.job.execute_in_process(
                    partition_key=landlord,
                    asset_selection=selection,
                    instance=self.instance,
                    raise_on_error=False,
                    run_id=run_id,
                    tags={
                        RUN_TAG_FULL_REFRESH: str(full_refresh).lower(),
                        "datafix/launched_by": "cli",
                        **process_tags(),
                    },
                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                )
                if stamped and insight and result.success and self.insight_keys:
                    self._stamp(loaded, result.run_id)
        except (LandlordBusyError, ConnectorError) as error:
            outcome.errors.append(str(error))
            return outcome
        outcome.run_id = result.run_id
        outcome.success = result.success
        _read_result(result, outcome)
        self._refresh_health(landlord, result, log_level)
        if selection is not None:  # the entities left out of the run were not configured
            outcome.entities = {
                name: entity for name, entity in outcome.entities.items() if name in mapped
            }
        return outcome

    def _refresh_health(
        self, landlord: str, result: dg.ExecuteInProcessResult, log_level: str
    ) -> None:
        """Run the `health` job for the landlord when the run did not materialise its health
        (a step failed or a contract blocked before it, or the job does not hold it: `push`).
        Its outcome is the UI's business: a failure here is logged in its own run, and one that
        stops it from running at all (the instance's disk full) is a line on stderr."""
        if self.health is None:
            return
        key = dg.AssetKey(HEALTH_JOB_ASSET)
        if any(
            event.materialization.asset_key == key
            for event in result.get_asset_materialization_events()
        ):
            return
        if _transient_failure(result):
            return  # the warehouse or a peer is down (a full disk): the next run refreshes it
        run_id = str(uuid.uuid4())
        try:
            with landlord_locks(self.warehouse, [landlord], run_id, notice=_notice):
                self.health.execute_in_process(
                    partition_key=landlord,
                    instance=self.instance,
                    raise_on_error=False,
                    run_id=run_id,
                    tags={"datafix/launched_by": "cli", **process_tags()},
                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                )
        except (LandlordBusyError, ConnectorError):
            return  # another run holds the landlord: it refreshes the health itself
        except Exception as error:  # the landlord's own outcome is what the report says
            _notice(f"{landlord}: its health could not be refreshed: {secrets.scrub(str(error))}")

    def _selection_for(self, loaded: LoadedDatafix, *, insight: bool) -> list[dg.AssetKey] | None:
        """The job's assets (None: all of them) but the steps that would only say they have
        nothing to do: those of the entities the landlord's datafix does not map
        (`not_configured`: pull reads nothing, the contract checks nothing, load loads nothing),
        the derive and push steps of the record kinds none of its sinks sends (`no sink sends
        it`), and, unless `insight`, the insight steps (not the landlord's health). Each costs
        a step's events in the instance. The run is the job's run with this asset selection, as
        a subset launched from the UI is (with the checks of the assets selected)."""
        entities = set(loaded.datafix.entities)
        sent = {kind for kind in OUTGOING if sinks_sending(loaded, kind)}
        keep = {
            key
            for key, role in self.roles.items()
            if role is None
            or (
                (role.stage not in ENTITY_STAGES or role.entity in entities)
                and (role.stage not in SENDING_STAGES or role.sends in sent)
            )
        }
        if not insight:
            keep -= self.insight_keys
        if not keep:  # a push job for a landlord that pushes nothing: its steps say so
            return None
        return None if keep == set(self.roles) else sorted(keep)

    @functools.cached_property
    def roles(self) -> dict[dg.AssetKey, AssetRole | None]:
        """The job's assets and the role each declares in its tags."""
        graph = self.job.asset_layer.asset_graph
        return {
            key: AssetRole.read(graph.get(key).tags)
            for key in self.job.asset_layer.selected_asset_keys
        }

    @functools.cached_property
    def insight_keys(self) -> set[dg.AssetKey]:
        """The job's insight assets, the landlord's health excepted (refreshed by every run)."""
        health = dg.AssetKey(HEALTH_JOB_ASSET)
        return {
            key
            for key, role in self.roles.items()
            if role is not None and role.stage == "insight" and key != health
        }

    def _pushes(self, loaded: LoadedDatafix) -> bool:
        """Whether this job's run pushes anything for the landlord (a sink in its datafix)."""
        pushing = any(role is not None and role.stage == "push" for role in self.roles.values())
        return pushing and bool(loaded.datafix.push and loaded.datafix.push.sinks)

    def _insight_current(self, loaded: LoadedDatafix) -> bool:
        """`upfront.insight_current`; a warehouse or a source that cannot tell (unreachable,
        unreadable, not migrated yet) means the insight steps run (and the run says why)."""
        if not self.insight_keys:
            return False
        try:
            return insight_current(self.warehouse, loaded)
        except (sa.exc.SQLAlchemyError, ConnectorError, OSError):
            return False

    def _stamp(self, loaded: LoadedDatafix, run_id: str) -> None:
        """`upfront.record_insight_stamp` after a run whose insight steps all ran and passed
        (while the landlord's lock is held: no other run writes in between); unrecorded, the
        next run runs them again."""
        try:
            record_insight_stamp(self.warehouse, loaded, run_id)
        except sa.exc.SQLAlchemyError as error:
            _notice(f"{loaded.landlord_id}: {secrets.scrub(str(error))}")


def run_in_workers(
    landlords: list[str],
    workers: int,
    *,
    job_name: str,
    full_refresh: bool,
    log_level: str,
    own_process: bool = False,
) -> list[LandlordOutcome]:
    """Run the landlords in `workers` processes: this one (its `LandlordRunner`) and
    `workers - 1` spawned ones, each set up once and handed one landlord at a time, the next as
    soon as it is done. The outcomes come in the order of `landlords`."""
    ensure_instance()  # created (and its dead runs reaped) once, before the workers start
    pool = _WorkerPool(landlords, workers - 1, job_name, full_refresh, log_level)
    pool.start()
    runner = LandlordRunner(job_name, own_process=own_process)  # while the workers start
    while (task := pool.take()) is not None:
        index, landlord = task
        pool.done(index, runner.run(landlord, full_refresh=full_refresh, log_level=log_level))
    return pool.outcomes()


class _WorkerPool:
    """Spawned worker processes, fed from a thread of this process: the landlords not yet
    taken (by a worker or by this process) are shared out one at a time. The pool knows which
    landlord each worker runs, so a worker that dies (killed, out of memory) fails that
    landlord only, and a new worker takes its place."""

    def __init__(
        self, landlords: list[str], workers: int, job_name: str, full_refresh: bool, log_level: str
    ) -> None:
        self.landlords = landlords
        self.workers = workers
        self.arguments = (job_name, full_refresh, log_level, plugged_kinds())
        self.pending = list(enumerate(landlords))
        self.pending.reverse()  # popped from the end: the first landlords first
        self.results: dict[int, LandlordOutcome] = {}
        self.running: dict[Any, tuple[Any, Any, int | None]] = {}  # sentinel → process, pipe, task
        self.starts_left = workers + len(landlords)  # a worker that cannot start is not retried
        self.lock = threading.Lock()
        self.context = multiprocessing.get_context("spawn")  # no fork of open connections
        self.feeder = threading.Thread(target=self._feed, name="datafix-workers", daemon=True)

    def start(self) -> None:
        with self.lock:
            for _ in range(min(self.workers, len(self.pending))):
                self._start_worker()
        self.feeder.start()

    def take(self) -> tuple[int, str] | None:
        """The next landlord for this process, None when every one is taken."""
        with self.lock:
            return self.pending.pop() if self.pending else None

    def done(self, index: int, outcome: LandlordOutcome) -> None:
        with self.lock:
            self.results[index] = outcome

    def outcomes(self) -> list[LandlordOutcome]:
        """Every landlord's outcome, in order, once the workers have stopped."""
        self.feeder.join()
        for index, landlord in self.pending:  # only if no worker could be started at all
            self.results[index] = LandlordOutcome(landlord, errors=["not run: no worker"])
        return [self.results[index] for index in range(len(self.landlords))]

    def _start_worker(self) -> None:
        self.starts_left -= 1
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=_worker, args=(theirs, *self.arguments), name="datafix-worker", daemon=True
        )
        process.start()
        theirs.close()
        self.running[process.sentinel] = (process, ours, None)
        self._hand_out(process.sentinel)

    def _hand_out(self, sentinel: Any) -> None:
        process, pipe, _ = self.running[sentinel]
        task = self.pending.pop() if self.pending else None
        try:
            pipe.send(task)
        except OSError:  # the worker died meanwhile: the task goes to the next one
            if task is not None:
                self.pending.append(task)
            task = None
        self.running[sentinel] = (process, pipe, None if task is None else task[0])

    def _feed(self) -> None:
        while True:
            with self.lock:
                if not self.running:
                    return
                pipes = {pipe: sentinel for sentinel, (_, pipe, _) in self.running.items()}
                waiting = [*pipes, *self.running]
            ready = multiprocessing.connection.wait(waiting)
            with self.lock:
                for item in ready:
                    if item in pipes and pipes[item] in self.running:
                        self._receive(item, pipes[item])
                for item in ready:
                    if item in self.running and not self.running[item][0].is_alive():
                        self._bury(item)

    def _receive(self, pipe: Any, sentinel: Any) -> None:
        try:
            index, outcome, secret_values = pipe.recv()
        except (EOFError, OSError):
            return  # the worker is gone: its sentinel says so
        secrets.remember(secret_values)  # the report this process prints masks them too
        self.results[index] = outcome
        self._hand_out(sentinel)

    def _bury(self, sentinel: Any) -> None:
        process, pipe, task = self.running.pop(sentinel)
        process.join()
        pipe.close()
        if task is not None:
            landlord = self.landlords[task]
            self.results[task] = LandlordOutcome(
                landlord,
                errors=[
                    f"the worker process running {landlord} (pid {process.pid}) ended with exit"
                    f" code {process.exitcode} before the run ended: it was killed or crashed;"
                    " its run is marked failed by the next start and its lock taken over. Run"
                    " it again."
                ],
            )
        if (process.exitcode != 0 or task is not None) and self.pending and self.starts_left > 0:
            self._start_worker()


def plugged_kinds() -> list[registry.SourceKind | registry.SinkKind]:
    """The source and sink kinds registered in this process beyond the hub's own (a plugin's
    `registry.register` line): a worker process registers them too."""
    sources = [k for n, k in registry.source_kinds().items() if n not in registry.BUILTIN_SOURCES]
    sinks = [k for n, k in registry.sink_kinds().items() if n not in registry.BUILTIN_SINKS]
    return [*sources, *sinks]


def _shareable(kinds: list[Any]) -> bool:
    """Whether the plugged kinds can be handed to a worker (pickled by reference); if not, the
    landlords run in this process, one after the other."""
    try:
        pickle.dumps(kinds)
    except Exception:
        return False
    return True


def _worker(
    pipe: Any,
    job_name: str,
    full_refresh: bool,
    log_level: str,
    kinds: list[registry.SourceKind | registry.SinkKind],
) -> None:
    """A worker process: set up once, then run each landlord the parent hands it until None."""
    from connectors.secrets import ScrubbingStream, scrub_log_records
    from pipelines.lib.personal import private_umask

    for kind in kinds:
        present = (
            registry.source_kind if isinstance(kind, registry.SourceKind) else registry.sink_kind
        )
        if present(kind.name) is None:  # unless the plugin registers it when imported
            registry.register(kind)
    private_umask()  # as the `datafix` command's own process (pipelines/cli.py `main`)
    scrub_log_records()
    sys.stdout, sys.stderr = ScrubbingStream(sys.stdout), ScrubbingStream(sys.stderr)
    runner: LandlordRunner | None = None
    failure = ""
    try:
        runner = LandlordRunner(job_name, own_process=True)
    except Exception as error:  # every landlord handed to it gets the reason
        failure = f"the worker process could not set up: {type(error).__name__}: {error}"
    while (task := pipe.recv()) is not None:
        index, landlord = task
        if runner is None:
            outcome = LandlordOutcome(landlord, errors=[failure])
        else:
            try:
                outcome = runner.run(landlord, full_refresh=full_refresh, log_level=log_level)
            except Exception as error:  # a bug: reported with the landlord, the others go on
                message = f"run failed: {type(error).__name__}: {error}"
                outcome = LandlordOutcome(landlord, errors=[message])
        pipe.send((index, outcome, sorted(secrets.known_secrets())))
    pipe.close()


def _notice(text: str) -> None:
    """A line for the person at the terminal while a run waits (stdout holds the report)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# the job refreshing a landlord's health alone, and its asset (pipelines/defs/health/assets.py)
HEALTH_JOB = "health"
HEALTH_JOB_ASSET = "landlord_health"

# the stages whose assets carry one canonical entity each (derive, push and insight do not)
ENTITY_STAGES = ("pull", "normalise", "load")
# the stages whose assets carry one kind of outgoing record each
SENDING_STAGES = ("derive", "push")


def _read_result(result: dg.ExecuteInProcessResult, outcome: LandlordOutcome) -> None:
    """Fill the outcome from the run's events, by the role (`datafix/stage`, `datafix/entity`,
    `datafix/sends`) each asset records in its metadata and definition tags."""
    entities = {name: EntityOutcome(name) for name in ENTITIES}
    _read_materializations(result, outcome, entities)
    _read_contracts(result, entities)
    _read_failures(result, outcome, entities)
    outcome.entities = {k: v for k, v in entities.items() if v.status != "not_configured"}


def _read_materializations(
    result: dg.ExecuteInProcessResult,
    outcome: LandlordOutcome,
    entities: dict[str, EntityOutcome],
) -> None:
    """Counts per entity from pull, normalise and load; per sink from push."""
    for event in result.get_asset_materialization_events():
        metadata = _plain_metadata(event.materialization.metadata)
        role = AssetRole.read(metadata)
        if role is None:
            continue
        if role.stage == "push":
            outcome.pushes.extend(_sink_reports(role.sends, metadata))
            continue
        target = entities.get(role.entity)
        if target is None or role.stage not in ENTITY_STAGES:
            continue
        if role.stage == "pull":
            target.status = str(metadata.get("status", target.status))
        elif role.stage == "load":
            target.status = str(metadata.get("status", target.status))
            target.read = int(metadata.get("rows_read", 0))
            target.loaded = int(metadata.get("rows_loaded", 0))
            target.quarantined = int(metadata.get("rows_quarantined", 0))
            target.skipped = int(metadata.get("rows_skipped", 0))
        elif "rows_read" in metadata:  # normalise
            target.read = int(metadata["rows_read"])
            target.quarantined = int(metadata.get("rows_quarantined", 0))
            target.skipped = int(metadata.get("rows_skipped", 0))


def _read_contracts(result: dg.ExecuteInProcessResult, entities: dict[str, EntityOutcome]) -> None:
    """The contract verdict per entity; a failed one blocked the entity's load."""
    for evaluation in result.get_asset_check_evaluations():
        metadata = _plain_metadata(evaluation.metadata)
        role = AssetRole.read(metadata)
        if role is None or role.entity not in entities:
            continue
        if "status" in metadata:
            continue  # nothing was checked (source unchanged or not configured)
        target = entities[role.entity]
        target.contract = "passed" if evaluation.passed else "FAILED"
        target.failing_keys = list(metadata.get("failing_keys") or [])
        target.contract_summary = evaluation.description or ""
        if not evaluation.passed:
            target.status = "blocked"
            target.loaded = 0


def _read_failures(
    result: dg.ExecuteInProcessResult,
    outcome: LandlordOutcome,
    entities: dict[str, EntityOutcome],
) -> None:
    """Failed steps, mapped to their asset's role through the job's asset graph: an entity's
    stage marks the entity failed, a push reports its sinks, anything else is a run error."""
    for event in result.get_step_failure_events():
        assets_def = result.job_def.asset_layer.get_assets_def_for_node(event.node_handle)
        if assets_def is not None and not assets_def.keys:
            continue  # checks only: a failed blocking contract is reported with its entity
        role = _defined_role(assets_def)
        message = ""
        data = event.step_failure_data
        if data is not None:
            failure = data.user_failure_data
            if failure is not None and failure.description:
                message = failure.description
                if role is not None and role.stage == "push":
                    metadata = _plain_metadata(failure.metadata)
                    outcome.pushes.extend(_sink_reports(role.sends, metadata))
                    continue
            elif data.error is not None:
                message = failure_cause(data.error)
        if role is not None and role.stage in ENTITY_STAGES and role.entity in entities:
            target = entities[role.entity]
            target.status = "failed"
            target.error = target.error or message
        else:
            outcome.errors.append(f"{event.step_key}: {message}")


def _transient_failure(result: dg.ExecuteInProcessResult) -> bool:
    """Whether a step failed on a transient fault (`transient` in its failure's metadata)."""
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        failure = data.user_failure_data if data is not None else None
        if failure is not None and _plain_metadata(failure.metadata).get("transient") is True:
            return True
    return False


def _defined_role(assets_def: dg.AssetsDefinition | None) -> AssetRole | None:
    """The role an asset's definition declares in its tags."""
    if assets_def is None:
        return None
    return next((AssetRole.read(spec.tags) for spec in assets_def.specs), None)


def _plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def _sink_reports(sends: str, metadata: dict[str, Any]) -> list[SinkReport]:
    fields = set(SinkReport.__dataclass_fields__)
    return [
        SinkReport(sends=sends, **{k: v for k, v in sink.items() if k in fields and k != "sends"})
        for sink in metadata.get("sinks") or []
    ]


def quarantine_sample(
    url: str, landlord_id: str, run_id: str, limit: int = 3
) -> list[tuple[str, str, str, str]]:
    """A few rows this run quarantined: (entity, source_row, reason, message)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    quarantine.c.entity,
                    quarantine.c.source_row,
                    quarantine.c.reason,
                    quarantine.c.message,
                )
                .where(quarantine.c.landlord_id == landlord_id, quarantine.c.run_id == run_id)
                .order_by(quarantine.c.entity, quarantine.c.id)
                .limit(limit)
            ).all()
    except sa.exc.OperationalError:
        return []
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]
