"""Where the hub keeps its state, in one place: the home folder, warehouse, inboxes, datafixes.

- `DATAFIX_HOME` (default `./.datafix`): warehouse.db, dagster/ (instance), inbox/, bench.json.
- `DATAFIX_WAREHOUSE_URL` (default `sqlite:///$DATAFIX_HOME/warehouse.db`): the warehouse.
- `DATAFIX_DATAFIXES_DIR` (default: the repository's `datafixes/`): the landlords' files.

Datafixes may reference any environment variable as `${NAME}`, plus `DATAFIX_HOME` and these
defaults for the local sandbox peers (`datafix sandbox`, `connectors/sandbox/run.py`), which
the demo's web-service landlords read; a value set in the environment wins:

- `DATAFIX_SANDBOX_ERP_WSDL` (`http://127.0.0.1:8711/wsdl`): the landlord ERP's WSDL;
- `DATAFIX_SANDBOX_SAGE_WSDL` (`http://127.0.0.1:8712/wsdl`) and `DATAFIX_SANDBOX_SAGE_POOL`
  (`SEED`): the Sage X3 web service;
- `DATAFIX_SANDBOX_SF_INSTANCE_URL` (`https://127.0.0.1:8713`) and
  `DATAFIX_SANDBOX_SF_SESSION_ID` (the session id the Salesforce peer accepts);
- the ports follow `DATAFIX_SANDBOX_PORT` (default 8711; Sage X3 and Salesforce on the next two).
"""

from __future__ import annotations

import os
from pathlib import Path

from connectors.sandbox.run import sandbox_variables

REPO_ROOT = Path(__file__).resolve().parents[2]


def datafix_home() -> Path:
    """The hub's home folder, created on first use."""
    home = Path(os.environ.get("DATAFIX_HOME") or ".datafix").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
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
    """Variables a datafix may reference: the process environment, `DATAFIX_HOME`, and the
    sandbox peers' `DATAFIX_SANDBOX_*` defaults (see the module docstring)."""
    return {**sandbox_variables(os.environ), **os.environ, "DATAFIX_HOME": str(datafix_home())}
