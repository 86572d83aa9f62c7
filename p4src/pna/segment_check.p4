/* p4tas PNA: as v1model/segment_check.p4, with the conditions spelled as nested ifs: p4c-dpdk
 * miscompiles a local used twice in one boolean expression (`ahead == 0 || ahead < x`
 * becomes a subtraction of a bool from itself, which it then rejects), and a < or > inside
 * && (it takes the true branch when the comparison fails). */
/* p4tas: is a segment of a known flow acceptable? (RFC 9293 3.10.7.4, RFC 5961 5.2)
 * Checked before its ACK field is used, so that a blind attacker who guesses a plausible ACK
 * cannot move snd_una (freeing TX data the peer never got) without also hitting the receive
 * window:
 * - its sequence: it overlaps the receive window [rcv_nxt, rcv_nxt + rx_free), or starts at
 *   rcv_nxt exactly (the RFC's allowance for ACKs while our window is closed). Otherwise its
 *   ACK field is ignored; Receive answers it with an ACK as it answers any old or
 *   out-of-window segment.
 * - its ACK: within [snd_una - MAX.SND.WND, snd_nxt] (RFC 5961 5.2): not beyond the highest
 *   sequence we sent (nobody can acknowledge more), and not older than the largest window the
 *   peer could ever have offered (65535 << its window scale: an upper bound of MAX.SND.WND
 *   that needs no state), so a blind ACK must hit that range. Otherwise the whole segment is
 *   discarded and answered with a challenge ACK (Receive). */

control SegmentCheck(in pna_headers_t hdr, inout pna_metadata_t meta) {
    apply {
        /* Sequence space wraps: "within n after x" is (s - x) < n in 32-bit arithmetic. */
        bit<32> ahead = hdr.tcp.seq_no - meta.dyn.rcv_nxt;
        bit<32> last = ahead + (bit<32>)meta.payload_len - 1;
        meta.seq_acceptable = false;
        if (ahead == 0) {
            meta.seq_acceptable = true;
        } else if (ahead < meta.dyn.rx_free) {
            meta.seq_acceptable = true;
        } else if (meta.payload_len != 0) {
            if (last < meta.dyn.rx_free) {
                meta.seq_acceptable = true;
            }
        }
        bit<32> behind = meta.dyn.snd_una - hdr.tcp.ack_no;
        bit<32> max_window = TCP_MAX_WINDOW << meta.flow.peer_window_shift;
        meta.ack_unacceptable = false;
        if (hdr.tcp.ack_no - meta.dyn.snd_nxt - 1 < 0x7FFFFFFF) {
            meta.ack_unacceptable = true;
        } else if (behind < 0x80000000) {
            if (behind > max_window) {
                meta.ack_unacceptable = true;
            }
        }
    }
}
