"""Personal data at rest: the quarantine's raw cells sealed, the hub's files private.

`quarantine.raw` keeps every rejected row's source values so landlord IT can fix the datafix
and requeue the row. Those values include what the canonical model marks personal (names,
free-text labels, comments) and columns the datafix does not map at all (e-mails, phones, IBANs
ride along in most exports). So only the cells the mapping reads for non-personal fields stay
readable; every other cell is sealed with Fernet (AES-128-CBC + HMAC-SHA256, from
`cryptography`) as `fernet:<token>`. `datafix quarantine` and `datafix requeue` open them with
the key; a database dump alone reveals nothing.

The key: `DATAFIX_QUARANTINE_KEY` (a Fernet key: `python -c "from cryptography.fernet import
Fernet; print(Fernet.generate_key().decode())"`) when set, the choice for production, where the
warehouse is a PostgreSQL server and the key belongs in the hub host's secret store, apart from
the data it protects. Unset, the hub generates one once into `$DATAFIX_HOME/quarantine.key`
(0600): the demo and a single-host install need no setup, and the key never leaves the home the
hub already keeps private. Keep that file with the warehouse's backups: without it the sealed
cells cannot be read again.

`raw_hash` (how a row rejected again on the next run is recognised) is an HMAC-SHA256 of the
plaintext keyed from the same key: a plain hash would let anyone holding the table confirm a
guessed name. Changing the key changes the hashes: the next run then opens fresh quarantine rows
and resolves the old ones, as for any change of the raw values.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.errors import ConfigError
from connectors.lazy import lazy_module
from pipelines.lib.environment import datafix_home

if TYPE_CHECKING:
    from cryptography import fernet
else:
    fernet = lazy_module("cryptography.fernet")

__all__ = [
    "KEY_FILE",
    "KEY_VARIABLE",
    "SEALED_PREFIX",
    "RawSealer",
    "private_umask",
    "quarantine_key",
    "write_private",
]

KEY_VARIABLE = "DATAFIX_QUARANTINE_KEY"
KEY_FILE = "quarantine.key"
SEALED_PREFIX = "fernet:"
_HASH_CONTEXT = b"datafix quarantine raw_hash v1"


def private_umask() -> None:
    """Files and folders the hub process creates are its own: 0600 and 0700 (umask 077).
    Called first thing by the `datafix` command and the Dagster code location."""
    os.umask(0o077)


def write_private(path: Path, content: bytes) -> None:
    """Write `path` whole with mode 0600, whatever the umask: a temporary file beside it, then
    an atomic rename, so no reader sees it half-written or readable by others."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def quarantine_key() -> bytes:
    """The key sealing quarantine cells: `DATAFIX_QUARANTINE_KEY`, else the home's key file,
    generated once (two first runs at once agree on one key: the file is linked into place
    only if absent)."""
    configured = os.environ.get(KEY_VARIABLE, "").strip()
    if configured:
        return _checked(configured.encode(), f"the {KEY_VARIABLE} variable")
    path = datafix_home() / KEY_FILE
    if not path.exists():
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE}.")
        try:
            os.fchmod(handle, 0o600)
            with os.fdopen(handle, "wb") as stream:
                stream.write(fernet.Fernet.generate_key())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return _checked(path.read_bytes().strip(), str(path))


def _checked(key: bytes, where: str) -> bytes:
    try:
        if len(base64.urlsafe_b64decode(key)) == 32:
            return key
    except (binascii.Error, ValueError):
        pass
    raise ConfigError(
        f"{where}: not a Fernet key (32 bytes, url-safe base64) — generate one with `python -c"
        ' "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
    )


class RawSealer:
    """Seals and opens the personal cells of quarantine rows with one key."""

    def __init__(self, key: bytes | None = None) -> None:
        key = quarantine_key() if key is None else key
        self._fernet = fernet.Fernet(key)
        self._hash_key = hmac.new(key, _HASH_CONTEXT, hashlib.sha256).digest()

    def raw_hash(self, plain: str) -> str:
        """The keyed hash of a row's plaintext raw JSON (32 hex digits, as the column holds)."""
        return hmac.new(self._hash_key, plain.encode(), hashlib.sha256).hexdigest()[:32]

    def seal(self, plain: str, open_columns: Collection[str]) -> str:
        """The raw JSON `plain` with every cell outside `open_columns` sealed."""
        record = json.loads(plain)
        sealed = {
            column: value
            if column in open_columns or value in (None, "")
            else SEALED_PREFIX + self._fernet.encrypt(str(value).encode()).decode()
            for column, value in record.items()
        }
        return json.dumps(sealed, ensure_ascii=False)

    def seal_all(
        self, raws: Iterable[str], open_columns: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """(sealed raw JSON, keyed hash of the plaintext) for each row."""
        sealed, hashes = [], []
        for plain, opened in zip(raws, open_columns, strict=True):
            sealed.append(self.seal(plain, set(json.loads(opened or "[]"))) if plain else plain)
            hashes.append(self.raw_hash(plain))
        return sealed, hashes

    def open(self, stored: str, where: str) -> dict[str, object]:
        """The plaintext values of a stored raw JSON (rows written before sealing pass as they
        are); `where` names the row in the error a wrong key gives."""
        record: Mapping[str, object] = json.loads(stored)
        opened = {}
        for column, value in record.items():
            if isinstance(value, str) and value.startswith(SEALED_PREFIX):
                try:
                    value = self._fernet.decrypt(value[len(SEALED_PREFIX) :].encode()).decode()
                except fernet.InvalidToken:
                    raise ConfigError(
                        f"{where}: cell `{column}` was sealed with another key — set"
                        f" {KEY_VARIABLE} (or restore $DATAFIX_HOME/{KEY_FILE}) to the key the"
                        " hub used when it quarantined the row"
                    ) from None
            opened[column] = value
        return opened
