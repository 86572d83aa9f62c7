"""dpdk_target: the PNA program (p4src/pna/, compiled by p4c-dpdk) on DPDK's SWX pipeline, the
software data plane P4 SmartNIC stacks are built on: p4tas-swx runs it, this package builds
it and serves P4Runtime in front of it."""
