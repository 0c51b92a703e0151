"""Hub settings read from environment variables, with the error a wrong value gets."""

from __future__ import annotations

import math
import os

from connectors.errors import ConfigError

__all__ = ["seconds_variable"]


def seconds_variable(variable: str, default: float, *, fix: str, most: float = math.inf) -> float:
    """Environment variable `variable` as a number of seconds from 0 to `most`; `default` when it
    is unset or blank. Any other value is a ConfigError naming it and saying `fix`."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= most:
        span = "" if most == math.inf else f" between 0 and {most:g}"
        raise ConfigError(f"{variable}={text!r} is not a number of seconds{span} — {fix}")
    return seconds
