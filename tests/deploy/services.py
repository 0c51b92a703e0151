"""What the deployment tests share: the virtualenv's Dagster programs and a free local port."""

import socket
import sys
from pathlib import Path

BIN = Path(sys.executable).parent  # dagster, dagster-daemon, dagster-webserver


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
