"""A child's identity from the clock (procfs.BirthClock), against what /proc says.

The worker no longer reads /proc/PID/stat right after a spawn (that read waits
for the child's exec); these real children check the arithmetic that replaces
it, and that a disagreement falls back to /proc for good."""
import subprocess

import pytest

from dpd import procfs

SLEEPER = ['/bin/sleep', '30']


@pytest.fixture
def children():
    started = []
    yield started
    for child in started:
        child.kill()
        child.wait(timeout=10)


def spawn_timed(clock, children, **popen):
    forked_after = clock.now()
    child = subprocess.Popen(SLEEPER, stdin=subprocess.DEVNULL, close_fds=True, **popen)
    forked_before = clock.now()
    children.append(child)
    return child, clock.identity(child.pid, forked_after, forked_before)


def test_the_clock_gives_exactly_the_identity_proc_gives(children):
    clock = procfs.BirthClock()
    for _ in range(40):
        child, from_clock = spawn_timed(clock, children, start_new_session=True)
        assert from_clock == procfs.identity(child.pid)
    assert clock.trusted is True


def test_a_child_that_is_not_a_session_leader_makes_the_clock_read_proc_for_good(children):
    clock = procfs.BirthClock()
    for _ in range(20):          # a spawn across a tick boundary leaves it unknown; retry
        child, first = spawn_timed(clock, children)
        assert first == procfs.identity(child.pid)       # /proc's answer, not the guess
        if clock.trusted is not None:
            break
    assert clock.trusted is False
    child, later = spawn_timed(clock, children, start_new_session=True)
    assert later == procfs.identity(child.pid)



def test_a_spawn_across_a_tick_boundary_is_read_from_proc(children, monkeypatch):
    clock = procfs.BirthClock()
    reads = []
    real = procfs.identity
    monkeypatch.setattr(procfs, 'identity', lambda pid: reads.append(pid) or real(pid))
    forked_after = clock.now() - 50_000_000             # 50 ms earlier: another tick
    child = subprocess.Popen(SLEEPER, stdin=subprocess.DEVNULL, start_new_session=True)
    children.append(child)
    assert clock.identity(child.pid, forked_after, clock.now()) == real(child.pid)
    assert reads == [child.pid] and clock.trusted is None
