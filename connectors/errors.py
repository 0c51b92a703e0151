"""The connectors' error hierarchy, grouped by what the caller should do next.

- `ConfigError`: the datafix or the environment is wrong; a person must fix it (no retry).
- `RetriableError`: a transient fault (timeout, connection reset, 5xx); retry with backoff.
- `PermanentError`: the peer refused for good (bad credentials, malformed request); report it.

Each message names the file, line, source or record concerned and how to fix it.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConnectorError", "PermanentError", "RetriableError", "SourceDataError"]


class ConnectorError(Exception):
    """Base of every error a connector raises on purpose."""


class ConfigError(ConnectorError):
    """Configuration or environment is wrong: fix the datafix, the variable or the install."""


class RetriableError(ConnectorError):
    """A transient fault: the same call may succeed later."""


class PermanentError(ConnectorError):
    """The peer refused the request for good."""


class SourceDataError(PermanentError):
    """A source file or table cannot be read as declared (no header, unreadable encoding …)."""
