"""Unit tests of the P4Runtime helpers that need no switch (nic_contract.p4rt: p4info, messages,
errors, and the client against a fake server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, text_format

from nic_contract.p4rt import client as p4client
from nic_contract.p4rt import errors as p4errors
from nic_contract.p4rt import messages as p4messages
from nic_contract.p4rt.p4info import P4Info, decode, encode
from nic_contract.p4rt.proto import code_pb2, p4info_pb2, p4runtime_pb2, status_pb2

MT = p4info_pb2.MatchField.MatchType
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- fixture P4Info

def _preamble(msg, obj_id: int, name: str) -> None:
    msg.preamble.id = obj_id
    msg.preamble.name = name
    msg.preamble.alias = name.rsplit(".", 1)[-1]


def _table(info, obj_id, name, fields, actions, size=1024):
    tab = info.tables.add(size=size)
    _preamble(tab, obj_id, name)
    for i, (fname, width, kind) in enumerate(fields, start=1):
        tab.match_fields.add(id=i, name=fname, bitwidth=width, match_type=kind)
    for action_id in actions:
        tab.action_refs.add(id=action_id)
    return tab


def _action(info, obj_id, name, params=()):
    act = info.actions.add()
    _preamble(act, obj_id, name)
    for i, (pname, width) in enumerate(params, start=1):
        act.params.add(id=i, name=pname, bitwidth=width)
    return act


def build_p4info() -> p4info_pb2.P4Info:
    info = p4info_pb2.P4Info()
    _action(info, 0x01000001, "NoAction")
    _action(info, 0x01000002, "MyIngress.set_flow",
            [("flow_id", 20), ("dst_mac", 48), ("next_ip", 32)])
    _action(info, 0x01000003, "MyIngress.drop")
    _action(info, 0x01000004, "MyEgress.drop")
    _action(info, 0x01000005, "MyIngress.to_port", [("port", 9)])
    _table(info, 0x02000001, "MyIngress.flow_lookup",
           [("hdr.ipv4.srcAddr", 32, MT.EXACT), ("hdr.tcp.srcPort", 16, MT.EXACT)],
           [0x01000002, 0x01000003, 0x01000001])
    _table(info, 0x02000002, "MyIngress.routes",
           [("hdr.ipv4.dstAddr", 32, MT.LPM)], [0x01000005, 0x01000003])
    acl = _table(info, 0x02000003, "MyIngress.acl",
                 [("hdr.ethernet.dstAddr", 48, MT.TERNARY), ("hdr.ipv4.protocol", 8, MT.OPTIONAL),
                  ("hdr.tcp.dstPort", 16, MT.RANGE)],
                 [0x01000005, 0x01000003, 0x01000001])
    acl.action_refs[2].scope = p4info_pb2.ActionRef.DEFAULT_ONLY
    _table(info, 0x02000004, "MyEgress.stats", [("meta.flow_id", 20, MT.EXACT)], [0x01000001])
    ctr = info.counters.add(size=1024)
    _preamble(ctr, 0x12000001, "MyIngress.rx_pkts")
    ctr.spec.unit = p4info_pb2.CounterSpec.BOTH
    mtr = info.meters.add(size=64)
    _preamble(mtr, 0x14000001, "MyIngress.flow_rate")
    reg = info.registers.add(size=16)
    _preamble(reg, 0x16000001, "MyIngress.rcv_next")
    pin = info.controller_packet_metadata.add()
    _preamble(pin, 0x40000001, "packet_in")
    pin.metadata.add(id=1, name="ingress_port", bitwidth=9)
    pin.metadata.add(id=2, name="reason", bitwidth=8)
    pout = info.controller_packet_metadata.add()
    _preamble(pout, 0x40000002, "packet_out")
    pout.metadata.add(id=1, name="egress_port", bitwidth=9)
    pout.metadata.add(id=2, name="_pad", bitwidth=7)
    return info


@pytest.fixture(scope="module")
def p4i() -> P4Info:
    return P4Info(build_p4info())


# --------------------------------------------------------------------------- encode

@pytest.mark.parametrize("value, width, expected", [
    (0, 1, b"\x00"),
    (0, 48, b"\x00"),
    (1, 9, b"\x01"),
    (255, 8, b"\xff"),
    (256, 9, b"\x01\x00"),
    (511, 9, b"\x01\xff"),
    (0x0A000001, 32, b"\x0a\x00\x00\x01"),
    (0x00FF, 16, b"\xff"),
    (2**128 - 1, 128, b"\xff" * 16),
    (b"\x00\x00\x01\x02", 16, b"\x01\x02"),
    (b"\x00\x00", 16, b"\x00"),
    ("aa:bb:cc:dd:ee:ff", 48, bytes.fromhex("aabbccddeeff")),
    ("00:00:00:00:00:01", 48, b"\x01"),
    ("0:1:2:3:4:5", 48, bytes.fromhex("0102030405")),
    ("10.0.0.1", 32, b"\x0a\x00\x00\x01"),
    ("0.0.0.0", 32, b"\x00"),
    ("0.0.1.0", 32, b"\x01\x00"),
    ("255.255.255.255", 32, b"\xff\xff\xff\xff"),
    ("0x1f", 8, b"\x1f"),
    ("300", 9, b"\x01\x2c"),
])
def test_encode_canonical(value, width, expected):
    assert encode(value, width) == expected


@pytest.mark.parametrize("value, width", [
    (2, 1), (256, 8), (512, 9), (2**32, 32), (b"\x01\x00", 8), ("10.0.0.1", 16),
    ("aa:bb:cc:dd:ee:ff", 32),
])
def test_encode_overflow(value, width):
    with pytest.raises(ValueError) as exc:
        encode(value, width, "hdr.tcp.srcPort")
    text = str(exc.value)
    assert "hdr.tcp.srcPort" in text
    assert repr(value) in text
    assert f"{width} bits" in text


def test_encode_rejects_negative_and_garbage():
    with pytest.raises(ValueError, match="negative"):
        encode(-1, 8)
    with pytest.raises(ValueError, match="not an int, MAC"):
        encode("10.0.0.300", 32, "dst")
    with pytest.raises(TypeError):
        encode(1.5, 8)  # type: ignore[arg-type]


def test_decode_inverts_encode():
    for value, width in [(0, 8), (1, 9), (0xDEADBEEF, 32), (0xAABBCCDDEEFF, 48)]:
        assert decode(encode(value, width)) == value
    assert decode(b"\x00\x00\x05") == 5


# --------------------------------------------------------------------------- lookups

def test_lookup_full_name_and_suffix(p4i):
    assert p4i.table("MyIngress.flow_lookup").preamble.id == 0x02000001
    assert p4i.table("flow_lookup").preamble.id == 0x02000001
    assert p4i.action("set_flow").preamble.id == 0x01000002
    assert p4i.action("NoAction").preamble.id == 0x01000001
    assert p4i.counter("rx_pkts").preamble.id == 0x12000001
    assert p4i.meter("flow_rate").preamble.id == 0x14000001
    assert p4i.register("MyIngress.rcv_next").preamble.id == 0x16000001
    assert p4i.name_of(0x02000002) == "MyIngress.routes"


def test_lookup_suffix_must_follow_a_dot(p4i):
    with pytest.raises(KeyError):
        p4i.table("lookup")  # "flow_lookup" ends with it, but not after a dot


def test_lookup_ambiguous(p4i):
    with pytest.raises(KeyError) as exc:
        p4i.action("drop")
    text = str(exc.value)
    assert "ambiguous" in text
    assert "MyIngress.drop" in text and "MyEgress.drop" in text
    assert p4i.action("MyEgress.drop").preamble.id == 0x01000004


def test_lookup_unknown_lists_candidates(p4i):
    with pytest.raises(KeyError) as exc:
        p4i.table("flow_lokup")
    assert "MyIngress.flow_lookup" in str(exc.value)
    with pytest.raises(KeyError) as exc:
        p4i.counter("nothing_like_it")
    assert "MyIngress.rx_pkts" in str(exc.value)
    with pytest.raises(KeyError):
        p4i.counter("flow_lookup")  # a table, not a counter


def test_match_field_and_param_lookup(p4i):
    assert p4i.match_field("flow_lookup", "hdr.tcp.srcPort").id == 2
    assert p4i.match_field("flow_lookup", "srcAddr").id == 1
    assert p4i.match_field("flow_lookup", "ipv4.srcAddr").id == 1
    assert p4i.action_param("set_flow", "next_ip").bitwidth == 32
    with pytest.raises(KeyError) as exc:
        p4i.match_field("flow_lookup", "dstAddr")
    assert "hdr.ipv4.srcAddr" in str(exc.value)
    with pytest.raises(KeyError):
        p4i.action_param("set_flow", "flowid")


def test_from_file_text_format(tmp_path):
    path = tmp_path / "x.p4info.txtpb"
    path.write_text(text_format.MessageToString(build_p4info()))
    info = P4Info.from_file(path)
    assert info.table("routes").match_fields[0].name == "hdr.ipv4.dstAddr"
    assert info.proto == build_p4info()


# --------------------------------------------------------------------------- table entries

def _fields(entry) -> dict[int, p4runtime_pb2.FieldMatch]:
    return {fm.field_id: fm for fm in entry.match}


def test_table_entry_exact(p4i):
    entry = p4i.table_entry("flow_lookup", {"srcAddr": "10.0.0.1", "hdr.tcp.srcPort": 80},
                            "set_flow", {"flow_id": 7, "dst_mac": "00:00:00:00:00:02",
                                         "next_ip": "10.0.0.254"})
    assert entry.table_id == 0x02000001
    assert entry.priority == 0
    fields = _fields(entry)
    assert fields[1].exact.value == b"\x0a\x00\x00\x01"
    assert fields[2].exact.value == b"\x50"
    action = entry.action.action
    assert action.action_id == 0x01000002
    assert [(p.param_id, p.value) for p in action.params] == [
        (1, b"\x07"), (2, b"\x02"), (3, b"\x0a\x00\x00\xfe")]


def test_table_entry_param_errors(p4i):
    with pytest.raises(ValueError, match="missing params.*next_ip"):
        p4i.table_entry("flow_lookup", {"srcAddr": 1}, "set_flow", {"flow_id": 1, "dst_mac": 2})
    with pytest.raises(ValueError) as exc:
        p4i.table_entry("flow_lookup", {"srcAddr": 1}, "set_flow",
                        {"flow_id": 1 << 20, "dst_mac": 2, "next_ip": 3})
    assert "MyIngress.set_flow.flow_id" in str(exc.value) and "20 bits" in str(exc.value)
    with pytest.raises(KeyError):
        p4i.table_entry("flow_lookup", {"srcAddr": 1}, "set_flow",
                        {"flow_id": 1, "dst_mac": 2, "next_ip": 3, "bogus": 4})
    with pytest.raises(ValueError, match="not an action of table"):
        p4i.table_entry("flow_lookup", {"srcAddr": 1}, "to_port", {"port": 1})
    with pytest.raises(ValueError, match="hdr.tcp.srcPort.*70000.*16 bits"):
        p4i.table_entry("flow_lookup", {"srcPort": 70000}, "NoAction", {})


def test_table_entry_none_is_omitted_and_key_only(p4i):
    entry = p4i.table_entry("flow_lookup", {"srcAddr": 5, "srcPort": None})
    assert [fm.field_id for fm in entry.match] == [1]
    assert not entry.HasField("action")


def test_table_entry_lpm(p4i):
    entry = p4i.table_entry("routes", {"dstAddr": ("10.1.2.3", 16)}, "to_port", {"port": 3})
    lpm = _fields(entry)[1].lpm
    assert lpm.prefix_len == 16
    assert lpm.value == b"\x0a\x01\x00\x00"  # host bits cleared
    full = p4i.table_entry("routes", {"dstAddr": "10.1.2.3"}, "to_port", {"port": 3})
    assert _fields(full)[1].lpm.prefix_len == 32
    default_route = p4i.table_entry("routes", {"dstAddr": ("0.0.0.0", 0)}, "to_port", {"port": 1})
    assert len(default_route.match) == 0  # /0 is a don't-care: omitted
    with pytest.raises(ValueError, match="prefix length 33"):
        p4i.table_entry("routes", {"dstAddr": ("10.0.0.0", 33)}, "to_port", {"port": 1})


def test_table_entry_ternary_optional_range(p4i):
    entry = p4i.table_entry(
        "acl",
        {"dstAddr": ("aa:bb:cc:dd:ee:ff", "ff:ff:ff:00:00:00"), "protocol": 6,
         "dstPort": (1000, 2000)},
        "MyIngress.drop", {}, priority=10)
    assert entry.priority == 10
    fields = _fields(entry)
    assert fields[1].ternary.value == bytes.fromhex("aabbcc000000")  # masked
    assert fields[1].ternary.mask == bytes.fromhex("ffffff000000")
    assert fields[2].optional.value == b"\x06"
    assert (fields[3].range.low, fields[3].range.high) == (b"\x03\xe8", b"\x07\xd0")
    dont_care = p4i.table_entry("acl", {"dstAddr": (5, 0), "dstPort": (0, 0xFFFF)},
                                "MyIngress.drop", {}, priority=1)
    assert len(dont_care.match) == 0
    with pytest.raises(ValueError, match="priority"):
        p4i.table_entry("acl", {"protocol": 6}, "MyIngress.drop", {})
    with pytest.raises(ValueError, match="priority must be 0"):
        p4i.table_entry("flow_lookup", {"srcAddr": 1}, "NoAction", {}, priority=3)
    with pytest.raises(ValueError, match="cannot be an entry action"):
        p4i.table_entry("acl", {"protocol": 6}, "NoAction", {}, priority=1)


def test_default_entry_and_wildcard(p4i):
    entry = p4i.default_entry("acl", "NoAction")
    assert entry.is_default_action and entry.action.action.action_id == 0x01000001
    wildcard = p4i.table_wildcard("MyEgress.stats")
    assert wildcard == p4runtime_pb2.TableEntry(table_id=0x02000004)


def test_counter_and_meter_entries(p4i):
    one = p4i.counter_entry("rx_pkts", 5)
    assert one.counter_id == 0x12000001 and one.HasField("index") and one.index.index == 5
    zero = p4i.counter_entry("rx_pkts", 0)
    assert zero.HasField("index") and zero.index.index == 0
    wildcard = p4i.counter_entry("rx_pkts")
    assert wildcard.counter_id == 0x12000001 and not wildcard.HasField("index")
    with pytest.raises(ValueError, match="index 1024"):
        p4i.counter_entry("rx_pkts", 1024)
    meter = p4i.meter_entry("flow_rate", 3, cir=1000, cburst=100, pir=2000, pburst=200)
    assert meter.index.index == 3 and meter.config.pir == 2000


# --------------------------------------------------------------------------- packet I/O

def test_packet_metadata(p4i):
    assert p4i.packet_metadata("packet_in") == {"ingress_port": (1, 9), "reason": (2, 8)}
    assert p4i.packet_metadata("packet_out") == {"egress_port": (1, 9), "_pad": (2, 7)}
    with pytest.raises(ValueError):
        p4i.packet_metadata("digest")


def test_packet_out_and_decode_round_trip(p4i):
    out = p4i.packet_out(b"\x01\x02payload", egress_port=300)
    assert out.payload == b"\x01\x02payload"
    assert [(m.metadata_id, m.value) for m in out.metadata] == [(1, b"\x01\x2c"), (2, b"\x00")]
    # A switch echoing the packet back to the CPU sends the same bytes as a PacketIn.
    pin = p4runtime_pb2.PacketIn.FromString(out.SerializeToString())
    pin.metadata[1].value = b"\x03"
    payload, meta = p4i.decode_packet_in(pin)
    assert payload == b"\x01\x02payload"
    assert meta == {"ingress_port": 300, "reason": 3}
    with pytest.raises(ValueError, match="egress_port"):
        p4i.packet_out(b"", egress_port=512)
    with pytest.raises(KeyError, match="ingress_port"):
        p4i.packet_out(b"", ingress_port=1)


# --------------------------------------------------------------------------- client helpers

def _pipeline_files(tmp_path: Path, p4info_text: str, json_text: str) -> tuple[Path, Path]:
    info, js = tmp_path / "p.p4info.txtpb", tmp_path / "p.json"
    info.write_text(p4info_text)
    js.write_text(json_text)
    return info, js


def test_default_cookie_is_stable(tmp_path):
    info, js = _pipeline_files(tmp_path, "pkg_info {}\n", '{"program": "x"}')
    cookie = p4messages.default_cookie(info, js)
    assert 0 <= cookie < 2**64
    assert cookie == p4messages.default_cookie(str(info), str(js))
    # Same in another interpreter with a different hash seed (no use of hash()).
    code = ("import sys; from nic_contract.p4rt.messages import default_cookie; "
            "print(default_cookie(sys.argv[1], sys.argv[2]))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code, str(info), str(js)], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert int(out) == cookie
    # Any change to either file, or moving bytes between them, changes the cookie.
    js.write_text('{"program": "y"}')
    assert p4messages.default_cookie(info, js) != cookie
    info2, js2 = _pipeline_files(tmp_path, "pkg_info {}\n{", '"program": "x"}')
    assert p4messages.default_cookie(info2, js2) != cookie


def test_to_entity_and_updates(p4i):
    te = p4i.table_entry("flow_lookup", {"srcAddr": 1, "srcPort": 2}, "NoAction", {})
    ce = p4i.counter_entry("rx_pkts", 1)
    pre = p4messages.clone_session_entry(5, 7)
    ents = [p4messages.to_entity(x) for x in (te, ce, pre)]
    assert [e.WhichOneof("entity") for e in ents] == [
        "table_entry", "counter_entry", "packet_replication_engine_entry"]
    assert p4messages.to_entity(ents[0]) is ents[0]
    with pytest.raises(TypeError):
        p4messages.to_entity("table")
    ups = p4messages.updates_of(p4runtime_pb2.Update.DELETE, [te])
    assert ups[0].type == p4runtime_pb2.Update.DELETE and ups[0].entity.table_entry == te


def test_clone_session_entry():
    entry = p4client.P4RuntimeClient.clone_session_entry(100, 4, instance=2)
    session = entry.clone_session_entry
    assert session.session_id == 100
    assert [(r.egress_port, r.instance) for r in session.replicas] == [(4, 2)]


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, metadata=()):
        self._code, self._details, self._metadata = code, details, metadata

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._metadata


def _status_with(errors: list[p4runtime_pb2.Error]) -> bytes:
    status = status_pb2.Status(code=code_pb2.UNKNOWN)
    for err in errors:
        detail = any_pb2.Any()
        detail.Pack(err)
        status.details.append(detail)
    return status.SerializeToString()


def test_write_error_lists_failed_updates(p4i):
    updates = p4messages.updates_of(
        p4runtime_pb2.Update.INSERT,
        [p4i.table_entry("flow_lookup", {"srcAddr": i, "srcPort": 1}, "NoAction", {})
         for i in range(3)])
    ok = p4runtime_pb2.Error(canonical_code=code_pb2.OK)
    exists = p4runtime_pb2.Error(canonical_code=code_pb2.ALREADY_EXISTS,
                                 message="Match entry exists, use MODIFY")
    bad = p4runtime_pb2.Error(canonical_code=code_pb2.INVALID_ARGUMENT, message="Bad bytestring")
    err = FakeRpcError(grpc.StatusCode.UNKNOWN, "",
                       (("grpc-status-details-bin", _status_with([ok, exists, bad])),))
    result = p4errors.write_error(err, updates)
    assert isinstance(result, p4errors.WriteError)
    text = str(result)
    assert "2 of 3 updates" in text
    assert "#1 ALREADY_EXISTS: Match entry exists, use MODIFY" in text
    assert "#2 INVALID_ARGUMENT: Bad bytestring" in text
    assert "#0" not in text
    assert [f.index for f in result.failures] == [1, 2]
    assert result.failures[0].update is updates[1]
    plain = p4errors.write_error(FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "Not primary"),
                                  updates)
    assert isinstance(plain, p4errors.NotPrimaryError) and "Not primary" in str(plain)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connect_to_nothing_is_switch_unreachable():
    cl = p4client.P4RuntimeClient(f"127.0.0.1:{_free_port()}", timeout=0.5)
    with pytest.raises(p4errors.SwitchUnreachableError, match="is simple_switch_grpc running"):
        cl.connect()
    cl.close()  # idempotent after a failed connect
    cl.close()
    with pytest.raises(p4errors.P4RuntimeError, match="not connected"):
        cl.write([p4runtime_pb2.Update()])


# --------------------------------------------------------------------------- client vs a fake server
# A minimal in-process P4Runtime server (arbitration, Write with per-update errors in the
# grpc-status-details-bin trailer as PI sends them, Read, pipeline cookie, packet echo) to exercise
# the client's wire handling and threading. The real thing is tested against simple_switch_grpc.

class FakeP4Runtime:
    def __init__(self, primary_code: int = code_pb2.OK):
        self.primary_code = primary_code
        self.entities: dict[bytes, p4runtime_pb2.Entity] = {}
        self.cookie: int | None = None
        self.write_batches: list[int] = []

    def _key(self, entity: p4runtime_pb2.Entity) -> bytes:
        if entity.HasField("packet_replication_engine_entry"):
            return b"pre%d" % entity.packet_replication_engine_entry.clone_session_entry.session_id
        key = p4runtime_pb2.Entity()
        key.CopyFrom(entity)
        key.table_entry.ClearField("action")
        return key.SerializeToString(deterministic=True)

    def Write(self, request, context):
        self.write_batches.append(len(request.updates))
        errors, failed = [], False
        for update in request.updates:
            key, error = self._key(update.entity), p4runtime_pb2.Error(canonical_code=code_pb2.OK)
            if update.type == p4runtime_pb2.Update.INSERT and key in self.entities:
                error = p4runtime_pb2.Error(canonical_code=code_pb2.ALREADY_EXISTS,
                                            message="Match entry exists, use MODIFY")
            elif update.type != p4runtime_pb2.Update.INSERT and key not in self.entities:
                error = p4runtime_pb2.Error(canonical_code=code_pb2.NOT_FOUND,
                                            message="Cannot find match entry")
            elif update.type == p4runtime_pb2.Update.DELETE:
                del self.entities[key]
            else:
                self.entities[key] = update.entity
            failed |= error.canonical_code != code_pb2.OK
            errors.append(error)
        if failed:
            context.set_trailing_metadata((("grpc-status-details-bin", _status_with(errors)),))
            context.set_code(grpc.StatusCode.UNKNOWN)
            context.set_details("")
        return p4runtime_pb2.WriteResponse()

    def Read(self, request, context):
        wanted = {e.WhichOneof("entity") for e in request.entities}
        found = [e for e in self.entities.values() if e.WhichOneof("entity") in wanted]
        if "counter_entry" in wanted:
            entity = p4runtime_pb2.Entity()
            entity.counter_entry.CopyFrom(request.entities[0].counter_entry)
            entity.counter_entry.data.packet_count = 3
            entity.counter_entry.data.byte_count = 180
            found.append(entity)
        yield p4runtime_pb2.ReadResponse(entities=found)

    def SetForwardingPipelineConfig(self, request, context):
        self.cookie = request.config.cookie.cookie
        return p4runtime_pb2.SetForwardingPipelineConfigResponse()

    def GetForwardingPipelineConfig(self, request, context):
        if self.cookie is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "No forwarding pipeline config")
        resp = p4runtime_pb2.GetForwardingPipelineConfigResponse()
        resp.config.cookie.cookie = self.cookie
        return resp

    def StreamChannel(self, requests, context):
        for req in requests:
            if req.HasField("arbitration"):
                resp = p4runtime_pb2.StreamMessageResponse()
                resp.arbitration.CopyFrom(req.arbitration)
                resp.arbitration.status.code = self.primary_code
                if self.primary_code != code_pb2.OK:
                    resp.arbitration.election_id.low = 99
                yield resp
            elif req.HasField("packet"):
                if req.packet.payload == b"die":
                    context.abort(grpc.StatusCode.INTERNAL, "switch exploded")
                resp = p4runtime_pb2.StreamMessageResponse()
                resp.packet.payload = req.packet.payload
                resp.packet.metadata.add(metadata_id=1, value=req.packet.metadata[0].value)
                resp.packet.metadata.add(metadata_id=2, value=b"\x02")
                yield resp

    def serve(self) -> tuple[grpc.Server, str]:
        from concurrent import futures

        pb = p4runtime_pb2
        unary = {"Write": (pb.WriteRequest, self.Write),
                 "SetForwardingPipelineConfig": (pb.SetForwardingPipelineConfigRequest,
                                                 self.SetForwardingPipelineConfig),
                 "GetForwardingPipelineConfig": (pb.GetForwardingPipelineConfigRequest,
                                                 self.GetForwardingPipelineConfig)}
        handlers = {name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=req.FromString,
            response_serializer=lambda m: m.SerializeToString())
            for name, (req, fn) in unary.items()}
        handlers["Read"] = grpc.unary_stream_rpc_method_handler(
            self.Read, request_deserializer=pb.ReadRequest.FromString,
            response_serializer=lambda m: m.SerializeToString())
        handlers["StreamChannel"] = grpc.stream_stream_rpc_method_handler(
            self.StreamChannel, request_deserializer=pb.StreamMessageRequest.FromString,
            response_serializer=lambda m: m.SerializeToString())
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("p4.v1.P4Runtime", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, f"127.0.0.1:{port}"


@pytest.fixture
def fake():
    servicer = FakeP4Runtime()
    server, address = servicer.serve()
    servicer.address = address
    yield servicer
    server.stop(grace=None)


def test_client_against_fake_server(fake, tmp_path, p4i):
    info_path, json_path = _pipeline_files(
        tmp_path, text_format.MessageToString(build_p4info()), '{"program": "fake"}')
    with p4client.P4RuntimeClient(fake.address, timeout=2.0) as cl:
        assert cl.is_primary
        assert cl.pipeline_cookie() is None  # FAILED_PRECONDITION -> None
        assert cl.ensure_pipeline(info_path, json_path) is True
        assert fake.cookie == p4messages.default_cookie(info_path, json_path)
        assert cl.pipeline_cookie() == fake.cookie
        assert cl.ensure_pipeline(info_path, json_path) is False
        assert cl.p4info is not None and cl.p4info.table("routes").preamble.id == 0x02000002

        entries = [cl.p4info.table_entry("flow_lookup", {"srcAddr": i, "srcPort": 80},
                                         "NoAction", {}) for i in range(5)]
        cl.insert(entries)
        assert fake.write_batches == [5]  # one WriteRequest for the whole batch
        with pytest.raises(p4errors.WriteError) as exc:
            cl.insert([entries[4], p4i.table_entry("flow_lookup", {"srcAddr": 9, "srcPort": 1},
                                                   "NoAction", {})])
        assert "1 of 2 updates: #0 ALREADY_EXISTS: Match entry exists" in str(exc.value)
        read = list(cl.read([cl.p4info.table_wildcard("flow_lookup")]))
        assert len(read) == 6 and all(e.HasField("table_entry") for e in read)
        cl.delete(entries)
        assert len(fake.entities) == 1
        assert cl.read_counter("rx_pkts", 7) == (3, 180)

        cl.write_clone_sessions({100: 5, 101: 6})
        cl.write_clone_sessions({100: 7, 102: 8})  # 100 exists: falls back to MODIFY
        sessions = {e.packet_replication_engine_entry.clone_session_entry.session_id:
                    e.packet_replication_engine_entry.clone_session_entry.replicas[0].egress_port
                    for e in fake.entities.values()
                    if e.HasField("packet_replication_engine_entry")}
        assert sessions == {100: 7, 101: 6, 102: 8}

        assert cl.packet_in(0.05) is None
        cl.packet_out(b"hello", egress_port=3)
        cl.packet_out(b"world", egress_port=4)
        assert cl.packet_in(2.0) == (b"hello", {"ingress_port": 3, "reason": 2})
        deadline = time.monotonic() + 2.0
        drained = []
        while not drained and time.monotonic() < deadline:
            drained = cl.drain_packet_ins()
        assert drained == [(b"world", {"ingress_port": 4, "reason": 2})]

        # A stream failure wakes a waiting packet_in and surfaces on every later call.
        cl.packet_out(b"die", egress_port=1)
        with pytest.raises(p4errors.StreamError, match="switch exploded"):
            cl.packet_in(5.0)
        with pytest.raises(p4errors.StreamError, match="INTERNAL"):
            cl.insert(entries[:1])
        assert not cl.is_primary
    cl.close()  # idempotent after the context manager closed it


def test_client_not_primary():
    servicer = FakeP4Runtime(primary_code=code_pb2.ALREADY_EXISTS)
    server, address = servicer.serve()
    try:
        cl = p4client.P4RuntimeClient(address, election_id=(0, 5), timeout=2.0)
        with pytest.raises(p4errors.NotPrimaryError, match="higher election_id"):
            cl.connect()
        assert cl._channel is None and cl._stream._reader is None  # connect failure closed all
    finally:
        server.stop(grace=None)
