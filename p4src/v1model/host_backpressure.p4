/* p4tas v1model: backpressure from the host port, the "DMA engine" on bmv2.
 * The NIC acknowledges data as it hands it to the host, so a frame lost on the way to the
 * host is data lost for good, and a lost TX_ACKED leaves the host's TX ring behind. bmv2
 * drops when an egress queue is full (64 packets, not settable without its Thrift CLI), so
 * a burst of many connections could overflow the host port's queue. Ingress counts the frames
 * it sends to the host, egress the ones it takes off the queue; while the difference is
 * HOST_QUEUE_BUSY_DEPTH or more, ingress neither delivers payload (the peer gets a duplicate
 * ACK and retransmits, as when a NIC's DMA queue is full) nor takes in ACKs (a later
 * cumulative ACK covers them). Each counter has one writer (the ingress thread; port 254's
 * egress thread), and a dequeue that leaves the queue empty resynchronizes them, so a frame
 * lost anyway cannot leave the NIC believing the host is busy for good. */

register<bit<32>>(1) host_frames_enqueued;
register<bit<32>>(1) host_frames_dequeued;

control HostBackpressure(inout metadata_t meta) {
    apply {
        bit<32> enqueued;
        bit<32> dequeued;
        host_frames_enqueued.read(enqueued, 0);
        host_frames_dequeued.read(dequeued, 0);
        meta.host_busy = enqueued - dequeued >= HOST_QUEUE_BUSY_DEPTH;
    }
}

/* End of ingress: one more frame on its way to the host port. */
control HostFrameCount(in metadata_t meta, in standard_metadata_t sm) {
    apply {
        if (sm.egress_spec == HOST_PORT) {
            bit<32> enqueued;
            host_frames_enqueued.read(enqueued, 0);
            host_frames_enqueued.write(0, enqueued + 1);
        }
    }
}

control HostQueueWatch(in standard_metadata_t sm) {
    apply {
        if (sm.egress_port == HOST_PORT && sm.instance_type == INSTANCE_TYPE_NORMAL) {
            bit<32> dequeued;
            if (sm.deq_qdepth == 0) {
                host_frames_enqueued.read(dequeued, 0);   /* nothing behind this frame */
            } else {
                host_frames_dequeued.read(dequeued, 0);
                dequeued = dequeued + 1;
            }
            host_frames_dequeued.write(0, dequeued);
        }
    }
}
