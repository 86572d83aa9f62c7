/* p4tas v1model: numbers of bmv2's simple_switch that v1model.p4 does not name. */

/* standard_metadata.instance_type */
const bit<32> INSTANCE_TYPE_NORMAL = 0;
const bit<32> INSTANCE_TYPE_INGRESS_CLONE = 1;

/* execute_meter's colors (two-rate three-color marker): green 0, yellow 1, red 2 */
const bit<2> METER_RED = 2;

/* Host-port frames queued in bmv2 beyond which the NIC holds back (host_backpressure.p4):
 * three quarters of bmv2's fixed 64-packet egress queue. */
const bit<32> HOST_QUEUE_BUSY_DEPTH = 48;
