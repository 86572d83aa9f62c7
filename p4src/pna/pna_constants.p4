/* p4tas PNA: numbers of the DPDK SWX target that the shared constants do not name.
 * nic_contract/constants.py mirrors them (PNA_*); tests/contract/test_p4_python_agreement.py
 * checks that the two agree. The dpdk target (dpdk_target/) configures the ports and mirror
 * sessions named here when it starts the pipeline. */
#ifndef P4TAS_PNA_CONSTANTS_P4
#define P4TAS_PNA_CONSTANTS_P4

/* ---- Ports (SWX port ids = P4Runtime port numbers) ------------------------------------- */
/* ACKs are generated in a second pass (ack_loopback.p4): the runner wires this port's output
 * back to its input, so a mirror copy sent here comes back into the pipeline. */
const port_t ACK_LOOPBACK_PORT = 253;
/* Where a packet goes that leaves on no port. drop_packet() cannot be used: DPDK 22.11's
 * `drop` instruction runs at once, before the deparser has emitted anything, so a mirror copy
 * of a dropped packet would lose every rewritten header (and it sends to the last output
 * port, which is the CPU port here). The runner makes port 0 (never a wire port: those are
 * 1..N) a sink; the output_port table's default action sends there too. */
const port_t DROP_PORT = 0;

/* ---- Mirror sessions (set by the target at start; p4c-dpdk reserves session 0) -------- */
/* Pass 1 of an ACK: the packet's Ethernet + nic_host header (38 bytes) to ACK_LOOPBACK_PORT. */
const bit<8> ACK_MIRROR_SLOT = 0;
const bit<16> ACK_MIRROR_SESSION = 1;
/* TX_ACKED, RETRANSMIT and SACK frames to HOST_PORT without the segment's payload: a PNA
 * control cannot truncate the packet, a mirror session can (v1model truncates in egress). */
const bit<8> HOST_NOTICE_MIRROR_SLOT = 1;
const bit<16> HOST_NOTICE_MIRROR_SESSION = 2;
/* Both sessions truncate to the host frame header: Ethernet + nic_host_h. */
const bit<32> MIRROR_TRUNCATE_BYTES = 38;

/* ---- The ACK request of pass 1 (ack_loopback.p4) --------------------------------------- */
/* Opcode of a loopback frame whose original went nowhere (it was dropped): only the fast path
 * sees it, on ACK_LOOPBACK_PORT; the host never does. An RX_DATA, TX_ACKED, SACK or
 * RETRANSMIT frame on that port is an ACK request too (the copy of what went to the host). */
const bit<8> NIC_HOST_OP_ACK_REQUEST = 0x80;
/* ACK_REQUEST flags: the ACK carries timestamps (the segment did); it may report the
 * out-of-order interval as a SACK block (v1model reports it only in answers to segments with
 * payload, not in challenge, PAWS or zero-window-probe ACKs). */
const bit<8> ACK_REQUEST_FLAG_TIMESTAMPS = 0x01;
const bit<8> ACK_REQUEST_FLAG_SACK = 0x02;

/* ---- Checksums ------------------------------------------------------------------------- */
/* InternetChecksum.get() over a correct IPv4 header, checksum included: DPDK's ckadd turns a
 * resulting 0 into 0xFFFF (the same number in one's complement), so a correct header reads as
 * 0xFFFF, never 0. (An all-zero header is the only other way to get 0xFFFF.) */
const bit<16> IPV4_CHECKSUM_OK = 0xFFFF;

/* ---- Meters ---------------------------------------------------------------------------- */
/* p4c-dpdk encodes PNA_MeterColor_t in declaration order (RED 0, GREEN 1, YELLOW 2); its
 * remapping to DPDK's colours exists for PSA_MeterColor_t only. DPDK's meter returns GREEN 0,
 * YELLOW 1, RED 2, so DPDK's red compares equal to PNA_MeterColor_t.YELLOW here. Checked on
 * the running pipeline (a configured meter past its peak rate reads as this value). */
const PNA_MeterColor_t METER_RED = PNA_MeterColor_t.YELLOW;
/* Packet meters: p4c-dpdk meters bytes only ("falling back to byte metering"), so a packet
 * meter is executed with a length of 1: its rates and bursts are then packets/s and packets.
 * DPDK's meter instruction takes the length from a field, not an immediate, so the parser puts
 * this in meta.packet_unit. */
const bit<32> METER_PACKET_UNIT = 1;

#endif
