"""The session's event thread: the interrupt handler behind kernel-like readiness.

A socket's fileno() (host_lib.doorbell) must change state when the runtime sends something even
while the application sleeps in select/poll/epoll on it, which no library call of the
application would notice. So the first fileno() of a session starts one daemon thread that
blocks in the session's own wait (poll() on the control socket, host_lib.sessions) and
dispatches each message as it arrives; the sockets' watchers set their doorbells. It never
polls by time: it sleeps until the runtime writes, and ends when the session does.
"""

from __future__ import annotations

import threading
import weakref

from host_lib.sessions import Session

_THREADS: "weakref.WeakKeyDictionary[Session, threading.Thread]" = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def ensure_event_thread(sess: Session) -> None:
    """Start `sess`'s event thread unless it runs (idempotent, any thread)."""
    with _GUARD:
        thread = _THREADS.get(sess)
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(target=_serve, args=(sess,), name="p4tas-events", daemon=True)
        _THREADS[sess] = thread
        thread.start()


def _serve(sess: Session) -> None:
    """Dispatch the runtime's messages as they come, until the session is closed or dead."""
    with sess.lock:
        sess.wait(lambda: False, None)  # returns once the session is dead (closed, runtime gone)
