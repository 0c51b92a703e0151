"""The works-order ERP served by Node.js (`erp_node/server.js`, npm package `soap`): the
sandbox's second SOAP peer, on a different SOAP server stack from the Python/lxml one.

`erp_node/travaux.wsdl` documents the service (namespace `urn:patrimoine-travaux`, SOAP 1.1,
document/literal wrapped, French names):

- `ListerEcritures(page {numero, taille}, modifieDepuis?)` → `ecritures.ecriture*`
  ({numeroEcriture, locataire {reference, nom}, dateEcriture, code, montant {valeur, devise},
  modifieLe}), `total`, `pageNumero`; `taille` is capped by the server (100 by default);
- `ListerBonsDeTravaux(page, modifieDepuis?)` → `bons.bon*`, each with `lignes.ligne*`;
- `EnregistrerEngagement(engagement {numeroBon, fournisseur {siret, nom}, dateEngagement,
  montant {valeur, devise}, lignes? {ligne* {libelle, quantite, prixUnitaire}}})` →
  `resultat {reference, statut CREE | MIS_A_JOUR | INCHANGE, message}`, idempotent on
  `numeroBon` (the same content again writes nothing);
- `LireEngagement(numeroBon)` → `engagement`, `reference`, `version`, `enregistreLe`, or the
  fault `soap:Client.Introuvable`.

An element the schema does not declare (`IdempotencyKey` …) is the fault
`soap:Client.ElementInconnu` naming it; a missing one `soap:Client.ElementManquant`.

Test controls beside the SOAP endpoint (not in the WSDL): `GET /_peer/stats` (`writes`,
`writesByBon`, `statuts`, `calls` by operation …), `POST /_peer/reset`, `GET`/`POST
/_peer/mode` (JSON `{"cap": 100, "lieAboutTotal": 0, "refuseAll": false}`); the same switches
as start-up options (`cap=`, `lie_about_total=`, `refuse_all=`).

`TravauxErpPeer(port=0).start()` runs `node server.js` (installing its npm packages first when
`node_modules` is missing: `ensure_installed()`), reads the port it prints and `stop()` ends it;
the node process also ends when this process does (it watches its stdin). A context manager.
`python -m connectors.sandbox.erp_node [--port 8714]` serves it until Ctrl-C. No dagster
import: a plain connector helper.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any, Self

from connectors.errors import ConfigError
from connectors.sandbox.soap import SoapAddresses

__all__ = [
    "DEFAULT_PORT",
    "FOLDER",
    "NAMESPACE",
    "NodePeerError",
    "TravauxErpPeer",
    "ensure_installed",
]

FOLDER = Path(__file__).with_name("erp_node")
SERVER = FOLDER / "server.js"
WSDL_FILE = FOLDER / "travaux.wsdl"
NAMESPACE = "urn:patrimoine-travaux"
HOST = "127.0.0.1"
DEFAULT_PORT = 8714
SOAP_PATH = "/travaux"

_STARTUP_TIMEOUT = 30.0  # seconds: node and the seed take well under one
_STOP_TIMEOUT = 10.0
_NPM_TIMEOUT = 600.0
_LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)/")
_EXIT_ADDRESS_IN_USE = 98  # server.js's exit status when its port is taken


class NodePeerError(ConfigError):
    """The Node.js peer cannot run: node or npm missing, its packages not installed, or it
    did not start."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NodePeerError(
            f"the sandbox's works-order ERP peer runs on Node.js, and `{name}` is not on PATH —"
            " install Node.js 20 or later (with npm), then `make install`"
        )
    return path


def _pinned_soap_version() -> str:
    manifest = json.loads((FOLDER / "package.json").read_text(encoding="utf-8"))
    return str(manifest["dependencies"]["soap"])


def _installed_soap_version() -> str | None:
    installed = FOLDER / "node_modules" / "soap" / "package.json"
    if not installed.is_file():
        return None
    return str(json.loads(installed.read_text(encoding="utf-8")).get("version"))


def ensure_installed() -> None:
    """Run `npm ci` in `erp_node/` when its `node_modules` lacks the pinned `soap` (the
    lock file decides every version). Serialised by a file lock: parallel test workers
    install once."""
    _tool("node")
    if _installed_soap_version() == _pinned_soap_version():
        return
    npm = _tool("npm")
    with open(FOLDER / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_soap_version() == _pinned_soap_version():
            return  # another process installed it while this one waited
        completed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=FOLDER,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT,
            check=False,
        )
        if completed.returncode != 0 or _installed_soap_version() != _pinned_soap_version():
            raise NodePeerError(
                f"`npm ci` in {FOLDER} failed (exit {completed.returncode}): "
                f"{(completed.stderr or completed.stdout).strip()[-2000:]}"
            )


class TravauxErpPeer(SoapAddresses):
    """`node erp_node/server.js` on 127.0.0.1 (`port` 0: one the system picks)."""

    endpoint_path = SOAP_PATH

    def __init__(
        self,
        *,
        port: int = 0,
        cap: int | None = None,
        lie_about_total: int | None = None,
        refuse_all: bool = False,
        ecritures: int | None = None,
        bons: int | None = None,
        seed: int | None = None,
        months: int | None = None,
    ) -> None:
        self.requested_port = port
        self._options: list[str] = []
        for flag, value in (
            ("--cap", cap),
            ("--lie-about-total", lie_about_total),
            ("--ecritures", ecritures),
            ("--bons", bons),
            ("--seed", seed),
            ("--months", months),
        ):
            if value is not None:
                self._options += [flag, str(int(value))]
        if refuse_all:
            self._options.append("--refuse-all")
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.port: int | None = None

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start node and wait until it serves. A taken port raises OSError(EADDRINUSE)."""
        if self._process is not None:
            return self
        ensure_installed()
        # stderr: read only if node fails, and a file never fills up as an unread pipe does
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        command = [_tool("node"), str(SERVER), "--port", str(self.requested_port)]
        process = subprocess.Popen(
            [*command, "--exit-with-stdin", *self._options],
            cwd=FOLDER,
            stdin=subprocess.PIPE,  # closed by stop(), or by the system when this process ends
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._process = process
        try:
            self.port = self._read_port(process)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_port(self, process: subprocess.Popen[bytes]) -> int:
        assert process.stdout is not None
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        seen = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while (match := _LISTENING.search(seen)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NodePeerError(
                        f"the works-order ERP peer (node {SERVER.name}) did not start within"
                        f" {_STARTUP_TIMEOUT:g} s{self._stderr_text()}"
                    )
                if not selector.select(timeout=left):
                    continue
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:  # node exited
                    code = process.wait(timeout=_STOP_TIMEOUT)
                    if code == _EXIT_ADDRESS_IN_USE:
                        raise OSError(
                            errno.EADDRINUSE,
                            f"{HOST}:{self.requested_port} is taken{self._stderr_text()}",
                        )
                    raise NodePeerError(
                        f"the works-order ERP peer (node {SERVER.name}) exited with status"
                        f" {code}{self._stderr_text()}"
                    )
                seen += chunk
        return int(match.group(1))

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", errors="replace").strip()
        return f": {text[-2000:]}" if text else ""

    def stop(self) -> None:
        """Stop node (SIGTERM, then SIGKILL if it lingers) and wait for it; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # addresses -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the works-order ERP peer is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def stats_url(self) -> str:
        return f"{self.url}/_peer/stats"

    def wsdl_text(self) -> str:
        return self._http("GET", "/wsdl").decode("utf-8")

    # test controls -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """`writes`, `writesByBon`, `statuts`, `calls` (by operation), `callsTotal`,
        `engagements`, `mode`."""
        return json.loads(self._http("GET", "/_peer/stats"))

    def reset(self) -> dict[str, Any]:
        """Forget the engagements and the counters; the mode goes back to the start-up one."""
        return json.loads(self._http("POST", "/_peer/reset"))

    def set_mode(
        self,
        *,
        cap: int | None = None,
        lie_about_total: int | None = None,
        refuse_all: bool | None = None,
    ) -> dict[str, Any]:
        """Change the behaviour switches given; returns the whole mode."""
        changes = {
            name: value
            for name, value in (
                ("cap", cap),
                ("lieAboutTotal", lie_about_total),
                ("refuseAll", refuse_all),
            )
            if value is not None
        }
        return json.loads(self._http("POST", "/_peer/mode", changes))

    def _http(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        # loopback only: no proxy, whatever the environment says
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return response.read()


def main(argv: list[str] | None = None) -> int:
    """Serve the works-order ERP until interrupted: `python -m connectors.sandbox.erp_node`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--cap", type=int, default=None)
    parser.add_argument("--lie-about-total", type=int, default=None)
    parser.add_argument("--refuse-all", action="store_true")
    arguments = parser.parse_args(argv)
    with TravauxErpPeer(
        port=arguments.port,
        cap=arguments.cap,
        lie_about_total=arguments.lie_about_total,
        refuse_all=arguments.refuse_all,
    ) as peer:
        sys.stdout.write(
            f"works-order ERP (node-soap) WSDL: {peer.wsdl_url}, stats: {peer.stats_url}"
            " (Ctrl-C to stop)\n"
        )
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            while peer.running:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
