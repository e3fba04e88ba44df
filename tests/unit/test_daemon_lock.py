"""The lock that means "running" (SPEC 1), and its two races."""
import fcntl
import os
import threading

from dpd.daemon import is_locked, take_lock


def test_a_held_lock_refuses_a_second_holder(tmp_path):
    path = str(tmp_path / 'd.pid')
    first = take_lock(path)
    assert first is not None and is_locked(path)
    assert take_lock(path) is None
    os.close(first)
    assert not is_locked(path)


def test_a_lock_on_a_file_removed_meanwhile_is_not_taken(tmp_path):
    """A stopping daemon removes its pid file while it holds the lock: a new start
    must lock the new file, not the old inode."""
    path = str(tmp_path / 'd.pid')
    old = take_lock(path)
    os.unlink(path)                         # the old daemon's clean exit, lock still held
    new = take_lock(path)
    assert new is not None and os.fstat(new).st_ino == os.stat(path).st_ino
    assert take_lock(path) is None, 'and it is the one a third start meets'
    os.close(old)
    os.close(new)


def test_a_status_probe_does_not_make_a_start_give_up(tmp_path):
    path = str(tmp_path / 'd.pid')
    open(path, 'w').close()
    probe = os.open(path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)       # dpd-ctl or an init script looking
    release = threading.Timer(0.03, lambda: os.close(probe))
    release.start()
    fd = take_lock(path)
    release.join()
    assert fd is not None
    os.close(fd)
