"""host_notify.p4: tell the host what a segment's ACK field said (HostNotify), and cut the
payload off TX_ACKED, RETRANSMIT and SACK frames (TrimHostFrames)."""

from __future__ import annotations

from .constants import (ETH_HDR_BYTES, ETHERTYPE_NIC_HOST, HOST_PORT, INSTANCE_TYPE_NORMAL,
                        NIC_HOST_FLAG_ECE, NIC_HOST_FLAG_FIN, NIC_HOST_FLAG_MERGED, NIC_HOST_HDR_BYTES,
                        NIC_HOST_FLAG_FAST_RETRANSMIT, NIC_HOST_OP_RETRANSMIT, NIC_HOST_OP_SACK,
                        NIC_HOST_OP_TX_ACKED)
from .headers import Headers, Metadata, NicHost, StandardMetadata

M32 = 0xFFFFFFFF


def fill_ack_fields(hdr: Headers, meta: Metadata, ece_flag: int) -> None:
    msg = hdr.nic_host
    msg.flags |= ece_flag
    msg.window = meta.dyn.peer_window
    msg.count = meta.acked_bytes
    msg.aux = meta.rtt_sample


def make_notice(hdr: Headers, meta: Metadata, sm: StandardMetadata, opcode: int) -> None:
    msg = hdr.nic_host = NicHost()
    msg.opcode = opcode
    msg.gen = meta.flow.gen
    msg.flow_id = meta.flow_id
    msg.offset = meta.dyn.snd_una
    hdr.ethernet.ether_type = ETHERTYPE_NIC_HOST
    hdr.drop_tcp()
    sm.egress_spec = HOST_PORT
    meta.to_host = True


def host_notify(hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
    ece_flag = NIC_HOST_FLAG_ECE if meta.ack_ece else 0
    if meta.fin_acked:
        ece_flag |= NIC_HOST_FLAG_FIN
    if meta.delivered:
        fill_ack_fields(hdr, meta, ece_flag)
        if meta.ooo_merged != 0:
            # aux says how much of the interval became readable; the RTT sample gives way.
            hdr.nic_host.flags |= NIC_HOST_FLAG_MERGED
            hdr.nic_host.aux = meta.ooo_merged
    elif meta.acked_bytes != 0 or meta.fin_acked or meta.window_update:
        make_notice(hdr, meta, sm, NIC_HOST_OP_TX_ACKED)
        fill_ack_fields(hdr, meta, ece_flag)
    elif meta.dupack and hdr.tcp_sack is not None and meta.flow.sack != 0:
        # The block as TX stream positions, read before make_notice drops the TCP headers.
        left = (hdr.tcp_sack.left - meta.flow.tx_start_seq) & M32
        right = (hdr.tcp_sack.right - meta.flow.tx_start_seq) & M32
        make_notice(hdr, meta, sm, NIC_HOST_OP_SACK)
        fill_ack_fields(hdr, meta, ece_flag)
        if meta.fast_retransmit:
            hdr.nic_host.flags |= NIC_HOST_FLAG_FAST_RETRANSMIT
        hdr.nic_host.count = left
        hdr.nic_host.aux = right
    elif meta.fast_retransmit:
        make_notice(hdr, meta, sm, NIC_HOST_OP_RETRANSMIT)
        fill_ack_fields(hdr, meta, ece_flag)
        hdr.nic_host.aux = (meta.dyn.snd_una - meta.flow.tx_start_seq) & M32


def trim_host_frames(hdr: Headers, sm: StandardMetadata) -> None:
    msg = hdr.nic_host
    if (sm.instance_type == INSTANCE_TYPE_NORMAL and sm.egress_port == HOST_PORT
            and msg is not None
            and msg.opcode in (NIC_HOST_OP_TX_ACKED, NIC_HOST_OP_RETRANSMIT, NIC_HOST_OP_SACK)):
        sm.truncate_to = ETH_HDR_BYTES + NIC_HOST_HDR_BYTES
