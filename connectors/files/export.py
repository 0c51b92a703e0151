"""What every CSV or xlsx file the hub writes goes through: neutralised text, atomic files.

- `neutralise(value)`: a text cell starting with `=`, `+`, `-`, `@`, tab, carriage return or
  NUL gets a leading `'`, so that no spreadsheet evaluates it as a formula (CSV/formula
  injection, OWASP ASVS 1.2.10, CWE-1236; RFC 4180 quoting alone does not stop evaluation).
  Numbers (int, Decimal), dates and booleans are not text: they stay as they are, and a
  negative amount stays a number.
- `write_csv_atomic` and `write_xlsx_atomic` write to a hidden temporary name in the target's
  folder (`.{name}.{pid}.{random}.tmp`), flush and fsync it, `os.replace` it onto the final
  name and fsync the folder. A reader watching the folder sees no file, or the whole file;
  on any exception the temporary file is removed and nothing appears under the final name.
- `clean_stale_temporaries(folder)` removes the temporary files a killed writer left behind.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import io
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from connectors.errors import RetriableError
from connectors.processes import pid_alive

__all__ = [
    "DANGEROUS_FIRST_CHARACTERS",
    "clean_stale_temporaries",
    "is_temporary",
    "neutralise",
    "temporary_name",
    "write_csv_atomic",
    "write_xlsx_atomic",
]

# first characters that make a spreadsheet read a cell as a formula (or hide one behind them)
DANGEROUS_FIRST_CHARACTERS = frozenset({"=", "+", "-", "@", "\t", "\r", "\0"})
# `.{final name}.{pid}.{8 hex}.tmp`
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")

Renderer = Callable[[Any], Any]


def neutralise(value: Any) -> Any:
    """The value a cell may safely hold: text that could be a formula gets a leading `'`."""
    if isinstance(value, str) and value and value[0] in DANGEROUS_FIRST_CHARACTERS:
        return "'" + value
    return value


def temporary_name(final: Path) -> Path:
    """The hidden name a file is written under before it takes its final name."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    final = Path(path)
    temporary = temporary_name(final)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException as error:
        with suppress(FileNotFoundError):
            temporary.unlink()
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            raise RetriableError(
                f"{final}: the disk is full ({error.strerror}) — nothing was written (the"
                f" partial temporary file was removed); free space in {final.parent}, then push"
                " again"
            ) from None
        raise
    _fsync_folder(final.parent)
    return final


# no space left, over quota, over the process's file size limit: retried once space is freed
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _cell(value: Any, render: Renderer | None) -> Any:
    """Text neutralised; anything else through `render` (its output is trusted as is)."""
    if isinstance(value, str):
        return neutralise(value)
    if render is not None:
        return render(value)
    return value


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def write_csv_atomic(
    path: Path | str,
    header: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    *,
    delimiter: str = ";",
    encoding: str = "utf-8",
    errors: str = "strict",
    line_terminator: str = "\r\n",
    render: Renderer | None = None,
) -> Path:
    """Write a CSV file atomically (RFC 4180 quoting, text neutralised); the final path.

    `render` turns a non-text value (int, Decimal, date, bool …) into what is written, e.g.
    `1234,56` for an amount; by default numbers as `str()`, dates ISO, booleans 1/0, None empty.
    A header is neutralised like any text. An encoding error raises before anything appears.
    """

    def write(handle: BinaryIO) -> None:
        text = io.TextIOWrapper(handle, encoding=encoding, errors=errors, newline="")
        writer = csv.writer(text, delimiter=delimiter, lineterminator=line_terminator)
        if header is not None:
            writer.writerow([neutralise(name) for name in header])
        writer.writerows([_csv_text(_cell(value, render)) for value in row] for row in rows)
        text.flush()
        text.detach()  # the handle stays open for the fsync

    return _write_atomic(Path(path), write)


def write_xlsx_atomic(
    path: Path | str,
    header: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    *,
    sheet: str = "Sheet1",
    render: Renderer | None = None,
) -> Path:
    """Write an xlsx workbook atomically (openpyxl, write-only mode); the final path.

    Numbers (int, Decimal) are numeric cells, dates date cells, booleans boolean cells; text is
    neutralised. `render` turns a non-text value into what is written (its output as is).
    """
    from openpyxl import Workbook

    def write(handle: BinaryIO) -> None:
        workbook = Workbook(write_only=True)
        worksheet = workbook.create_sheet(sheet)
        try:
            if header is not None:
                worksheet.append([neutralise(name) for name in header])
            for row in rows:
                worksheet.append([_cell(value, render) for value in row])
        except BaseException:
            with suppress(Exception):  # end openpyxl's sheet writer cleanly; the file is dropped
                worksheet.close()
            raise
        workbook.save(handle)

    return _write_atomic(Path(path), write)


def clean_stale_temporaries(folder: Path | str, *, older_than: float = 3600.0) -> list[Path]:
    """Remove the temporary files of writers that died (pid gone) or are older than
    `older_than` seconds (a pid may have been reused); the paths removed."""
    removed = []
    now = time.time()
    for entry in Path(folder).iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or not entry.is_file():
            continue
        pid = int(match["pid"])
        try:
            age = now - entry.stat().st_mtime
        except FileNotFoundError:  # its writer just renamed it
            continue
        if (pid != os.getpid() and not pid_alive(pid)) or age > older_than:
            with suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def is_temporary(name: str) -> bool:
    """Whether a file name is one of these writers' temporary names."""
    return _TEMPORARY.match(name) is not None
