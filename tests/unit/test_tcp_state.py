"""The TCP state machine: the table against RFC 793, illegal events, and whole life cycles."""

from __future__ import annotations

import itertools

import pytest

from runtime.tcp_state import (TRANSITIONS, Event, IllegalTransition, State, TcpStateMachine,
                               illegal_transitions)

S, E = State, Event

# RFC 793, written out by hand from the section 3.2 diagram (fig. 6), the event processing rules
# of section 3.9 (SEGMENT ARRIVES, ABORT, user timeout) and the deviations in runtime/tcp_state.py.
# This list is independent of TRANSITIONS: the two must agree exactly.
RFC_793 = [
    # Opens (fig. 6).
    (S.CLOSED, E.APP_LISTEN, S.LISTEN),                  # passive OPEN
    (S.CLOSED, E.APP_CONNECT, S.SYN_SENT),               # active OPEN / snd SYN
    (S.LISTEN, E.RCV_SYN, S.SYN_RECEIVED),               # rcv SYN / snd SYN,ACK
    (S.LISTEN, E.APP_CLOSE, S.CLOSED),                   # CLOSE / delete TCB
    (S.SYN_SENT, E.RCV_SYN_ACK, S.ESTABLISHED),          # rcv SYN,ACK / snd ACK
    (S.SYN_SENT, E.RCV_SYN, S.SYN_RECEIVED),             # simultaneous open: rcv SYN / snd ACK
    (S.SYN_SENT, E.APP_CLOSE, S.CLOSED),                 # CLOSE / delete TCB
    (S.SYN_RECEIVED, E.RCV_ACK_OF_SYN, S.ESTABLISHED),   # rcv ACK of SYN
    (S.SYN_RECEIVED, E.APP_CLOSE, S.FIN_WAIT_1),         # CLOSE / snd FIN
    # Closes (fig. 6).
    (S.ESTABLISHED, E.APP_CLOSE, S.FIN_WAIT_1),          # CLOSE / snd FIN
    (S.ESTABLISHED, E.RCV_FIN, S.CLOSE_WAIT),            # rcv FIN / snd ACK
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN, S.FIN_WAIT_2),
    (S.FIN_WAIT_1, E.RCV_FIN, S.CLOSING),                # simultaneous close
    (S.FIN_WAIT_1, E.RCV_FIN_ACK_OF_FIN, S.TIME_WAIT),   # 3.9: "FIN-WAIT-1 ... FIN has been ACKed"
    (S.FIN_WAIT_2, E.RCV_FIN, S.TIME_WAIT),
    (S.CLOSE_WAIT, E.APP_CLOSE, S.LAST_ACK),             # CLOSE / snd FIN
    (S.CLOSING, E.RCV_ACK_OF_FIN, S.TIME_WAIT),
    (S.LAST_ACK, E.RCV_ACK_OF_FIN, S.CLOSED),
    (S.TIME_WAIT, E.TIME_WAIT_EXPIRED, S.CLOSED),        # timeout = 2MSL
    # 3.9 SEGMENT ARRIVES, eighth step (FIN bit).
    (S.SYN_RECEIVED, E.RCV_FIN, S.CLOSE_WAIT),
    (S.CLOSE_WAIT, E.RCV_FIN, S.CLOSE_WAIT),
    (S.CLOSING, E.RCV_FIN, S.CLOSING),
    (S.LAST_ACK, E.RCV_FIN, S.LAST_ACK),
    (S.TIME_WAIT, E.RCV_FIN, S.TIME_WAIT),               # restart the 2MSL timer
    # 3.9 SEGMENT ARRIVES, RST. SYN_RECEIVED goes to CLOSED, not LISTEN (deviation: the listener
    # is a machine of its own and never left LISTEN).
    (S.SYN_SENT, E.RCV_RST, S.CLOSED),                   # "error: connection reset" (refused)
    (S.SYN_RECEIVED, E.RCV_RST, S.CLOSED),
    (S.ESTABLISHED, E.RCV_RST, S.CLOSED),
    (S.FIN_WAIT_1, E.RCV_RST, S.CLOSED),
    (S.FIN_WAIT_2, E.RCV_RST, S.CLOSED),
    (S.CLOSE_WAIT, E.RCV_RST, S.CLOSED),
    (S.CLOSING, E.RCV_RST, S.CLOSED),
    (S.LAST_ACK, E.RCV_RST, S.CLOSED),
    (S.TIME_WAIT, E.RCV_RST, S.CLOSED),
    # 3.9 ABORT call: every state but CLOSED ends in CLOSED (RST sent where synchronized).
    (S.LISTEN, E.APP_ABORT, S.CLOSED),
    (S.SYN_SENT, E.APP_ABORT, S.CLOSED),
    (S.SYN_RECEIVED, E.APP_ABORT, S.CLOSED),
    (S.ESTABLISHED, E.APP_ABORT, S.CLOSED),
    (S.FIN_WAIT_1, E.APP_ABORT, S.CLOSED),
    (S.FIN_WAIT_2, E.APP_ABORT, S.CLOSED),
    (S.CLOSE_WAIT, E.APP_ABORT, S.CLOSED),
    (S.CLOSING, E.APP_ABORT, S.CLOSED),
    (S.LAST_ACK, E.APP_ABORT, S.CLOSED),
    (S.TIME_WAIT, E.APP_ABORT, S.CLOSED),
    # 3.9 user timeout: give up in any state with something to retransmit or wait for
    # (TIME_WAIT has its own timer; LISTEN and CLOSED have nothing outstanding).
    (S.SYN_SENT, E.TIMEOUT, S.CLOSED),
    (S.SYN_RECEIVED, E.TIMEOUT, S.CLOSED),
    (S.ESTABLISHED, E.TIMEOUT, S.CLOSED),
    (S.FIN_WAIT_1, E.TIMEOUT, S.CLOSED),
    (S.FIN_WAIT_2, E.TIMEOUT, S.CLOSED),
    (S.CLOSE_WAIT, E.TIMEOUT, S.CLOSED),
    (S.CLOSING, E.TIMEOUT, S.CLOSED),
    (S.LAST_ACK, E.TIMEOUT, S.CLOSED),
]

TABLE = sorted(((s, e, n) for (s, e), n in TRANSITIONS.items()),
               key=lambda t: (t[0].value, t[1].value))
ILLEGAL = [(s, e) for s, e in itertools.product(State, Event) if (s, e) not in TRANSITIONS]


def _id(value: object) -> str:
    return value.name if isinstance(value, (State, Event)) else str(value)


def test_rfc_list_has_no_duplicates() -> None:
    keys = [(s, e) for s, e, _ in RFC_793]
    assert len(keys) == len(set(keys))


def test_table_matches_rfc_793_exactly() -> None:
    assert dict(TRANSITIONS) == {(s, e): n for s, e, n in RFC_793}


@pytest.mark.parametrize("state, event, expected", TABLE, ids=_id)
def test_every_table_transition(state: State, event: Event, expected: State) -> None:
    machine = TcpStateMachine(state)
    assert machine.accepts(event)
    assert machine.fire(event) is expected
    assert machine.state is expected


@pytest.mark.parametrize("state, event, expected", RFC_793, ids=_id)
def test_every_rfc_793_transition(state: State, event: Event, expected: State) -> None:
    machine = TcpStateMachine(state)
    assert machine.fire(event) is expected
    assert machine.state is expected


@pytest.mark.parametrize("state, event", ILLEGAL, ids=_id)
def test_illegal_transition_rejected_state_unchanged(state: State, event: Event) -> None:
    machine = TcpStateMachine(state)
    assert not machine.accepts(event)
    with pytest.raises(IllegalTransition) as info:
        machine.fire(event)
    assert machine.state is state
    assert (info.value.state, info.value.event) == (state, event)
    assert str(info.value) == f"illegal TCP transition: {event.name} in state {state.name}"


def test_illegal_transition_is_a_value_error_counted_and_hooked() -> None:
    seen: list[IllegalTransition] = []
    machine = TcpStateMachine(State.ESTABLISHED, on_illegal=seen.append)
    before = illegal_transitions[(State.ESTABLISHED, Event.APP_LISTEN)]
    with pytest.raises(ValueError, match="APP_LISTEN in state ESTABLISHED"):
        machine.fire(Event.APP_LISTEN)
    assert illegal_transitions[(State.ESTABLISHED, Event.APP_LISTEN)] == before + 1
    assert [(e.state, e.event) for e in seen] == [(State.ESTABLISHED, Event.APP_LISTEN)]
    assert machine.fire(Event.RCV_FIN) is State.CLOSE_WAIT  # still usable afterwards


def test_every_state_is_entered_and_left() -> None:
    targets = set(TRANSITIONS.values())
    assert targets == set(State)  # LISTEN included, CLOSED too
    sources = {s for s, _ in TRANSITIONS}
    assert sources == set(State)


def run(machine: TcpStateMachine, *events: Event) -> list[State]:
    """Fire `events` in order and return the states visited."""
    return [machine.fire(event) for event in events]


def test_passive_open_then_close_by_us() -> None:
    listener = TcpStateMachine()
    assert listener.fire(E.APP_LISTEN) is S.LISTEN
    conn = TcpStateMachine.incoming()
    assert conn.state is S.SYN_RECEIVED and listener.state is S.LISTEN
    assert not conn.is_synchronized and not conn.can_send
    assert run(conn, E.RCV_ACK_OF_SYN) == [S.ESTABLISHED]
    assert conn.is_synchronized and conn.can_send and conn.can_receive
    assert run(conn, E.APP_CLOSE, E.RCV_ACK_OF_FIN) == [S.FIN_WAIT_1, S.FIN_WAIT_2]
    assert conn.can_receive and not conn.can_send  # half-closed: the peer may still send
    assert run(conn, E.RCV_FIN, E.TIME_WAIT_EXPIRED) == [S.TIME_WAIT, S.CLOSED]
    assert conn.is_closed
    assert listener.fire(E.APP_CLOSE) is S.CLOSED


def test_active_open_then_close_by_peer() -> None:
    conn = TcpStateMachine()
    assert run(conn, E.APP_CONNECT, E.RCV_SYN_ACK) == [S.SYN_SENT, S.ESTABLISHED]
    assert run(conn, E.RCV_FIN) == [S.CLOSE_WAIT]
    assert conn.can_send and not conn.can_receive  # we may finish sending
    assert run(conn, E.APP_CLOSE, E.RCV_ACK_OF_FIN) == [S.LAST_ACK, S.CLOSED]


def test_active_close_with_fin_acking_our_fin() -> None:
    conn = TcpStateMachine(S.ESTABLISHED)
    assert run(conn, E.APP_CLOSE, E.RCV_FIN_ACK_OF_FIN) == [S.FIN_WAIT_1, S.TIME_WAIT]


def test_simultaneous_open() -> None:
    conn = TcpStateMachine()
    assert run(conn, E.APP_CONNECT, E.RCV_SYN, E.RCV_ACK_OF_SYN) == [
        S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED]


def test_simultaneous_close() -> None:
    conn = TcpStateMachine(S.ESTABLISHED)
    assert run(conn, E.APP_CLOSE, E.RCV_FIN, E.RCV_ACK_OF_FIN, E.TIME_WAIT_EXPIRED) == [
        S.FIN_WAIT_1, S.CLOSING, S.TIME_WAIT, S.CLOSED]


def test_connection_refused_and_handshake_timeout() -> None:
    assert run(TcpStateMachine(), E.APP_CONNECT, E.RCV_RST) == [S.SYN_SENT, S.CLOSED]
    assert run(TcpStateMachine(), E.APP_CONNECT, E.TIMEOUT) == [S.SYN_SENT, S.CLOSED]


def test_reset_while_established_then_no_more_events() -> None:
    conn = TcpStateMachine(S.ESTABLISHED)
    assert run(conn, E.RCV_RST) == [S.CLOSED]
    with pytest.raises(IllegalTransition):
        conn.fire(E.RCV_FIN)
    assert conn.is_closed


@pytest.mark.parametrize("state", list(State), ids=_id)
def test_properties(state: State) -> None:
    machine = TcpStateMachine(state)
    assert machine.is_synchronized == (state in {
        S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK,
        S.TIME_WAIT})
    assert machine.can_send == (state in {S.ESTABLISHED, S.CLOSE_WAIT})
    assert machine.can_receive == (state in {S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
    assert machine.is_closed == (state is S.CLOSED)


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(S.CLOSED, E.RCV_SYN)] = S.ESTABLISHED  # type: ignore[index]
