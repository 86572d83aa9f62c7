"""The TCP connection state machine (RFC 793 section 3.2), defined once in `TRANSITIONS`.

Every connection the runtime handles owns one `TcpStateMachine`; the runtime turns packets, timers
and application calls into `Event`s and fires them. Anything not in the table raises
`IllegalTransition` and leaves the state as it was: the daemon logs it with the connection's
addresses, and it is counted in `illegal_transitions` (and reported to the `on_illegal` hook).

Deviations from RFC 793, because each connection has a machine of its own and a listener is a
separate machine that stays in LISTEN:
- a connection spawned by a SYN starts in LISTEN and fires RCV_SYN (`TcpStateMachine.incoming`);
- RST (or giving up) in SYN_RECEIVED goes to CLOSED, not LISTEN (the listener never left it);
- LISTEN + SEND -> SYN_SENT is absent: a socket API listener never turns into an active opener.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class State(enum.Enum):
    """RFC 793 connection states."""

    CLOSED = enum.auto()
    LISTEN = enum.auto()
    SYN_SENT = enum.auto()
    SYN_RECEIVED = enum.auto()
    ESTABLISHED = enum.auto()
    FIN_WAIT_1 = enum.auto()
    FIN_WAIT_2 = enum.auto()
    CLOSE_WAIT = enum.auto()
    CLOSING = enum.auto()
    LAST_ACK = enum.auto()
    TIME_WAIT = enum.auto()


class Event(enum.Enum):
    """What moves a connection: an application call, a classified segment, or a timer."""

    APP_LISTEN = enum.auto()          # listen()
    APP_CONNECT = enum.auto()         # connect(): send SYN
    APP_CLOSE = enum.auto()           # close()/shutdown(SHUT_WR): send FIN after queued data
    APP_ABORT = enum.auto()           # abort (app vanished, SO_LINGER 0): RST if synchronized
    RCV_SYN = enum.auto()             # SYN without ACK
    RCV_SYN_ACK = enum.auto()         # SYN whose ACK covers our SYN
    RCV_ACK_OF_SYN = enum.auto()      # ACK that covers our SYN (handshake completes)
    RCV_FIN = enum.auto()             # FIN that does not newly ack our FIN
    RCV_ACK_OF_FIN = enum.auto()      # ACK that covers our FIN
    RCV_FIN_ACK_OF_FIN = enum.auto()  # FIN whose ACK also covers our FIN (FIN_WAIT_1 only)
    RCV_RST = enum.auto()             # acceptable RST (the caller has done the RFC 5961 checks)
    TIMEOUT = enum.auto()             # retransmissions exhausted / FIN_WAIT_2 timer: give up
    TIME_WAIT_EXPIRED = enum.auto()   # the TIME_WAIT timer fired


SYNCHRONIZED_STATES = frozenset({
    State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING,
    State.LAST_ACK, State.TIME_WAIT})
SENDING_STATES = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
RECEIVING_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})


def _build_transitions() -> dict[tuple[State, Event], State]:
    """The whole table: the RFC 793 diagram plus RST, abort and timeouts."""
    S, E = State, Event  # noqa: N806 - short names keep the table readable
    table = {
        (S.CLOSED, E.APP_LISTEN): S.LISTEN,
        (S.CLOSED, E.APP_CONNECT): S.SYN_SENT,
        (S.LISTEN, E.RCV_SYN): S.SYN_RECEIVED,
        (S.LISTEN, E.APP_CLOSE): S.CLOSED,
        (S.SYN_SENT, E.RCV_SYN_ACK): S.ESTABLISHED,
        (S.SYN_SENT, E.RCV_SYN): S.SYN_RECEIVED,          # simultaneous open
        (S.SYN_SENT, E.APP_CLOSE): S.CLOSED,
        (S.SYN_SENT, E.RCV_RST): S.CLOSED,                # connection refused
        (S.SYN_RECEIVED, E.RCV_ACK_OF_SYN): S.ESTABLISHED,
        (S.SYN_RECEIVED, E.RCV_FIN): S.CLOSE_WAIT,
        (S.SYN_RECEIVED, E.APP_CLOSE): S.FIN_WAIT_1,
        (S.ESTABLISHED, E.APP_CLOSE): S.FIN_WAIT_1,
        (S.ESTABLISHED, E.RCV_FIN): S.CLOSE_WAIT,
        (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN): S.FIN_WAIT_2,
        (S.FIN_WAIT_1, E.RCV_FIN): S.CLOSING,             # simultaneous close
        (S.FIN_WAIT_1, E.RCV_FIN_ACK_OF_FIN): S.TIME_WAIT,
        (S.FIN_WAIT_2, E.RCV_FIN): S.TIME_WAIT,
        (S.CLOSE_WAIT, E.APP_CLOSE): S.LAST_ACK,
        (S.CLOSING, E.RCV_ACK_OF_FIN): S.TIME_WAIT,
        (S.LAST_ACK, E.RCV_ACK_OF_FIN): S.CLOSED,
        (S.TIME_WAIT, E.TIME_WAIT_EXPIRED): S.CLOSED,
    }
    # A retransmitted FIN after the peer's first one: stay (TIME_WAIT restarts its timer).
    for state in (S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT):
        table[(state, E.RCV_FIN)] = state
    for state in SYNCHRONIZED_STATES | {S.SYN_RECEIVED}:
        table[(state, E.RCV_RST)] = S.CLOSED
    for state in set(State) - {S.CLOSED}:
        table[(state, E.APP_ABORT)] = S.CLOSED
    for state in set(State) - {S.CLOSED, S.LISTEN, S.TIME_WAIT}:
        table[(state, E.TIMEOUT)] = S.CLOSED
    return table


TRANSITIONS: Mapping[tuple[State, Event], State] = MappingProxyType(_build_transitions())

illegal_transitions: Counter[tuple[State, Event]] = Counter()
"""Process-wide count of rejected (state, event) pairs, for the daemon's statistics."""


class IllegalTransition(ValueError):
    """An event that the current state does not accept; the state is left unchanged."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"illegal TCP transition: {event.name} in state {state.name}")
        self.state = state
        self.event = event


@dataclass(slots=True)
class TcpStateMachine:
    """One connection's state; `fire` is the only way it changes."""

    state: State = State.CLOSED
    on_illegal: Callable[[IllegalTransition], None] | None = field(
        default=None, repr=False, compare=False)

    @classmethod
    def incoming(cls, on_illegal: Callable[[IllegalTransition], None] | None = None,
                 ) -> TcpStateMachine:
        """A connection spawned by a SYN on a listener: LISTEN --RCV_SYN--> SYN_RECEIVED."""
        machine = cls(State.LISTEN, on_illegal)
        machine.fire(Event.RCV_SYN)
        return machine

    def fire(self, event: Event) -> State:
        """Apply `event` and return the new state; raise `IllegalTransition`, changing nothing."""
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            error = IllegalTransition(self.state, event)
            illegal_transitions[(self.state, event)] += 1
            if self.on_illegal is not None:
                self.on_illegal(error)
            raise error from None
        return self.state

    def accepts(self, event: Event) -> bool:
        """Whether `fire(event)` would succeed now."""
        return (self.state, event) in TRANSITIONS

    @property
    def is_synchronized(self) -> bool:
        """Both sides' initial sequence numbers are known and acknowledged (RFC 793)."""
        return self.state in SYNCHRONIZED_STATES

    @property
    def can_send(self) -> bool:
        """The application may still queue data: we have not sent our FIN."""
        return self.state in SENDING_STATES

    @property
    def can_receive(self) -> bool:
        """The peer may still send data: its FIN has not arrived."""
        return self.state in RECEIVING_STATES

    @property
    def is_closed(self) -> bool:
        """The connection is gone; its resources may be released."""
        return self.state is State.CLOSED
