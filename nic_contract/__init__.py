"""What the fast path's parties share, owned by none of them (like TAS's include/tas_memif.h):
the numbers of p4src/shared/constants.p4, the NIC<->host channel codec, the host port, the
Internet checksum, a flow's table entries, the committed pipeline and the P4Runtime client.

runtime/ (the slow path), softnic/ (a target), bmv2_env/ and ptf_tests/ import it; it imports
nothing else of ours. tests/contract/test_p4_python_agreement.py checks it against the P4 source."""
