"""Test session rules: a hang prints every stack; nothing outlives a test."""
import ctypes
import faulthandler
import os
import signal
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import support  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config):
    faulthandler.dump_traceback_later(900, exit=True)
    # whatever a daemon under test leaves behind is re-parented to us and ended below
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.fixture
def workdir():
    work = support.Workdir()
    yield work
    work.cleanup()


@pytest.fixture(autouse=True)
def no_leaks():
    threads_before = set(threading.enumerate())
    yield
    leaked = _orphans()
    deadline = time.monotonic() + 2.0   # a daemon may be exiting right now
    while leaked and time.monotonic() < deadline:
        time.sleep(0.02)
        _reap_orphans()
        leaked = _orphans()
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap_orphans()
    extra_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not extra_threads, 'threads left running: %r' % extra_threads
    assert not leaked, 'processes left running (now killed): %r' % leaked


def _orphans():
    """Live children of this test process: daemons a test did not stop, and
    whatever they left behind (re-parented to us, their subreaper)."""
    me, found = os.getpid(), []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry, 'rb') as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b')') + 2:].split()
        if int(fields[1]) == me and fields[0] != b'Z':
            found.append(int(entry))
    return found


def _reap_orphans():
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None:
            return
        try:
            os.waitpid(info.si_pid, os.WNOHANG)
        except ChildProcessError:
            return
