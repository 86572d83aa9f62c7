"""Packet-level checks of the PNA program (p4src/build/pna/p4tas.spec) on p4tas-swx, without
the P4Runtime server: the runner is driven over its control socket and scapy talks to veths.
Needs root and DPDK (the runner and pipeline library come from dpdk_target.toolchain).

    python -m tests.support.pna_runner_checks basic   # data -> RX_DATA + ACK, SYN -> PacketIn,
                                                     # TX_DATA -> segment, SYN cookies
    python -m tests.support.pna_runner_checks diff [N] [SEED]
        # softnic's pipeline (the v1model program, in-process) and the runner fed the same
        # seeded traffic (tests/support/differential_traffic.py) with the same clock; inputs
        # whose difference the architecture forces (docs/ARCHITECTURE.md, "PNA / DPDK
        # target") are counted and left out; every other output must be byte-identical.

Veths pnw1/pnw1p and pnw2/pnw2p (wire ports 1, 2) and pnh/pnhp (host port 254); the loopback
port 253 is the runner's. The target's set-up is done here as the dpdk target does it: the
mirror sessions and the output_port entries of nic_contract.constants."""

from __future__ import annotations

import collections
import random
import select
import socket
import subprocess
import sys
import time

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from dpdk_target import toolchain
from nic_contract.checksum import internet_checksum
from nic_contract.constants import (ACK_LOOPBACK_PORT, CPU_PORT, HOST_PORT, ack_clone_sessions,
                                    pna_mirror_sessions, pna_output_ports)
from nic_contract.nic_host_header import (HEADER_BYTES, ChannelFlags, Opcode, decode,
                                          payload_sum, tx_data)
from nic_contract.pipeline import BMV2_JSON, P4INFO
from nic_contract.syn_cookie import make_cookie

WIRE = {1: ("pnw1", "pnw1p"), 2: ("pnw2", "pnw2p")}
HOST = ("pnh", "pnhp")
LOCAL_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _ip(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big")


def _sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True)


def make_veths() -> None:
    for ours, peer in [*WIRE.values(), HOST]:
        subprocess.run(f"ip link del {ours} 2>/dev/null", shell=True, check=False)
        _sh(f"ip link add {ours} type veth peer name {peer}")
        for dev in (ours, peer):
            _sh(f"sysctl -qw net.ipv6.conf.{dev}.disable_ipv6=1")
            _sh(f"ip link set {dev} mtu 9000 up")


def delete_veths() -> None:
    for ours, _ in [*WIRE.values(), HOST]:
        subprocess.run(f"ip link del {ours} 2>/dev/null", shell=True, check=False)


def _raw(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


class Pipeline:
    """p4tas-swx on the committed spec, set up as the dpdk target does, with a fixed clock."""

    def __init__(self) -> None:
        binary, library = toolchain.runner(), toolchain.pipeline_library()
        control, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.cpu, cpu_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        cpu_child.setblocking(False)   # DPDK's fd port reads it: it must never block
        args = [str(binary), "run", "--lib", str(library), "--control",
                str(control_child.fileno()), "--cpu", f"{CPU_PORT}:{cpu_child.fileno()}",
                "--loopback", str(ACK_LOOPBACK_PORT), "-i", f"{HOST_PORT}@{HOST[0]}"]
        for port, (ours, _) in WIRE.items():
            args += ["-i", f"{port}@{ours}"]
        self.process = subprocess.Popen(args, pass_fds=(control_child.fileno(),
                                                        cpu_child.fileno()),
                                        stdout=subprocess.PIPE, text=True)
        control_child.close()
        cpu_child.close()
        assert self.process.stdout.readline().startswith("p4tas-swx: running")
        self.control = control.makefile("rw")
        self.ports = {port: _raw(peer) for port, (_, peer) in WIRE.items()}
        self.ports[HOST_PORT] = _raw(HOST[1])
        for session, (port, truncate) in pna_mirror_sessions().items():
            self.cmd(f"mirror {session} {port} {truncate}")
        for port in pna_output_ports(list(WIRE)):
            self.cmd(f"table_add forwarding_output_port match {port} "
                     f"action forwarding_send_0 port {port}")
        self.cmd("commit")
        self.set_clock(5_000_000)

    def cmd(self, line: str) -> str:
        self.control.write(line + "\n")
        self.control.flush()
        reply = self.control.readline().strip()
        if not reply.startswith("ok"):
            raise RuntimeError(f"{line} -> {reply}")
        return reply

    def set_clock(self, now_us: int) -> None:
        self.cmd(f"reg_write clock_us 0 {now_us}")

    def flow(self, spec) -> None:
        t = spec.tuple
        mac = lambda m: "0x" + m.replace(":", "")
        self.cmd(f"table_add flow_state_flow_state match {spec.flow_id} action "
                 f"flow_state_set_flow_state_0 generation {spec.generation} "
                 f"local_mac {mac(spec.local_mac)} peer_mac {mac(spec.peer_mac)} "
                 f"local_ip {_ip(t.local_ip)} peer_ip {_ip(t.peer_ip)} local_port {t.local_port} "
                 f"peer_port {t.peer_port} wire_port {spec.wire_port} "
                 f"rx_ring_size {spec.rx_ring_size} rx_start_seq {spec.rx_start_seq} "
                 f"tx_start_seq {spec.tx_start_seq} rx_window_shift {spec.rx_window_shift} "
                 f"timestamps {int(spec.timestamps)} peer_window {spec.peer_window} "
                 f"ecn {int(spec.ecn)} sack {int(spec.sack)} "
                 f"peer_window_shift {spec.peer_window_shift}")
        self.cmd(f"table_add flow_lookup_flow_lookup match {_ip(t.peer_ip)} {_ip(t.local_ip)} "
                 f"{t.peer_port} {t.local_port} action flow_lookup_set_flow_id_0 "
                 f"flow_id {spec.flow_id}")
        self.cmd("commit")

    def send(self, port: int, frame: bytes) -> None:
        if port == CPU_PORT:
            self.cpu.send(frame)
        else:
            self.ports[port].send(frame)

    def outputs(self, quiet: float = 0.004, wait: float = 0.05) -> list[tuple[int, bytes]]:
        """What came out since the last call: (port, frame), PacketIns on CPU_PORT."""
        socks = {s: p for p, s in self.ports.items()} | {self.cpu: CPU_PORT}
        out, start = [], time.time()
        while True:
            ready, _, _ = select.select(list(socks), [], [], quiet)
            if not ready:
                if out or time.time() - start > wait:
                    return out
                continue
            for sock in ready:
                try:
                    out.append((socks[sock], sock.recv(65536)))
                except BlockingIOError:
                    pass

    def close(self) -> None:
        self.control.close()
        self.process.terminate()
        self.process.wait()


def checksums_ok(frame: bytes) -> bool:
    ip = Ether(frame)[IP]
    header, segment = bytes(ip)[:20], bytes(ip)[20:ip.len]
    pseudo = header[12:20] + b"\0\x06" + len(segment).to_bytes(2, "big")
    return internet_checksum(header) == 0 and internet_checksum(pseudo + segment) == 0


def basic() -> None:
    from ptf_tests.lib.packets import flow_spec  # noqa: PLC0415 (test helpers)
    pipe = Pipeline()
    try:
        spec = flow_spec(7, 3)
        pipe.flow(spec)
        seg = (Ether(src=PEER_MAC, dst=LOCAL_MAC) / IP(src="10.0.0.2", dst="10.0.0.1")
               / TCP(sport=40000, dport=5001, seq=1000, ack=5000, flags="PA", window=1000,
                     options=[("NOP", None), ("NOP", None), ("Timestamp", (777, 0))])
               / Raw(b"hello world"))
        pipe.send(1, bytes(seg))
        out = dict(pipe.outputs())
        rx = decode(out[HOST_PORT])
        assert (rx.opcode, rx.offset, rx.payload) == (Opcode.RX_DATA, 0, b"hello world"), rx
        ack = Ether(out[1])[TCP]
        assert (ack.flags, ack.seq, ack.ack) == ("A", 5000, 1011) and checksums_ok(out[1]), ack
        assert dict(ack.options)["Timestamp"] == (5_000_000 >> 10, 777)
        print("data segment -> RX_DATA and ACK (seq 5000, ack 1011, TS echoed), checksums ok")

        syn = (Ether(src=PEER_MAC, dst=LOCAL_MAC) / IP(src="10.0.0.2", dst="10.0.0.1")
               / TCP(sport=40001, dport=5001, seq=1, flags="S", options=[("MSS", 1460)]))
        pipe.send(1, bytes(syn))
        (port, packet_in), = pipe.outputs()
        assert port == CPU_PORT and packet_in[2] == 3 and packet_in[7:] == bytes(syn)
        assert int.from_bytes(packet_in[0:2], "big") >> 7 == 1
        print("SYN -> PacketIn (port 1, reason SYN, the SYN unchanged)")

        payload = b"0123456789abcdefX"   # odd length
        pipe.send(HOST_PORT, tx_data(7, 3, ChannelFlags.PSH, 0, 0, payload).encode())
        (port, frame), = pipe.outputs()
        segment = Ether(frame)[TCP]
        assert port == 1 and bytes(segment.payload) == payload and segment.seq == 5000
        assert checksums_ok(frame)
        print("TX_DATA -> segment with the host's payload sum: TCP checksum ok")

        k0, k1, epoch = 0x01234567, 0x89ABCDEF, 0x1234
        pipe.cmd(f"table_add verdict_syn_cookie_syn_cookie_listeners match {_ip('10.0.0.1')} "
                 f"8080 action verdict_syn_cookie_answer_with_cookie_0 k0 {k0} k1 {k1} "
                 f"epoch {epoch} local_mss 1460 window 65535")
        pipe.cmd("commit")
        pipe.cmd("meter_set verdict_punt_rate 3 1 1 1 1")
        cookies = 0
        for i in range(6):
            syn = (Ether(src=PEER_MAC, dst=LOCAL_MAC) / IP(src="10.0.0.2", dst="10.0.0.1")
                   / TCP(sport=41000 + i, dport=8080, seq=1000 + i, flags="S",
                         options=[("MSS", 1300), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]))
            pipe.send(1, bytes(syn))
            for port, frame in pipe.outputs():
                if port == 1:
                    synack = Ether(frame)[TCP]
                    assert synack.seq == make_cookie(k0, k1, _ip("10.0.0.1"), _ip("10.0.0.2"),
                                                     8080, 41000 + i, 1000 + i, epoch, 1300)
                    assert len(frame) == 58 and checksums_ok(frame)
                    cookies += 1
        assert cookies and int(pipe.cmd("reg_read verdict_syn_cookie_syn_cookies_sent 0")
                               .split()[1]) == cookies
        print(f"SYNs beyond the punt meter -> {cookies} SYN-ACKs with nic_contract's cookie")
    finally:
        pipe.close()


def forced(frame: bytes, host: bool) -> tuple[str | None, bytes]:
    """Why this input's outputs differ by architecture (None: comparable), and the input to
    send (a TX_DATA longer than `length` is cut to it)."""
    if host:
        if len(frame) < HEADER_BYTES:
            return "truncated host header", frame
        if frame[14] in (Opcode.TX_ACKED, Opcode.RETRANSMIT, Opcode.SACK):
            # Punted as BAD_HOST_MESSAGE on both; v1model's TrimHostFrames then also cuts
            # the PacketIn to 38 bytes (it checks the opcode, not the port).
            return "NIC->host opcode from the host (v1model cuts its PacketIn)", frame
        length = int.from_bytes(frame[26:28], "big")
        if frame[14] == Opcode.TX_DATA and len(frame) != HEADER_BYTES + length:
            return None, frame[:HEADER_BYTES + length]
        return None, frame
    if len(frame) < 14 + 40:
        return "truncated headers", frame
    try:
        pkt = Ether(frame)
    except Exception:   # noqa: BLE001 (scapy raises anything on a cut frame)
        return "truncated headers", frame
    if IP not in pkt or TCP not in pkt:
        return None, frame
    ip = pkt[IP]
    if len(frame) < 14 + ip.len:
        return "frame shorter than its IPv4 length", frame
    segment = bytes(ip)[20:ip.len]
    pseudo = bytes(ip)[12:20] + b"\0\x06" + len(segment).to_bytes(2, "big")
    if ip.ihl == 5 and ip.frag == 0 and internet_checksum(pseudo + segment) != 0:
        return "bad TCP checksum", frame
    return None, frame


def diff(count: int, seed: int) -> int:
    from softnic.p4runtime.program import Program  # noqa: PLC0415
    from softnic.p4runtime.server import load_p4info  # noqa: PLC0415
    from softnic.pipeline.p4tas import P4tasPipeline  # noqa: PLC0415
    from tests.support.differential_traffic import Traffic, make_flows  # noqa: PLC0415

    rng = random.Random(seed)
    flows = make_flows(rng, 6, 100)
    traffic = Traffic(seed, flows)
    program = Program(load_p4info(P4INFO))
    state = program.new_state(program.default_actions(BMV2_JSON.read_bytes()))
    state.clone_sessions.update(ack_clone_sessions(list(WIRE)))
    soft = P4tasPipeline(state)
    mac = lambda m: int(m.replace(":", ""), 16)
    for f in flows:
        s, t = f.spec, f.spec.tuple
        state.tables["P4tasIngress.flow_state.flow_state"].entries[(s.flow_id,)] = (
            "P4tasIngress.flow_state.set_flow_state",
            (s.generation, mac(s.local_mac), mac(s.peer_mac), _ip(t.local_ip), _ip(t.peer_ip),
             t.local_port, t.peer_port, s.wire_port, s.rx_ring_size, s.rx_start_seq,
             s.tx_start_seq, s.rx_window_shift, int(s.timestamps), s.peer_window, int(s.ecn),
             int(s.sack), s.peer_window_shift))
        state.tables["P4tasIngress.flow_lookup.flow_lookup"].entries[
            (_ip(t.peer_ip), _ip(t.local_ip), t.peer_port, t.local_port)] = (
            "P4tasIngress.flow_lookup.set_flow_id", (s.flow_id,))
    pipe = Pipeline()
    skipped, mismatches, compared = collections.Counter(), collections.Counter(), 0
    try:
        for f in flows:
            pipe.flow(f.spec)
        now = 10_000_000
        for _ in range(count):
            item = traffic.next_packet()
            now += rng.choice([1, 10, 1000])
            pipe.set_clock(now)
            if item[0] == "packet_out":
                _, port, frame, reinject = item
                why = forced(frame, False)[0] if reinject else None
                frame = ((port << 7) | (reinject << 6)).to_bytes(2, "big") + frame
                port = CPU_PORT
            else:
                port, frame = item
                why, frame = forced(frame, port == HOST_PORT)
            if why:
                skipped[why] += 1
                continue
            try:
                pipe.send(port, frame)
            except OSError:
                skipped["not sendable on a veth"] += 1
                continue
            expected = sorted((p, bytes(b)) for p, b in soft.process(port, frame, now))
            got = sorted(pipe.outputs())
            compared += 1
            if expected != got:
                mismatches[(tuple(p for p, _ in expected), tuple(p for p, _ in got))] += 1
                if sum(mismatches.values()) <= 5:
                    print("mismatch:", item[:2] if item[0] != "packet_out" else item[:2],
                          [(p, b.hex()) for p, b in expected], [(p, b.hex()) for p, b in got])
    finally:
        pipe.close()
    print(f"{count} inputs, {compared} compared, left out (architecture-forced): "
          f"{dict(skipped)}; mismatching: {sum(mismatches.values())} {dict(mismatches)}")
    return 1 if mismatches else 0


def main(argv: list[str]) -> int:
    make_veths()
    try:
        if argv[:1] == ["basic"]:
            basic()
            return 0
        if argv[:1] == ["diff"]:
            return diff(int(argv[1]) if len(argv) > 1 else 2000,
                        int(argv[2]) if len(argv) > 2 else 7)
        print(__doc__)
        return 2
    finally:
        delete_veths()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
