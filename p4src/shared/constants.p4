/* p4tas: constants shared by every architecture's top-level program.
 * nic_contract/constants.py mirrors these values; tests/contract/test_p4_python_agreement.py checks
 * that the two agree, so change both together. */
#ifndef P4TAS_CONSTANTS_P4
#define P4TAS_CONSTANTS_P4

/* ---- Sizes ---------------------------------------------------------------------------- */
/* Flow ids index every per-flow register and the flow_state table. The default build holds
 * 64K flows; `make p4` also builds p4src/build/1m/ with -DMAX_FLOWS=1048576 (a 1M-flow bmv2
 * takes ~1.2 GB and ~4 s to load, too much for every test's switch: ARCHITECTURE.md 5).
 * Controllers and targets read the capacity from the P4Info (flow_state's size), never from
 * here: nic_contract.pipeline.flow_capacity. */
#ifndef MAX_FLOWS
#define MAX_FLOWS 65536
#endif
typedef bit<32> flow_id_t;
typedef bit<16> flow_gen_t;

/* ---- Ports (bmv2 port numbers) --------------------------------------------------------- */
/* Wire ports are 1..N (bmv2_env/portmap.py). The host port carries the NIC<->host channel;
 * the CPU port is simple_switch_grpc's --cpu-port, i.e. P4Runtime PacketIn/PacketOut. */
typedef bit<9> port_t;
const port_t HOST_PORT = 254;
const port_t CPU_PORT = 255;

/* ACKs are I2E clones; a clone session fixes its egress port, so each wire port p has its
 * own session ACK_SESSION_BASE + p that sends to p (programmed by the runtime at start). */
const bit<32> ACK_SESSION_BASE = 1000;

/* ---- EtherTypes and protocols ---------------------------------------------------------- */
const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<16> ETHERTYPE_ARP = 0x0806;
/* IEEE 802 "local experimental" EtherType: frames of the NIC<->host channel. */
const bit<16> ETHERTYPE_NIC_HOST = 0x88B5;
const bit<8> IP_PROTO_TCP = 6;

/* ---- Header sizes (bytes) -------------------------------------------------------------- */
const bit<16> ETH_HDR_BYTES = 14;
const bit<16> IPV4_HDR_BYTES = 20;
const bit<16> TCP_HDR_BYTES = 20;
const bit<16> TCP_TS_OPT_BYTES = 12;    /* NOP, NOP, kind 8, len 10, TSval, TSecr */
const bit<16> NIC_HOST_HDR_BYTES = 24;
const bit<4> TCP_DATA_OFFSET_PLAIN = 5;
const bit<4> TCP_DATA_OFFSET_TS = 8;
/* Linux's option layout on data and ACK segments: NOP, NOP, kind 8 (timestamps), length 10. */
const bit<32> TCP_TS_OPT_PREFIX = 0x0101080A;
/* A SYN's maximum segment size option, when it comes first (as every stack sends it). */
const bit<16> TCP_MSS_OPT_PREFIX = 0x0204;
const bit<8> TCP_OPT_MSS = 2;
const bit<8> TCP_OPT_MSS_LEN = 4;
const bit<16> TCP_MSS_OPT_BYTES = 4;
const bit<4> TCP_DATA_OFFSET_MSS = 6;
/* SACK blocks after the timestamps (RFC 2018, Linux's layout): NOP, NOP, kind 5, length
 * 2 + 8n; the TCP header is then 8 + 1 + 2n words long. The fast path takes n = 1..3 (what
 * fits beside timestamps in 40 option bytes). */
const bit<16> TCP_SACK_OPT_BYTES = 12;  /* NOP, NOP, kind 5, len 10, one block */
const bit<16> TCP_SACK_BLOCK_BYTES = 8;
const bit<4> TCP_DATA_OFFSET_TS_SACK1 = 11;
const bit<4> TCP_DATA_OFFSET_TS_SACK2 = 13;
const bit<4> TCP_DATA_OFFSET_TS_SACK3 = 15;
const bit<32> TCP_SACK1_OPT_PREFIX = 0x0101050A;
const bit<32> TCP_SACK2_OPT_PREFIX = 0x01010512;
const bit<32> TCP_SACK3_OPT_PREFIX = 0x0101051A;

/* ---- TCP flags (the 8 bits after the reserved bits) ------------------------------------ */
const bit<8> TCP_FIN = 0x01;
const bit<8> TCP_SYN = 0x02;
const bit<8> TCP_RST = 0x04;
const bit<8> TCP_PSH = 0x08;
const bit<8> TCP_ACK = 0x10;
const bit<8> TCP_ECE = 0x40;
const bit<8> TCP_CWR = 0x80;
/* Flags a common-case data or ACK segment may carry; anything else is an exception. */
const bit<8> TCP_FASTPATH_FLAGS = TCP_ACK | TCP_PSH | TCP_ECE | TCP_CWR;

const bit<2> ECN_CE = 3;
const bit<2> ECN_ECT0 = 2;   /* what our data segments carry once ECN is negotiated */

/* ---- Generated segments ---------------------------------------------------------------- */
const bit<8> ACK_TTL = 64;   /* and of every segment the fast path builds */
const bit<8> TCP_OPT_NOP = 1;
const bit<8> TCP_OPT_TIMESTAMPS = 8;
const bit<8> TCP_OPT_TIMESTAMPS_LEN = 10;
const bit<8> TCP_OPT_SACK = 5;
const bit<8> TCP_OPT_SACK1_LEN = 10;   /* one block: what our ACKs report (one interval) */
const bit<3> IPV4_FLAGS_DF = 0b010;
const bit<8> MAX_DUPACKS = 255;
/* RFC 5681: the third duplicate ACK in a row means a segment was lost, not reordered. */
const bit<8> DUPACK_THRESHOLD = 3;
/* Our TSval ticks in 2^10 us (1.024 ms) units: RFC 7323 5.4 asks for 1 ms to 1 s per tick,
 * so that a peer's PAWS never sees our clock wrap within its 24-day limit (with 16 us ticks a
 * Linux peer dropped our segments after some 10 h idle). RTT samples do not come from it:
 * the NIC times one segment per flow in microseconds (rtt_probe.p4). */
#define TS_TICK_SHIFT 10
/* RFC 7323 5.5: TS.Recent is invalid after 24 days without an update. The NIC keeps the time
 * of the update in 13 bits of 2^35 us (9.5 h) epochs of its 48-bit microsecond clock
 * (flow_state_regs.p4), so a difference above TS_RECENT_MAX_IDLE_EPOCHS means more than 61
 * epochs, 24.3 to 24.7 days: past 24 days, before a 1 ms/tick peer's clock wraps (24.8 days). */
#define TS_EPOCH_SHIFT 35
const bit<13> TS_RECENT_MAX_IDLE_EPOCHS = 61;
/* ---- SYN cookies (syn_cookie.p4; nic_contract/syn_cookie.py is the same format) ---------
 * Cookie: [31:27] epoch mod 32, [26:25] the peer's MSS as an index into this table (rounded
 * down; RFC 9293's default when the SYN names none), [24:0] HalfSipHash-2-4 of the
 * connection and the epoch. */
const bit<16> COOKIE_MSS_0 = 536;
const bit<16> COOKIE_MSS_1 = 1300;
const bit<16> COOKIE_MSS_2 = 1440;
const bit<16> COOKIE_MSS_3 = 1460;
/* HalfSipHash's initial state constants ("lygedtbe") and its message: five 32-bit words. */
const bit<32> SIPHASH_V2_INIT = 0x6C796765;
const bit<32> SIPHASH_V3_INIT = 0x74656462;
const bit<32> COOKIE_MESSAGE_BYTES = 20;
#define MAX_COOKIE_LISTENERS 1024

/* A window that reopens past this (or half the ring, if smaller) is announced at once. */
const bit<32> WINDOW_UPDATE_BYTES = 4 * 1448;
/* Largest unscaled TCP window. */
const bit<32> TCP_MAX_WINDOW = 0xFFFF;

/* ---- NIC<->host channel opcodes (header layout: shared/headers.p4, nic_host_h) -------- */
const bit<8> NIC_HOST_OP_RX_DATA = 1;      /* NIC -> host: in-order payload for the RX ring */
const bit<8> NIC_HOST_OP_RX_CONSUMED = 2;  /* host -> NIC: the app freed `count` RX bytes */
const bit<8> NIC_HOST_OP_TX_DATA = 3;      /* host -> NIC: payload to send; NIC adds headers */
const bit<8> NIC_HOST_OP_TX_ACKED = 4;     /* NIC -> host: the peer acknowledged more data */
const bit<8> NIC_HOST_OP_RETRANSMIT = 5;   /* NIC -> host: fast retransmit, go back to snd_una */
/* NIC -> host: a duplicate ACK with SACK blocks (flow negotiated SACK): its first block
 * (RFC 2018 4: the most recently received data) for the host's scoreboard; flag
 * FAST_RETRANSMIT if it is also the third duplicate ACK (then no RETRANSMIT frame). */
const bit<8> NIC_HOST_OP_SACK = 6;
/* flags */
const bit<8> NIC_HOST_FLAG_PSH = 0x01;     /* RX_DATA: the segment carried PSH; TX_DATA: set PSH */
const bit<8> NIC_HOST_FLAG_CE = 0x02;      /* RX_DATA: the segment arrived CE-marked */
const bit<8> NIC_HOST_FLAG_ECE = 0x04;     /* TX_ACKED: the acknowledging segment carried ECE */
/* TX_DATA (flags are per opcode): set CWR, the first new data after the host cut its rate in
 * answer to ECE (RFC 3168 6.1.2), which ends an RFC 3168 receiver's ECE echo. */
const bit<8> NIC_HOST_FLAG_CWR = 0x04;
/* TX_DATA: first segment of a go-back-N after a retransmission timeout. Its duplicates make
 * the peer send duplicate ACKs, which must not start a fast retransmit: the NIC moves its
 * recovery point to everything sent so far. */
const bit<8> NIC_HOST_FLAG_RTO = 0x08;
/* SACK (flags are per opcode): this duplicate ACK starts a fast retransmit (RFC 6675). */
const bit<8> NIC_HOST_FLAG_FAST_RETRANSMIT = 0x08;
/* TX_DATA: a window probe, one byte below snd_una on purpose (sent, not taken for a resend
 * of acknowledged data). */
const bit<8> NIC_HOST_FLAG_PROBE = 0x10;
/* RX_DATA: payload placed out of order (the out-of-order interval, TAS 3.1): written into
 * the RX ring at its offset but not readable yet. */
const bit<8> NIC_HOST_FLAG_OOO = 0x20;
/* RX_DATA: this in-order payload filled the gap before the out-of-order interval; `aux`
 * more bytes, placed earlier, become readable after it. */
const bit<8> NIC_HOST_FLAG_MERGED = 0x40;
/* TX_DATA: our FIN follows this payload (which may be empty): the connection's last
 * sequence number. TX_ACKED, RX_DATA: this ACK covered our FIN; `count` and the ring hold
 * data only, so the FIN's sequence number is left out of both (offset is snd_una, past it). */
const bit<8> NIC_HOST_FLAG_FIN = 0x80;

/* RX_DATA: the segment started below rcv_nxt (a peer resending with other segmentation):
 * `offset` is the ring offset of its first byte, `length` the whole payload; the host skips
 * the part before its RX write position, which it already holds, and takes the rest in order. */
const bit<8> NIC_HOST_FLAG_TRIM = 0x08;
/* RX_DATA: after this segment our ACKs carry ECE (a CE mark not yet answered with CWR,
 * RFC 3168 6.1.3), so the slow path's own ACKs set it too. */
const bit<8> NIC_HOST_FLAG_ECE_ECHO = 0x10;

/* ---- PacketIn reasons (packet_in_h.reason; index of exception_counter) ---------------- */
const bit<8> REASON_ARP = 1;
const bit<8> REASON_UNKNOWN_FLOW = 2;
const bit<8> REASON_SYN = 3;
const bit<8> REASON_FIN = 4;
const bit<8> REASON_RST = 5;
const bit<8> REASON_IPV4_OPTIONS = 6;
const bit<8> REASON_IPV4_FRAGMENT = 7;
const bit<8> REASON_TCP_OPTIONS = 8;
const bit<8> REASON_TCP_FLAGS = 9;
const bit<8> REASON_BAD_IPV4_CHECKSUM = 10;
const bit<8> REASON_BAD_TCP_CHECKSUM = 11;
const bit<8> REASON_BAD_LENGTH = 12;
const bit<8> REASON_BAD_HOST_MESSAGE = 13;
/* A SYN-ACK answers one of our own opens: its own reason, so that its punt meter bucket is not
 * the one a flood of SYNs empties (our connects must go on under a SYN flood). */
const bit<8> REASON_SYN_ACK = 14;
#define NUM_REASONS 15

/* ---- Silent drops (index of drop_counter) ---------------------------------------------- */
const bit<8> DROP_NOT_IP = 1;          /* neither IPv4 nor ARP (IPv6 neighbour discovery...) */
const bit<8> DROP_NOT_TCP = 2;         /* IPv4 that is not TCP */
const bit<8> DROP_OUT_OF_ORDER = 3;    /* ahead of the expected sequence (duplicate ACK sent) */
const bit<8> DROP_OLD_DATA = 4;        /* already received (re-ACKed) */
const bit<8> DROP_NO_RX_SPACE = 5;     /* does not fit the RX ring (ACK with current window) */
const bit<8> DROP_PURE_ACK = 6;        /* no payload: nothing to deliver */
const bit<8> DROP_STALE_HOST_MESSAGE = 7;  /* host message for an older generation of the flow */
const bit<8> DROP_RATE_LIMITED = 8;    /* TX_DATA beyond the flow's rate (tx_rate meter red) */
const bit<8> DROP_HOST_BUSY = 9;       /* in order, but the host port is backed up (dup ACK) */
const bit<8> DROP_BAD_ACK = 10;        /* ACKs data never sent (challenge ACK, RFC 5961 5.2) */
const bit<8> DROP_PUNT_LIMITED = 11;   /* would be punted, but its reason's punt_rate is exceeded */
const bit<8> DROP_PAWS = 12;           /* TSval older than TS.Recent (RFC 7323 5.3, ACK sent) */
#define NUM_DROP_REASONS 13

#endif
