"""End to end: commitments pushed by `datafix push` (a subprocess) to the works-order ERP on
node-soap (`connectors/sandbox/erp_node/`), one call per record, into its nested `engagement`
element, relying on the ERP's idempotency on the works-order number (`natural_key`) and on
`LireEngagement` (read-back by reference) for records in doubt. Counted at the peer
(`TravauxErpPeer.stats()`): writes, writes per works order, statuses, calls.

1. push twice → one write per record, the second push makes no call; three changed orders →
   three updates (`MIS_A_JOUR`);
2. kill -9 in the middle of a push, then a push to the end → every record once, none twice,
   none missing; the records in doubt resolved by read-back by reference;
3. a misspelt target path → `datafix check` names it with a did-you-mean, the push is one
   error (exit 1), nothing sent, no dead letter;
4. the ERP refusing everything → every record dead, `failed`, exit 1.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox.erp_node import TravauxErpPeer
from tests.pipelines.lib.pushing import TRAVAUX_COMMITMENT_SINK, change_order_amounts
from tests.test_push_e2e import Hub

# commitments → EnregistrerEngagement(engagement {...}), as a landlord's datafix declares it
TRAVAUX_SINK: dict[str, Any] = {
    **TRAVAUX_COMMITMENT_SINK,
    "wsdl": "${TRAVAUX_WSDL}",
    "results": {**TRAVAUX_COMMITMENT_SINK["results"], "faults": {"Server.Refuse": "dead"}},
    "timeout": 10,
    "operation_timeout": 10,
}


@pytest.fixture(scope="module")
def peer() -> Iterator[TravauxErpPeer]:
    with TravauxErpPeer() as running:
        yield running


@pytest.fixture
def hub(tmp_path: Path, peer: TravauxErpPeer) -> Hub:
    peer.reset()
    hub = Hub(tmp_path, env={"TRAVAUX_WSDL": peer.wsdl_url})
    hub.datafixes.mkdir()
    return hub


def landlord(hub: Hub, orders: int, **changes: Any) -> Path:
    """Works data of `orders` orders, loaded; every order is a commitment (cancelled too)."""
    sink = {**TRAVAUX_SINK, **changes}
    return hub.landlord("travaux", {"erp_travaux": sink}, orders=orders)


def outbox_states(hub: Hub) -> dict[str, int]:
    return {state: n for (_, _, state), n in hub.outbox("travaux").items()}


def test_push_twice_writes_once_then_three_changes_are_three_updates(
    hub: Hub, peer: TravauxErpPeer
) -> None:
    n = 300
    path = landlord(hub, n)
    hub.push("travaux")
    stats = peer.stats()
    assert stats["engagements"] == n and stats["writes"] == n  # 0 missing
    assert set(stats["writesByBon"].values()) == {1}  # 0 duplicates
    assert stats["calls"] == {"EnregistrerEngagement": n}
    held = peer.stats()["callsTotal"]

    hub.push("travaux")  # nothing changed: no call at all
    assert peer.stats()["callsTotal"] == held

    change_order_amounts(hub.root / "data", range(10, 13))
    hub.load(path, run_id="load-2")
    hub.push("travaux")
    stats = peer.stats()
    assert stats["statuts"]["MIS_A_JOUR"] == 3 and stats["writes"] == n + 3
    assert stats["calls"]["EnregistrerEngagement"] == n + 3
    assert {bon: count for bon, count in stats["writesByBon"].items() if count > 1} == {
        f"BT{i:06d}": 2 for i in range(10, 13)
    }
    assert outbox_states(hub) == {"sent": n}


def test_kill_9_in_the_middle_then_a_rerun_leaves_no_duplicate_and_no_hole(
    hub: Hub, peer: TravauxErpPeer
) -> None:
    n = 1500
    landlord(hub, n)
    process = hub.start("push", "travaux")
    deadline = time.monotonic() + 120
    while peer.stats()["writes"] < 250:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the push wrote nothing for 120 s"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    killed = peer.stats()
    assert 250 <= killed["writes"] < n  # killed in the middle
    assert outbox_states(hub).get("sending", 0) > 0  # records in doubt

    completed = hub.push("travaux")
    stats = peer.stats()
    assert stats["engagements"] == n  # 0 missing
    assert len(stats["writesByBon"]) == n and set(stats["writesByBon"].values()) == {1}
    assert stats["writes"] == n  # 0 duplicates
    assert stats["calls"]["LireEngagement"] > 0  # the records in doubt were read back
    assert outbox_states(hub) == {"sent": n}, completed.stdout


def test_a_misspelt_target_path_is_one_clear_error_in_check_and_push(
    hub: Hub, peer: TravauxErpPeer
) -> None:
    fields = dict(TRAVAUX_SINK["fields"])
    fields["engagement.montant.valuer"] = fields.pop("engagement.montant.valeur")
    path = landlord(hub, 20, fields=fields)

    checked = hub.run("check", str(path))
    assert checked.returncode != 0
    assert "`engagement.montant.valuer` is not in the WSDL" in checked.stdout
    assert "did you mean `engagement.montant.valeur`?" in checked.stdout

    pushed = hub.run("push", "travaux")
    assert pushed.returncode == 1, pushed.stdout + pushed.stderr
    assert "did you mean `engagement.montant.valeur`?" in pushed.stdout + pushed.stderr
    assert peer.stats()["callsTotal"] == 0  # nothing sent
    assert "dead" not in outbox_states(hub)  # no dead letter


def test_the_erp_refusing_everything_makes_every_record_dead_and_the_push_fail(
    hub: Hub, peer: TravauxErpPeer
) -> None:
    peer.set_mode(refuse_all=True)
    landlord(hub, 20)
    pushed = hub.run("push", "travaux")
    assert pushed.returncode == 1, pushed.stdout + pushed.stderr
    assert "failed" in pushed.stdout
    assert outbox_states(hub) == {"dead": 20}
    assert peer.stats()["writes"] == 0


def test_a_dry_run_prints_the_first_records_envelope_and_calls_nothing(
    hub: Hub, peer: TravauxErpPeer
) -> None:
    # a password typed Secret: never printed, though the envelope is built with the settings
    hub.env.update({"TRAVAUX_USER": "hub", "TRAVAUX_PASSWORD": "s3cr&t-travaux"})
    landlord(hub, 5, username="${TRAVAUX_USER}", password="${TRAVAUX_PASSWORD}")
    dry = hub.run("push", "travaux", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    out = dry.stdout
    assert "envelope of BT000001 (the first record; secrets masked):" in out
    envelope = out[out.index("envelope of BT000001") : out.index("  create BT000001")]
    assert "<ns0:EnregistrerEngagement" in envelope and "<soap-env:Envelope" in envelope
    assert "<ns0:engagement>" in envelope  # nested as the WSDL says, indented
    assert "        <ns0:numeroBon>BT000001</ns0:numeroBon>" in envelope
    assert "<ns0:valeur>101.50</ns0:valeur>" in envelope
    assert "<ns0:devise>EUR</ns0:devise>" in envelope and "<ns0:ligne>" in envelope
    assert "IdempotencyKey" not in envelope  # the natural key only
    assert out.count("envelope of ") == 1  # the first record only
    assert "s3cr&t-travaux" not in out and "s3cr&amp;t-travaux" not in out
    assert "dry run: nothing was sent or written" in out
    stats = peer.stats()
    assert stats["calls"].get("EnregistrerEngagement", 0) == 0 and stats["callsTotal"] == 0
    assert outbox_states(hub) == {}


def test_the_envelope_masks_password_and_token_elements() -> None:
    from connectors.soap.kinds import SoapSink
    from connectors.soap.push import masked_envelope

    settings = SoapSink(
        kind="soap",
        sends="commitments",
        wsdl="erp.wsdl",
        operation="Op",
        fields={"login": "order_ref"},
        username="hub",
        password="p4ss",
    )  # as resolved from `${VARIABLES}`
    envelope = (
        '<e:Envelope xmlns:e="urn:e"><e:Body><Op jeton="abc"><login>hub</login>'
        "<Password>p4ss</Password><apiToken>t0k</apiToken><IdempotencyKey>k1</IdempotencyKey>"
        "<note>p4ss-not-a-secret-setting</note></Op></e:Body></e:Envelope>"
    )
    shown = masked_envelope(envelope, settings)
    assert "<Password>***</Password>" in shown and "<apiToken>***</apiToken>" in shown
    assert 'jeton="***"' in shown and "<login>hub</login>" in shown
    assert "<IdempotencyKey>k1</IdempotencyKey>" in shown  # an idempotency key is shown
    assert "<note>***-not-a-secret-setting</note>" in shown  # a Secret setting's value
