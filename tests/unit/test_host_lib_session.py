"""host_lib.sessions (the process's session with the runtime: requests, pumping, waiting and
waking across threads, the runtime going away) and the host_lib package around it, against a fake
in-process runtime (tests/support/host_lib_fake.py)."""

from __future__ import annotations

import ast
import sys
import threading
import time
from pathlib import Path

import pytest

import host_lib
from host_lib import control_protocol as cp
from host_lib.control_channel import ControlChannel, RuntimeUnavailable
from host_lib.sessions import close_session, session
from host_lib.sockets import Socket
from tests.support import host_lib_fake
from tests.support.host_lib_fake import LOCAL, PEER, connected

make_fake = host_lib_fake.make_fake  # the fixtures
fake = host_lib_fake.fake


# -------------------------------------------------------------------- package

def test_exports():
    for name in ("socket", "open_connection", "start_server", "RuntimeUnavailable",
                 "Session", "session", "Context", "Connection", "ConnEvent", "timeout"):
        assert hasattr(host_lib, name), name
    assert host_lib.timeout is TimeoutError
    assert host_lib.socket is Socket and "socket" in host_lib.__all__
    assert issubclass(host_lib.RuntimeUnavailable, ConnectionError)


def _runtime_imports(path: Path) -> set[str]:
    """The modules a host_lib file imports when it runs (not under `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) \
                    and child.test.id == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module == "host_lib":
                found.update(f"host_lib.{alias.name}" for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.add(child.module)
            visit(child)
    visit(ast.parse(path.read_text()))
    return found


def test_modules_import_only_host_lib_and_stdlib_without_cycles():
    package = Path(host_lib.__file__).parent
    imports = {path.stem: _runtime_imports(path) for path in package.glob("*.py")
               if path.stem != "__init__"}
    deps: dict[str, set[str]] = {}
    for module, names in imports.items():
        foreign = {name for name in names
                   if name.split(".")[0] not in ("host_lib", *sys.stdlib_module_names)}
        assert not foreign, f"host_lib/{module}.py imports {foreign}"
        deps[module] = {name.split(".")[1] for name in names if name.startswith("host_lib.")}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + [module])}"
        if module not in done:
            for dep in deps[module]:
                visit(dep, path + [module])
            done.add(module)
    for module in deps:
        visit(module, [])
    assert deps["context"] == {"control_protocol", "control_channel", "rings", "shm_layout"}


# ----------------------------------------------------------------- no runtime

def test_runtime_unavailable_names_what_to_check(tmp_path, monkeypatch):
    monkeypatch.setenv("P4TAS_CONTROL_SOCKET", str(tmp_path / "nothing.sock"))
    close_session()
    with pytest.raises(RuntimeUnavailable) as info:
        host_lib.socket()
    assert isinstance(info.value, ConnectionError)
    text = str(info.value)
    assert "nothing.sock" in text and "P4TAS_CONTROL_SOCKET" in text and "runtime" in text


def test_runtime_without_data_path(make_fake):
    make_fake(shm_name=None)
    with pytest.raises(RuntimeUnavailable, match="no data path"):
        host_lib.socket()


def test_runtime_goes_away(fake):
    s = connected(fake)
    fake.hang_up()
    with pytest.raises(RuntimeUnavailable):
        s.recv(10)
    with pytest.raises(RuntimeUnavailable):
        s.send(b"x")
    s.close()  # does not raise


# -------------------------------------------------------------------- threads

def test_blocked_thread_is_woken_when_another_reads_its_event(make_fake, monkeypatch):
    """Thread A blocks in poll() for its Connected; thread B pumps first and dispatches it
    (the control socket is empty again when A polls): A must still return at once."""
    fake = make_fake(connect="silent")
    sess = session()
    real_wait = sess.channel.wait_readable
    polling, proceed = threading.Event(), threading.Event()

    def wait_readable(*args):
        if not polling.is_set():  # A's first poll: let B read A's event before A polls
            polling.set()
            proceed.wait(5)
        return real_wait(*args)
    monkeypatch.setattr(sess.channel, "wait_readable", wait_readable)
    outcome: list = []

    def thread_a() -> None:
        s = host_lib.socket()
        s.settimeout(5)
        started = time.monotonic()
        try:
            s.connect(PEER)
            outcome.append(time.monotonic() - started)
        except OSError as exc:
            outcome.append(exc)
    a = threading.Thread(target=thread_a)
    a.start()
    try:
        assert polling.wait(5)
        fake.wait_for(cp.Connect)
        fake.send(cp.Connected(ctx_id=0, conn_id=101, local_ip=LOCAL[0], local_port=LOCAL[1],
                               peer_ip=PEER[0], peer_port=PEER[1], slot=0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # B reads and dispatches it while A still polls
            with sess.lock:
                sess.wait(lambda: True, 0)
                if 101 in sess._conns and sess._conns[101].state == "open":
                    break
            time.sleep(0.01)
    finally:
        proceed.set()
        a.join(10)
    assert isinstance(outcome[0], float) and outcome[0] < 2, outcome


def test_threads_send_while_other_blocks_in_recv(fake):
    with connected(fake, timeout=None) as s:
        slot = fake.conn_slots[101]
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(s.recv(100)))
        reader.start()
        time.sleep(0.1)
        s.sendall(b"ping")  # not blocked by the reader's wait
        assert fake.take_tx(slot) == b"ping"
        fake.deliver(slot, b"pong")
        reader.join(5)
        assert got == [b"pong"]


# ------------------------------------------------------------- ControlChannel

def test_control_channel_blocking_api_still_works(fake):
    with ControlChannel(fake.path, app_name="compat") as ch:
        assert ch.app_id == 7 and ch.shm_name == fake.shm_name
        ctx = ch.create_context()
        conn_id = ch.connect(ctx, *PEER, timeout_s=5)
        event = ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=conn_id, timeout=5)
        assert isinstance(event, cp.Connected) and event.slot == 0
        assert ch.next_event(timeout=0.05) is None
        ch.kick(conn_id)
        assert fake.wait_for(cp.Kick).conn_id == conn_id
        ch.close_connection(conn_id)
        assert isinstance(ch.wait_for(cp.Closed, conn_id=conn_id, timeout=5), cp.Closed)
        with pytest.raises(TimeoutError):
            ch.wait_for(cp.PeerClosed, timeout=0.05)
