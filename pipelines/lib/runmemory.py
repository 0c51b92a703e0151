"""The hub's IO manager: what one asset hands the next stays in the run's memory, and only there.

Dagster's default IO manager pickles every output under `$DAGSTER_HOME/storage/<asset>/<partition>`,
shared by every run: a run could load frames another run wrote (rows another run's contract had
refused), and raw source columns (names, e-mails, IBANs) sat in world-readable files. Here an
output lives in memory for the run that produced it: dropped as soon as the last step of the run
that reads it has read it (memory stays flat along the run), and with the run in any case.

An input this run did not produce (a subset of assets materialised from the UI) is refused with
the upstream asset to select too: the hub never reads another run's intermediate data. The jobs
use the in-process executor (one process per run), which this requires.
"""

from __future__ import annotations

import threading
from typing import Any

import dagster as dg
from dagster._core.execution.plan.outputs import StepOutputHandle


class MissingInputError(Exception):
    """A step reads an asset the same run did not produce."""


class RunMemoryIOManager(dg.IOManager):
    """Outputs kept in memory for one run (`run_id`), each until its last reader in the run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._values: dict[tuple[str, ...], list[Any]] = {}  # key → [value, readers left]
        self._guard = threading.Lock()

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        readers = _readers_in_run(context)
        if readers == 0:
            return  # nothing in this run reads it: keep nothing
        with self._guard:
            self._values[_output_key(context)] = [obj, readers]

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        key = _output_key(upstream) if upstream is not None else None
        with self._guard:
            held = self._values.get(key) if key is not None else None
            if held is None:
                raise MissingInputError(_missing_message(context))
            value = held[0]
            if held[1] is not None:
                held[1] -= 1
                if held[1] <= 0:
                    del self._values[key]
        return value

    def release(self) -> None:
        """Forget every output of the run (it ended)."""
        with self._guard:
            self._values.clear()

    @property
    def held(self) -> int:
        """How many outputs the run still holds."""
        return len(self._values)


def _output_key(context: dg.OutputContext) -> tuple[str, ...]:
    if context.has_asset_key:
        return ("asset", *context.asset_key.path)
    return ("step", context.step_key, context.name, context.mapping_key or "")


def _readers_in_run(context: dg.OutputContext) -> int | None:
    """How many steps of this run read the output (None: unknown, kept until the run ends)."""
    try:
        plan = context.step_context.execution_plan
    except Exception:  # a context built outside a run (unit tests of single assets)
        return None
    handle = StepOutputHandle(context.step_key, context.name, context.mapping_key)
    return sum(
        handle in step_input.get_step_output_handle_dependencies()
        for step in plan.get_steps_to_execute_in_topo_order()
        for step_input in step.step_inputs
    )


def _missing_message(context: dg.InputContext) -> str:
    upstream = context.asset_key.to_user_string() if context.has_asset_key else context.name
    reader = context.op_def.name if context.op_def is not None else "this step"
    return (
        f"`{reader}` reads `{upstream}`, which this run did not produce: the hub keeps no data"
        f" between runs. Select `{upstream}` too (or launch the `nightly` or `pull` job) and run"
        " again."
    )


@dg.io_manager(
    required_resource_keys={"run_lock"},
    description="Outputs kept in the run's memory until their last reader in the run has read"
    " them; nothing written to disk, nothing shared between runs. Holds the landlord's run lock"
    " (`run_lock`) for the run.",
)
def run_memory_io_manager(context: dg.InitResourceContext) -> Any:
    manager = RunMemoryIOManager(context.run.run_id if context.run else "")
    try:
        yield manager
    finally:
        manager.release()
