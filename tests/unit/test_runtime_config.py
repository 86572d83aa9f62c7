"""The runtime daemon's command line and configuration, and the pure TCP helpers it uses."""

import asyncio
import grp
from pathlib import Path

import pytest

from runtime.config import Interface
from runtime.tcp_seq import seq_add, seq_in_window, window_shift_for
from runtime.control_server import ControlServer
from runtime.daemon import parse_args


def test_interface_parse() -> None:
    iface = Interface.parse("1=10.99.1.1/24,02:00:0A:63:01:01")
    assert (iface.port, iface.ip, iface.mac, iface.prefix_len) == (1, "10.99.1.1",
                                                                   "02:00:0a:63:01:01", 24)
    assert str(iface.network) == "10.99.1.0/24"


@pytest.mark.parametrize("text", ["1=10.99.1.1", "x=10.0.0.1,02:00:00:00:00:01",
                                  "1=10.0.0.300,02:00:00:00:00:01", "1=10.0.0.1,02:00"])
def test_bad_interfaces(text: str) -> None:
    with pytest.raises(ValueError, match="interface|MAC"):
        Interface.parse(text)


def test_args_and_routes(tmp_path: Path) -> None:
    config, level = parse_args(["--interface", "1=10.99.1.1/24,02:00:0a:63:01:01",
                                "--interface", "2=10.99.2.1/24,02:00:0a:63:02:01",
                                "--rx-ring-size", "65536", "--log-level", "DEBUG"])
    assert level == "DEBUG" and config.tcp.rx_ring_size == 65536
    assert config.routing.lookup("10.99.2.7").interface.port == 2
    assert config.routing.lookup("192.0.2.1") is None
    assert config.interface_for_port(1).ip == "10.99.1.1"


@pytest.mark.parametrize("argv, words", [
    ([], "no interfaces"),
    (["--interface", "1=10.0.0.1,02:00:00:00:00:01", "--rx-ring-size", "1000"], "power of two"),
])
def test_bad_args(argv: list[str], words: str, capsys) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("ring, shift", [(1024, 0), (65535, 0), (65536, 1), (1 << 18, 3),
                                         (1 << 30, 14)])
def test_window_shift(ring: int, shift: int) -> None:
    assert window_shift_for(ring) == shift


def test_sequence_arithmetic_wraps() -> None:
    assert seq_add(0xFFFFFFFF, 2) == 1
    assert seq_in_window(5, 0xFFFFFFF0, 100)
    assert not seq_in_window(0xFFFFFFEF, 0xFFFFFFF0, 100)


def test_allowed_congestion_controls() -> None:
    base = ["--interface", "1=10.0.0.1/24,02:00:00:00:00:01"]
    config, _ = parse_args(base)
    assert config.allowed_congestion == ("dctcp", "timely")  # "none" only if the operator says
    config, _ = parse_args(base + ["--allow-congestion", "dctcp,none"])
    assert config.allowed_congestion == ("dctcp", "none")
    with pytest.raises(SystemExit):
        parse_args(base + ["--allow-congestion", "cubic"])


def test_control_group_must_exist() -> None:
    base = ["--interface", "1=10.0.0.1/24,02:00:00:00:00:01"]
    assert parse_args(base + ["--control-group", "nogroup"])[0].control_group == "nogroup"
    with pytest.raises(SystemExit):
        parse_args(base + ["--control-group", "no-such-group-p4tas"])


@pytest.mark.parametrize("group, mode", [(None, 0o600), ("nogroup", 0o660)])
def test_control_socket_mode(tmp_path, group, mode) -> None:
    """Root and the daemon's user only, or also the members of --control-group."""
    async def scenario() -> None:
        server = ControlServer(tmp_path / "control.sock", None, None, group)
        await server.start()
        info = (tmp_path / "control.sock").stat()
        assert info.st_mode & 0o777 == mode
        if group is not None:
            assert info.st_gid == grp.getgrnam(group).gr_gid
        await server.close()
    asyncio.run(scenario())


def test_syns_have_a_punt_budget_of_their_own() -> None:
    """--syn-punt-rate meters SYNs (beyond it the fast path answers with cookies), --punt-rate
    every other reason; they and --syn-flood-punt-rate parse from the command line."""
    from nic_contract.constants import PacketInReason
    from nic_contract.p4rt.p4info import P4Info
    from nic_contract.pipeline import P4INFO
    from runtime.daemon import limit_punts

    class Client:
        p4info = P4Info.from_file(P4INFO)
        written: list = []

        def modify(self, entries) -> None:
            self.written.extend(entries)

    client = Client()
    limit_punts(client, 2500, 500)
    rates = {e.index.index: e.config.cir for e in client.written}
    assert rates[PacketInReason.SYN] == 500
    assert {r: rates[r] for r in PacketInReason if r is not PacketInReason.SYN} == \
        {r: 2500 for r in PacketInReason if r is not PacketInReason.SYN}
    config, _ = parse_args(["--interface", "1=10.99.1.1/24,02:00:0a:63:01:01",
                            "--syn-punt-rate", "100", "--punt-rate", "7",
                            "--syn-flood-punt-rate", "9"])
    assert (config.syn_punt_rate_pps, config.punt_rate_pps) == (100, 7)
    assert config.syn_flood_punt_rate_pps == 9
