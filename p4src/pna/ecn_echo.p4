/* p4tas PNA: as v1model/ecn_echo.p4 (PNA header and metadata types). */
/* p4tas: the ECN receiver (RFC 3168 6.1.3). After a CE-marked segment every ACK we
 * send carries ECE, until a segment with CWR says the peer has reduced its window; the
 * state is the flow's ece_echo bit (flow_state_regs.p4), read by Receive and Transmit. CWR
 * is taken before CE, as Linux does: a segment carrying both leaves ECE on, since its own
 * mark is not answered yet. A CE mark can only arrive on ECT segments, i.e. on connections
 * that negotiated ECN. */

control EcnEcho(in pna_headers_t hdr, inout pna_metadata_t meta) {
    apply {
        if ((hdr.tcp.flags & TCP_CWR) != 0) {
            meta.dyn.ece_echo = 0;
        }
        if (hdr.ipv4.ecn == ECN_CE) {
            meta.dyn.ece_echo = 1;
        }
    }
}
