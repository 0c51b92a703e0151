"""The Dagster code location: every definition under `pipelines/defs/`, autoloaded."""

import importlib
import sys
import tomllib
import warnings
from pathlib import Path

import dagster as dg

from connectors.secrets import scrub_log_records
from pipelines.lib.datafixes import landlord_ids
from pipelines.lib.personal import private_umask

private_umask()  # the code location's files (instance, storage, logs) readable by the hub only
scrub_log_records()  # no secret in any log line, the event log's included

PROJECT = Path(__file__).parent
DEFS_FOLDER = PROJECT / "defs"
DEFS_PACKAGE = "pipelines.defs"


def forget_stale_definitions() -> None:
    """Have the definitions about to be built take the landlords of the datafixes folder as it
    is now. The landlord partitions are read from the folder when `pipelines/defs/partitions.py`
    is imported, and every module of `defs/` takes them then; in a process that builds the
    definitions again after the folder changed (a new landlord dropped in, another hub home), the
    modules imported with the old landlords are forgotten, so that loading the folder imports
    them afresh, as a new code-server process does. Nothing is forgotten while the landlords are
    the same: building the definitions twice imports nothing twice."""
    partitions = sys.modules.get(f"{DEFS_PACKAGE}.partitions")
    if partitions is None:
        return
    if list(partitions.landlord_partitions.get_partition_keys()) == landlord_ids():
        return
    for name in [n for n in sys.modules if n == DEFS_PACKAGE or n.startswith(f"{DEFS_PACKAGE}.")]:
        del sys.modules[name]


@dg.definitions
def defs() -> dg.Definitions:
    """All assets, checks, jobs, schedules, sensors and resources of the hub."""
    forget_stale_definitions()
    return dg.load_from_defs_folder(path_within_project=PROJECT)


def run_definitions() -> dg.Definitions:
    """The same definitions, built from the same folder, for a process that only runs jobs
    (`datafix run`, its workers): without the catalogue of every component type installed
    that `load_from_defs_folder` adds to the code location's metadata for the UI's component
    browser (0.07 s of CPU per process, a run reads nothing of it). Dagster's preview and
    deprecation warnings are silenced while they load, as `load_from_defs_folder` does."""
    forget_stale_definitions()
    with warnings.catch_warnings():
        for category in (
            DeprecationWarning,
            dg.SupersessionWarning,
            dg.PreviewWarning,
            dg.BetaWarning,
        ):
            warnings.simplefilter("ignore", category=category)
        return component_tree().build_defs(DEFS_FOLDER)


def component_tree() -> dg.ComponentTree:
    """`dg.ComponentTree.for_project(PROJECT)`: the project's `[tool.dg.project]` settings read
    from its pyproject.toml as `for_project` reads them, with the standard library's TOML reader
    (`for_project` imports tomlkit for it: 0.02 s of every `datafix run`)."""
    root = PROJECT.parent
    config = root / "pyproject.toml"
    if not config.is_file():  # not the repository's layout: Dagster looks for it
        return dg.ComponentTree.for_project(PROJECT)
    with config.open("rb") as stream:
        project = tomllib.load(stream).get("tool", {}).get("dg", {}).get("project", {})
    defs_module = project.get("defs_module") or f"{project['root_module']}.defs"
    return dg.ComponentTree(
        defs_module=importlib.import_module(defs_module),
        project_root=root,
        code_location_name=project.get("code_location_name") or root.name,
    )
