"""The seeded fuzzer (tests/support/fuzzing.py), short runs: at least 50,000 mutated packets
through softnic's pipeline and through the runtime's PacketIn handling, and hostile control
messages to the control server. `make fuzz` runs 1,000,000 packets each."""

import os

from tests.support.fuzzing import fuzz_control_server, fuzz_runtime, fuzz_softnic

PACKETS = int(os.environ.get("P4TAS_FUZZ_PACKETS", "50000"))


def test_softnic_pipeline_survives_and_accounts_for_every_packet() -> None:
    report = fuzz_softnic(PACKETS)
    assert report.inputs == PACKETS and report.unaccounted == 0, report
    assert report.outcomes["emitted"] and report.outcomes["counted"], report


def test_runtime_packet_ins_raise_nothing_and_are_all_counted() -> None:
    report = fuzz_runtime(PACKETS)
    assert report.inputs == PACKETS and report.unaccounted == 0, report
    assert report.outcomes["internal_errors"] == 0, report   # nothing needed containing


def test_control_server_survives_hostile_applications() -> None:
    report = fuzz_control_server(2000)
    assert report.inputs >= 2000 and report.outcomes["still_serving"] == 1, report
