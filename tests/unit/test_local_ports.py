"""Local ports: randomized ephemeral ports (RFC 6056), reservations, TIME_WAIT quarantine on a
fake clock, exhaustion."""

from __future__ import annotations

import errno
import time

import pytest

from runtime.local_ports import LocalPortAllocator, PortInUse

IP = "10.0.0.1"
OTHER_IP = "10.0.0.2"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_defaults_are_linux_ephemeral_range() -> None:
    ports = LocalPortAllocator()
    assert (ports.low, ports.high) == (32768, 60999)
    assert 32768 <= ports.allocate(IP) <= 60999


def test_ephemeral_ports_are_unpredictable() -> None:
    """RFC 6056: neither sequential nor the same from one run to the next."""
    first = [LocalPortAllocator().allocate(IP) for _ in range(20)]
    ports = LocalPortAllocator()
    run = [ports.allocate(IP) for _ in range(20)]
    assert run != list(range(run[0], run[0] + 20))  # not sequential
    assert len(set(first)) > 1                      # not the same first port every run


def test_every_port_once_and_per_ip_pools() -> None:
    ports = LocalPortAllocator(1000, 1003)
    assert sorted(ports.allocate(IP) for _ in range(4)) == [1000, 1001, 1002, 1003]
    assert 1000 <= ports.allocate(OTHER_IP) <= 1003  # each local address has its own ports
    assert ports.in_use(IP) == 4 and ports.in_use(OTHER_IP) == 1 and ports.in_use("10.9.9.9") == 0


def test_exhaustion_is_eaddrnotavail() -> None:
    ports = LocalPortAllocator(1000, 1001)
    ports.allocate(IP)
    ports.allocate(IP)
    with pytest.raises(OSError, match="no free local port on 10.0.0.1 in 1000..1001") as info:
        ports.allocate(IP)
    assert info.value.errno == errno.EADDRNOTAVAIL


def test_released_ports_come_back() -> None:
    ports = LocalPortAllocator(1000, 1003)
    held = [ports.allocate(IP) for _ in range(4)]
    ports.release(IP, held[1])
    ports.release(IP, held[0])
    assert sorted(ports.allocate(IP) for _ in range(2)) == sorted(held[:2])


def test_reserve_conflicts_with_eaddrinuse() -> None:
    ports = LocalPortAllocator(1000, 1003)
    ports.reserve(IP, 80)  # outside the ephemeral range: fine
    with pytest.raises(PortInUse, match="10.0.0.1:80 already in use") as info:
        ports.reserve(IP, 80)
    assert info.value.errno == errno.EADDRINUSE
    assert isinstance(info.value, OSError)
    port = ports.allocate(IP)
    with pytest.raises(PortInUse):
        ports.reserve(IP, port)
    ports.reserve(OTHER_IP, 80)
    with pytest.raises(ValueError):
        ports.reserve(IP, 0)


def test_reserved_ephemeral_port_is_skipped_by_allocate() -> None:
    ports = LocalPortAllocator(1000, 1003)
    ports.reserve(IP, 1001)
    assert sorted(ports.allocate(IP) for _ in range(3)) == [1000, 1002, 1003]
    ports.release(IP, 1000)
    ports.reserve(IP, 1000)
    with pytest.raises(OSError) as info:
        ports.allocate(IP)
    assert info.value.errno == errno.EADDRNOTAVAIL
    ports.release(IP, 1000)
    ports.reserve(IP, 1000)
    ports.release(IP, 1000)
    assert ports.allocate(IP) == 1000  # exactly once, despite release/reserve/release
    with pytest.raises(OSError):
        ports.allocate(IP)


def test_quarantine_holds_port_until_deadline(clock: FakeClock) -> None:
    ports = LocalPortAllocator(1000, 1000, clock=clock)
    assert ports.allocate(IP) == 1000
    ports.release(IP, 1000, quarantine_s=2.0)
    assert ports.quarantined == 1 and ports.in_use(IP) == 0
    assert not ports.is_free(IP, 1000)
    with pytest.raises(OSError, match="1 ports in TIME_WAIT quarantine") as info:
        ports.allocate(IP)
    assert info.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(PortInUse, match="TIME_WAIT"):
        ports.reserve(IP, 1000)
    clock.now += 1.999
    assert ports.expire() == 0
    clock.now += 0.001
    assert ports.allocate(IP) == 1000  # expired lazily on allocate
    assert ports.quarantined == 0


def test_expire_returns_ports_in_deadline_order(clock: FakeClock) -> None:
    ports = LocalPortAllocator(1000, 1003, clock=clock)
    for _ in range(4):
        ports.allocate(IP)
    ports.release(IP, 1002, quarantine_s=5.0)
    clock.now += 1
    ports.release(IP, 1000, quarantine_s=5.0)
    ports.release(IP, 1003, quarantine_s=1.0)  # a shorter quarantine ends first
    ports.release(IP, 1001)  # no quarantine: free at once
    assert ports.allocate(IP) == 1001
    clock.now += 1
    assert ports.expire() == 1  # 1003
    clock.now += 3
    assert ports.expire() == 1  # 1002 (deadline 105)
    assert ports.quarantined == 1
    clock.now += 1
    assert ports.expire() == 1  # 1000 (deadline 106)
    assert sorted(ports.allocate(IP) for _ in range(3)) == [1000, 1002, 1003]


def test_quarantined_reserved_port_returns_to_reservable(clock: FakeClock) -> None:
    ports = LocalPortAllocator(1000, 1001, clock=clock)
    ports.reserve(IP, 80)
    ports.release(IP, 80, quarantine_s=1.0)
    with pytest.raises(PortInUse):
        ports.reserve(IP, 80)
    clock.now += 1
    ports.reserve(IP, 80)
    # Ports outside the range never enter the ephemeral pool.
    assert sorted(ports.allocate(IP) for _ in range(2)) == [1000, 1001]
    with pytest.raises(OSError):
        ports.allocate(IP)


def test_bad_releases_rejected() -> None:
    ports = LocalPortAllocator(1000, 1003)
    with pytest.raises(ValueError, match="not in use"):
        ports.release(IP, 1000)
    port = ports.allocate(IP)
    ports.release(IP, port, quarantine_s=10)
    with pytest.raises(ValueError, match="double release"):
        ports.release(IP, port)
    with pytest.raises(ValueError, match="negative"):
        ports.release(IP, ports.allocate(IP), quarantine_s=-1)


def test_bad_arguments_rejected() -> None:
    with pytest.raises(ValueError):
        LocalPortAllocator(0, 10)
    with pytest.raises(ValueError):
        LocalPortAllocator(2000, 1000)
    with pytest.raises(ValueError):
        LocalPortAllocator().allocate("not-an-ip")


def test_100k_cycles_with_quarantine_are_constant_time(clock: FakeClock) -> None:
    ports = LocalPortAllocator(clock=clock)
    held = [ports.allocate(IP) for _ in range(1000)]
    start = time.perf_counter()
    for i in range(100_000):
        clock.now += 0.001
        ports.release(IP, held[i % 1000], quarantine_s=1.0)  # about 1000 ports in quarantine
        held[i % 1000] = ports.allocate(IP)
    assert time.perf_counter() - start < 2.0
    assert ports.in_use(IP) == 1000
    assert len(set(held)) == 1000
    assert ports.quarantined <= 1001
