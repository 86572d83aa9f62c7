"""asyncio under the launcher: the standard selector event loop, which needs nothing else on
p4tas sockets (their fileno() is exact, host_lib.doorbell), except sendfile: os.sendfile cannot
write into p4tas's rings, so a p4tas socket's "native" sendfile copies with sock_sendall (with
the transport paused, as asyncio's native path has it). Declining instead would send the file
through asyncio's fallback protocol, which resumes a protocol it never paused when its last
write leaves the buffer above the high-water mark (aiohttp's FileResponse asserts on that)."""

from __future__ import annotations

import asyncio
from typing import Any

from host_lib.run.hybrid_socket import HybridSocket


class P4tasEventLoop(asyncio.SelectorEventLoop):
    """SelectorEventLoop whose native sendfile copies through send() on p4tas sockets."""

    async def _sock_sendfile_native(self, sock: Any, file: Any, offset: int,
                                    count: int | None) -> int:
        if isinstance(sock, HybridSocket) and sock.on_p4tas:
            return await self._sock_sendfile_fallback(sock, file, offset, count)
        return await super()._sock_sendfile_native(sock, file, offset, count)


class P4tasEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy with P4tasEventLoop."""

    _loop_factory = P4tasEventLoop
