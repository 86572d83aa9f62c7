"""Numbers shared with the P4 fast path (p4src/shared/constants.p4).

tests/contract/test_p4_python_agreement.py checks every value here against the P4 source.
"""

from enum import IntEnum

MAX_FLOWS = 65536   # the default build's; a build's own is its P4Info's (pipeline.flow_capacity)

# bmv2 port numbers: wire ports are 1..N (bmv2_env.portmap).
HOST_PORT = 254
CPU_PORT = 255
ACK_SESSION_BASE = 1000
# The PNA program (dpdk target) makes ACKs in a second pass: a mirror copy of the segment's
# host frame, truncated to its Ethernet and NIC<->host headers, goes to the loopback port,
# whose input builds the ACK from the flow's state (p4src/pna, docs/ARCHITECTURE.md).
ACK_LOOPBACK_PORT = 253
ACK_MIRROR_SESSION = 1
ACK_MIRROR_TRUNCATE = 14 + 24
# The PNA program's TX_ACKED, RETRANSMIT and SACK frames reach the host port as mirror copies
# cut after their headers (a PNA control cannot truncate; p4src/pna/host_notify.p4).
HOST_NOTICE_MIRROR_SESSION = 2
HOST_NOTICE_MIRROR_TRUNCATE = 14 + 24
# Where the PNA program sends what it drops: a port id no port uses (the runner makes every
# unused id a sink). drop_packet() is not used: DPDK's `drop` sends to the last output port.
PNA_DROP_PORT = 0


def pna_mirror_sessions() -> dict[int, tuple[int, int]]:
    """The PNA program's mirror sessions: session -> (port, truncation in bytes)."""
    return {ACK_MIRROR_SESSION: (ACK_LOOPBACK_PORT, ACK_MIRROR_TRUNCATE),
            HOST_NOTICE_MIRROR_SESSION: (HOST_PORT, HOST_NOTICE_MIRROR_TRUNCATE)}


def pna_output_ports(wire_ports: list[int]) -> list[int]:
    """The ports the PNA program's output_port table needs an entry for (port p -> send(p)):
    p4c takes only compile-time constants or control-plane action data for send_to_port, so
    a port known at run time (a flow's wire port, a PacketOut's port) goes through the table."""
    return sorted(set(wire_ports) | {ACK_LOOPBACK_PORT, HOST_PORT, CPU_PORT})


def ack_clone_sessions(wire_ports: list[int]) -> dict[int, int]:
    """Clone sessions the pipeline needs: ACK_SESSION_BASE + p sends ACKs out of wire port p."""
    return {ACK_SESSION_BASE + port: port for port in wire_ports}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_NIC_HOST = 0x88B5

# TSval ticks of 2^10 us (~1 ms, RFC 7323 5.4); RTT samples are in microseconds.
TS_TICK_SHIFT = 10
# TS.Recent is invalid after more than TS_RECENT_MAX_IDLE_EPOCHS epochs of 2^TS_EPOCH_SHIFT us
# without an update (RFC 7323 5.5: 24 days).
TS_EPOCH_SHIFT = 35
TS_RECENT_MAX_IDLE_EPOCHS = 61
DUPACK_THRESHOLD = 3


class PacketInReason(IntEnum):
    """Why the fast path sent a packet to the controller (packet_in.reason)."""

    ARP = 1
    UNKNOWN_FLOW = 2
    SYN = 3
    FIN = 4
    RST = 5
    IPV4_OPTIONS = 6
    IPV4_FRAGMENT = 7
    TCP_OPTIONS = 8
    TCP_FLAGS = 9
    BAD_IPV4_CHECKSUM = 10
    BAD_TCP_CHECKSUM = 11
    BAD_LENGTH = 12
    BAD_HOST_MESSAGE = 13
    SYN_ACK = 14         # answers our own open: not in the bucket a SYN flood empties


class DropReason(IntEnum):
    """Why the fast path dropped a packet without telling anyone (drop_counter index)."""

    NOT_IP = 1
    NOT_TCP = 2
    OUT_OF_ORDER = 3
    OLD_DATA = 4
    NO_RX_SPACE = 5
    PURE_ACK = 6
    STALE_HOST_MESSAGE = 7
    RATE_LIMITED = 8
    HOST_BUSY = 9
    BAD_ACK = 10
    PUNT_LIMITED = 11
    PAWS = 12


NUM_REASONS = len(PacketInReason) + 1
NUM_DROP_REASONS = len(DropReason) + 1
