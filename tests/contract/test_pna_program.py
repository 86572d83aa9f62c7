"""The PNA program (p4src/pna/, the dpdk target) and the v1model program (p4src/v1model/) offer
the controller the same P4Runtime objects: every table, action, counter, meter, register and
controller header that both have carries the same name, id and shape, so the runtime and the
PTF tests drive either unchanged. What differs is listed here, each with its reason
(docs/ARCHITECTURE.md, "PNA / DPDK target"). Also: the PNA constants agree with the Python side."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import text_format

from nic_contract import constants as dc
from nic_contract.p4rt.proto import p4info_pb2
from nic_contract.pipeline import P4INFO, PNA_CONTEXT, PNA_P4INFO, PNA_SPEC

P4SRC = Path(__file__).resolve().parents[2] / "p4src"
KINDS = ("tables", "actions", "counters", "meters", "registers", "controller_packet_metadata",
         "direct_counters", "direct_meters", "digests", "value_sets", "action_profiles")

# Objects only the v1model program has.
V1MODEL_ONLY = {
    # HalfSipHash runs one statement per action on PNA (p4c-dpdk miscompiles the expressions
    # p4c propagates within an action), so v1model's two-round action has no counterpart.
    "actions": {"P4tasIngress.verdict.syn_cookie.sip_two_rounds"},
    # The dynamic state is split into <= 64-bit arrays on PNA (DPDK registers hold 64 bits);
    # bmv2's host queue watch (host_backpressure.p4) does not apply to DPDK.
    "registers": {"flow_rx_state", "flow_tx_state", "flow_ooo_state", "host_frames_enqueued",
                  "host_frames_dequeued"},
}
# Objects only the PNA program has.
PNA_ONLY = {
    # Ports known at run time reach send_to_port through a table (p4c wants constants).
    "tables": {"P4tasIngress.forwarding.output_port"},
    "actions": {"P4tasIngress.forwarding.send", "P4tasIngress.forwarding.to_sink",
                "P4tasIngress.verdict.syn_cookie.sip_absorb",
                "P4tasIngress.verdict.syn_cookie.sip_release",
                "P4tasIngress.verdict.syn_cookie.sip_finalize",
                *(f"P4tasIngress.verdict.syn_cookie.sip_round_{i}" for i in range(1, 11))},
    # The split dynamic state, and the runner's microsecond clock (DPDK fills no timestamp).
    "registers": {"flow_gen_flags", "flow_rcv_window", "flow_snd_seq", "flow_ts_recent",
                  "flow_ack_state", "flow_ooo", "clock_us"},
}
def load(path: Path) -> p4info_pb2.P4Info:
    return text_format.Parse(path.read_text(), p4info_pb2.P4Info())


@pytest.fixture(scope="module")
def infos() -> tuple[p4info_pb2.P4Info, p4info_pb2.P4Info]:
    return load(P4INFO), load(PNA_P4INFO)


def by_name(info: p4info_pb2.P4Info, kind: str) -> dict:
    return {o.preamble.name: o for o in getattr(info, kind)}


@pytest.mark.parametrize("kind", KINDS)
def test_same_objects_except_the_listed_ones(infos, kind: str) -> None:
    v1model, pna = (by_name(i, kind) for i in infos)
    assert set(v1model) - set(pna) == V1MODEL_ONLY.get(kind, set())
    assert set(pna) - set(v1model) == PNA_ONLY.get(kind, set())


@pytest.mark.parametrize("kind", KINDS)
def test_shared_objects_have_the_same_ids_and_shapes(infos, kind: str) -> None:
    v1model, pna = (by_name(i, kind) for i in infos)
    for name in set(v1model) & set(pna):
        a, b = v1model[name], pna[name]
        assert a.preamble.id == b.preamble.id, name
        a.ClearField("preamble")
        b.ClearField("preamble")
        if kind == "registers":   # the index type's name differs (bit<32> vs flow_id_t)
            a.ClearField("index_type_name")
            b.ClearField("index_type_name")
        assert a == b, f"{kind} {name}:\nv1model {a}\npna {b}"


def test_architecture(infos) -> None:
    assert (infos[0].pkg_info.arch, infos[1].pkg_info.arch) == ("v1model", "pna")


# ---- the PNA constants and the dpdk target's configuration ----------------------------------

PNA_CONSTANTS = (P4SRC / "pna" / "pna_constants.p4").read_text()


def pna_value(name: str) -> int:
    match = re.search(rf"const\s+[^=]+\s{name}\s*=\s*([0-9xXa-fA-F]+)\s*;", PNA_CONSTANTS)
    assert match, f"{name} not found in pna_constants.p4"
    return int(match.group(1), 0)


@pytest.mark.parametrize("p4_name, python_value", [
    ("ACK_LOOPBACK_PORT", dc.ACK_LOOPBACK_PORT),
    ("ACK_MIRROR_SESSION", dc.ACK_MIRROR_SESSION),
    ("HOST_NOTICE_MIRROR_SESSION", dc.HOST_NOTICE_MIRROR_SESSION),
    ("MIRROR_TRUNCATE_BYTES", dc.ACK_MIRROR_TRUNCATE),
    ("MIRROR_TRUNCATE_BYTES", dc.HOST_NOTICE_MIRROR_TRUNCATE),
    ("DROP_PORT", dc.PNA_DROP_PORT),
])
def test_pna_constants(p4_name: str, python_value: int) -> None:
    assert pna_value(p4_name) == python_value


def test_mirror_sessions_and_output_ports() -> None:
    assert dc.pna_mirror_sessions() == {1: (253, 38), 2: (254, 38)}
    assert dc.pna_output_ports([2, 1]) == [1, 2, 253, 254, 255]
    assert dc.PNA_DROP_PORT not in dc.pna_output_ports([1, 2])


def test_committed_spec_fits_dpdk_22_11() -> None:
    """Every struct of the committed spec is addressable by DPDK 22.11 (byte offsets below
    256: p4src/dpdk_spec_fixups.py), and the parser's input port is the control's."""
    import importlib.util
    spec = PNA_SPEC.read_text()
    loaded = importlib.util.spec_from_file_location("fixups", P4SRC / "dpdk_spec_fixups.py")
    fixups = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(fixups)
    fixups.check_offsets(spec)
    assert "pna_main_parser_input_metadata_input_port" not in spec.split("apply {")[1]
    assert PNA_CONTEXT.is_file()


def test_dpdk_check_finds_a_copy_read_after_its_source_changed() -> None:
    """p4c_dpdk_checks.py defect 4: p4c-dpdk's assembly copy propagation reads the source of a
    once-defined, once-read copy in its place, even after the source was written."""
    import importlib.util
    loaded = importlib.util.spec_from_file_location("checks", P4SRC / "p4c_dpdk_checks.py")
    checks = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(checks)
    stale = """
        m.before = m.rx_free;
        m.rx_free = m.rx_free + h.nic_host.count;
        if (m.before < m.threshold) {
    """
    assert len(checks.stale_copies(stale)) == 1
    # Written before the copy, read once after: fine.
    assert checks.stale_copies(stale.replace("m.rx_free = m.rx_free + h.nic_host.count;\n",
                                             "")) == []
    # A swap through a local into header fields: the pass leaves copies into headers alone.
    swap = """
        m.mac = h.ethernet.dst_addr;
        h.ethernet.dst_addr = h.ethernet.src_addr;
        h.ethernet.src_addr = m.mac;
    """
    assert checks.stale_copies(swap) == []
