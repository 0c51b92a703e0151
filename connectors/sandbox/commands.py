"""`datafix demo` and `datafix sandbox`: the sandbox's own commands.

`pipelines/cli.py` registers them by import string (`connectors.sandbox.commands:demo`) and
imports this module only when one of them runs or the help lists them: the hub's production
modules never import the sandbox. This module may import the hub (the runner and the summary
the other commands print); the hub must not import it.

Both commands export the `DATAFIX_SANDBOX_*` variables of the peers they serve into
`os.environ` for what they run (the demo datafixes read them). `datafix sandbox --env` prints
them as `export NAME=value` lines for the configured ports, for a shell that then runs the hub:
`eval "$(datafix sandbox --env)"`.

Both date the demo data relative to the demo day (`--day`, else `DATAFIX_DEMO_DAY`, else today
in Paris; `connectors.sandbox.demo_calendar`): the files `datafix demo` writes and the seeds of
the peers either command starts.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from connectors.sandbox.demo_calendar import (
    DEMO_DAY_VARIABLE,
    DemoCalendar,
    DemoDayError,
    parse_demo_day,
)
from connectors.sandbox.run import Sandbox, SandboxError, sandbox_variables, start_sandbox
from pipelines.lib.datafixes import load_landlord
from pipelines.lib.environment import datafix_home, warehouse_url
from pipelines.lib.report import write_report
from pipelines.lib.warehouse import Warehouse

__all__ = ["demo", "sandbox"]


def _day(_context: click.Context, _parameter: click.Parameter, text: str | None) -> date | None:
    try:
        return None if text is None or not text.strip() else parse_demo_day(text)
    except DemoDayError as error:
        raise click.BadParameter(str(error)) from None


_DAY_OPTION = click.option(
    "--day",
    envvar=DEMO_DAY_VARIABLE,
    callback=_day,
    metavar="YYYY-MM-DD",
    help=f"The demo day the demo data is dated for (default: ${DEMO_DAY_VARIABLE}, else today"
    " in Paris). The insight steps still age to today.",
)


@click.command()
@_DAY_OPTION
def demo(day: date | None) -> None:
    """Write the demo landlords' source files, run them with the sandbox peers up, and say how
    to open the UI."""
    from connectors.sandbox.demo_files import (
        DEMO_LANDLORDS,
        write_demo_sources,
        write_demo_targets,
    )
    from pipelines.cli import run_and_report

    home = datafix_home()
    calendar = DemoCalendar.from_environment() if day is None else DemoCalendar(day)
    written = write_demo_sources(home, calendar.day)
    write_demo_targets(home)  # where the demo pushes besides the peers: an ERP table, a folder
    files = sum(len(paths) for paths in written.values())
    click.echo(
        f"demo sources for {len(written)} landlords ({files} files) in {home / 'inbox'},"
        f" dated for {calendar.day:%d/%m/%Y}"
    )
    with _sandbox_or_exit(home, calendar) as running:
        started = [peer.name for peer in running.peers if peer.started]
        served = "started for this run" if started else "already running (datafix sandbox)"
        click.echo(
            f"{len(DEMO_LANDLORDS) - len(written)} landlords read web services: sandbox peers"
            f" {served} — {running.erp.wsdl_url}, {running.salesforce.url}"
        )
        code = run_and_report(sorted(DEMO_LANDLORDS), full_refresh=False)
    click.echo(
        "\nOpen the Dagster UI on these runs:  make ui   then browse http://127.0.0.1:3000"
        f"\nWarehouse: {warehouse_url()}"
    )
    # written again now that every landlord's push is done: the run wrote each report beside
    # its push steps, which Dagster may order after it
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    click.echo("Morning reports (open in a browser, or: datafix report LANDLORD --open):")
    warehouse = Warehouse(warehouse_url())
    try:
        for landlord in sorted(DEMO_LANDLORDS):
            click.echo(f"  {write_report(warehouse, load_landlord(landlord), today)}")
    finally:
        warehouse.dispose()
    sys.exit(code)


@click.command()
@click.option(
    "--seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop by itself after this many seconds (default: run until Ctrl-C or SIGTERM).",
)
@click.option(
    "--env",
    "print_env",
    is_flag=True,
    help="Print `export DATAFIX_SANDBOX_…=…` lines for the configured ports and exit (use: eval"
    ' "$(datafix sandbox --env)").',
)
@_DAY_OPTION
def sandbox(seconds: float | None, print_env: bool, day: date | None) -> None:
    """Serve the local peers with demo data (landlord ERP, Sage X3, Salesforce, works-order ERP)
    on 127.0.0.1, so a web-service datafix can be rehearsed offline; stop with Ctrl-C."""
    if print_env:
        try:
            variables = {**sandbox_variables(os.environ), **_exported(os.environ)}
        except SandboxError as error:
            raise click.ClickException(str(error)) from error
        for name, value in variables.items():
            click.echo(f"export {name}={shlex.quote(value)}")
        return
    from connectors.sandbox.demo_files import write_demo_targets

    home = datafix_home()
    calendar = DemoCalendar.from_environment() if day is None else DemoCalendar(day)
    write_demo_targets(home)  # the demo's push targets that are files, not peers
    # The handler only sets a flag: calling Event.set() from a signal handler can deadlock
    # on the lock Event.wait() holds in the main thread (seen once in a few hundred Ctrl-Cs).
    stopping: list[int] = []
    previous = {
        number: signal.signal(number, lambda number, _frame: stopping.append(number))
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with _sandbox_or_exit(home, calendar) as running:
            click.echo(
                "Datafix sandbox: local peers with demo data dated for"
                f" {calendar.day:%d/%m/%Y}, on 127.0.0.1 only"
            )
            for peer in running.peers:
                state = "started" if peer.started else "already running in another process"
                click.echo(f"  {peer.name:<22} {peer.url:<26} {state}")
            click.echo(f"  landlord ERP WSDL      {running.erp.wsdl_url}")
            click.echo(
                f"  Sage X3 WSDL           {running.sage_x3.wsdl_url} (pool {running.sage_pool})"
            )
            click.echo(f"  works-order ERP WSDL   {running.travaux.wsdl_url} (node-soap)")
            click.echo(f"  Salesforce CA bundle   {running.ca_bundle}")
            click.echo(
                'Variables the demo datafixes read (eval "$(datafix sandbox --env)" exports them):'
            )
            for name, value in running.variables().items():
                click.echo(f"  {name}={value}")
            if not running.started_any:
                click.echo("Nothing to serve here: another `datafix sandbox` serves every peer.")
                return
            click.echo(
                "Serving until Ctrl-C" + (f" or {seconds:g} s" if seconds is not None else "")
            )
            deadline = None if seconds is None else time.monotonic() + seconds
            while not stopping and (deadline is None or time.monotonic() < deadline):
                time.sleep(
                    0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
                )
        click.echo("sandbox stopped")
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _exported(environ: Mapping[str, str]) -> dict[str, str]:
    """The `DATAFIX_SANDBOX_*` addresses already set in the environment: they win."""
    return {name: environ[name] for name in sandbox_variables({}) if name in environ}


@contextmanager
def _sandbox_or_exit(home: Path, calendar: DemoCalendar) -> Iterator[Sandbox]:
    """The sandbox peers for the block: started here (stopped after), or reused. Datafixes
    read in this process are pointed at them (their ports may be ones the system picked)."""
    try:
        running = start_sandbox(home, calendar=calendar)
    except SandboxError as error:
        raise click.ClickException(str(error)) from error
    variables = running.variables()
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield running
    finally:
        running.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
