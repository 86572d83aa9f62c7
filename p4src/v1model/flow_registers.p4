/* p4tas v1model: dynamic per-flow state, indexed by flow id.
 * bmv2 cannot read or write registers over P4Runtime (DESIGN.md 5), so the data plane owns
 * this state and re-initializes a flow's slot itself when the generation in the flow_state
 * entry differs from the one stored here (a new connection reusing the flow id).
 * bmv2 turns every register access into a pipeline step of its own, so the receive state is
 * packed into one wide register: one read and one write per packet.
 *   [127:112] generation   [111:96] zero   [95:64] rcv_nxt (next expected sequence)
 *   [63:32]   rx_free (free bytes in the RX ring)   [31:0] snd_nxt (our next sequence) */
register<bit<128>>(MAX_FLOWS) flow_rx_state;

struct flow_rx_state_t {
    flow_gen_t gen;
    bit<32> rcv_nxt;
    bit<32> rx_free;
    bit<32> snd_nxt;
}
