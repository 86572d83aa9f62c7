/* p4tas v1model: numbers of bmv2's simple_switch that v1model.p4 does not name. */

/* standard_metadata.instance_type */
const bit<32> INSTANCE_TYPE_NORMAL = 0;
const bit<32> INSTANCE_TYPE_INGRESS_CLONE = 1;
