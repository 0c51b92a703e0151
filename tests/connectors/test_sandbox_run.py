"""The sandbox: every local peer at once, on fixed or given ports, reused when already running.

Peers run on ports the system picks unless a test needs given ones (it then takes ports the
system just handed out), so parallel workers never collide. Each test checks it leaves no
thread and no listening port behind.
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connectors.sandbox.demo_files import DEMO_BAD_ROWS, DEMO_ROWS, DEMO_SANDBOX_LANDLORDS
from connectors.sandbox.run import (
    CA_BUNDLE,
    Sandbox,
    SandboxError,
    SandboxPorts,
    configured_ports,
    running_sandbox,
    sandbox_variables,
)
from connectors.sandbox.salesforce import DEFAULT_SESSION_ID
from connectors.soap.client import read_soap
from connectors.soap.models import SoapPaging


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [thread for thread in threading.enumerate() if thread not in before]
    assert not left, f"threads left running: {left}"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def ports_of(sandbox: Sandbox) -> SandboxPorts:
    return SandboxPorts(*(port_of(peer.url) for peer in sandbox.peers))


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def erp_tenants(wsdl: str) -> int:
    table = read_soap(
        wsdl,
        operation="ListTenants",
        records_path="tenants.tenant",
        paging=SoapPaging("page_number", page_size=5),
        key=["tenantRef"],
    )
    return len(table)


def salesforce_versions(sandbox: Sandbox) -> int:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(sandbox.ca_bundle)  # the CA the sandbox wrote verifies the peer
        return session.get(f"{sandbox.salesforce.url}/services/data/", timeout=10).status_code


# --- Ports and variables --------------------------------------------------------------------


def test_fixed_ports_by_default_moved_together_by_the_base_variable() -> None:
    assert configured_ports({}) == SandboxPorts(8711, 8712, 8713, 8714)
    assert configured_ports({"DATAFIX_SANDBOX_PORT": "9100"}) == SandboxPorts(
        9100, 9101, 9102, 9103
    )
    assert configured_ports({"DATAFIX_SANDBOX_PORT": "0"}) == SandboxPorts(0, 0, 0, 0)
    assert sandbox_variables({}) == {
        "DATAFIX_SANDBOX_ERP_WSDL": "http://127.0.0.1:8711/wsdl",
        "DATAFIX_SANDBOX_SAGE_WSDL": "http://127.0.0.1:8712/wsdl",
        "DATAFIX_SANDBOX_SAGE_POOL": "SEED",
        "DATAFIX_SANDBOX_SF_INSTANCE_URL": "https://127.0.0.1:8713",
        "DATAFIX_SANDBOX_SF_SESSION_ID": DEFAULT_SESSION_ID,
        "DATAFIX_SANDBOX_TRAVAUX_WSDL": "http://127.0.0.1:8714/wsdl",
    }


def test_the_ports_are_those_the_datafixes_point_at() -> None:
    environ = {
        "DATAFIX_SANDBOX_ERP_WSDL": "http://localhost:9201/wsdl",
        "DATAFIX_SANDBOX_SF_INSTANCE_URL": "https://127.0.0.1:9203",
    }
    assert configured_ports(environ) == SandboxPorts(9201, 8712, 9203, 8714)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param({"DATAFIX_SANDBOX_PORT": "80"}, "not a port", id="privileged-port"),
        pytest.param({"DATAFIX_SANDBOX_PORT": "87x1"}, "not a port", id="not-a-number"),
        pytest.param(
            {"DATAFIX_SANDBOX_ERP_WSDL": "https://erp.example.org/wsdl"},
            "only serves this machine",
            id="remote-erp",
        ),
        pytest.param(
            {"DATAFIX_SANDBOX_SF_INSTANCE_URL": "https://127.0.0.1"},
            "with a port",
            id="no-port",
        ),
    ],
)
def test_a_wrong_sandbox_variable_is_a_clear_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        configured_ports(environ)


def test_the_hub_offers_no_sandbox_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.lib.environment import interpolation_env

    for name in sandbox_variables({}):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATAFIX_SANDBOX_PORT", "9300")
    environment = interpolation_env()
    assert not {name for name in environment if name.startswith("DATAFIX_SANDBOX_")} - {
        "DATAFIX_SANDBOX_PORT"
    }
    assert set(environment) - set(os.environ) <= {"DATAFIX_HOME"}
    monkeypatch.setenv("DATAFIX_SANDBOX_ERP_WSDL", "http://127.0.0.1:9400/wsdl")
    assert interpolation_env()["DATAFIX_SANDBOX_ERP_WSDL"] == "http://127.0.0.1:9400/wsdl"


def test_an_unset_sandbox_variable_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.errors import ConfigError
    from pipelines.lib.datafixes import resolve_env

    monkeypatch.delenv("DATAFIX_SANDBOX_ERP_WSDL", raising=False)
    with pytest.raises(ConfigError, match=r"datafix demo.*datafix sandbox --env"):
        resolve_env("${DATAFIX_SANDBOX_ERP_WSDL}")


def test_sandbox_env_prints_the_variables_to_export_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main

    for name in sandbox_variables({}):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATAFIX_SANDBOX_PORT", "9300")
    monkeypatch.setenv("DATAFIX_SANDBOX_SF_SESSION_ID", "it's ${OTHER}")
    result = CliRunner().invoke(main, ["sandbox", "--env"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "export DATAFIX_SANDBOX_ERP_WSDL=http://127.0.0.1:9300/wsdl",
        "export DATAFIX_SANDBOX_SAGE_WSDL=http://127.0.0.1:9301/wsdl",
        "export DATAFIX_SANDBOX_SAGE_POOL=SEED",
        "export DATAFIX_SANDBOX_SF_INSTANCE_URL=https://127.0.0.1:9302",
        "export DATAFIX_SANDBOX_SF_SESSION_ID=" + shlex.quote("it's ${OTHER}"),
        "export DATAFIX_SANDBOX_TRAVAUX_WSDL=http://127.0.0.1:9303/wsdl",
    ]


# --- Starting, reusing, stopping ------------------------------------------------------------


def test_peers_start_seeded_answer_and_stop_leaving_no_port(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, ports=SandboxPorts.ephemeral()) as sandbox:
        ports = ports_of(sandbox)
        assert all(peer.started for peer in sandbox.peers)
        assert all(peer.url.startswith(("http://127.0.0.1:", "https://")) for peer in sandbox.peers)
        assert len(set(ports.__dict__.values())) == 4
        assert sandbox.ca_bundle == tmp_path / CA_BUNDLE
        assert erp_tenants(sandbox.erp.wsdl_url) == DEMO_ROWS["val-de-seine"]["tenants"]
        assert salesforce_versions(sandbox) == 200
        assert requests.get(sandbox.sage_x3.wsdl_url, timeout=10).ok
        assert "urn:patrimoine-travaux" in requests.get(sandbox.travaux.wsdl_url, timeout=10).text
        assert sandbox.variables()["DATAFIX_SANDBOX_ERP_WSDL"] == sandbox.erp.wsdl_url
    assert all(refused(port) for port in ports.__dict__.values())


def free_ports() -> SandboxPorts:
    """Four ports the system just handed out and took back (never connected to)."""
    sockets = [socket.socket() for _ in range(4)]
    try:
        for listener in sockets:
            listener.bind(("127.0.0.1", 0))
        return SandboxPorts(*(listener.getsockname()[1] for listener in sockets))
    finally:
        for listener in sockets:
            listener.close()


def test_peers_start_on_given_ports_and_bind_them_again_at_once(tmp_path: Path) -> None:
    ports = free_ports()
    with running_sandbox(tmp_path, ports=ports) as first:
        assert ports_of(first) == ports
        assert all(peer.started for peer in first.peers)
        assert erp_tenants(first.erp.wsdl_url) == 12  # connections: their TIME_WAIT stays behind
        assert salesforce_versions(first) == 200
    # a sandbox restarted at once binds the same ports again (Ctrl-C, then `datafix sandbox`)
    with running_sandbox(tmp_path, ports=ports) as again:
        assert ports_of(again) == ports
        assert all(peer.started for peer in again.peers)
        assert erp_tenants(again.erp.wsdl_url) == 12
    assert all(refused(port) for port in ports.__dict__.values())


def test_a_running_sandbox_is_reused_not_restarted_nor_stopped(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "first", ports=SandboxPorts.ephemeral()) as first:
        ports = ports_of(first)
        with running_sandbox(tmp_path / "second", ports=ports) as second:
            assert not any(peer.started for peer in second.peers)
            assert second.variables() == first.variables()
            # the CA is fetched from the running peer and written under the second home
            assert second.ca_bundle == tmp_path / "second" / CA_BUNDLE
            assert second.ca_bundle.read_text() == first.ca_bundle.read_text()
            assert salesforce_versions(second) == 200
        # the second sandbox stopped nothing: the first still serves
        assert erp_tenants(first.erp.wsdl_url) == 12
        assert salesforce_versions(first) == 200
    assert all(refused(port) for port in ports.__dict__.values())


def test_a_port_held_by_another_program_is_an_error_and_nothing_stays_up(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with running_sandbox(tmp_path, ports=SandboxPorts.ephemeral()) as running:
            started = ports_of(running)
        # the ERP and Sage X3 peers start (on ports the system picks), then Salesforce fails
        with (
            pytest.raises(SandboxError, match=rf"127\.0\.0\.1:{taken}.*DATAFIX_SANDBOX_PORT"),
            running_sandbox(tmp_path, ports=SandboxPorts(0, 0, taken, 0)),
        ):
            pass  # pragma: no cover
        # a peer of the other kind on the port is no sandbox peer of this kind either
        with running_sandbox(tmp_path, ports=SandboxPorts.ephemeral()) as other:
            sage_port = port_of(other.sage_x3.url)
            with (
                pytest.raises(SandboxError, match="taken by another program"),
                running_sandbox(tmp_path, ports=SandboxPorts(sage_port, 0, 0, 0)),
            ):
                pass  # pragma: no cover
    assert all(refused(port) for port in started.__dict__.values())


# --- The demo data the peers serve ----------------------------------------------------------

EXPECTED_REASONS: dict[str, dict[str, Counter[str]]] = {
    "val-de-seine": {
        "tenants": Counter(["unmapped_value"]),
        "ledger_entries": Counter(["missing_value", "unmapped_value"]),
    },
    "residences-estuaire": {
        "ledger_entries": Counter(),
        "work_orders": Counter(["unmapped_value", "unmapped_value", "missing_value"]),
        "completions": Counter(["missing_value"]),
    },
}


@pytest.mark.parametrize(
    ("landlord", "entity"),
    [
        (landlord, entity)
        for landlord in sorted(DEMO_SANDBOX_LANDLORDS)
        for entity in DEMO_ROWS[landlord]
    ],
)
def test_the_peers_serve_the_demo_rows_and_their_bad_records(
    landlord: str, entity: str, sandbox: Sandbox
) -> None:
    from pipelines.lib.datafixes import load_landlord
    from pipelines.lib.stages import normalise, pull

    loaded = load_landlord(landlord)
    normalised = normalise(loaded, pull(loaded, entity))
    batch = normalised.batch
    assert batch is not None
    assert batch.read == DEMO_ROWS[landlord][entity]
    assert len(batch.rejects) == DEMO_BAD_ROWS[landlord][entity]
    assert batch.read == len(batch.rows) + len(batch.rejects)
    assert Counter(batch.rejects["reason"]) == EXPECTED_REASONS[landlord][entity]
    prefix = {
        "val-de-seine": r"List\w+:\w+=",
        "residences-estuaire": r"(WorkOrder|ServiceAppointment):",
    }
    assert batch.rejects["source_row"].str.match(prefix[landlord]).all()


def test_without_trustme_the_sandbox_says_how_to_install_it_and_stops_what_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "trustme" else find_spec(name, *a),
    )
    with (
        pytest.raises(SandboxError, match=r"trustme.*make install"),
        running_sandbox(tmp_path, ports=SandboxPorts.ephemeral()),
    ):
        pass  # pragma: no cover
    assert not (tmp_path / CA_BUNDLE).exists()
