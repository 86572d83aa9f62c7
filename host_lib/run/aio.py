"""asyncio under the launcher: the standard selector event loop, which needs nothing else on
p4tas sockets (their fileno() is exact, host_lib.doorbell), except that sendfile() must copy
through send(): os.sendfile cannot write into p4tas's rings."""

from __future__ import annotations

import asyncio
from typing import Any

from host_lib.run.hybrid_socket import HybridSocket


class P4tasEventLoop(asyncio.SelectorEventLoop):
    """SelectorEventLoop whose native sendfile declines p4tas sockets (asyncio falls back)."""

    async def _sock_sendfile_native(self, sock: Any, file: Any, offset: int,
                                    count: int | None) -> int:
        if isinstance(sock, HybridSocket) and sock.on_p4tas:
            raise asyncio.SendfileNotAvailableError("p4tas sockets send files through send()")
        return await super()._sock_sendfile_native(sock, file, offset, count)


class P4tasEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy with P4tasEventLoop."""

    _loop_factory = P4tasEventLoop
