"""A CSV source that can be held shut: how the reliability tests pause a real `datafix run`
deterministically, in the middle of a run (after the run started and took its locks, before it
reads anything), to start a second run beside it or to kill it with -9.

- `gated_csv` reads exactly as `csv` does. When `DATAFIX_TEST_GATE` names a folder, the read
  first writes `<folder>/reached-<pid>` and then waits until `<folder>/open` exists (bounded: it
  fails after two minutes, so a forgotten gate never hangs the suite); it writes
  `<folder>/passed-<pid>` once through.

`python -m tests.reliability.gate_kinds <datafix arguments>` runs the real `datafix` command with
the kind registered.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from connectors import registry
from connectors.files.kinds import CSV_SOURCE, CsvSource
from connectors.rawtable import RawTable
from connectors.registry import SourceRequest
from pipelines.lib.environment import REPO_ROOT

GATE_VARIABLE = "DATAFIX_TEST_GATE"
GATE_TIMEOUT_SECONDS = 120.0


class GatedCsvSource(CsvSource):
    """A CSV export read behind the test's gate."""

    kind: Literal["gated_csv"]  # type: ignore[assignment]


def wait_at_gate() -> None:
    """Block at the gate named by `DATAFIX_TEST_GATE` (if any) until the test opens it."""
    folder = os.environ.get(GATE_VARIABLE)
    if not folder:
        return
    gate = Path(folder)
    (gate / f"reached-{os.getpid()}").write_text(str(time.time()), encoding="ascii")
    deadline = time.monotonic() + GATE_TIMEOUT_SECONDS
    while not (gate / "open").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never opened the gate {gate}")
        time.sleep(0.05)
    (gate / f"passed-{os.getpid()}").write_text(str(time.time()), encoding="ascii")


def read_gated_csv(source: GatedCsvSource, request: SourceRequest) -> RawTable:
    wait_at_gate()
    return CSV_SOURCE.read(source, request)


GATED_CSV = dataclasses.replace(
    CSV_SOURCE, name="gated_csv", settings=GatedCsvSource, read=read_gated_csv
)


DATAFIX_TEMPLATE = """\
landlord:
  id: {landlord}
  name: {landlord} (reliability test)
sources:
  locataires:
    kind: gated_csv
    path: locataires.csv
entities:
  tenants:
    source: locataires
    fields:
      tenant_ref: Numero
      full_name: Nom
      move_in_date: {{from: Entree, formats: [dd/mm/yyyy]}}
      status:
        from: Statut
        map: {{ACT: active, SOR: left}}
"""


def install_gated_landlord(home: Path, datafixes: Path, landlord: str, rows: int) -> None:
    """A landlord whose tenants (`rows` of them, T00001…) come through a `gated_csv` source;
    the export is dated an hour ago (a file that settled long before the run)."""
    datafixes.mkdir(parents=True, exist_ok=True)
    text = DATAFIX_TEMPLATE.format(landlord=landlord)
    (datafixes / f"{landlord}.yaml").write_text(text, encoding="utf-8")
    inbox = home / "inbox" / landlord
    inbox.mkdir(parents=True, exist_ok=True)
    lines = ["Numero;Nom;Entree;Statut"]
    lines += [
        f"T{n:05d};Locataire {n};{1 + n % 28:02d}/{1 + n % 12:02d}/2020;{'ACT' if n % 3 else 'SOR'}"
        for n in range(1, rows + 1)
    ]
    export = inbox / "locataires.csv"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    an_hour_ago = time.time() - 3600
    os.utime(export, (an_hour_ago, an_hour_ago))


def start_run(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`datafix run …` (with `gated_csv` registered) started in the background: the caller
    reads its output with `finish`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.gate_kinds", "run", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    """Wait (bounded: a hang fails the test) for a run; its exit code and stdout + stderr."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"the run did not end in {timeout} s:\n{stdout}\n{stderr}") from None
    return process.returncode, stdout + stderr


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll `condition` until true; fail the test (never hang) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def reached(gate: Path, process: subprocess.Popen[str]) -> bool:
    """Whether the run `process` is held at (or went through) the gate."""
    return (gate / f"reached-{process.pid}").exists()


if __name__ == "__main__":
    registry.register(GATED_CSV)
    from pipelines.cli import main

    main(sys.argv[1:], prog_name="datafix")
