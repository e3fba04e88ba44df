"""The lock that means "running" (SPEC 1), and its two races."""
import fcntl
import os
import subprocess
import sys
import threading

import pytest

from dpd.daemon import LockRefused, is_locked, take_lock, write_pid
from dpd.safefile import UnsafePath

PROGRAM = 'pytest'      # this process's command line holds it, as a daemon's holds its name


def test_a_held_lock_refuses_a_second_holder(tmp_path):
    path = str(tmp_path / 'd.pid')
    first = take_lock(path, PROGRAM)
    write_pid(first)
    assert first is not None and is_locked(path)
    assert take_lock(path, PROGRAM) is None
    os.close(first)
    assert not is_locked(path)


def test_a_lock_held_by_another_program_is_not_already_running(tmp_path):
    """Anyone who can read the file can flock it: a held lock whose pid is not the
    daemon's program must not make a start exit 0 with nothing running."""
    path = str(tmp_path / 'd.lock')
    open(path, 'w').close()
    holder = subprocess.Popen([sys.executable, '-c', 'import fcntl, sys, time; '
                               'f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); '
                               'print("held", flush=True); time.sleep(60)', path],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b'held\n'
        with pytest.raises(LockRefused, match='not by a running dpd-workerd'):
            take_lock(path, 'dpd-workerd')
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to give the file away')
def test_a_lock_file_of_another_user_is_refused(tmp_path):
    path = str(tmp_path / 'd.lock')
    open(path, 'w').close()
    os.chown(path, 65534, 65534)
    with pytest.raises(UnsafePath, match='owned by uid 65534'):
        take_lock(path, PROGRAM)


def test_a_lock_on_a_file_removed_meanwhile_is_not_taken(tmp_path):
    """A stopping daemon removes its pid file while it holds the lock: a new start
    must lock the new file, not the old inode."""
    path = str(tmp_path / 'd.pid')
    old = take_lock(path, PROGRAM)
    os.unlink(path)                         # the old daemon's clean exit, lock still held
    new = take_lock(path, PROGRAM)
    write_pid(new)
    assert new is not None and os.fstat(new).st_ino == os.stat(path).st_ino
    assert take_lock(path, PROGRAM) is None, 'and it is the one a third start meets'
    os.close(old)
    os.close(new)


def test_a_status_probe_does_not_make_a_start_give_up(tmp_path):
    path = str(tmp_path / 'd.pid')
    open(path, 'w').close()
    probe = os.open(path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)       # dpd-ctl or an init script looking
    release = threading.Timer(0.03, lambda: os.close(probe))
    release.start()
    fd = take_lock(path, PROGRAM)
    release.join()
    assert fd is not None
    os.close(fd)
