"""A toy source kind and a toy sink kind, added to the hub from the tests through the registry
alone (no edit of `pipelines/` or `schemas/`): the proof that a kind is one module + one line.

- `jsonl` (source): a JSON Lines file in the landlord's inbox, one object per line.
- `drawer` (sink): each record written as `<folder>/<key>.json` holding its fields and
  idempotency key; read back by comparing that key.

`python -m tests.toy_kinds <datafix arguments>` runs the real `datafix` command with both kinds
registered; with `DATAFIX_COUNT_PARSES=1` it prints how many times a datafix was parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from connectors import registry
from connectors.delivery import Delivered, OutgoingRecord, payload_json
from connectors.errors import ConfigError, SourceDataError
from connectors.rawtable import RawTable
from connectors.watermark import past_watermark
from schemas.config import EnvText, SinkBase, StrictModel


class JsonLinesSource(StrictModel):
    """A JSON Lines export: one JSON object per line."""

    kind: Literal["jsonl"]
    path: str = Field(description="File name inside the landlord's inbox.")


class DrawerSink(SinkBase):
    """A folder receiving one JSON file per record."""

    kind: Literal["drawer"]
    folder: EnvText = Field(description="Folder receiving the records.")


def _file(source: JsonLinesSource, request: registry.SourceRequest) -> Path:
    path = request.inbox / source.path
    if not path.is_file():
        raise ConfigError(f"{path} does not exist — drop the export into the inbox")
    return path


def read_jsonl(source: JsonLinesSource, request: registry.SourceRequest) -> RawTable:
    path = _file(source, request)
    data = path.read_bytes()
    rows, lines = [], []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SourceDataError(f"{path.name}:{number}: not JSON ({error.msg})") from None
        rows.append({key: "" if value is None else str(value) for key, value in record.items()})
        lines.append(f"{path.name}:{number}")
    frame = pd.DataFrame(rows, dtype=object).fillna("")
    raw = RawTable(
        frame=frame,
        source_rows=pd.Series(lines, dtype=object),
        fingerprint=hashlib.sha256(data).hexdigest(),
        origin=str(path),
    )
    return raw if request.after is None else past_watermark(raw, request.after)


def jsonl_header(source: JsonLinesSource, request: registry.SourceRequest) -> list[str]:
    with _file(source, request).open(encoding="utf-8") as handle:
        return list(json.loads(handle.readline()))


class Drawer:
    """The `drawer` sink's connector: one `<key>.json` per record in its folder. A variant
    writes its files otherwise by overriding `suffix`, `write` and `holds`."""

    kind = "drawer"
    suffix = ".json"

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self.writes = 0

    def batch_size(self, pending: int) -> int:
        return 50

    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        self.folder.mkdir(parents=True, exist_ok=True)
        delivered = []
        for record in records:
            self.write(self.folder / f"{record.key}{self.suffix}", record)
            delivered.append(Delivered(record.key, "sent", peer_id=record.key))
        return delivered

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        held = {}
        for record in records:
            target = self.folder / f"{record.key}{self.suffix}"
            if target.is_file() and self.holds(target, record):
                held[record.key] = record.key
        return held

    def write(self, target: Path, record: OutgoingRecord) -> None:
        document = {"idempotency_key": record.idempotency_key, "fields": record.fields}
        target.write_text(payload_json(document), encoding="utf-8")

    def holds(self, target: Path, record: OutgoingRecord) -> bool:
        """Whether the file `target` holds this version of `record`."""
        document = json.loads(target.read_text(encoding="utf-8"))
        return document["idempotency_key"] == record.idempotency_key

    def close(self) -> None:
        pass


def build_drawer(name: str, spec: DrawerSink) -> Drawer:
    return Drawer(name, Path(spec.folder))


def check_drawer(sink: Drawer, spec: DrawerSink) -> None:
    if not sink.folder.is_dir():
        raise ConfigError(f"sink `{sink.name}`: folder {sink.folder} does not exist — create it")


JSONL = registry.SourceKind(
    "jsonl",
    JsonLinesSource,
    read=read_jsonl,
    header=jsonl_header,
    files=lambda source, request: [_file(source, request)],
    locator="path",
)
DRAWER = registry.SinkKind("drawer", DrawerSink, build=build_drawer, check=check_drawer)


if __name__ == "__main__":
    registry.register(JSONL)
    registry.register(DRAWER)
    from pipelines.cli import main
    from pipelines.lib.datafixes import parse_count

    try:
        main(sys.argv[1:], prog_name="datafix")
    finally:
        if os.environ.get("DATAFIX_COUNT_PARSES"):
            print(f"datafix parses: {parse_count()}", file=sys.stderr)
