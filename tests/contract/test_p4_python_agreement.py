"""The P4 source and the Python side describe the same numbers and the same header layout."""

import re
from pathlib import Path

import pytest

from nic_contract import constants as dc
from nic_contract.nic_host_header import ETH_HEADER, NIC_HOST_HEADER, Opcode, ChannelFlags

P4SRC = Path(__file__).resolve().parents[2] / "p4src"
CONSTANTS = (P4SRC / "shared" / "constants.p4").read_text()
HEADERS = (P4SRC / "shared" / "headers.p4").read_text()


def p4_value(name: str) -> int:
    """Value of a `const T NAME = V;` or `#define NAME V` in constants.p4."""
    match = (re.search(rf"const\s+[^=]+\s{name}\s*=\s*([0-9xXa-fA-F]+)\s*;", CONSTANTS)
             or re.search(rf"#define\s+{name}\s+([0-9xXa-fA-F]+)", CONSTANTS))
    assert match, f"{name} not found in constants.p4"
    return int(match.group(1), 0)


@pytest.mark.parametrize("name", ["MAX_FLOWS", "HOST_PORT", "CPU_PORT", "ACK_SESSION_BASE",
                                  "ETHERTYPE_IPV4", "ETHERTYPE_ARP", "ETHERTYPE_NIC_HOST",
                                  "TS_TICK_SHIFT", "TS_EPOCH_SHIFT",
                                  "TS_RECENT_MAX_IDLE_EPOCHS", "DUPACK_THRESHOLD", "NUM_REASONS",
                                  "NUM_DROP_REASONS"])
def test_scalar_constants(name: str) -> None:
    assert getattr(dc, name) == p4_value(name)


def test_packet_in_reasons() -> None:
    for reason in dc.PacketInReason:
        assert p4_value(f"REASON_{reason.name}") == reason.value
    assert len(re.findall(r"const bit<8> REASON_", CONSTANTS)) == len(dc.PacketInReason)


def test_drop_reasons() -> None:
    for reason in dc.DropReason:
        assert p4_value(f"DROP_{reason.name}") == reason.value
    assert len(re.findall(r"const bit<8> DROP_", CONSTANTS)) == len(dc.DropReason)


def test_opcodes_and_flags() -> None:
    for op in Opcode:
        assert p4_value(f"NIC_HOST_OP_{op.name}") == op.value
    for name, flag in ChannelFlags.__members__.items():   # per-opcode aliases too
        if flag is ChannelFlags.NONE:
            continue
        assert p4_value(f"NIC_HOST_FLAG_{name}") == flag.value


def header_field_widths(header: str) -> list[tuple[str, int]]:
    """(name, bits) of each field of a P4 header, resolving the typedefs used there."""
    body = re.search(rf"header {header}\s*\{{(.*?)\}}", HEADERS, re.S).group(1)
    typedefs = {"flow_id_t": 32, "flow_gen_t": 16, "port_t": 9}
    fields = []
    for kind, name in re.findall(r"(bit<\d+>|\w+_t)\s+(\w+);", body):
        bits = int(kind[4:-1]) if kind.startswith("bit<") else typedefs[kind]
        fields.append((name, bits))
    return fields


def test_nic_host_header_layout_matches_the_codec() -> None:
    fields = header_field_widths("nic_host_h")
    assert [name for name, _ in fields] == ["opcode", "flags", "gen", "flow_id", "offset",
                                            "length", "window", "count", "aux"]
    struct_bits = {"B": 8, "H": 16, "I": 32}
    assert [bits for _, bits in fields] == [struct_bits[c] for c in NIC_HOST_HEADER.format[1:]]
    assert sum(bits for _, bits in fields) // 8 == NIC_HOST_HEADER.size == 24
    assert ETH_HEADER.size == 14


def test_softnic_constants_match_the_p4_source() -> None:
    """Every constant softnic's pipeline names after the P4 program has the P4 value (the
    P4 expression evaluated with the Python names, e.g. TCP_ACK | TCP_PSH)."""
    from softnic.pipeline import constants as sc

    source = CONSTANTS + (P4SRC / "v1model" / "bmv2_constants.p4").read_text()
    names = {n: v for n, v in vars(sc).items() if n.isupper() and isinstance(v, int)}
    checked = 0
    for name, value in names.items():
        match = (re.search(rf"const\s+[^=;]+\s{name}\s*=\s*([^;]+);", source)
                 or re.search(rf"#define\s+{name}\s+(\S+)", source))
        if match is None:
            continue
        expression = re.sub(r"\b\d+w(\d)", r"\1", match.group(1))   # P4 width prefixes
        assert eval(expression, {}, names) == value, name  # noqa: S307 - our own P4 source
        checked += 1
    assert checked >= len(names) - 1   # all but DROP_PORT (v1model's, not in our source)


SOFTNIC_HEADERS = {"ethernet_h": "Ethernet", "ipv4_h": "Ipv4", "tcp_h": "Tcp",
                   "tcp_ts_h": "TcpTs", "tcp_mss_h": "TcpMss", "nic_host_h": "NicHost",
                   "packet_in_h": "PacketIn",
                   "packet_out_h": "PacketOut", "tcp_sack_h": "TcpSack",
                   "tcp_sack_block_h": "TcpSackBlock"}


def field_bytes(fields: list[tuple[str, int]], name: str) -> bytes:
    """The header's bytes with every bit of field `name` set and all others clear."""
    offset = 0
    for field, bits in fields:
        if field == name:
            size = sum(b for _, b in fields)
            value = ((1 << bits) - 1) << (size - offset - bits)
            return value.to_bytes(size // 8, "big")
        offset += bits
    raise KeyError(name)


@pytest.mark.parametrize("p4_header, class_name", sorted(SOFTNIC_HEADERS.items()))
def test_softnic_header_classes_match_the_p4_layout(p4_header: str, class_name: str) -> None:
    """Each softnic header class has the P4 header's fields in order and size, and packs and
    unpacks every field at its bit position (all ones in one field, zeros elsewhere)."""
    from softnic.pipeline import headers

    cls = getattr(headers, class_name)
    fields = header_field_widths(p4_header)
    assert list(cls.__slots__) == [name for name, _ in fields]
    assert cls.SIZE * 8 == sum(bits for _, bits in fields)
    for name, bits in fields:
        expected = field_bytes(fields, name)
        value = b"\xff" * (bits // 8) if class_name == "Ethernet" and bits == 48 else (1 << bits) - 1
        if hasattr(cls, "pack"):
            header = cls.__new__(cls)
            for other, other_bits in fields:
                zero = bytes(6) if class_name == "Ethernet" and other_bits == 48 else 0
                setattr(header, other, value if other == name else zero)
            assert header.pack() == expected, name
        if hasattr(cls, "unpack"):
            assert getattr(cls.unpack(b"\x00" + expected, 1), name) == value, name


def test_syn_cookie_format() -> None:
    """The fast path's cookie (syn_cookie.p4) and nic_contract/syn_cookie.py: the MSS table,
    HalfSipHash's constants and message length, the field widths."""
    from nic_contract import syn_cookie as sc

    assert [p4_value(f"COOKIE_MSS_{i}") for i in range(4)] == list(sc.MSS_TABLE)
    assert p4_value("COOKIE_MESSAGE_BYTES") == 20 == sc._COOKIE_LAST_WORD >> 24
    assert (p4_value("SIPHASH_V2_INIT"), p4_value("SIPHASH_V3_INIT")) == sc._INIT
    source = (P4SRC / "v1model" / "syn_cookie.p4").read_text()
    layout = "key_epoch[4:0] ++ cookie_mss_index(peer_mss) ++ tag[24:0]"
    assert layout in source and (sc.STAMP_BITS, sc.MSS_BITS, sc.HASH_BITS) == (5, 2, 25)
    assert "bit<16> epoch" in source and sc.EPOCH_MASK == 0xFFFF
