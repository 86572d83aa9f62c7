"""Validation of a connection's static state before it becomes table entries."""

import pytest

from nic_contract.flow_entries import FlowSpec, FlowTuple

TUPLE = FlowTuple("10.0.0.1", 5001, "10.0.0.2", 40000)


def spec(**overrides) -> FlowSpec:
    values = dict(flow_id=1, generation=1, tuple=TUPLE, local_mac="02:00:00:00:00:01",
                  peer_mac="02:00:00:00:00:02", rx_ring_size=4096, rx_start_seq=1,
                  tx_start_seq=2, wire_port=1, rx_window_shift=7)
    values.update(overrides)
    return FlowSpec(**values)


def test_valid_spec() -> None:
    assert spec().rx_ring_size == 4096


@pytest.mark.parametrize("overrides, words", [
    ({"flow_id": 1 << 32}, "flow_id 4294967296 outside"),
    ({"flow_id": -1}, "flow_id -1 outside"),
    ({"generation": 0}, "generation 0 outside"),
    ({"generation": 65536}, "generation 65536 outside"),
    ({"rx_ring_size": 3000}, "power of two"),
    ({"rx_ring_size": 1}, "power of two"),
    ({"rx_start_seq": 1 << 32}, "rx_start_seq .* 32-bit"),
    ({"rx_window_shift": 15}, "rx_window_shift 15 outside"),
    ({"wire_port": 0}, "wire_port 0"),
    ({"wire_port": 511}, "wire_port 511"),
    ({"peer_window": 70000}, "peer_window 70000"),
])
def test_invalid_specs(overrides: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        spec(**overrides)


@pytest.mark.parametrize("args, words", [
    (("10.0.0.1", 0, "10.0.0.2", 1), "local_port 0"),
    (("10.0.0.1", 1, "10.0.0.2", 70000), "peer_port 70000"),
    (("10.0.0.256", 1, "10.0.0.2", 1), "10.0.0.256"),
])
def test_invalid_tuples(args: tuple, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        FlowTuple(*args)
