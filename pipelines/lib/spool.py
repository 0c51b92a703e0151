"""Where one entity's normalised rows wait between the stages: Arrow IPC files on disk.

The normalise stage maps a source chunk by chunk (`RawTable.chunks`) and appends each chunk's
canonical rows and rejects to a `Spool`: one Arrow IPC file per chunk in a run scratch folder
under `$DATAFIX_HOME/scratch/` (folder 0700, files 0600, like the rest of the home: the rows
hold personal data). The contract and the load read them back one chunk at a time, so the
memory of a run stays flat in the number of rows. The folder is removed when the spool is
released (`remove`, or when the last reference to it goes: end of the run, or a failure).

`KeyIndex` keeps the entity's natural keys across chunks as 64-bit hashes (8 bytes a row), so
a key repeated in a later chunk is found exactly as in a table read whole; a hash match is
confirmed on the key's text (read back from the spool) before the row is called a duplicate.
"""

from __future__ import annotations

import os
import shutil
import uuid
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from pipelines.lib.environment import datafix_home

__all__ = ["KeyIndex", "Spool", "scratch_root"]

PARTS = ("rows", "rejects")


def scratch_root() -> Path:
    """`$DATAFIX_HOME/scratch`, private (0700)."""
    root = datafix_home() / "scratch"
    root.mkdir(mode=0o700, exist_ok=True)
    root.chmod(0o700)
    return root


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


class Spool:
    """The canonical rows and rejects of one entity, one Arrow IPC file per chunk and part."""

    def __init__(self, label: str) -> None:
        safe = "".join(char if char.isalnum() or char in "-_" else "_" for char in label)
        self.folder = scratch_root() / f"{safe[:80]}-{uuid.uuid4().hex[:12]}"
        self.folder.mkdir(mode=0o700)
        self.counts: dict[str, list[int]] = {part: [] for part in PARTS}
        self._empty: dict[str, pd.DataFrame] = {}
        self._finalizer = weakref.finalize(self, _remove, self.folder)

    def add(self, part: str, frame: pd.DataFrame) -> None:
        """Append one chunk of `part` (`rows` or `rejects`); an empty chunk is counted, not
        written."""
        number = len(self.counts[part])
        self.counts[part].append(len(frame))
        self._empty.setdefault(part, frame.iloc[:0].copy())
        if not len(frame):
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        path = self._path(part, number)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as stream, ipc.new_file(stream, table.schema) as writer:
            writer.write_table(table)

    def frames(self, part: str, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """The chunks of `part` in order (the non-empty ones), as written."""
        for number, count in enumerate(self.counts[part]):
            if count:
                yield self.frame(part, number, columns)

    def frame(self, part: str, number: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Chunk `number` of `part` (only `columns` when given)."""
        with pa.memory_map(str(self._path(part, number))) as source:
            table = ipc.open_file(source).read_all()
        if columns is not None:
            table = table.select(list(columns))
        return table.to_pandas()

    def count(self, part: str) -> int:
        """Rows of `part` over every chunk."""
        return sum(self.counts[part])

    def whole(self, part: str) -> pd.DataFrame:
        """Every chunk of `part` in one frame (for small tables and tests: the stages read
        chunk by chunk); with no row, the columns of the first chunk added."""
        frames = list(self.frames(part))
        if not frames:
            return self._empty.get(part, pd.DataFrame()).copy()
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def remove(self) -> None:
        """Delete the files (the spool cannot be read after)."""
        self._finalizer()

    def _path(self, part: str, number: int) -> Path:
        return self.folder / f"{part}-{number:06d}.arrow"


class KeyIndex:
    """The natural keys of the rows kept so far, across chunks, as sorted 64-bit hashes with
    where each row lies (its ordinal among the spooled rows)."""

    def __init__(self, spool: Spool, key: str) -> None:
        self.spool = spool
        self.key = key
        self._hashes = np.empty(0, dtype=np.uint64)
        self._ordinals = np.empty(0, dtype=np.int64)
        self._starts: list[int] = []  # first ordinal of each spooled rows chunk

    @staticmethod
    def hashes(keys: pd.Series) -> np.ndarray:
        """The 64-bit hash of each key's text."""
        return pd.util.hash_array(keys.astype("str").to_numpy(dtype=object), categorize=False)

    def earlier(self, keys: pd.Series) -> pd.Series:
        """For each key of `keys` (non-null), the lineage (`source_row`) of the row of an earlier
        chunk holding the same key; <NA> where no earlier row holds it."""
        found = pd.Series(pd.NA, index=keys.index, dtype="str")
        if not len(self._hashes) or not len(keys):
            return found
        hashed = self.hashes(keys)
        left = np.searchsorted(self._hashes, hashed, side="left")
        right = np.searchsorted(self._hashes, hashed, side="right")
        hits = np.flatnonzero(right > left)
        if not len(hits):
            return found
        # confirm on the key's text: read back the spooled rows the hashes point at
        candidates = {
            int(self._ordinals[spot]): position
            for position in hits
            for spot in range(left[position], right[position])
        }
        texts = self._spooled(sorted(candidates))
        values = keys.astype("str").to_numpy(dtype=object)
        for position in hits:
            for spot in range(left[position], right[position]):
                key_text, source_row = texts[int(self._ordinals[spot])]
                if key_text == values[position]:
                    found.iloc[position] = source_row
                    break
        return found

    def add(self, keys: pd.Series) -> None:
        """Record the keys of the chunk just spooled (its rows in order)."""
        start = sum(self.spool.counts["rows"][:-1])
        self._starts.append(start)
        if not len(keys):
            return
        present = keys.notna().to_numpy(dtype=bool)
        hashed = self.hashes(keys[present])
        ordinals = start + np.flatnonzero(present)
        order = np.argsort(hashed, kind="stable")
        merged = np.concatenate((self._hashes, hashed[order]))
        where = np.concatenate((self._ordinals, ordinals[order]))
        # two sorted runs: a stable sort merges them in one pass
        order = np.argsort(merged, kind="stable")
        self._hashes, self._ordinals = merged[order], where[order]

    def _spooled(self, ordinals: list[int]) -> dict[int, tuple[str, str]]:
        """(key text, source_row) of the spooled rows at `ordinals`."""
        texts: dict[int, tuple[str, str]] = {}
        starts = np.asarray(self._starts)
        chunks = np.searchsorted(starts, ordinals, side="right") - 1
        for chunk in sorted(set(chunks.tolist())):
            frame = self.spool.frame("rows", chunk, [self.key, "source_row"])
            for ordinal, at in zip(ordinals, chunks, strict=True):
                if at == chunk:
                    row = ordinal - int(starts[chunk])
                    texts[ordinal] = (str(frame[self.key].iloc[row]), frame["source_row"].iloc[row])
        return texts
