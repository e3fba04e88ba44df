"""The ctypes inotify binding: what the watchers of all three daemons stand on."""
import os
import select
import subprocess

import pytest

from dpd import inotify


@pytest.fixture
def fresh_binding(monkeypatch):
    monkeypatch.setattr(inotify, '_libc', None)


def test_binding_libc_never_forks(fresh_binding, monkeypatch):
    """Daemons bind libc after their threads run; ctypes.util.find_library would fork
    `ldconfig -p` then (a fork with threads, and a second process on the daemon's
    command line for a moment)."""
    def no_fork(*args, **kwargs):
        raise AssertionError('forked: %r' % (args,))
    monkeypatch.setattr(subprocess, 'Popen', no_fork)
    monkeypatch.setattr(os, 'fork', no_fork)
    fd = inotify.init()
    os.close(fd)


def test_a_watch_reports_a_write(fresh_binding, tmp_path):
    fd = inotify.init()
    try:
        wd = inotify.add_watch(fd, str(tmp_path), inotify.IN_CLOSE_WRITE)
        (tmp_path / 'f').write_text('x')
        select.select([fd], [], [], 5.0)
        assert inotify.parse(os.read(fd, 4096)) == [(wd, inotify.IN_CLOSE_WRITE, 'f')]
    finally:
        os.close(fd)
