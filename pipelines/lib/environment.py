"""Where the hub keeps its state, in one place: the home folder, warehouse, inboxes, datafixes.

- `DATAFIX_HOME` (default `./.datafix`): warehouse.db, dagster/ (instance), inbox/, bench.json.
- `DATAFIX_WAREHOUSE_URL` (default `sqlite:///$DATAFIX_HOME/warehouse.db`): the warehouse.
- `DATAFIX_DATAFIXES_DIR` (default: the repository's `datafixes/`): the landlords' files.

Datafixes may reference any environment variable as `${NAME}`, plus `DATAFIX_HOME`; nothing
else is offered. The demo's web-service landlords read `DATAFIX_SANDBOX_*` addresses of the local
sandbox peers: those belong to the sandbox (`connectors/sandbox/run.py`, which no production
module imports). `datafix demo` and `datafix sandbox` export them for what they run; any other
process gets them from the shell: `eval "$(datafix sandbox --env)"` before `datafix run` (what
`make ui` does before starting Dagster).
"""

from __future__ import annotations

import os
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


def interpolation_env() -> dict[str, str]:
    """Variables a datafix may reference: the process environment and `DATAFIX_HOME`."""
    return {**os.environ, "DATAFIX_HOME": str(datafix_home())}
