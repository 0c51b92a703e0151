"""Push records to Sage 100 through an import file dropped in a watched folder:
`Sage100FileSink` (kind `sage100_file`).

Sage 100 (Gestion commerciale, Comptabilité) is not written through its database: writing the
`F_` tables directly is unsupported by Sage, and its COM SDK only runs on the Windows host
(PROTOCOLS.md §3b). The hub writes instead a file in the layout of an *import paramétrable*
(a user-defined import format set up once in Sage 100), and drops it atomically into a folder
that Sage's import (scheduled, or run by an accountant) reads.

The import file, for landlord IT
================================

- One file per batch, named `{file_prefix}_{YYYYMMDD}_{hash}.csv` (or `.xlsx`): the date the
  hub wrote it and a 12-digit hash of the records' idempotency keys. The same batch always
  gets the same hash, and the hub never writes a second file for a batch whose file is still
  in the drop folder or in an archive folder: re-running a night does not import twice.
- Appearance is atomic: the file is written under a hidden name (`.{name}.{pid}.{random}.tmp`),
  synced to disk, then renamed. Configure Sage (or the scheduler) to read `{file_prefix}_*.csv`
  only; never pick up files starting with a dot.
- CSV: delimiter `;`, encoding Windows-1252 (`cp1252`, what Sage 100 reads by default), lines
  ending CR LF, fields quoted only when they hold `;`, `"` or a line break (RFC 4180).
  One header line with the column names (tick "la première ligne contient les intitulés" /
  skip one line in the import format).
- Columns, in order: the sink's `columns` (the target field names of the datafix mapping,
  e.g. `JO_Num; EC_Date; CG_Num; CT_Num; EC_Piece; EC_Intitule; EC_Sens; EC_Montant`), then
  the idempotency column (`HUB_ID` by default): the hub's key of this version of the record.
  Map it to a free field (e.g. `EC_Reference` or an information libre) or ignore it in the
  import format; the hub looks for it in the archived files to know what was imported.
- Amounts (`amount_columns`): the hub holds integer cents; the file holds a decimal comma
  with two decimals and no thousands separator: `123456` → `1234,56`, `-5` → `-0,05`.
  In the import format, declare them as "Montant" with `,` as decimal separator.
- Dates: `date_format`, `dd/mm/yyyy` by default (`01/03/2026`), or e.g. `ddmmyy` (`010326`)
  to match the import format's date field. Booleans are `1`/`0`; an empty field is empty.
- A record holding a control character (other than tab, CR, LF), a character the encoding
  lacks or an amount that is not whole cents is not written: it is `dead` with a message
  naming the record and the column, and the rest of the batch is written.
- Text cells that a spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`,
  tab, CR or NUL) get a leading `'` (OWASP ASVS 1.2.10): `-RETENUE` is written `'-RETENUE`.
  Amounts are numbers and are never changed this way.
- xlsx (`format: xlsx`): the same columns on the first sheet, amounts as numeric cells,
  dates as text in `date_format`.
- Sage's import moves (or copies) each imported file into an archive folder: list those
  folders in `archive_folders` so the hub can tell an imported batch from a lost one.

Setting up the import paramétrable (Sage 100 Comptabilité, "Fichier › Format import/export
paramétrable", or Gestion commerciale "Fichier › Import › Format paramétrable"): create a
format of type "Délimité", separator `;`, one field per column above, in that order,
decimal separator `,`, the date format chosen in the datafix, skip one header line; save it
and use it for every file of this folder.

A record that cannot be written (a character Windows-1252 cannot hold, an amount that is not
whole cents) is `dead` with the reason; the others of the batch are written.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from connectors.delivery import Delivered, FieldValue, OutgoingRecord, printable, unsafe_text
from connectors.errors import ConfigError, RetriableError
from connectors.files.export import (
    clean_stale_temporaries,
    neutralise,
    write_csv_atomic,
    write_xlsx_atomic,
)

__all__ = ["Sage100FileSink"]

_FORMATS = ("csv", "xlsx")
# Sage-style date tokens → strftime (longest first)
_DATE_TOKENS = [("yyyy", "%Y"), ("yy", "%y"), ("dd", "%d"), ("mm", "%m")]


def _strftime_pattern(date_format: str) -> str:
    if "%" in date_format:
        return date_format
    pattern = date_format.lower()
    for token, directive in _DATE_TOKENS:
        pattern = pattern.replace(token, directive)
    if "%" not in pattern:
        raise ConfigError(
            f"date_format {date_format!r} has no day, month or year — write e.g. dd/mm/yyyy,"
            " ddmmyy or a strftime pattern such as %d/%m/%Y"
        )
    return pattern


@dataclass(frozen=True)
class _Amount:
    """Cents to write with a decimal comma (a number: never neutralised)."""

    cents: int


class Sage100FileSink:
    """Write each batch as one Sage 100 import file in a drop folder (module docstring)."""

    kind = "sage100_file"

    def __init__(
        self,
        name: str,
        *,
        drop_folder: Path | str,
        file_prefix: str,
        columns: Sequence[str],
        format: str = "csv",
        amount_columns: Sequence[str] = (),
        date_format: str = "dd/mm/yyyy",
        delimiter: str = ";",
        encoding: str = "cp1252",
        archive_folders: Sequence[Path | str] = (),
        idempotency_column: str = "HUB_ID",
        max_rows_per_file: int = 5_000,
    ) -> None:
        if format not in _FORMATS:
            raise ConfigError(f"sink `{name}`: format {format!r} — use csv or xlsx")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", file_prefix):
            raise ConfigError(
                f"sink `{name}`: file_prefix {file_prefix!r} — use letters, digits, _ and -"
            )
        if not columns:
            raise ConfigError(f"sink `{name}`: give the import file's `columns`")
        unknown = [column for column in amount_columns if column not in columns]
        if unknown:
            raise ConfigError(
                f"sink `{name}`: amount_columns {unknown} are not among `columns` ({columns})"
            )
        if max_rows_per_file < 1:
            raise ConfigError(f"sink `{name}`: max_rows_per_file must be at least 1")
        try:
            "".encode(encoding)
        except LookupError:
            raise ConfigError(f"sink `{name}`: unknown encoding {encoding!r}") from None
        self.name = name
        self._drop = Path(drop_folder)
        self._prefix = file_prefix
        self._format = format
        self._columns = list(columns)
        self._amounts = frozenset(amount_columns)
        self._date_pattern = _strftime_pattern(date_format)
        self._delimiter = delimiter
        self._encoding = encoding
        self._archives = [Path(folder) for folder in archive_folders]
        self._idempotency = idempotency_column
        self._max_rows = max_rows_per_file
        self._header = [
            *self._columns,
            *([] if idempotency_column in columns else [idempotency_column]),
        ]
        self._cleaned = False

    # -- the Sink protocol ------------------------------------------------------------------

    def batch_size(self, pending: int) -> int:
        return max(1, min(pending, self._max_rows))

    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        if not records:
            return []
        self._check_drop_folder()
        unknown = sorted({f for r in records for f in r.fields} - set(self._columns))
        if unknown:
            raise ConfigError(
                f"sink `{self.name}`: fields {unknown} are not columns of the import file"
                f" ({', '.join(self._columns)}) — add them to `columns` or drop them from the"
                " mapping"
            )
        rows: list[list[Any]] = []
        refused: dict[int, str] = {}
        for position, record in enumerate(records):
            control = unsafe_text(record, target="a Sage 100 import file")
            if control is not None:  # xlsx cannot hold it, a CSV import would take it as is
                refused[position] = control.message
                continue
            try:
                rows.append(self._row(record))
            except ValueError as error:
                refused[position] = f"record {printable(record.key)}: {error}"
        written = [r for p, r in enumerate(records) if p not in refused]
        file_name = ""
        if written:
            file_name = self._existing(self._batch_hash(written)) or self._write(written, rows)
        return [
            Delivered(record.key, "dead", message=refused[position])
            if position in refused
            else Delivered(record.key, "sent", peer_id=file_name, details={"file": file_name})
            for position, record in enumerate(records)
        ]

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        if not records:
            return {}
        wanted = {neutralise(record.idempotency_key): record.key for record in records}
        found: dict[str, str] = {}
        # folder by folder, the drop folder first: a file Sage moves to an archive while we
        # read is then found in the archive, listed after the move
        for folder in (self._drop, *self._archives):
            for path in self._batch_files("*", [folder]):
                for key in self._idempotency_keys(path) & wanted.keys():
                    found.setdefault(wanted[key], path.name)
        return found

    def close(self) -> None:
        """Nothing to release: each file is complete once `send` returns."""

    def probe(self, fields: Sequence[str]) -> None:
        """Check the drop folder exists and the hub may write there (`datafix check`)."""
        self._check_drop_folder()
        if not os.access(self._drop, os.W_OK | os.X_OK):
            raise ConfigError(
                f"sink `{self.name}`: the hub may not write in the drop folder {self._drop} —"
                " give its user write access"
            )

    def describe_format(self) -> str:
        """The import file's layout for this sink, for landlord IT (column, content)."""
        lines = [
            f"Sage 100 import file `{self._prefix}_YYYYMMDD_<hash>.{self._format}` in"
            f" {self._drop}: encoding {self._encoding}, delimiter `{self._delimiter}`,"
            f" one header line, dates as {self._date_pattern}.",
        ]
        for number, column in enumerate(self._header, start=1):
            if column == self._idempotency:
                meaning = "the hub's idempotency key (text)"
            elif column in self._amounts:
                meaning = "amount, decimal comma, 2 decimals (1234,56)"
            else:
                meaning = "text, date or number as mapped"
            lines.append(f"{number}. {column}: {meaning}")
        return "\n".join(lines)

    # -- writing ------------------------------------------------------------------------------

    def _check_drop_folder(self) -> None:
        if not self._drop.is_dir():
            raise ConfigError(
                f"sink `{self.name}`: the drop folder {self._drop} does not exist or is not a"
                " folder — create it or fix the sink's `folder`"
            )
        if not self._cleaned:
            clean_stale_temporaries(self._drop)
            self._cleaned = True

    def _value(self, column: str, value: FieldValue) -> Any:
        if value is None:
            return None
        if column in self._amounts:
            if isinstance(value, bool):
                raise ValueError(f"`{column}` holds {value!r}, not an amount in cents")
            if isinstance(value, int):
                return _Amount(value)
            try:
                cents = Decimal(str(value)) * 100
            except InvalidOperation:
                raise ValueError(f"`{column}` holds {value!r}, not an amount") from None
            if cents != cents.to_integral_value():
                raise ValueError(f"`{column}` holds {value!r}: not whole cents")
            return _Amount(int(cents))
        if isinstance(value, str):
            try:
                value.encode(self._encoding)
            except UnicodeEncodeError as error:
                bad = value[error.start : error.end]
                raise ValueError(
                    f"`{column}` holds {bad!r}, which {self._encoding} cannot write — correct"
                    " the source or choose encoding utf-8 in the sink and the import format"
                ) from None
        return value

    def _row(self, record: OutgoingRecord) -> list[Any]:
        row = [self._value(c, record.fields.get(c)) for c in self._columns]
        if self._idempotency not in self._columns:
            row.append(record.idempotency_key)
        return row

    def _render(self, value: Any) -> Any:
        if isinstance(value, _Amount):
            amount = Decimal(value.cents).scaleb(-2)
            if self._format == "xlsx":
                return amount
            return f"{amount:.2f}".replace(".", ",")
        if isinstance(value, bool):
            return 1 if value else 0
        if isinstance(value, dt.date):  # a datetime too
            return value.strftime(self._date_pattern)
        return value

    @staticmethod
    def _batch_hash(records: Sequence[OutgoingRecord]) -> str:
        digest = hashlib.sha256("\n".join(r.idempotency_key for r in records).encode("utf-8"))
        return digest.hexdigest()[:12]

    def _batch_files(self, batch_hash: str, folders: Sequence[Path] | None = None) -> list[Path]:
        files = []
        for folder in (self._drop, *self._archives) if folders is None else folders:
            if not folder.is_dir():
                continue
            for extension in _FORMATS:
                files += sorted(folder.glob(f"{self._prefix}_*_{batch_hash}.{extension}"))
        return files

    def _existing(self, batch_hash: str) -> str | None:
        """The file this very batch was already written to (drop or archive folders)."""
        files = self._batch_files(batch_hash)
        return files[0].name if files else None

    def _write(self, records: Sequence[OutgoingRecord], rows: list[list[Any]]) -> str:
        batch_hash = self._batch_hash(records)
        name = f"{self._prefix}_{dt.date.today():%Y%m%d}_{batch_hash}.{self._format}"
        try:
            if self._format == "csv":
                write_csv_atomic(
                    self._drop / name,
                    self._header,
                    rows,
                    delimiter=self._delimiter,
                    encoding=self._encoding,
                    render=self._render,
                )
            else:
                write_xlsx_atomic(self._drop / name, self._header, rows, render=self._render)
        except PermissionError as error:
            raise ConfigError(
                f"sink `{self.name}`: cannot write in {self._drop} ({error.strerror}) — give the"
                " hub's account write access to the drop folder"
            ) from None
        except OSError as error:  # disk full, network share gone: nothing was left behind
            raise RetriableError(
                f"sink `{self.name}`: writing {name} in {self._drop} failed ({error}) — retried"
            ) from None
        return name

    # -- reading back ---------------------------------------------------------------------------

    def _idempotency_keys(self, path: Path) -> set[str]:
        try:
            if path.suffix == ".xlsx":
                from openpyxl import load_workbook

                workbook = load_workbook(path, read_only=True, data_only=True)
                try:
                    sheet = workbook.worksheets[0]
                    table = [list(row) for row in sheet.iter_rows(values_only=True)]
                finally:
                    workbook.close()
            else:
                with path.open(encoding=self._encoding, newline="") as handle:
                    table = list(csv.reader(handle, delimiter=self._delimiter))
        except FileNotFoundError:  # moved to an archive while we looked: found there
            return set()
        if not table or self._idempotency not in table[0]:
            return set()
        column = table[0].index(self._idempotency)
        return {str(row[column]) for row in table[1:] if len(row) > column and row[column]}
