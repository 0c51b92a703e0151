"""Building the connector a landlord's sink names, whatever its kind, through the registry.

Each kind's writer lives in `connectors/<system>/kinds.py` (listed in `connectors/registry.py`).
A sink is built from the landlord's own datafix and nothing else, so a landlord's records cannot
reach a peer another landlord declared.
"""

from __future__ import annotations

from connectors import registry
from connectors.delivery import Sink
from connectors.errors import ConfigError
from pipelines.lib.datafixes import LoadedDatafix

__all__ = ["build_sink"]


def build_sink(loaded: LoadedDatafix, name: str) -> Sink:
    """The connector for sink `name` of the landlord's datafix (nothing connects yet)."""
    settings = loaded.sink(name)
    kind = registry.sink_kind(settings.kind)
    if kind is None:
        raise ConfigError(f"sink `{name}`: no kind `{settings.kind}` is registered")
    return kind.build(name, settings)
