/* p4tas PNA: time. The DPDK target does not fill pna_main_input_metadata_t.timestamp, so the
 * runner keeps a monotonic microsecond clock in this register (index 0) and writes it before
 * each run of the pipeline; the program reads it once per packet (meta.now_us) wherever v1model
 * reads standard_metadata.ingress_global_timestamp (also microseconds on bmv2). */
Register<bit<64>, bit<32>>(1) clock_us;
