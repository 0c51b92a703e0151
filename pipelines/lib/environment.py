"""Where the hub keeps its state, in one place: the home folder, warehouse, inboxes, datafixes.

- `DATAFIX_HOME` (default `./.datafix`): warehouse.db, dagster/ (instance), inbox/, bench.json.
- `DATAFIX_WAREHOUSE_URL` (default `sqlite:///$DATAFIX_HOME/warehouse.db`): the warehouse.
- `DATAFIX_DATAFIXES_DIR` (default: the repository's `datafixes/`): the landlords' files.
- `DATAFIX_INBOX_ROOTS` (optional, `:`-separated folders): where else a datafix's `inbox` may
  be; by default only `$DATAFIX_HOME/inbox/<landlord>`.
- `DATAFIX_WORKERS` (default: the machine's cores): how many processes `datafix run` shares
  the landlords out among; 1 runs them one after the other in the command's own process.

Datafixes may reference, as `${NAME}`, the `DATAFIX_*` variables (`DATAFIX_HOME` always) and
the names they declare under `secrets:`; nothing else of the hub's environment is offered.
The demo's web-service landlords read `DATAFIX_SANDBOX_*` addresses of the local sandbox
peers: those belong to the sandbox (`connectors/sandbox/run.py`, which no production module
imports). `datafix demo` and `datafix sandbox` export them for what they run; any other
process gets them from the shell: `eval "$(datafix sandbox --env)"` before `datafix run` (what
`make ui` does before starting Dagster).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def datafix_home() -> Path:
    """The hub's home folder, created on first use, private (0700): it holds the warehouse,
    the quarantine key and the landlords' files."""
    home = Path(os.environ.get("DATAFIX_HOME") or ".datafix").expanduser().resolve()
    if not home.is_dir():
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)  # whatever the umask of the process that made it
    return home


def warehouse_url() -> str:
    """SQLAlchemy URL of the warehouse: `DATAFIX_WAREHOUSE_URL`, else SQLite in the home."""
    return os.environ.get("DATAFIX_WAREHOUSE_URL") or f"sqlite:///{datafix_home() / 'warehouse.db'}"


def datafixes_dir() -> Path:
    """Folder holding one `<landlord>.yaml` per landlord."""
    configured = os.environ.get("DATAFIX_DATAFIXES_DIR")
    return Path(configured).expanduser().resolve() if configured else REPO_ROOT / "datafixes"


def default_inbox(landlord_id: str) -> Path:
    """Where a landlord's files land unless its datafix names another folder."""
    return datafix_home() / "inbox" / landlord_id


def dagster_home() -> Path:
    """The Dagster instance folder used by `datafix run` and `make ui`."""
    home = Path(os.environ.get("DAGSTER_HOME") or datafix_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


VARIABLE_PREFIX = "DATAFIX_"


def variable_allowed(name: str, declared: Collection[str] = ()) -> bool:
    """Whether a datafix may read variable `name`: a `DATAFIX_*` one or one it declares."""
    return name.startswith(VARIABLE_PREFIX) or name in declared


def interpolation_env(declared: Collection[str] = ()) -> dict[str, str]:
    """Variables a datafix may reference: the `DATAFIX_*` variables of the process environment
    (`DATAFIX_HOME` always), and the names it declares under `secrets:`."""
    offered = {k: v for k, v in os.environ.items() if variable_allowed(k, declared)}
    return {**offered, "DATAFIX_HOME": str(datafix_home())}


def inbox_roots() -> list[Path]:
    """Folders under which a datafix's `inbox` may be: `$DATAFIX_HOME/inbox` (each landlord
    its own `<id>` below it) and those `DATAFIX_INBOX_ROOTS` lists (separated by `:`)."""
    configured = os.environ.get("DATAFIX_INBOX_ROOTS", "")
    extra = [Path(p).expanduser().resolve() for p in configured.split(os.pathsep) if p.strip()]
    return [(datafix_home() / "inbox").resolve(), *extra]


def configured_workers() -> int:
    """`DATAFIX_WORKERS`, else the number of cores this process may use."""
    configured = os.environ.get("DATAFIX_WORKERS", "").strip()
    if not configured:
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    if not configured.isdigit() or int(configured) < 1:
        raise ValueError(
            f"DATAFIX_WORKERS={configured!r} is not a number of processes — set a whole number"
            " of at least 1 (1: one landlord after the other in one process), or unset it"
        )
    return int(configured)
