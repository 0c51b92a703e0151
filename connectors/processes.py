"""Whether a process of this machine still runs: stale temporary files and push leases left by
a killed process (kill -9) are recognised by their writer's pid."""

from __future__ import annotations

import os

__all__ = ["pid_alive", "process_running", "process_started"]


def pid_alive(pid: int) -> bool:
    """True while process `pid` runs; a killed process not yet reaped (a zombie) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(pid, 0) is all we know


def process_started(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if it is not running: with the
    pid it names one process for good, even once the system hands the pid to another one."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:  # gone, a zombie, or not ours to look at
        return None


def process_running(pid: int, started: float | None) -> bool:
    """True while the process `pid` that started at `started` runs (a reused pid is not it)."""
    if not pid_alive(pid):
        return False
    if started is None:
        return True  # nothing more to compare: the pid runs
    now_started = process_started(pid)
    # create_time is derived from boot time and clock ticks: equal to within a tick or two;
    # unknown (no permission to look) counts as running, the safe side for a lock
    return now_started is None or abs(now_started - started) < 1.0
