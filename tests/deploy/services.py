"""What the deployment tests share: the virtualenv's Dagster programs, a free local port and a
GraphQL query to a local `dagster-webserver`."""

import json
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent  # dagster, dagster-daemon, dagster-webserver


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str, timeout: float) -> dict[str, Any] | None:
    """The webserver's answer to `query` (`data`, `errors`), or None while it does not answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except OSError:
        return None
