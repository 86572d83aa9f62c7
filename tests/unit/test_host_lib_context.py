"""host_lib.context (the low-level event API: contexts, connections, listeners, ConnEvents)
against a fake in-process runtime (tests/support/host_lib_fake.py)."""

from __future__ import annotations

from host_lib import control_protocol as cp
from host_lib.context import ConnEvent
from host_lib.sessions import session
from tests.support import host_lib_fake
from tests.support.host_lib_fake import PEER

make_fake = host_lib_fake.make_fake  # the fixtures
fake = host_lib_fake.fake


def test_low_level_event_api(fake):
    sess = session()
    ctx = sess.create_context()
    assert ctx.ctx_id == 1  # 0 is the sockets' context
    conn = ctx.connect(*PEER)
    events = ctx.poll(5)
    assert [e.kind for e in events] == [ConnEvent.CONNECTED] and events[0].conn is conn
    slot = fake.conn_slots[conn.conn_id]
    fake.deliver(slot, b"zero copy", ctx_id=1)
    events = ctx.poll(5)
    assert events[0].kind == ConnEvent.RX and events[0].length == 9
    with sess.lock:
        pieces = conn.rx_peek()
        assert b"".join(bytes(p) for p in pieces) == b"zero copy"
        for piece in pieces:
            piece.release()
        conn.rx_done(9)
        views = conn.tx_alloc(5)
        views[0][:5] = b"hello"
        conn.tx_send(5)
    assert fake.wait_for(cp.Kick).conn_id == conn.conn_id
    assert fake.take_tx(slot, ctx_id=1) == b"hello"
    assert [e.kind for e in ctx.poll(5)] == [ConnEvent.TX_ACKED]
    assert ctx.poll(0.05) == []
    with sess.lock:
        conn.close()
    assert [e.kind for e in ctx.poll(5)] == [ConnEvent.CLOSED]


def test_low_level_listen_accept(fake):
    sess = session()
    ctx = sess.create_context()
    listener = ctx.listen(8080)
    assert fake.wait_for(cp.Listen).ctx_id == ctx.ctx_id
    assert listener.local == ("0.0.0.0", 8080)
    conn_id, slot = fake.incoming(ctx_id=ctx.ctx_id)
    events = ctx.poll(5)
    assert [e.kind for e in events] == [ConnEvent.INCOMING] and events[0].listener is listener
    with sess.lock:
        conn = listener.accept()
        assert listener.accept() is None
    assert (conn.conn_id, conn.state, conn.peer) == (conn_id, "open", PEER)
    assert fake.wait_for(cp.Accept).conn_id == conn_id
    fake.deliver(slot, b"hi", ctx_id=ctx.ctx_id)
    assert [(e.kind, e.length) for e in ctx.poll(5)] == [(ConnEvent.RX, 2)]
    with sess.lock:
        assert conn.recv(10) == b"hi"
        listener.close()
    assert fake.wait_for(cp.CloseListener).listener_id == 1
