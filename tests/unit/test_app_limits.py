"""Per-application limits, enforced by the control server with clear errors: listeners
(--max-app-listeners, EMFILE) and connection slots (--max-app-connections, ENOBUFS at connect
time rather than after the handshake)."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from host_lib.control_channel import ControlChannel
from host_lib.shm_layout import Layout
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import P4INFO
from runtime.config import Interface, RuntimeConfig, TcpParams
from runtime.connection_control import ConnectionControl
from runtime.control_server import ControlServer
from runtime.flow_registry import FlowRegistry
from tests.support.fakes import FakeDatapath, FakeNic


def client(path: Path) -> dict[str, int]:
    """Two listeners and two connects succeed; the third of each is refused."""
    errors = {}
    with ControlChannel(str(path)) as channel:
        ctx = channel.create_context()
        channel.listen(ctx, 5001)
        channel.listen(ctx, 5002)
        with pytest.raises(OSError) as refused:
            channel.listen(ctx, 5003)
        errors["listen"] = refused.value.errno
        channel.connect(ctx, "10.0.0.2", 80)
        channel.connect(ctx, "10.0.0.2", 81)
        with pytest.raises(OSError) as refused:
            channel.connect(ctx, "10.0.0.2", 82)
        errors["connect"] = refused.value.errno
    return errors


def test_listeners_and_connection_slots_per_application(tmp_path: Path) -> None:
    async def scenario() -> dict[str, int]:
        tcp = TcpParams(max_app_listeners=2, max_app_connections=2)
        config = RuntimeConfig(interfaces=(Interface(1, "10.0.0.1", "02:00:00:00:00:01"),),
                               tcp=tcp)
        control = ConnectionControl(config, FakeDatapath(), P4Info.from_file(P4INFO),
                                    FlowRegistry(FakeNic()))
        layout = Layout(rx_ring_size=1 << 12, tx_ring_size=1 << 12, max_connections=2,
                        max_contexts=2, queue_depth=16)
        server = ControlServer(tmp_path / "control.sock", control, layout)
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, client, tmp_path / "control.sock")
        finally:
            await server.close()
            await control.shutdown_all()
    errors = asyncio.run(scenario())
    assert errors == {"listen": errno.EMFILE, "connect": errno.ENOBUFS}
