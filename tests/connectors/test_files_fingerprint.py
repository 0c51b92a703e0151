"""A file's fingerprint is hashed once per pull, and never reused for changed bytes.

The pull fingerprints a source's files (to skip an unchanged export), then the CSV reader
fingerprints them again while it scans them; the second hash is taken from the first when no
file changed in between (same inode, size, modification and change times, and older than the
file system's clock could blur). The expected fingerprint is SHA-256 over each file's name,
a NUL, its bytes and a NUL, computed here from the bytes on disk.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from connectors.files.client import fingerprint_files, read_csv


def expected(*paths: Path) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def write(path: Path, rows: list[str]) -> Path:
    path.write_bytes(("\r\n".join(["Réf;Montant", *rows]) + "\r\n").encode("cp1252"))
    return path


def test_an_old_file_is_hashed_once_and_read_with_the_same_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(tmp_path / "a.csv", ["R1;1,00", "R2;2,00"])
    second = write(tmp_path / "b.csv", ["R3;3,00"])
    later = time.time() + 60  # the files look settled for a minute: their digest is kept
    monkeypatch.setattr(time, "time", lambda: later)

    assert fingerprint_files([first, second]) == expected(first, second)
    table = read_csv([first, second])  # the scan's hash comes from the fingerprint above
    assert table.fingerprint == expected(first, second)
    assert table.frame["Réf"].tolist() == ["R1", "R2", "R3"]
    assert read_csv([first]).fingerprint == fingerprint_files([first]) == expected(first)


def test_a_file_rewritten_with_its_size_and_date_kept_gets_a_new_fingerprint(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "a.csv", ["R1;1,00"])
    old = time.time() - 3600
    os.utime(path, (old, old))
    before = fingerprint_files([path])
    assert read_csv([path]).fingerprint == before == expected(path)

    write(path, ["R1;9,00"])  # same size
    os.utime(path, (old, old))  # and the same modification time

    assert fingerprint_files([path]) == expected(path) != before
    assert read_csv([path]).fingerprint == expected(path)
