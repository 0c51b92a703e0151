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

import ctypes
import functools
import os
import shutil
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from connectors.lazy import lazy_module, np, pa, pd
from pipelines.lib.environment import datafix_home

if TYPE_CHECKING:
    import pyarrow.ipc as ipc
else:
    ipc = lazy_module("pyarrow.ipc")

__all__ = [
    "KeyHashes",
    "KeyIndex",
    "Spool",
    "key_hashes",
    "read_chunk",
    "release_freed_memory",
    "scratch_root",
]

PARTS = ("rows", "rejects")


def scratch_root() -> Path:
    """`$DATAFIX_HOME/scratch`, private (0700)."""
    root = datafix_home() / "scratch"
    root.mkdir(mode=0o700, exist_ok=True)
    root.chmod(0o700)
    return root


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def release_freed_memory() -> None:
    """Hand the memory freed by the chunk just done back to the system (glibc's
    `malloc_trim`): without it the heap keeps the freed pages of each chunk's Python and numpy
    objects, scattered between live ones, and the process grows as if it held them."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def read_chunk(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of one spooled chunk file (only `columns` when given)."""
    with pa.memory_map(str(path)) as source:
        table = ipc.open_file(source).read_all()
    if columns is not None:
        table = table.select(list(columns))
    return table.to_pandas()


class Stager(Protocol):
    """What follows a spool's rows files (`staging.StagedRows`: spool does not import it)."""

    def add(self, chunk: Path) -> None: ...

    def close(self) -> None: ...

    def stop(self) -> None: ...


class Spool:
    """The canonical rows and rejects of one entity, one Arrow IPC file per chunk and part
    (other `parts`: the raw chunks a pull read from a peer, `pipelines.lib.stages`)."""

    def __init__(
        self,
        label: str,
        parts: Sequence[str] = PARTS,
        *,
        stage: Callable[[Path], Stager] | None = None,
    ) -> None:
        safe = "".join(char if char.isalnum() or char in "-_" else "_" for char in label)
        self.folder = scratch_root() / f"{safe[:80]}-{uuid.uuid4().hex[:12]}"
        self.folder.mkdir(mode=0o700)
        self.counts: dict[str, list[int]] = {part: [] for part in parts}
        self._empty: dict[str, pd.DataFrame] = {}
        # the last non-empty chunk of each part (its number, its rows) stays in memory until
        # the next non-empty one comes: one chunk more held at a time, and a table of one
        # chunk (followed by empty ones or not) is never written nor read back
        self._last: dict[str, tuple[int, pd.DataFrame]] = {}
        # `stage`: starts the helper process that stages the rows for a SQLite load as they
        # are written (`staging.StagedRows`, given the spool's folder), with the first file
        # written: a table of one chunk is loaded as it is
        self._stage = stage
        self.staged: Stager | None = None
        self._finalizer = weakref.finalize(self, _remove, self.folder)

    def add(self, part: str, frame: pd.DataFrame) -> None:
        """Append one chunk of `part` (`rows` or `rejects`); an empty chunk is counted, not
        written."""
        self.counts[part].append(len(frame))
        self._empty.setdefault(part, frame.iloc[:0].copy())
        if not len(frame):
            return
        held = self._last.pop(part, None)
        if held is not None:
            self._write(part, *held)
        self._last[part] = (len(self.counts[part]) - 1, frame)

    def _write(self, part: str, number: int, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        path = self._path(part, number)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as stream, ipc.new_file(stream, table.schema) as writer:
            writer.write_table(table)
        if part == "rows" and self._stage is not None:
            if self.staged is None:
                self.staged = self._stage(self.folder)
            self.staged.add(path)

    def seal(self) -> None:
        """Every chunk was added: a staging helper following the rows gets the last one too
        (written, and still held for the stages to read from memory)."""
        if self.staged is None:
            return
        held = self._last.get("rows")
        if held is not None and not self._path("rows", held[0]).exists():
            self._write("rows", *held)
        self.staged.close()

    def frames(self, part: str, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """The chunks of `part` in order (the non-empty ones), as written."""
        for number, count in enumerate(self.counts[part]):
            if count:
                yield self.frame(part, number, columns)

    def frame(self, part: str, number: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Chunk `number` of `part` (only `columns` when given): a frame of its own, which
        the caller may change."""
        if part in self._last and self._last[part][0] == number:
            held = self._last[part][1]
            return (held if columns is None else held[list(columns)]).copy(deep=False)
        return read_chunk(self._path(part, number), columns)

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
        """Delete the files (the spool cannot be read after), ending a staging helper."""
        self._last.clear()
        if self.staged is not None:
            self.staged.stop()
        self._finalizer()

    def _path(self, part: str, number: int) -> Path:
        return self.folder / f"{part}-{number:06d}.arrow"


class KeyHashes:
    """A growing set of 64-bit hashes, 8 bytes each: sorted runs merged two by two when they
    reach the same size (each hash is moved O(log n) times; a lookup searches O(log n) runs),
    so neither a Python set (~70 bytes a key) nor a re-sort of everything per chunk."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []  # sorted, sizes decreasing

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def contains(self, hashed: np.ndarray) -> np.ndarray:
        """For each of `hashed`, whether the set holds it."""
        found = np.zeros(len(hashed), dtype=bool)
        if not self._runs or not len(hashed):
            return found
        # searched in sorted order: numpy's binary search then starts each needle where the
        # previous one ended (random needles in a run of 1M hashes cost ~3x more)
        order = np.argsort(hashed)
        needles = hashed[order]
        hit = np.zeros(len(needles), dtype=bool)
        for run in self._runs:
            spots = np.searchsorted(run, needles)
            inside = spots < len(run)
            hit[inside] |= run[spots[inside]] == needles[inside]
        found[order] = hit
        return found

    def add(self, hashed: np.ndarray) -> None:
        """Add `hashed` (repeats allowed)."""
        if not len(hashed):
            return
        run = np.sort(hashed)
        while self._runs and len(self._runs[-1]) <= len(run):
            # two sorted runs: a stable sort merges them in one pass
            run = np.sort(np.concatenate((self._runs.pop(), run)), kind="stable")
        self._runs.append(run)


def key_hashes(keys: pd.Series) -> np.ndarray:
    """The 64-bit hash of each key's text."""
    return pd.util.hash_array(keys.astype("str").to_numpy(dtype=object), categorize=False)


class KeyIndex:
    """The natural keys of the rows spooled so far, across chunks (`KeyHashes`); a key found
    again is confirmed on its text, and its first row named, from the spool."""

    def __init__(self, spool: Spool, key: str) -> None:
        self.spool = spool
        self.key = key
        self._hashes = KeyHashes()

    def earlier(self, keys: pd.Series) -> pd.Series:
        """For each key of `keys` (non-null), the lineage (`source_row`) of the first spooled
        row holding the same key; <NA> where none does."""
        found = pd.Series(pd.NA, index=keys.index, dtype="str")
        if not len(self._hashes) or not len(keys):
            return found
        hits = np.flatnonzero(self._hashes.contains(key_hashes(keys)))
        if not len(hits):
            return found
        wanted = dict.fromkeys(keys.iloc[hits].astype("str").tolist())
        first: dict[str, str] = {}
        for frame in self.spool.frames("rows", [self.key, "source_row"]):
            texts = frame[self.key].astype("str")
            for text, source_row in zip(
                texts[texts.isin(wanted)], frame["source_row"][texts.isin(wanted)], strict=True
            ):
                first.setdefault(text, source_row)
            if len(first) == len(wanted):
                break
        # a hash shared by another key (a collision) finds no text: not a duplicate
        values = keys.astype("str")
        for position in hits:
            found.iloc[position] = first.get(values.iloc[position], pd.NA)
        return found

    def add(self, keys: pd.Series) -> None:
        """Record the keys of the chunk just spooled."""
        self._hashes.add(key_hashes(keys.dropna()))
